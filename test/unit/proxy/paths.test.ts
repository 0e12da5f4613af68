/** Issue #15 item 11: dot segments stay inside the route, and what goes upstream is origin-form. */
import { describe, expect, it } from 'vitest';
import { originForm, removeDotSegments } from '../../../src/proxy/paths.ts';
import { resolveTarget, SNI_SUFFIX, type ClusterRoute, type Routes } from '../../../src/proxy/routing.ts';

function route(id: string, server: string): ClusterRoute {
  return {
    id,
    name: id,
    server: new URL(server),
    caPem: undefined,
    insecureSkipTlsVerify: false,
    tlsServerName: undefined,
    proxyUrl: undefined,
  };
}

// A Rancher-style server URL: the cluster lives under a path prefix of a shared host.
const routes: Routes = {
  clusters: new Map([['two', route('two', 'https://rancher.example/k8s/clusters/c-xxx')]]),
  identities: new Map(),
};

describe('paths as the apiserver sees them', () => {
  it("`..` after the route prefix never climbs out of the server URL's path prefix", () => {
    expect(resolveTarget(routes, '/c/two/../../../api', undefined)).toMatchObject({
      path: '/api',
      upstreamPath: '/k8s/clusters/c-xxx/api',
    });
    expect(resolveTarget(routes, '/c/two/api/v1/%2e%2e/%2E%2E/../../version?x=1', undefined)).toMatchObject({
      path: '/version',
      query: 'x=1',
      upstreamPath: '/k8s/clusters/c-xxx/version?x=1',
    });
    expect(resolveTarget(routes, '/c/two/api/./v1/pods', undefined)?.upstreamPath).toBe(
      '/k8s/clusters/c-xxx/api/v1/pods',
    );
    // Routed by SNI (a server-relative path, which already names the prefix): cleaned the same way.
    expect(resolveTarget(routes, '/k8s/clusters/c-xxx/api/../version', `two${SNI_SUFFIX}`)?.upstreamPath).toBe(
      '/k8s/clusters/c-xxx/version',
    );
  });

  it('an absolute-form request line is forwarded in origin form', () => {
    expect(resolveTarget(routes, 'https://evil.example:1/c/two/api/v1/pods?watch=1', undefined)).toMatchObject({
      path: '/api/v1/pods',
      upstreamPath: '/k8s/clusters/c-xxx/api/v1/pods?watch=1',
    });
    expect(resolveTarget(routes, 'http://x/k8s/clusters/c-xxx/version', `two${SNI_SUFFIX}`)?.upstreamPath).toBe(
      '/k8s/clusters/c-xxx/version',
    );
    expect(resolveTarget(routes, '*', `two${SNI_SUFFIX}`)).toBeUndefined();
    expect(originForm('rancher.example:443')).toBeUndefined();
  });

  it('leaves every other path as it was sent', () => {
    for (const p of [
      '/api/v1/namespaces/default/pods',
      '/',
      '/api/v1/',
      '/api//v1',
      '/api/v1/namespaces/a%2Fb',
      '/api/.well-known',
      '/api/..x/y',
    ])
      expect(removeDotSegments(p)).toBe(p);
    expect(removeDotSegments('/api/v1/..')).toBe('/api/');
  });
});
