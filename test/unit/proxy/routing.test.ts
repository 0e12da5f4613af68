import { describe, expect, it } from 'vitest';
import { resolveTarget, SNI_SUFFIX, type ClusterRoute, type Routes } from '../../../src/proxy/routing.ts';

function route(id: string, server: string): ClusterRoute {
  return { id, name: id, server: new URL(server), caPem: undefined, insecureSkipTlsVerify: false, tlsServerName: undefined, proxyUrl: undefined };
}

const routes: Routes = {
  clusters: new Map([
    ['a-1', route('a-1', 'https://api.example:6443')],
    ['b-2', route('b-2', 'https://lb.example/k8s/clusters/b/')],
  ]),
  identities: new Map(),
};

describe('resolveTarget', () => {
  it('routes /c/<id>/… to the cluster and strips the prefix', () => {
    expect(resolveTarget(routes, '/c/a-1/api/v1/pods?limit=500', undefined)).toMatchObject({ path: '/api/v1/pods', query: 'limit=500', upstreamPath: '/api/v1/pods?limit=500', route: { id: 'a-1' } });
    expect(resolveTarget(routes, '/c/a-1', undefined)).toMatchObject({ path: '/', query: '', upstreamPath: '/' });
  });

  it("prepends the server URL's own path upstream, not in the path the stages see", () => {
    expect(resolveTarget(routes, '/c/b-2/version?', undefined)).toMatchObject({ path: '/version', query: '', upstreamPath: '/k8s/clusters/b/version?' });
  });

  it('routes a server-relative request by SNI, with its path as sent, command tag or not', () => {
    expect(resolveTarget(routes, '/openapi/v3/api/v1?hash=x', `a-1${SNI_SUFFIX}`)).toMatchObject({ path: '/openapi/v3/api/v1', query: 'hash=x', upstreamPath: '/openapi/v3/api/v1?hash=x', route: { id: 'a-1' } });
    expect(resolveTarget(routes, '/version', `a-1--wabc123${SNI_SUFFIX}`)?.route.id).toBe('a-1');
  });

  it('finds no route for an unknown id, a foreign server name, or none', () => {
    expect(resolveTarget(routes, '/c/zzz/api', `a-1${SNI_SUFFIX}`)).toBeUndefined();
    expect(resolveTarget(routes, '/api', 'a-1.example.com')).toBeUndefined();
    expect(resolveTarget(routes, '/api', undefined)).toBeUndefined();
  });
});
