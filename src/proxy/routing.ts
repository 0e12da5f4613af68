/**
 * Which cluster a request is for, and as whom. kubetrail serves every cluster of the kubeconfig on one
 * port: the rewritten kubeconfig (kubeconfig/rewrite.ts) names each cluster's route in TLS SNI and gives
 * it a host:port of its own, a loopback address per route (routeAddress) where the OS has them, else
 * kubetrail's listen address and a `/c/<route id>` path; this module reads the route back. Pure: no
 * sockets, no state.
 */
import { createHash } from 'node:crypto';
import { isCommandTag } from '../command-tag.ts';
import { originForm, removeDotSegments } from './paths.ts';

export interface ClusterRoute {
  /** Names the route in SNI (and, in the path-prefix form, under /c/); stable for a given cluster name and server. */
  id: string;
  name: string;
  /** The real apiserver, as the kubeconfig names it. */
  server: URL;
  caPem: Buffer | undefined;
  insecureSkipTlsVerify: boolean;
  tlsServerName: string | undefined;
  proxyUrl: string | undefined;
  /**
   * A context pairs this cluster with a user that has no credential: only then does a request that carries
   * none (no client certificate kubetrail holds a key for, no Authorization) reach the apiserver through a
   * proxy-url with the proxy's credentials. Otherwise any local process could spend them.
   */
  anonymousUser?: boolean;
}

export interface ClientIdentity {
  /** kubeconfig user name (for logs and spans; never the key). */
  user: string;
  certPem: Buffer;
  keyPem: Buffer;
  /** SHA-256 of the certificate's DER bytes: the only way a presented certificate is matched. */
  fingerprint: string;
}

export interface Routes {
  clusters: Map<string, ClusterRoute>;
  identities: Map<string, ClientIdentity>;
  /**
   * Re-read client certificates and keys whose files changed since they were read, adding what they now
   * hold to `identities` (kubeconfig/rewrite.ts): called when a presented certificate matches none.
   */
  refreshIdentities?: () => void;
}

export const ROUTE_PREFIX = '/c/';
/**
 * Each rewritten cluster names its route in TLS SNI (`tls-server-name: <id>.kubetrail.localhost`), which
 * is also the name kubectl verifies kubetrail's certificate against (`*.kubetrail.localhost`), whatever
 * the server URL's host. SNI routes every request of a kubeconfig with route addresses, and the
 * server-relative ones (`get --raw`, OpenAPI v3 `serverRelativeURL` fetches) of the path-prefix form.
 */
export const SNI_SUFFIX = '.kubetrail.localhost';

/** The TLS server name of a route: its rewritten cluster's tls-server-name, without a command tag. */
export function routeHost(id: string): string {
  return `${id}${SNI_SUFFIX}`;
}

/**
 * The loopback address a route's rewritten server URL names: 127.a.b.c from a hash of the route id (which
 * already hashes the cluster's name and server). kubectl keys its discovery cache by the server URL's
 * host:port and path; an address of its own keeps each cluster's apart without a path, which `kubectl
 * proxy` warns about (docs/decisions.md, "Routes"). Never 127.0.x.x (127.0.0.1 is the listener's own,
 * 127.0.0.53 a local resolver's); never .0 or .255 last.
 */
export function routeAddress(id: string): string {
  const [a = 0, b = 0, c = 0] = createHash('sha256').update(`route-address\0${id}`).digest();
  return `127.${1 + (a % 254)}.${b}.${1 + (c % 254)}`;
}

/**
 * Whether clusters get a loopback address each (routeAddress), which kubetrail listens on too: for a
 * listener on 127.0.0.1 on Linux, which routes all of 127/8 to `lo`. Elsewhere (macOS has 127.0.0.1 alone
 * unless aliased; `[::1]` has no range; `--listen 0.0.0.0:…` for Docker is reached from elsewhere) the
 * route stays in a /c/<route> path prefix.
 */
export function usesRouteAddresses(listenHost: string, platform: NodeJS.Platform = process.platform): boolean {
  return listenHost === '127.0.0.1' && platform === 'linux';
}

/**
 * Each route's address, for the routes whose address no other of `ids` shares (24 bits of hash: rare,
 * but two clusters on one host:port would share kubectl's discovery cache): those keep the path prefix.
 */
export function uniqueRouteAddresses(ids: Iterable<string>): Map<string, string> {
  const byAddress = new Map<string, string[]>();
  for (const id of ids) {
    const a = routeAddress(id);
    byAddress.set(a, [...(byAddress.get(a) ?? []), id]);
  }
  const out = new Map<string, string>();
  for (const [a, owners] of byAddress) if (owners.length === 1 && owners[0] !== undefined) out.set(owners[0], a);
  return out;
}

