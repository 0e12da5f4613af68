/**
 * The listener. kubectl speaks TLS to us (kubetrail's local CA); every request is forwarded as it came —
 * method, path, query, headers (hop-by-hop ones aside), body — to the cluster its route names, and the
 * answer is relayed as it comes: status, headers and body bytes unchanged, streamed both ways.
 *
 * The seams (docs/lifecycle.md): routing.ts (which cluster), identity.ts (as whom), exchange.ts (one
 * request's state and stage events), forward.ts with forward-http1.ts and forward-h2.ts (plain requests),
 * tunnel.ts (upgrades), control.ts (kubetrail's own endpoints), upstream.ts (connections to apiservers),
 * limits.ts (what a connection can hold, and for how long). This file listens and closes. The core
 * publishes stage events (events.ts) and never imports telemetry.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttp2Server, type ServerHttp2Session } from 'node:http2';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type Server, type TLSSocket } from 'node:tls';
import { describeError } from '../errors.ts';
import { hostForUrl } from '../net/host.ts';
import type { LocalPki } from '../pki/local-ca.ts';
import { handleControl, isControlRequest, type ControlHandler } from './control.ts';
import type { StageObserver } from './events.ts';
import { OwnUpstreams, SharedUpstreams } from './connection.ts';
import { isH2Request, type DownstreamRequest, type DownstreamResponse } from './exchange.ts';
import { forwardRequest, type ForwardContext } from './forward.ts';
import { PeerIdentities } from './identity.ts';
import { capConnections, closeWhenIdle, DEFAULT_LIMITS, type ConnectionLimits } from './limits.ts';
import { reclaimAfterBursts } from './reclaim.ts';
import { uniqueRouteAddresses, usesRouteAddresses, type Routes } from './routing.ts';
import { sendStatus } from './status.ts';
import { decodesSettled } from './tap.ts';
import { forwardUpgrade } from './tunnel.ts';
import {
  H2_STREAMS_BEFORE_SETTINGS,
  MAX_REQUEST_HEAD_BYTES,
  MAX_RESPONSE_HEAD_BYTES,
  UpstreamPool,
} from './upstream.ts';

export type { ConnectionLimits } from './limits.ts';

export interface ProxyOptions {
  routes: Routes;
  pki: LocalPki;
  host: string;
  port: number;
  observer?: StageObserver | undefined;
  /** Called for failures inside kubetrail itself (never with a secret). */
  onInternalError?: (err: unknown) => void;
  /**
   * Control requests the core does not answer itself (`subpath` is the path after CONTROL_PREFIX, without
   * the query): return true when handled. The CLI's background kubetrail answers its wrappers here.
   */
  onControl?: ControlHandler;
  /**
   * Share upstream connections across kubectl connections, pooled per (cluster, identity) (--reuse-upstream).
   * Off by default: each kubectl connection gets its own, so connect and TLS are what kubectl would pay.
   */
  reuseUpstream?: boolean | undefined;
  /** Bounds on connections (defaults: limits.ts DEFAULT_LIMITS); tests shorten them. */
  limits?: Partial<ConnectionLimits> | undefined;
  /** A line for the user (the connection cap reached); never a secret. */
  onNotice?: (line: string) => void;
}

