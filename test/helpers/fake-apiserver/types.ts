/** Public types of the stand-in apiserver (options, recorded requests, faults, users). */
import type { IncomingHttpHeaders } from 'node:http';
import type { KeyPairPem } from '../../../src/pki/certs.ts';
import type { KubeObject } from './resources.ts';
import type { WatchEvent } from './store.ts';
import type { ExecHandler, PortForwardHandler } from './streaming.ts';

export interface UserInfo {
  name: string;
  /** Includes `system:authenticated` (or `system:unauthenticated`), as the apiserver adds it. */
  groups: string[];
}

/** The authorizer's view of a request (authorizer.Attributes, resource or non-resource). */
export interface RequestAttributes {
  verb: string;
  isResourceRequest: boolean;
  /** Non-resource requests: the URL path. */
  path: string;
  apiGroup: string;
  apiVersion: string;
  resource: string;
  subresource: string;
  namespace: string;
  name: string;
}

/** `true`/`false`, or a decision with the authorizer's reason (appended to the 403 message after `: `). */
export type AuthorizeFn = (user: UserInfo, attrs: RequestAttributes) => boolean | { allowed: boolean; reason?: string };

export interface TokenEntry {
  user: string;
  groups?: string[];
}

export interface FakeApiserverOptions {
  /** Server minor version for `/version` (and what the /usr/bin/kubectl dispatcher picks): default "1.33". */
  version?: '1.32' | '1.33';
  /** Offer ALPN h2 (default true). `false`: an HTTPS server that speaks HTTP/1.1 only. */
  http2?: boolean;
  /** Extra DNS SANs on the serving certificate (e.g. for `tls-server-name` tests). */
  extraDnsNames?: string[];
  /** Bearer tokens → identity (like `--token-auth-file`). */
  tokens?: Record<string, TokenEntry>;
  /** Basic credentials (the real apiserver dropped these in 1.19; off unless given). */
  basicAuth?: Record<string, { password: string; groups?: string[] }>;
  /** Anonymous requests allowed through authentication (default true, like the apiserver). */
  anonymous?: boolean;
  /** Authorization policy. Default: `system:masters` and every authenticated user may do anything;
   * anonymous may only GET /version, /healthz, /readyz, /livez. */
  authorize?: AuthorizeFn;
  /** Serve aggregated discovery when asked (default true). `false`: legacy discovery only. */
  aggregatedDiscovery?: boolean;
  /** Accept WebSocket upgrades for exec/attach/port-forward (default true). `false`: answer them with the
   * bare `403 Forbidden` an apiserver without the stream translator relays from its kubelet, so kubectl
   * falls back to SPDY. */
  websocket?: boolean;
  /** Accept SPDY/3.1 upgrades (default true). `false`: 400 with a Status body. */
  spdy?: boolean;
  exec?: ExecHandler;
  portForward?: PortForwardHandler;
  /** `logs -f`: after the stored lines, add a line every `intervalMs` (default: none, only `appendLog`),
   * and end the stream after `count` generated lines (default: never). */
  logFollow?: { intervalMs: number; count?: number; line?: (i: number, pod: string) => string };
  /** Namespaces present at start (default default, kube-system, kube-public, kube-node-lease). */
  namespaces?: string[];
  /** Objects present at start (namespaces they name are created). */
  objects?: KubeObject[];
  /** Responses larger than this are gzipped for clients that accept it (default 128 KiB, like the apiserver). */
  gzipThresholdBytes?: number;
  /** Watch events kept for resuming watches (default 10000). */
  watchHistory?: number;
  /** Send a BOOKMARK this often to watches that ask with `allowWatchBookmarks=true` (default: never). */
  bookmarkIntervalMs?: number;
}

export interface RecordedRequest {
  method: string;
  /** Path and query as sent. */
  url: string;
  path: string;
  query: Record<string, string[]>;
  /** Node's header object (lower-case names, duplicates joined; h2 pseudo-headers such as `:path` included).
   * It includes Authorization: for tests only. */
  headers: IncomingHttpHeaders;
  /** Names and values as received, in order, duplicates kept. */
  rawHeaders: string[];
  httpVersion: string;
  /** Negotiated ALPN protocol, or false when the client offered none. */
  alpn: string | false;
  /** SNI server name, or false when none was sent (an IP-address URL). */
  sni: string | false;
  /** CN of a client certificate that verified against the client CA. */
  clientCertCN?: string;
  /** The authenticated user name (after authentication ran). */
  user?: string;
  upgrade: boolean;
  /** Request body as UTF-8 text, once read. */
  body?: string;
  /** Request body bytes (protobuf bodies are not text). */
  rawBody?: Buffer;
  /** The answer's status code, once written (101 for upgrades). */
  status?: number;
  /** The answer's headers as the fake wrote them (Date and Content-Length aside), once written. */
  responseHeaders?: [string, string][];
  auditId: string;
  /** Date.now() at arrival. */
  time: number;
}

export interface Fault {
  /** Tested against the request path and query; default: every request. */
  path?: RegExp;
  method?: string;
  /** Apply to this many matching requests, then forget the fault (default: until cleared). */
  times?: number;
  /** Hold the answer this long before anything else happens. */
  delayHeadersMs?: number;
  /** Answer with this status instead of handling the request. */
  status?: number;
  /** Body for `status` (default: a Status object; for 429 the APF text body). Objects are sent as JSON. */
  body?: string | object;
  /** Extra headers for the `status` answer. */
  headers?: Record<string, string>;
  /** Adds `Retry-After: N` to the `status` answer. */
  retryAfter?: number;
  /** Handle the request, but cut the connection (h2: RST_STREAM) after this many body bytes. */
  resetAfterBytes?: number;
  /** Handle the request, send the headers, never send the body (until close()). */
  hangAfterHeaders?: boolean;
  /** Close the connection without any answer. */
  dropConnection?: boolean;
}

export interface KubeconfigUser {
  name: string;
  /** Written to files next to the kubeconfig and referenced as client-certificate/client-key. */
  cert?: KeyPairPem;
  token?: string;
  /** A file holding the token, referenced as tokenFile. */
  tokenFile?: boolean;
  username?: string;
  password?: string;
  /** An exec credential plugin stanza (client.authentication.k8s.io/v1), written as given. */
  exec?: { command: string; args?: string[]; env?: { name: string; value: string }[] };
}

export interface KubeconfigContext {
  name: string;
  user: string;
  namespace?: string;
}

export interface KubeconfigSpec {
  users: KubeconfigUser[];
  /** Default: one context per user, named after it. */
  contexts?: KubeconfigContext[];
  /** Default: the first context. */
  currentContext?: string;
  clusterName?: string;
  /** Server URL (default: the fake's). */
  server?: string;
  tlsServerName?: string;
  /** Inline the CA as certificate-authority-data instead of a file. */
  inlineCa?: boolean;
  disableCompression?: boolean;
  /** File name inside dir (default "kubeconfig"). */
  fileName?: string;
}

export type { WatchEvent };
