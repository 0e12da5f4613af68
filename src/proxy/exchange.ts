/**
 * One request's life in the proxy, as one object: the facts it started with, the bytes it moved, the
 * response tap, and the stage events it publishes (events.ts). Every way a request can end goes through
 * `finish`, which publishes `end` exactly once; `connected` and `responded` publish at most once each.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest, Http2ServerResponse } from 'node:http2';
import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { TLSSocket } from 'node:tls';
import { socketHost } from '../net/host.ts';
import { authAttributes } from '../stages/auth.ts';
import { parseRequestInfo } from '../stages/request-info.ts';
import {
  PROGRESS_INTERVAL_MS,
  type Outcome,
  type RequestEnd,
  type RequestStart,
  type StageObserver,
  type UpstreamConnected,
} from './events.ts';
import { header, headerAll, responseFacts, withoutPseudoHeaders, type RawHeaders } from './headers.ts';
import type { PeerIdentity } from './identity.ts';
import { parseServerName, type Target } from './routing.ts';
import type { ProxyAnswer } from './status.ts';
import { createResponseTap, type ResponseTap } from './tap.ts';

/** A request as kubectl sent it over either protocol. */
export type DownstreamRequest = IncomingMessage | Http2ServerRequest;
export type DownstreamResponse = ServerResponse | Http2ServerResponse;

/** What the proxy reads of a request's head, the same for HTTP/1.1 and HTTP/2. */
export interface DownstreamHead {
  protocol: 'h2' | 'http/1.1';
  method: string;
  url: string;
  /** Headers as sent, pseudo-headers (`:path`, `:authority`...) left out. */
  raw: RawHeaders;
  /** kubectl's TLS connection (on HTTP/2, the session's). */
  socket: TLSSocket;
  /** What closes with kubectl's connection: the TLS socket (HTTP/1.1) or the HTTP/2 session. */
  connection: { once(event: 'close', listener: () => void): unknown };
}

export function isH2Request(req: DownstreamRequest): req is Http2ServerRequest {
  return 'stream' in req;
}

export function isH2Response(res: DownstreamResponse): res is Http2ServerResponse {
  return 'stream' in res;
}

export function downstreamHead(req: DownstreamRequest): DownstreamHead {
  const h2 = isH2Request(req);
  return {
    protocol: h2 ? 'h2' : 'http/1.1',
    method: req.method ?? 'GET',
    url: req.url ?? '/',
    raw: h2 ? withoutPseudoHeaders(req.rawHeaders) : req.rawHeaders,
    socket: req.socket as TLSSocket,
    connection: h2 ? (req.stream.session ?? req.socket) : req.socket,
  };
}

/** RequestStart.clientConnection ids, one per kubectl connection, for as long as it lives. */
const connectionIds = new WeakMap<object, string>();

/** The connection's id; the first time it is seen, the observer is told when it closes. */
function connectionId(head: DownstreamHead, observer: StageObserver | undefined): string {
  let id = connectionIds.get(head.connection);
  if (id === undefined) {
    const fresh = randomUUID();
    id = fresh;
    connectionIds.set(head.connection, fresh);
    if (observer?.onConnectionClosed) head.connection.once('close', () => observer.onConnectionClosed?.(fresh));
  }
  return id;
}

/** The `start` facts of a request (auth reduced to non-secret attributes). */
export function requestFacts(
  head: DownstreamHead,
  t: Target,
  peer: PeerIdentity,
  opts: { upgrade: boolean; upstreamShared: boolean; observer?: StageObserver | undefined },
): RequestStart {
  const raw = head.raw;
  const subject = peer.presented ? parseSubject(peer.presented.subject) : undefined;
  return {
    id: randomUUID(),
    startedAt: Date.now(),
    t0: performance.now(),
    method: head.method,
    path: t.path,
    query: t.query,
    info: parseRequestInfo(head.method, t.path, t.query),
    cluster: t.route.name,
    upstream: { host: socketHost(t.route.server.hostname), port: Number(t.route.server.port || 443) },
    upgrade: opts.upgrade,
    userAgent: header(raw, 'user-agent'),
    kubectlCommand: header(raw, 'kubectl-command'),
    kubectlSession: header(raw, 'kubectl-session'),
    clientIdentity: clientIdentity(t.route.name, peer, raw),
    ...(opts.observer ? { clientConnection: connectionId(head, opts.observer) } : {}),
    commandTag: parseServerName(head.socket.servername)?.tag,
    clientAuditId: header(raw, 'audit-id'),
    auth: authAttributes({
      authorization: header(raw, 'authorization'),
      clientCert: subject,
      clientCertForwarded: peer.identity !== undefined,
      impersonateUser: header(raw, 'impersonate-user'),
      impersonateGroups: headerAll(raw, 'impersonate-group'),
      impersonateUid: header(raw, 'impersonate-uid'),
    }),
    insecure: t.route.insecureSkipTlsVerify,
    downstreamProtocol: head.protocol,
    upstreamShared: opts.upstreamShared,
  };
}

/** RequestStart.clientIdentity: a digest, so no credential is kept beyond the request. */
function clientIdentity(cluster: string, peer: PeerIdentity, raw: RawHeaders): string {
  const h = createHash('sha256')
    .update(cluster)
    .update('\0')
    .update(peer.presented?.fingerprint256 ?? '');
  for (const name of ['authorization', 'impersonate-user', 'impersonate-uid'])
    h.update('\0').update(header(raw, name) ?? '');
  for (const g of headerAll(raw, 'impersonate-group')) h.update('\0').update(g);
  return h.digest('base64url').slice(0, 22);
}