export interface RunningProxy {
  server: Server;
  url: string;
  port: number;
  close(): Promise<void>;
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

export async function startProxy(opts: ProxyOptions): Promise<RunningProxy> {
  const limits: ConnectionLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const pool = new UpstreamPool();
  const internalError = opts.onInternalError ?? (() => undefined);
  const shared = opts.reuseUpstream === true ? new SharedUpstreams(pool) : undefined;
  // Each kubectl connection's own upstream connections (connection.ts), closed with it.
  const own = new WeakMap<object, OwnUpstreams>();
  // Every accepted connection and HTTP/2 session until its 'close' event. close() waits for each one's:
  // a socket being destroyed reports `closed` (and leaves the listener's count) before that event, and
  // the requests on it publish their `end` from it.
  const live = new Set<TLSSocket | ServerHttp2Session>();
  const track = (c: TLSSocket | ServerHttp2Session): void => {
    live.add(c);
    c.once('close', () => live.delete(c));
  };
  const ctx: ForwardContext = {
    routes: opts.routes,
    peers: new PeerIdentities(opts.routes),
    upstreamsOf: (req) => {
      if (shared) return shared;
      const ups = own.get(isH2Request(req) ? (req.stream.session ?? req.socket) : req.socket);
      if (!ups) throw new Error('a request on a connection kubetrail did not accept');
      return ups;
    },
    observer: opts.observer,
    internalError,
  };

  const onRequest = (req: DownstreamRequest, res: DownstreamResponse): void => {
    try {
      if (!isH2Request(req) && isControlRequest(req.url ?? '/'))
        handleControl(opts.routes, opts.onControl, req, res as ServerResponse);
      else forwardRequest(ctx, req, res);
    } catch (err) {
      internalError(err);
      sendStatus(res, {
        code: 502,
        ktCode: 'KT_ERR_UPSTREAM',
        message: `kubetrail: internal error: ${describeError(err)}`,
      });
    }
  };

  // HTTP/1.1 connections: the HTTP server parses them (it is handed each TLS connection; it never listens).
  const h1 = createHttpServer(
    {
      keepAliveTimeout: limits.idleMs,
      // A request head (the first one counted from the connection's start) must be complete within this;
      // answered 408 otherwise, as Go's server does. The body and the answer are never timed out.
      headersTimeout: limits.firstRequestMs,
      requestTimeout: 0,
      connectionsCheckingInterval: Math.min(5_000, limits.firstRequestMs),
      maxHeaderSize: MAX_REQUEST_HEAD_BYTES,
    },
    onRequest,
  );
  // The HTTP server checks headersTimeout from a timer it starts on 'listening'; it never listens (it is
  // handed TLS connections), so it is told it does. close() below stops that timer.
  h1.emit('listening');
  // As for responses: the byte limit (maxHeaderSize) bounds a request head, not Node's 2,000-line default.
  h1.maxHeadersCount = 0;
  h1.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    try {
      forwardUpgrade(ctx, req, socket, head);
    } catch (err) {
      internalError(err);
      socket.destroy();
    }
  });
  h1.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket));

  // HTTP/2 connections, with the apiserver's header limits (as upstream.ts's client side).
  const h2 = createHttp2Server({
    maxHeaderListPairs: 1 << 20,
    maxSendHeaderBlockLength: MAX_RESPONSE_HEAD_BYTES,
    maxSessionMemory: 256,
    // Streams per kubectl connection: the apiserver's default until its own SETTINGS arrive on the
    // connection kubetrail opens for this one, then the apiserver's (connection.ts), as kubectl would get.
    settings: {
      enablePush: false,
      maxHeaderListSize: MAX_REQUEST_HEAD_BYTES,
      maxConcurrentStreams: H2_STREAMS_BEFORE_SETTINGS,
    },
  });
  h2.on('request', onRequest);
  h2.on('session', (session: ServerHttp2Session) => {
    track(session);
    if (!shared) {
      // The apiserver's GOAWAY (or its connection's end) closes kubectl's connection the same way.
      const ups = new OwnUpstreams(
        pool,
        'h2',
        () => {
          if (!session.closed && !session.destroyed) session.close();
        },
        (maxConcurrentStreams) => {
          if (session.closed || session.destroyed) return;
          try {
            session.settings({ maxConcurrentStreams });
          } catch {
            // Too many SETTINGS not yet acknowledged: kubectl keeps the previous limit.
          }
        },
      );
      own.set(session, ups);
      session.once('close', () => ups.close());
    }
    session.on('error', () => undefined);
  });

  const server = createTlsServer(
    {
      key: opts.pki.serverKeyPem,
      cert: opts.pki.serverCertPem,
      // Ask for a client certificate (kubectl sends the kubeconfig's), but let the handshake succeed
      // without one: a token user presents none. Whether a certificate is used upstream is decided per
      // request against the kubeconfig's own certificates, never against a CA.
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: limits.handshakeMs,
      // As the kube-apiserver does: kubectl then speaks to kubetrail what it would speak to the apiserver.
      ALPNProtocols: ['h2', 'http/1.1'],
      // TCP_NODELAY on kubectl's connections, as the apiserver's Go server has: a response head and body
      // written apart must not wait for kubectl's delayed ACK (see upstream.ts).
      noDelay: true,
      // On loopback, classic key exchange: the post-quantum hybrid Node 24's OpenSSL prefers costs ~10 kB
      // more per connection (1,000 watches: 10 MB) and protects nothing that leaves the machine.
      ...(isLoopbackHost(opts.host) ? { ecdhCurve: 'X25519:P-256' } : {}),
    },
    (socket: TLSSocket) => {
      track(socket);
      socket.on('error', () => socket.destroy());
      if (socket.alpnProtocol === 'h2') {
        // The HTTP/2 server makes the session synchronously, in this emit; closeWhenIdle needs the TLS
        // socket itself.
        const onSession = (session: ServerHttp2Session): void => closeWhenIdle(session, socket, limits);
        h2.once('session', onSession);
        h2.emit('connection', socket);
        h2.off('session', onSession);
        return;
      }
      if (!shared) {
        const ups = new OwnUpstreams(pool, 'http/1.1', () => undefined);
        own.set(socket, ups);
        socket.once('close', () => ups.close());
      }
      h1.emit('connection', socket);
    },
  );
  // A failed or timed-out handshake: with a listener here Node leaves closing the socket to it (a socket
  // left open this way held its memory for as long as the client kept it).
  server.on('tlsClientError', (_err: Error, socket: TLSSocket) => socket.destroy());
  const cap = capConnections(server, limits.maxConnections, opts.onNotice ?? (() => undefined));
  // Once a flood of connections is over, a last-resort GC and malloc_trim give its memory back (reclaim.ts).
  const bursts = reclaimAfterBursts(server);

  const addresses = usesRouteAddresses(opts.host)
    ? [...new Set(uniqueRouteAddresses(opts.routes.clusters.keys()).values())]
    : [];
  let routeListeners: NetServer[] = [];
  // With port 0, the port must be free on every route address too: another ephemeral port if not.
  for (let attempt = 1; ; attempt++) {
    await listen(server, opts.port, opts.host);
    try {
      routeListeners = await listenOnRouteAddresses(addresses, (server.address() as AddressInfo).port, (socket) =>
        cap.accept(socket),
      );
      break;
    } catch (err) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (opts.port !== 0 || attempt === 3) throw err;
    }
  }
  server.on('error', internalError);
  for (const l of routeListeners) l.on('error', internalError);
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    url: `https://${hostForUrl(opts.host)}:${port}`,
    // Resolves once the listener and every connection have closed (their 'close' events, not their
    // flags), upgraded tunnels and HTTP/2 sessions included: by then every request has published its
    // `end` (its decoding settled), so a caller that flushes telemetry next has every span.
    close: async () => {
      const closed = [server, ...routeListeners].map((l) => new Promise<void>((resolve) => l.close(() => resolve())));
      for (const c of live) closed.push(new Promise<void>((resolve) => c.once('close', () => resolve())));
      bursts?.stop();
      h1.closeAllConnections();
      // Neither inner server listens; closing them stops the HTTP server's connection-checking timer.
      h1.close();
      h2.close();
      // Upgraded sockets (the HTTP server no longer tracks them) and HTTP/2 sessions.
      for (const c of live) c.destroy();
      pool.destroy();
      await Promise.all(closed);
      // A large answer's end waits for its decoding, which runs in slices after its connection may be gone.
      await decodesSettled();
    },
  };
}

