import { describe, expect, it } from 'vitest';
import {
  resolveTarget,
  routeAddress,
  SNI_SUFFIX,
  uniqueRouteAddresses,
  usesRouteAddresses,
  type ClusterRoute,
  type Routes,
} from '../../../src/proxy/routing.ts';

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

const routes: Routes = {
  clusters: new Map([
    ['a-1', route('a-1', 'https://api.example:6443')],
    ['b-2', route('b-2', 'https://lb.example/k8s/clusters/b/')],
  ]),
  identities: new Map(),
};

describe('resolveTarget', () => {
  it('routes /c/<id>/… to the cluster and strips the prefix', () => {
    expect(resolveTarget(routes, '/c/a-1/api/v1/pods?limit=500', undefined)).toMatchObject({
      path: '/api/v1/pods',
      query: 'limit=500',
      upstreamPath: '/api/v1/pods?limit=500',
      route: { id: 'a-1' },
    });
    expect(resolveTarget(routes, '/c/a-1', undefined)).toMatchObject({ path: '/', query: '', upstreamPath: '/' });
  });

  it("prepends the server URL's own path upstream, not in the path the stages see", () => {
    expect(resolveTarget(routes, '/c/b-2/version?', undefined)).toMatchObject({
      path: '/version',
      query: '',
      upstreamPath: '/k8s/clusters/b/version?',
    });
  });

  it('routes a server-relative request by SNI, with its path as sent, command tag or not', () => {
    expect(resolveTarget(routes, '/openapi/v3/api/v1?hash=x', `a-1${SNI_SUFFIX}`)).toMatchObject({
      path: '/openapi/v3/api/v1',
      query: 'hash=x',
      upstreamPath: '/openapi/v3/api/v1?hash=x',
      route: { id: 'a-1' },
    });
    expect(resolveTarget(routes, '/version', `a-1--wabc123${SNI_SUFFIX}`)?.route.id).toBe('a-1');
  });

  it("routes by SNI a request that carries the server URL's own path (route addresses): sent upstream as it came, read without it", () => {
    expect(resolveTarget(routes, '/k8s/clusters/b/api/v1/pods?limit=5', `b-2${SNI_SUFFIX}`)).toMatchObject({
      route: { id: 'b-2' },
      path: '/api/v1/pods',
      upstreamPath: '/k8s/clusters/b/api/v1/pods?limit=5',
    });
    // kubectl get --raw drops the server URL's path, direct and through kubetrail alike.
    expect(resolveTarget(routes, '/version', `b-2${SNI_SUFFIX}`)).toMatchObject({
      route: { id: 'b-2' },
      path: '/version',
      upstreamPath: '/version',
    });
  });

  it("a path under /c/ that names no route is the apiserver's (get --raw /c/x), routed by SNI", () => {
    expect(resolveTarget(routes, '/c/zzz/api', `a-1${SNI_SUFFIX}`)).toMatchObject({
      route: { id: 'a-1' },
      upstreamPath: '/c/zzz/api',
    });
  });

  it('finds no route for an unknown id, a foreign server name, or none', () => {
    expect(resolveTarget(routes, '/c/zzz/api', undefined)).toBeUndefined();
    expect(resolveTarget(routes, '/c/zzz/api', `zzz${SNI_SUFFIX}`)).toBeUndefined();
    expect(resolveTarget(routes, '/api', 'a-1.example.com')).toBeUndefined();
    expect(resolveTarget(routes, '/api', undefined)).toBeUndefined();
  });
});

describe('route addresses', () => {
  it('gives each route a stable loopback address of its own, never 127.0.x.x, never .0 or .255 last', () => {
    const ids = Array.from({ length: 500 }, (_, i) => `cluster-${i}-0a1b2c3d`);
    const addrs = ids.map(routeAddress);
    expect(routeAddress('a-1')).toBe(routeAddress('a-1'));
    expect(new Set(addrs).size).toBe(ids.length);
    for (const a of addrs) {
      const [x, y, z, w] = a.split('.').map(Number);
      expect([x, y! > 0 && y! < 255, z! >= 0 && z! < 256, w! > 0 && w! < 255]).toEqual([127, true, true, true]);
    }
  });

  it('leaves routes whose addresses collide to the path prefix', () => {
    // Find two ids with one address (24 bits: a few thousand tries).
    const seen = new Map<string, string>();
    let pair: [string, string] | undefined;
    for (let i = 0; !pair; i++) {
      const id = `c${i}`;
      const other = seen.get(routeAddress(id));
      if (other !== undefined) pair = [other, id];
      else seen.set(routeAddress(id), id);
    }
    const got = uniqueRouteAddresses([...pair, 'a-1']);
    expect([...got.keys()]).toEqual(['a-1']);
    expect(got.get('a-1')).toBe(routeAddress('a-1'));
  });

  it('are used on Linux for a listener on 127.0.0.1 only', () => {
    expect(usesRouteAddresses('127.0.0.1', 'linux')).toBe(true);
    expect(usesRouteAddresses('127.0.0.1', 'darwin')).toBe(false);
    expect(usesRouteAddresses('::1', 'linux')).toBe(false);
    expect(usesRouteAddresses('0.0.0.0', 'linux')).toBe(false);
    expect(usesRouteAddresses('127.0.0.2', 'linux')).toBe(false);
  });
});
