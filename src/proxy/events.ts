/**
 * The stage events the proxy core publishes. The core knows nothing of OpenTelemetry or the terminal:
 * telemetry/ and report/ implement StageObserver. Payloads are plain facts and never carry a credential
 * or a body: `auth` is already reduced to non-secret attributes, `statusBody` is the first few KiB of a
 * failed (>= 400) JSON answer, kept for the rbac stage, which emits only reason and message.
 *
 * Lifecycle per request (docs/lifecycle.md): start → [upstream] → [response] → end, exactly once each,
 * in that order; `end` is always called, whatever failed.
 */
import type { Attributes } from '../stages/attributes.ts';
import type { DecodeResult } from '../stages/decode/index.ts';
import type { RequestInfo } from '../stages/request-info.ts';

export interface RequestStart {
  id: string;
  /** Epoch ms, for span start times. */
  startedAt: number;
  /** performance.now() at arrival; every later `t` is on the same monotonic clock. */
  t0: number;
  method: string;
  /** Path as the apiserver sees it, without kubetrail's route prefix or the server URL's own prefix. */
  path: string;
  /** Raw query string without '?'. */
  query: string;
  /**
   * What the request asks of the apiserver, parsed once here from method, path and query (the apiserver's
   * WithRequestInfo): the proxy, the spans and the request log all read this one.
   */
  info: RequestInfo;
  cluster: string;
  upstream: { host: string; port: number };
  upgrade: boolean;
  userAgent: string | undefined;
  kubectlCommand: string | undefined;
  kubectlSession: string | undefined;
  /**
   * Who the client is, as a digest of the cluster, its certificate, its credentials and impersonation
   * headers: equal for requests of one identity, never the credential itself, never exported. Groups a
   * request that carries no Kubectl-Session with the session that follows (telemetry/spans.ts).
   */
  clientIdentity?: string;
  /**
   * Which client connection it came on (HTTP/1.1: the TLS connection; HTTP/2: the session), an id
   * `connectionClosed` names again when it closes: with the identity and User-Agent, what groups the
   * requests of a client that sends no Kubectl-Session into commands (telemetry/commands.ts ClientGroups).
   */
  clientConnection?: string;
  /** The wrapped command these requests belong to, from TLS SNI (kubeconfig/rewrite.ts), if tagged. */
  commandTag: string | undefined;
  /** Audit-ID the client itself sent, if any. */
  clientAuditId: string | undefined;
  /** Non-secret identity facts from stages/auth. */
  auth: Attributes;
  /** True when the cluster is reached with insecure-skip-tls-verify. */
  insecure: boolean;
  /** The protocol kubectl's connection to kubetrail speaks (absent: HTTP/1.1). */
  downstreamProtocol?: 'h2' | 'http/1.1';
  /**
   * Upstream connections are shared across kubectl connections (--reuse-upstream): connect and TLS then
   * no longer show what kubectl alone would pay.
   */
  upstreamShared?: boolean;
}

export interface UpstreamConnected {
  t: number;
  reused: boolean;
  /** Monotonic times of the TCP connect and TLS handshake ends, for a new connection. */
  connectEnd?: number;
  tlsEnd?: number;
  /** When the request's head and body were fully handed to the socket. */
  requestSent?: number;
  /** The upstream protocol: watches go over HTTP/2 where the apiserver offers it; absent means HTTP/1.1. */
  protocol?: 'h2';
}

export interface ResponseStart {
  t: number;
  statusCode: number;
  contentType: string | undefined;
  contentEncoding: string | undefined;
  auditId: string | undefined;
  flowSchemaUid: string | undefined;
  priorityLevelUid: string | undefined;
  retryAfter: string | undefined;
  warnings: string[];
}

export type Outcome = 'complete' | 'client_abort' | 'upstream_error' | 'proxy_error';

export interface RequestEnd {
  t: number;
  outcome: Outcome;
  /** Body bytes relayed to the client (wire bytes, before any decoding). */
  bytesDown: number;
  /** Body bytes relayed to the apiserver. */
  bytesUp: number;
  /** Set when the proxy answered or failed itself; `code` is a KT_ERR_* code. */
  error?: { code: string; message: string };
  /** First bytes of a >= 400 JSON answer (at most STATUS_BODY_CAP), for the rbac stage. */
  statusBody?: string;
  /** Result of the decode tap, when a decoder ran (only with an observer). */
  decode?: DecodeResult;
  /** Set when the time the request was fully sent is known (upgrades: never). */
  requestSent?: number;
}

/** A long response while it lasts (a watch, logs -f, a large list): what has gone by so far. */
export interface RequestProgress {
  t: number;
  /** Body bytes relayed to the client so far. */
  bytesDown: number;
  /** List items, or watch events, decoded so far (0 when the body is not decoded). */
  items: number;
  watchEvents: number;
}

/** How often at most `onProgress` fires for one request. */
export const PROGRESS_INTERVAL_MS = 1000;

export interface StageObserver {
  onRequestStart(req: RequestStart): void;
  /**
   * Optional: headers to add to the request upstream (telemetry's traceparent and Audit-ID), asked once,
   * right after onRequestStart. The only hook that changes what goes upstream. Must be fast, must not throw.
   */
  upstreamHeaders?(req: RequestStart): Record<string, string> | undefined;
  onUpstreamConnected(id: string, ev: UpstreamConnected): void;
  onResponseStart(id: string, ev: ResponseStart): void;
  onRequestEnd(id: string, ev: RequestEnd): void;
  /** Optional: at most once per PROGRESS_INTERVAL_MS per request, while body bytes flow. */
  onProgress?(id: string, ev: RequestProgress): void;
  /** Optional: a client connection some request came on (RequestStart.clientConnection) has closed. */
  onConnectionClosed?(connection: string): void;
}

export const STATUS_BODY_CAP = 16 * 1024;

/** Fan one event stream out to several observers; one observer's exception never reaches another or the proxy. */
export function combineObservers(
  observers: StageObserver[],
  onError: (err: unknown) => void,
): StageObserver | undefined {
  if (observers.length === 0) return undefined;
  const each = (fn: (o: StageObserver) => void): void => {
    for (const o of observers) {
      try {
        fn(o);
      } catch (err) {
        onError(err);
      }
    }
  };
  return {
    onRequestStart: (req) => each((o) => o.onRequestStart(req)),
    ...(observers.some((o) => o.upstreamHeaders !== undefined)
      ? {
          upstreamHeaders(req: RequestStart) {
            let headers: Record<string, string> | undefined;
            each((o) => {
              const h = o.upstreamHeaders?.(req);
              if (h) headers = { ...headers, ...h };
            });
            return headers;
          },
        }
      : {}),
    onUpstreamConnected: (id, ev) => each((o) => o.onUpstreamConnected(id, ev)),
    onResponseStart: (id, ev) => each((o) => o.onResponseStart(id, ev)),
    onRequestEnd: (id, ev) => each((o) => o.onRequestEnd(id, ev)),
    // Only when someone listens: the proxy skips progress bookkeeping for observers without it.
    ...(observers.some((o) => o.onProgress !== undefined)
      ? { onProgress: (id: string, ev: RequestProgress) => each((o) => o.onProgress?.(id, ev)) }
      : {}),
    ...(observers.some((o) => o.onConnectionClosed !== undefined)
      ? { onConnectionClosed: (connection: string) => each((o) => o.onConnectionClosed?.(connection)) }
      : {}),
  };
}
