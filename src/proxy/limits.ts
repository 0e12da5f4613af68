/**
 * What one kubectl connection (or anything else that connects) can hold, and for how long
 * (docs/security.md "Limits"): the bounds themselves, the connection cap the listener's addresses share,
 * and the idle close of an HTTP/2 connection. The HTTP/1.1 timeouts and the TLS handshake's are options of
 * Node's own servers, set from the same bounds where server.ts creates them.
 */
import type { ServerHttp2Session } from 'node:http2';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Server } from 'node:tls';

/**
 * Without these a flood of connections that never finish TLS, never send a request or sit idle held
 * ~45-70 kB each for ever. Open requests are never timed out: a watch, a `logs -f` or an exec tunnel stays
 * open as long as both ends want it.
 */
export interface ConnectionLimits {
  /** Connections open at once; new ones are closed while the listener is at the cap, never an open one. */
  maxConnections: number;
  /** The TLS handshake must finish within this. */
  handshakeMs: number;
  /** A connection's first request head must be complete within this (the kube-apiserver's ReadHeaderTimeout: 32 s). */
  firstRequestMs: number;
  /** A connection with no request open is closed after this (HTTP/1.1 keep-alive; an HTTP/2 connection with no stream). */
  idleMs: number;
}

export const DEFAULT_LIMITS: ConnectionLimits = {
  maxConnections: 1024,
  handshakeMs: 10_000,
  firstRequestMs: 32_000,
  idleMs: 60_000,
};

/** How long a connection closed for idleness may take to say goodbye before its socket is destroyed. */
const CLOSE_GRACE_MS = 1_000;

/** How often the cap line may be repeated while connections keep being closed at the cap. */
const CAP_NOTICE_EVERY_MS = 10_000;

/**
 * One connection cap over the TLS server's own listener and the route addresses' (which hand their
 * connections over with `accept`, that is emit('connection'), past Node's check): the own listener's
 * maxConnections is what the others leave; the others check the total themselves. A connection closed at
 * the cap, on any of them, is told to the user by `notice` (capNotice).
 */
export function capConnections(
  server: Server,
  max: number,
  notice: (line: string) => void,
): { accept(socket: Socket): void } {
  const dropped = capNotice(max, notice);
  server.on('drop', dropped);
  let open = 0;
  let handedOver = 0;
  server.maxConnections = max;
  server.on('connection', (socket: Socket) => {
    open++;
    socket.once('close', () => open--);
  });
  return {
    accept(socket) {
      if (open >= max) {
        socket.destroy();
        dropped();
        return;
      }
      handedOver++;
      server.maxConnections = max - handedOver;
      socket.once('close', () => {
        handedOver--;
        server.maxConnections = max - handedOver;
      });
      server.emit('connection', socket);
    },
  };
}

/** One line when the cap is reached, repeated at most every CAP_NOTICE_EVERY_MS while it still closes connections. */
function capNotice(max: number, notice: (line: string) => void): () => void {
  let closed = 0;
  let saidAt = -Infinity;
  return () => {
    closed++;
    const now = Date.now();
    if (now - saidAt < CAP_NOTICE_EVERY_MS) return;
    saidAt = now;
    notice(
      `kubetrail: ${max} connections open, its limit: new connections are closed until some end (${closed} so far); open ones are kept`,
    );
  };
}

/**
 * An HTTP/2 connection is closed (GOAWAY, then the socket) when no stream has been open for
 * `firstRequestMs` since it started or `idleMs` since its last stream ended. A connection carrying a
 * stream, a quiet watch included, is never idle. `socket` is the TLS socket itself (session.socket is a
 * proxy that cannot destroy it).
 */
export function closeWhenIdle(session: ServerHttp2Session, socket: Duplex, limits: ConnectionLimits): void {
  let open = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = (ms: number): void => {
    timer = setTimeout(() => {
      if (session.closed || session.destroyed) return;
      session.close();
      // close() sends GOAWAY and a FIN, then waits for the client's: one that never reads keeps it open.
      setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
    }, ms);
    timer.unref();
  };
  arm(limits.firstRequestMs);
  session.on('stream', (stream: Duplex) => {
    open++;
    clearTimeout(timer);
    stream.once('close', () => {
      if (--open === 0 && !session.closed) arm(limits.idleMs);
    });
  });
  session.once('close', () => clearTimeout(timer));
}
