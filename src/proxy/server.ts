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
import type { IncomingMessage } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { describeError } from '../errors.ts';
import type { LocalPki } from '../pki/local-ca.ts';
import { handleControl, isControlRequest, type ControlHandler } from './control.ts';
import type { StageObserver } from './events.ts';
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
  const ctx: TunnelContext = {
    routes: opts.routes,
    pool,
    peers: new PeerIdentities(opts.routes),
    observer: opts.observer,
    internalError,
    openSockets,
  };

  const server = createServer(
    {
      key: opts.pki.serverKeyPem,
      cert: opts.pki.serverCertPem,
      // Ask for a client certificate (kubectl sends the kubeconfig's), but let the handshake succeed
      // without one: a token user presents none. Whether a certificate is used upstream is decided per
      // request against the kubeconfig's own certificates, never against a CA.
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
      // On loopback, classic key exchange: the post-quantum hybrid Node 24's OpenSSL prefers costs ~10 kB
      // more per connection (1,000 watches: 10 MB) and protects nothing that leaves the machine.
      ...(isLoopbackHost(opts.host) ? { ecdhCurve: 'X25519:P-256' } : {}),
      keepAliveTimeout: 60_000,
      headersTimeout: 60_000,
      requestTimeout: 0,
      maxHeaderSize: MAX_REQUEST_HEAD_BYTES,
    },
    (req, res) => {
      try {
        if (isControlRequest(req.url ?? '/')) handleControl(opts.routes, opts.onControl, req, res);
        else forwardRequest(ctx, req, res);
      } catch (err) {
        internalError(err);
        sendStatus(res, { code: 502, ktCode: 'KT_ERR_UPSTREAM', message: `kubetrail: internal error: ${describeError(err)}` });
      }
    },
  );
  // As for responses: the byte limit (maxHeaderSize) bounds a request head, not Node's 2,000-line default.
  server.maxHeadersCount = 0;
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    try {
      forwardUpgrade(ctx, req, socket, head);
    } catch (err) {
      internalError(err);
      socket.destroy();
    }
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket));
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
    // Resolves once the listener and every connection are closed, upgraded tunnels included (the server does
    // not track those): by then every request has published its `end`, so a caller that flushes telemetry
    // next has every span.
    close: async () => {
      const closed = [new Promise<void>((resolve) => server.close(() => resolve()))];
      for (const s of openSockets) if (!s.closed) closed.push(new Promise<void>((resolve) => s.once('close', () => resolve())));
      server.closeAllConnections();
      for (const s of openSockets) s.destroy();
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

