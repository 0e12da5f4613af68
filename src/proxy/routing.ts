/**
 * Which cluster a request is for, and as whom. kubetrail serves every cluster of the kubeconfig on one
 * listener: the rewritten kubeconfig (kubeconfig/rewrite.ts) points each cluster at `/c/<route id>` and
 * names the route again in TLS SNI; this module reads both back. Pure: no sockets, no state.
 */
import { createHash } from 'node:crypto';
import { originForm, removeDotSegments } from './paths.ts';

export interface ClusterRoute {
  /** Path segment under /c/ on the kubetrail listener; stable for a given cluster name. */
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
 * Each rewritten cluster also names its route in TLS SNI (`tls-server-name: <id>.kubetrail.localhost`):
 * kubectl sends some requests with a server-relative URI that drops the server URL's path (`get --raw`,
 * OpenAPI v3 `serverRelativeURL` fetches), and those are routed by SNI. The path prefix stays, because
 * kubectl keys its discovery cache by host:port/path and two clusters must not share one.
 */
export const SNI_SUFFIX = '.kubetrail.localhost';

/**
 * A wrapped command's requests carry a command tag in SNI (`<id>--w<tag>.kubetrail.localhost`): the
 * background kubetrail groups them into that command's trace. The server URL (and with it kubectl's
 * discovery and HTTP caches) does not change; the serving certificate covers `*.kubetrail.localhost`.
 * One DNS label: a route id is at most 49 characters, so a tag is at most 10 (63 in all).
 */
const TAG_SEP = '--w';
const TAG_RE = /^[0-9a-z]{6,10}$/;

export function isCommandTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

export function taggedServerName(id: string, tag: string): string {
  if (!isCommandTag(tag)) throw new Error(`invalid command tag ${JSON.stringify(tag)}`);
  return `${id}${TAG_SEP}${tag}${SNI_SUFFIX}`;
}

/** The route id and command tag named by a TLS server name, if it is one of kubetrail's. */
export function parseServerName(name: string | false | null | undefined): { routeId: string; tag: string | undefined } | undefined {
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
  /** Path as the apiserver sees it, without the route prefix or the server URL's own path. */
  path: string;
  /** Raw query string without '?'. */
  query: string;
  /** Path and query to send upstream, with the server URL's own path prefix. */
  upstreamPath: string;
}

function splitQuery(url: string): { path: string; query: string; hasQuery: boolean } {
  const q = url.indexOf('?');
  return q === -1 ? { path: url, query: '', hasQuery: false } : { path: url.slice(0, q), query: url.slice(q + 1), hasQuery: true };
}

/**
 * The cluster a request is for: `/c/<route>/…` names it; a server-relative request (kubectl get --raw,
 * OpenAPI v3 serverRelativeURL) names it in SNI only, and is forwarded with its path as kubectl sent it,
 * as it would reach the apiserver without kubetrail. Undefined when no route matches.
 */
export function resolveTarget(routes: Routes, requestUrl: string, servername: string | false | null | undefined): Target | undefined {
  // Origin form only, dot segments resolved inside the route (proxy/paths.ts).
  const url = originForm(requestUrl);
  if (url === undefined) return undefined;
  const { path: pathPart, query, hasQuery } = splitQuery(url);
  const withQuery = (p: string): string => `${p}${hasQuery ? `?${query}` : ''}`;
  if (!url.startsWith(ROUTE_PREFIX)) {
    const id = parseServerName(servername)?.routeId;
    const route = id === undefined ? undefined : routes.clusters.get(id);
    if (!route) return undefined;
    const path = removeDotSegments(pathPart);
    return { route, path, query, upstreamPath: withQuery(path) };
  }
  const rest = pathPart.slice(ROUTE_PREFIX.length);
  const slash = rest.indexOf('/');
  const id = slash === -1 ? rest : rest.slice(0, slash);
  const route = routes.clusters.get(id);
  if (!route) return undefined;
  const path = slash === -1 ? '/' : removeDotSegments(rest.slice(slash));
  const base = route.server.pathname.replace(/\/+$/, '');
  return { route, path, query, upstreamPath: withQuery(`${base}${path}`) };
}
