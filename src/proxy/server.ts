/**
 * The listener. kubectl speaks TLS to us (kubetrail's local CA); every request is forwarded as it came —
 * method, path, query, headers (hop-by-hop ones aside), body — to the cluster its route names, and the
 * answer is relayed as it comes: status, headers and body bytes unchanged, streamed both ways.
 *
 * The seams (docs/lifecycle.md): routing.ts (which cluster), identity.ts (as whom), exchange.ts (one
 * request's state and stage events), forward.ts with forward-http1.ts and forward-h2.ts (plain requests),
 * tunnel.ts (upgrades), control.ts (kubetrail's own endpoints), upstream.ts (connections to apiservers).
 * This file listens and closes. The core publishes stage events (events.ts) and never imports telemetry.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttp2Server, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer, type Server, type TLSSocket } from 'node:tls';
import { describeError } from '../errors.ts';
import type { LocalPki } from '../pki/local-ca.ts';
import { handleControl, isControlRequest, type ControlHandler } from './control.ts';
import type { StageObserver } from './events.ts';
import { OwnUpstreams, SharedUpstreams } from './connection.ts';
import { isH2Request, type DownstreamRequest, type DownstreamResponse } from './exchange.ts';
import { forwardRequest } from './forward.ts';
import { PeerIdentities } from './identity.ts';
import type { Routes } from './routing.ts';
import { sendStatus } from './status.ts';
import { forwardUpgrade, type TunnelContext } from './tunnel.ts';
import { MAX_REQUEST_HEAD_BYTES, MAX_RESPONSE_HEAD_BYTES, UpstreamPool } from './upstream.ts';

export { CONTROL_PREFIX } from './control.ts';

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
}

export interface RunningProxy {
  server: Server;
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * Header limits as the two Go ends set them, in bytes (never in lines), not Node's 16 KiB default: the
 * kube-apiserver accepts request heads up to 1 MiB (a large OIDC bearer token, a list with thousands of
 * selector terms in its query), and kubectl's client reads response heads up to 10 MiB. A larger request
 * head is answered 431, as the apiserver would; a larger response head fails the request with a 502 Status.
 * The HTTP/2 upstream connections (upstream.ts) use the same limits.
 */
export { MAX_REQUEST_HEAD_BYTES, MAX_RESPONSE_HEAD_BYTES };

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

export async function startProxy(opts: ProxyOptions): Promise<RunningProxy> {
  const pool = new UpstreamPool();
  const internalError = opts.onInternalError ?? (() => undefined);
  const openSockets = new Set<Duplex>();
  const shared = opts.reuseUpstream === true ? new SharedUpstreams(pool) : undefined;
  // Each kubectl connection's own upstream connections (connection.ts), closed with it.
  const own = new WeakMap<object, OwnUpstreams>();
  const sessions = new Set<ServerHttp2Session>();
  const ctx: TunnelContext = {
    routes: opts.routes,
    peers: new PeerIdentities(opts.routes),
    upstreamsOf: (req) => {
      if (shared) return shared;
      const ups = own.get(isH2Request(req) ? req.stream.session ?? req.socket : req.socket);
      if (!ups) throw new Error('a request on a connection kubetrail did not accept');
      return ups;
    },
    observer: opts.observer,
    internalError,
    openSockets,
  };

  const onRequest = (req: DownstreamRequest, res: DownstreamResponse): void => {
    try {
      if (!isH2Request(req) && isControlRequest(req.url ?? '/')) handleControl(opts.routes, opts.onControl, req, res as ServerResponse);
      else forwardRequest(ctx, req, res);
    } catch (err) {
      internalError(err);
      sendStatus(res, { code: 502, ktCode: 'KT_ERR_UPSTREAM', message: `kubetrail: internal error: ${describeError(err)}` });
    }
  };

  // HTTP/1.1 connections: the HTTP server parses them (it is handed each TLS connection; it never listens).
  const h1 = createHttpServer(
    {
      keepAliveTimeout: 60_000,
      headersTimeout: 60_000,
      requestTimeout: 0,
      maxHeaderSize: MAX_REQUEST_HEAD_BYTES,
    },
    onRequest,
  );
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
    settings: { enablePush: false, maxHeaderListSize: MAX_REQUEST_HEAD_BYTES },
  });
  h2.on('request', onRequest);
  h2.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    if (!shared) {
      // The apiserver's GOAWAY (or its connection's end) closes kubectl's connection the same way.
      const ups = new OwnUpstreams(pool, 'h2', () => {
        if (!session.closed && !session.destroyed) session.close();
      });
      own.set(session, ups);
      session.once('close', () => ups.close());
    }
    session.once('close', () => sessions.delete(session));
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
      // As the kube-apiserver does: kubectl then speaks to kubetrail what it would speak to the apiserver.
      ALPNProtocols: ['h2', 'http/1.1'],
      // On loopback, classic key exchange: the post-quantum hybrid Node 24's OpenSSL prefers costs ~10 kB
      // more per connection (1,000 watches: 10 MB) and protects nothing that leaves the machine.
      ...(isLoopbackHost(opts.host) ? { ecdhCurve: 'X25519:P-256' } : {}),
    },
    (socket: TLSSocket) => {
      socket.on('error', () => socket.destroy());
      if (socket.alpnProtocol === 'h2') {
        h2.emit('connection', socket);
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
  server.on('tlsClientError', () => undefined);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', internalError);
  const port = (server.address() as AddressInfo).port;
  const hostForUrl = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    server,
    port,
    url: `https://${hostForUrl}:${port}`,
    // Resolves once the listener and every connection are closed, upgraded tunnels and HTTP/2 sessions
    // included: by then every request has published its `end`, so a caller that flushes telemetry next
    // has every span.
    close: async () => {
      const closed = [new Promise<void>((resolve) => server.close(() => resolve()))];
      for (const s of openSockets) if (!s.closed) closed.push(new Promise<void>((resolve) => s.once('close', () => resolve())));
      for (const s of sessions) if (!s.destroyed) closed.push(new Promise<void>((resolve) => s.once('close', () => resolve())));
      h1.closeAllConnections();
      // Neither inner server listens; closing them stops the HTTP server's connection-checking timer.
      h1.close();
      h2.close();
      for (const s of openSockets) s.destroy();
      for (const s of sessions) s.destroy();
      pool.destroy();
      await Promise.all(closed);
    },
  };
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
  const status = code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : code.startsWith('HPE_') ? '400 Bad Request' : undefined;
  if (status === undefined || !socket.writable) {
    socket.destroy();
    return;
  }
  socket.on('error', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n${status}`);
  socket.resume();
  setTimeout(() => socket.destroy(), 500).unref();
}