/** `CN=alice\nO=dev\nO=ops` → { commonName, organizations }. */
export function parseSubject(subject: string): { commonName: string | undefined; organizations: string[] } {
  let commonName: string | undefined;
  const organizations: string[] = [];
  for (const line of subject.split('\n')) {
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === 'CN') commonName = value;
    else if (key === 'O') organizations.push(value);
  }
  return { commonName, organizations };
}

/** Left to decode at a response's end up to this, the `end` event is published at once (small answers). */
const DECODE_AT_END_INLINE_BYTES = 256 * 1024;

/** The side of the exchange that writes to the client: when has it handed its last bytes to the OS? */
export type ClientSide = Pick<ServerResponse | Http2ServerResponse, 'writableEnded' | 'writableFinished'> & {
  once(event: 'finish' | 'close', fn: () => void): unknown;
  off(event: 'finish' | 'close', fn: () => void): unknown;
};

/**
 * Run `fn` once the client side's last bytes are with the OS (or the client is gone). A large answer's
 * tail can still sit in the TLS socket's buffer when the upstream ends (kubectl reads more slowly than
 * loopback delivers): decoding before it is written would hold it back for the whole decode (#18, W3
 * gzip). A response that is not ended (cut, or torn down) is not waited for.
 */
function afterFlush(client: ClientSide | undefined, fn: () => void): void {
  if (!client || !client.writableEnded || client.writableFinished) {
    setImmediate(fn);
    return;
  }
  const once = (): void => {
    client.off('finish', once);
    client.off('close', once);
    fn();
  };
  client.once('finish', once);
  client.once('close', once);
}

export interface ResponseTapOptions {
  /** Where the body is relayed to (see afterFlush). */
  client?: ClientSide;
  isWatch: boolean;
  /** The request listed pods: the decode tap counts them per phase. */
  podList?: boolean;
  /** The body is an opaque tunnel (a 101): counted, not decoded. */
  opaque?: boolean;
}

export class Exchange {
  readonly facts: RequestStart;
  /** Headers the observer asked to add upstream (traceparent, Audit-ID). */
  readonly added: Record<string, string> | undefined;
  /** Body bytes relayed to the apiserver, and to the client. */
  bytesUp = 0;
  bytesDown = 0;
  /** When the request was fully handed to the upstream socket, if known. */
  requestSent: number | undefined;
  readonly #observer: StageObserver | undefined;
  /** Progress events for this request (HTTP responses; never tunnels). */
  readonly #progress: boolean;
  #tap: ResponseTap | undefined;
  #client: ClientSide | undefined;
  #lastProgress = 0;
  #ended = false;

  /** Publishes `start`. */
  constructor(observer: StageObserver | undefined, facts: RequestStart, opts: { progress: boolean }) {
    this.#observer = observer;
    this.facts = facts;
    this.#progress = opts.progress && observer?.onProgress !== undefined;
    observer?.onRequestStart(facts);
    this.added = observer?.upstreamHeaders?.(facts);
  }

  get id(): string {
    return this.facts.id;
  }

  get ended(): boolean {
    return this.#ended;
  }

  connected(ev: UpstreamConnected): void {
    this.#observer?.onUpstreamConnected(this.id, ev);
  }

  /** The answer's head arrived: publish `response` and start tapping its body. */
  responded(status: number, raw: RawHeaders, opts: ResponseTapOptions): void {
    if (!this.#observer) return;
    const rs = responseFacts(performance.now(), status, raw);
    this.#observer.onResponseStart(this.id, rs);
    this.#client = opts.client;
    this.#tap = createResponseTap({
      ...rs,
      contentType: opts.opaque ? undefined : rs.contentType,
      isWatch: opts.isWatch,
      podList: opts.podList,
    });
    this.#lastProgress = performance.now();
  }

  /** A response chunk has been handed to the client. */
  down(chunk: Buffer): void {
    this.bytesDown += chunk.length;
    const tap = this.#tap;
    if (!tap) return;
    tap.write(chunk);
    if (!this.#progress) return;
    const now = performance.now();
    if (now - this.#lastProgress < PROGRESS_INTERVAL_MS) return;
    this.#lastProgress = now;
    this.#observer?.onProgress?.(this.id, { t: now, bytesDown: this.bytesDown, ...tap.progress() });
  }

  /**
   * Publishes `end` (once; later calls do nothing), at the time the relay ended. When much of the body
   * still waits for the decoder (tap.ts), the event goes out once the relay's last writes have reached
   * the OS (afterFlush: HTTP/1.1's uncork on nextTick, HTTP/2's frames on the session's immediate, and
   * whatever kubectl had not yet read), and the decoding that follows, in slices (tap.settle), delays the
   * trace, never this answer or another.
   */
  finish(outcome: Outcome, error?: ProxyAnswer): void {
    if (this.#ended) return;
    this.#ended = true;
    const ev: RequestEnd = { t: performance.now(), outcome, bytesDown: this.bytesDown, bytesUp: this.bytesUp };
    if (this.requestSent !== undefined) ev.requestSent = this.requestSent;
    if (error) ev.error = { code: error.ktCode, message: error.message };
    const tap = this.#tap;
    const publish = (): void => {
      if (tap) Object.assign(ev, tap.finish(outcome === 'complete'));
      this.#observer?.onRequestEnd(this.id, ev);
    };
    if (tap && tap.pending() > DECODE_AT_END_INLINE_BYTES) afterFlush(this.#client, () => tap.settle(publish));
    else publish();
  }
}