/**
 * A wrapped command's requests carry a command tag in SNI (`<id>--w<tag>.kubetrail.localhost`): the
 * background kubetrail groups them into that command's trace. The server URL (and with it kubectl's
 * discovery and HTTP caches) does not change; the serving certificate covers `*.kubetrail.localhost`.
 * One DNS label: a route id is at most 49 characters, so a tag is at most 10 (63 in all).
 */
const TAG_SEP = '--w';
export function taggedServerName(id: string, tag: string): string {
  if (!isCommandTag(tag)) throw new Error(`invalid command tag ${JSON.stringify(tag)}`);
  return routeHost(`${id}${TAG_SEP}${tag}`);
}

/** The route id and command tag named by a TLS server name, if it is one of kubetrail's. */
export function parseServerName(
  name: string | false | null | undefined,
): { routeId: string; tag: string | undefined } | undefined {
  if (typeof name !== 'string' || !name.endsWith(SNI_SUFFIX)) return undefined;
  const label = name.slice(0, -SNI_SUFFIX.length);
  const sep = label.lastIndexOf(TAG_SEP);
  if (sep > 0) {
    const tag = label.slice(sep + TAG_SEP.length);
    if (isCommandTag(tag)) return { routeId: label.slice(0, sep), tag };
  }
  return { routeId: label, tag: undefined };
}

/** How a presented client certificate is matched against the kubeconfig's: by its exact DER bytes. */
export function certFingerprint(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

/** Where one request goes. */
export interface Target {
  route: ClusterRoute;
  /** Path as the apiserver sees it, without the route prefix or the server URL's own path (what the stages read). */
  path: string;
  /** Raw query string without '?'. */
  query: string;
  /** Path and query to send upstream, with the server URL's own path prefix. */
  upstreamPath: string;
}

function splitQuery(url: string): { path: string; query: string; hasQuery: boolean } {
  const q = url.indexOf('?');
  return q === -1
    ? { path: url, query: '', hasQuery: false }
    : { path: url.slice(0, q), query: url.slice(q + 1), hasQuery: true };
}

/**
 * The cluster a request is for. SNI names it (routeHost, or a tagged name), and the request goes upstream
 * with its path as kubectl sent it: the rewritten server URL carries the apiserver URL's own path (a
 * Rancher-style `/k8s/clusters/x`), so kubectl joins it to each request, or drops it from a
 * server-relative one, exactly as it would direct. In the path-prefix form (no route addresses, or a
 * kubeconfig rewritten before them) `/c/<route>/…` names it instead, and the prefix is replaced by the
 * server URL's own path. Undefined when no route matches.
 */
export function resolveTarget(
  routes: Routes,
  requestUrl: string,
  servername: string | false | null | undefined,
): Target | undefined {
  // Origin form only, dot segments resolved inside the route (proxy/paths.ts).
  const url = originForm(requestUrl);
  if (url === undefined) return undefined;
  const { path: pathPart, query, hasQuery } = splitQuery(url);
  const withQuery = (p: string): string => `${p}${hasQuery ? `?${query}` : ''}`;
  // A server-relative path under /c/ that names no route is the apiserver's, routed by SNI like any other.
  const prefixed = url.startsWith(ROUTE_PREFIX) ? routes.clusters.get(routeInPath(pathPart)) : undefined;
  if (!prefixed) {
    const id = parseServerName(servername)?.routeId;
    const route = id === undefined ? undefined : routes.clusters.get(id);
    if (!route) return undefined;
    const sent = removeDotSegments(pathPart);
    return { route, path: withoutServerPath(route, sent), query, upstreamPath: withQuery(sent) };
  }
  const rest = pathPart.slice(ROUTE_PREFIX.length);
  const slash = rest.indexOf('/');
  const path = slash === -1 ? '/' : removeDotSegments(rest.slice(slash));
  return { route: prefixed, path, query, upstreamPath: withQuery(`${serverPath(prefixed)}${path}`) };
}

function routeInPath(path: string): string {
  const rest = path.slice(ROUTE_PREFIX.length);
  const slash = rest.indexOf('/');
  return slash === -1 ? rest : rest.slice(0, slash);
}

/** The apiserver URL's own path, without a trailing slash ('' for none). */
function serverPath(route: ClusterRoute): string {
  return route.server.pathname.replace(/\/+$/, '');
}

/** The path the stages read: without the server URL's own path (`/k8s/clusters/x`), when it starts with it. */
function withoutServerPath(route: ClusterRoute, path: string): string {
  const base = serverPath(route);
  if (base === '' || !(path === base || path.startsWith(`${base}/`))) return path;
  return path.slice(base.length) || '/';
}
