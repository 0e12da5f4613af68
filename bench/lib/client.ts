/**
 * The load generator's HTTP client, over HTTP/1.1 or HTTP/2, with one interface, so each workload can run
 * the way a client would: kubectl (client-go) offers `h2` and sends every request of one command, watches
 * included, as streams of ONE connection; HTTP/1.1 keep-alive agents (one request at a time per connection)
 * are what the bench used before kubetrail mirrored kubectl's protocol, and what a plain-HTTP path
 * (kubectl proxy's client leg) or an HTTP/1.1-only client gets.
 *
 * Every client counts the connections it opened and the protocol ALPN chose on each: with one upstream
 * connection per downstream connection (kubetrail's default since #13), the client's connection count is
 * part of what a workload measures.
 */
import { Agent as HttpAgent, request as httpRequest, type ClientRequest } from 'node:http';
import { connect as h2Connect, constants as h2c, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { Proto, Target } from './target.ts';

/**
 * What client-go's HTTP/2 transport (golang.org/x/net/http2, bundled in net/http) advertises and grants:
 * a 4 MiB window per stream, 1 GiB for the connection, no push. Node's defaults (64 KiB) would make a large
 * list over h2 a flow-control benchmark instead of a proxy benchmark.
 */
const GO_STREAM_WINDOW = 4 << 20;
const GO_CONNECTION_WINDOW = 1 << 30;

export interface Timing {
  status: number;
  ttfbMs: number;
  ttlbMs: number;
  bytes: number;
}

/** One request in flight. */
export interface Pending {
  /** Resolves when the request is on the wire; never if it fails first (`done` then rejects). */
  sent: Promise<void>;
  /** The response read to its end (unless `onResponse` took the body). */
  done: Promise<Timing>;
  destroy(): void;
}

export type OnResponse = (status: number, body: Readable) => void;

export interface Client {
  readonly proto: Proto;
  request(path: string, headers: Record<string, string>, onResponse?: OnResponse): Pending;
  /** Connections opened so far, by the protocol ALPN chose ('http' for plain HTTP). */
  connections(): Record<string, number>;
  close(): void;
}

export function createClient(t: Target, proto: Proto, maxSockets: number): Client {
  if (proto === 'h2') {
    if (t.scheme !== 'https')
      throw new Error(`bench: ${t.name} has no TLS listener, so no h2 (client-go speaks h2 only over TLS)`);
    return new H2Client(t);
  }
  return new H1Client(t, maxSockets);
}

function count(m: Record<string, number>, k: string): void {
  m[k] = (m[k] ?? 0) + 1;
}

/** Reads a response body to its end, counting bytes. */
function readAll(
  t0: number,
  ttfb: number,
  status: number,
  body: Readable,
  resolve: (t: Timing) => void,
  reject: (e: unknown) => void,
): void {
  let bytes = 0;
  body.on('data', (c: Buffer) => (bytes += c.length));
  body.on('end', () => resolve({ status, ttfbMs: ttfb, ttlbMs: performance.now() - t0, bytes }));
  body.on('error', reject);
  // Closed without its end (a reset stream, a cut connection): after 'end' this is a no-op.
  body.on('close', () => reject(new Error('response closed before its end')));
}

class H1Client implements Client {
  readonly proto = 'h1' as const;
  readonly #t: Target;
  readonly #agent: HttpAgent;
  readonly #seen = new WeakSet<Socket>();
  readonly #conns: Record<string, number> = {};

  constructor(t: Target, maxSockets: number) {
    this.#t = t;
    const keep = { keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' as const };
    this.#agent =
      t.scheme === 'http'
        ? new HttpAgent(keep)
        : new HttpsAgent({
            ...keep,
            ca: t.ca,
            cert: t.cert,
            key: t.key,
            servername: t.servername,
            ALPNProtocols: ['http/1.1'],
          });
  }

  #onSocket(s: Socket): void {
    if (this.#seen.has(s)) return;
    this.#seen.add(s);
    if (this.#t.scheme === 'http') count(this.#conns, 'http');
    else s.once('secureConnect', () => count(this.#conns, (s as TLSSocket).alpnProtocol || 'none'));
  }

  request(path: string, headers: Record<string, string>, onResponse?: OnResponse): Pending {
    const t = this.#t;
    const t0 = performance.now();
    let req: ClientRequest | undefined;
    let markSent = (): void => undefined;
    const sent = new Promise<void>((resolve) => (markSent = resolve));
    const done = new Promise<Timing>((resolve, reject) => {
      const opts = {
        agent: this.#agent,
        host: t.host,
        port: t.port,
        path: `${t.prefix}${path}`,
        method: 'GET',
        headers,
      };
      req = (t.scheme === 'https' ? httpsRequest : httpRequest)(opts, (res) => {
        const ttfb = performance.now() - t0;
        if (onResponse) onResponse(res.statusCode ?? 0, res);
        else readAll(t0, ttfb, res.statusCode ?? 0, res, resolve, reject);
      });
      req.on('socket', (s: Socket) => this.#onSocket(s));
      req.once('finish', markSent);
      req.on('error', reject);
      req.end();
    });
    return { sent, done, destroy: () => req?.destroy() };
  }

  connections(): Record<string, number> {
    return { ...this.#conns };
  }

  close(): void {
    this.#agent.destroy();
  }
}

/** An HTTP/2 connection and the streams open on it. */
interface H2Conn {
  session: ClientHttp2Session;
  /** Resolves once the server's SETTINGS are in (or the connection failed): its stream limit is known. */
  settled: Promise<void>;
  active: number;
  /** Set when the connection closed before the server's SETTINGS: it never worked. */
  failed?: Error;
}

/**
 * Every request a stream of one HTTP/2 connection, as client-go's transport does; like it (Go's
 * StrictMaxConcurrentStreams=false), a request that would exceed the server's SETTINGS_MAX_CONCURRENT_STREAMS
 * opens one more connection rather than wait (kube-apiserver allows 100 streams by default, nginx 128).
 */
class H2Client implements Client {
  readonly proto = 'h2' as const;
  readonly #t: Target;
  readonly #opened: Record<string, number> = {};
  #conns: H2Conn[] = [];

  constructor(t: Target) {
    this.#t = t;
  }

  #connect(): H2Conn {
    const t = this.#t;
    const session = h2Connect(`https://${t.host}:${t.port}`, {
      ca: t.ca,
      cert: t.cert,
      key: t.key,
      ...(t.servername ? { servername: t.servername } : {}),
      maxSessionMemory: 256,
      settings: { enablePush: false, initialWindowSize: GO_STREAM_WINDOW },
    });
    let lastError: Error | undefined;
    // Errors reach the streams; an unhandled session error must not end the load generator.
    session.on('error', (err: Error) => (lastError = err));
    let resolveSettled = (): void => undefined;
    const conn: H2Conn = { session, settled: new Promise<void>((resolve) => (resolveSettled = resolve)), active: 0 };
    let settings = false;
    session.once('remoteSettings', () => {
      settings = true;
      resolveSettled();
    });
    session.once('close', () => {
      if (!settings)
        conn.failed = lastError ?? new Error(`bench: ${t.name}: HTTP/2 connection closed before its SETTINGS`);
      resolveSettled();
      this.#conns = this.#conns.filter((c) => c !== conn);
    });
    session.once('connect', () => {
      count(this.#opened, (session.socket as TLSSocket).alpnProtocol || 'none');
      session.setLocalWindowSize(GO_CONNECTION_WINDOW);
    });
    this.#conns.push(conn);
    return conn;
  }

  /** A connection with a free stream, the stream counted before this returns. */
  async #pick(): Promise<H2Conn> {
    for (;;) {
      const list = [...this.#conns];
      for (const c of list) {
        await c.settled;
        if (c.failed) throw c.failed;
        const s = c.session;
        if (!s.closed && !s.destroyed && c.active < (s.remoteSettings.maxConcurrentStreams ?? Infinity)) {
          c.active++;
          return c;
        }
      }
      // Every connection is full (or none is open): one more, unless another caller opened one meanwhile.
      if (this.#conns.every((c) => list.includes(c))) this.#connect();
    }
  }

  request(path: string, headers: Record<string, string>, onResponse?: OnResponse): Pending {
    const t0 = performance.now();
    let stream: ClientHttp2Stream | undefined;
    let cancelled = false;
    let markSent = (): void => undefined;
    const sent = new Promise<void>((resolve) => (markSent = resolve));
    const h: Record<string, string> = {
      [h2c.HTTP2_HEADER_METHOD]: 'GET',
      [h2c.HTTP2_HEADER_PATH]: `${this.#t.prefix}${path}`,
    };
    for (const [k, v] of Object.entries(headers)) h[k.toLowerCase()] = v;
    const done = this.#pick().then(
      (conn) =>
        new Promise<Timing>((resolve, reject) => {
          const st = conn.session.request(h, { endStream: true });
          stream = st;
          if (cancelled) st.close(h2c.NGHTTP2_CANCEL);
          // On a connected session the stream gets its id (and its HEADERS go out) at once, without 'ready'.
          if (st.pending) st.once('ready', markSent);
          else markSent();
          let answered = false;
          st.once('response', (head) => {
            answered = true;
            const status = Number(head[h2c.HTTP2_HEADER_STATUS] ?? 0);
            const ttfb = performance.now() - t0;
            if (onResponse) onResponse(status, st);
            else readAll(t0, ttfb, status, st, resolve, reject);
          });
          st.on('error', reject);
          // A stream closed before its answer (reset, GOAWAY) is a failure, not a hang; after it, the body's
          // own events (or the caller, for `onResponse`) say how it ended.
          st.once('close', () => {
            conn.active--;
            if (!answered) reject(new Error(`stream closed before its answer (code ${st.rstCode})`));
          });
        }),
    );
    return {
      sent,
      done,
      destroy: () => {
        cancelled = true;
        stream?.close(h2c.NGHTTP2_CANCEL);
      },
    };
  }

  connections(): Record<string, number> {
    return { ...this.#opened };
  }

  close(): void {
    for (const c of this.#conns) c.session.destroy();
    this.#conns = [];
  }
}