function listen(server: NetServer, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * One plain listener per route address (routing.ts routeAddress) on kubetrail's port, each handing its
 * connections to the TLS server as its own listener does. A failure names the address and carries no
 * EADDRINUSE code: the callers read that as kubetrail's port being held (by another kubetrail).
 */
async function listenOnRouteAddresses(
  addresses: string[],
  port: number,
  accept: (socket: Socket) => void,
): Promise<NetServer[]> {
  const listeners: NetServer[] = [];
  try {
    for (const address of addresses) {
      // As the TLS server's own options: TCP_NODELAY as the apiserver's Go server sets it.
      const l = createNetServer({ noDelay: true }, accept);
      listeners.push(l);
      await listen(l, port, address);
    }
  } catch (err) {
    for (const l of listeners) l.close();
    throw new Error(`cannot listen on a cluster's loopback address: ${describeError(err)}`);
  }
  return listeners;
}

const clientErrorsAnswered = new WeakSet<Duplex>();

/**
 * A request kubetrail cannot parse gets the answer the apiserver (Go's net/http) gives: 431 for a head over
 * the limit, 408 for a head that never completes, 400 for anything else malformed; then, like Go, a FIN
 * and half a second of discarding what the client still sends before closing, so that the client reads
 * the answer instead of a reset. A connection that failed below HTTP (reset, TLS) is simply closed.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (clientErrorsAnswered.has(socket)) return;
  clientErrorsAnswered.add(socket);
  const code = err.code ?? '';
  const status =
    code === 'HPE_HEADER_OVERFLOW'
      ? '431 Request Header Fields Too Large'
      : code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? '408 Request Timeout'
        : code.startsWith('HPE_')
          ? '400 Bad Request'
          : undefined;
  if (status === undefined || !socket.writable) {
    socket.destroy();
    return;
  }
  socket.on('error', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n${status}`);
  socket.resume();
  setTimeout(() => socket.destroy(), 500).unref();
}
