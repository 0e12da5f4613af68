/**
 * A request forwarded over HTTP/1.1: on the given agent's connection, head and body as kubectl sent them;
 * the answer relayed by the caller (HttpForward). A bodiless request whose kept-alive connection was closed
 * under it is sent again on another connection, as Go's transport does.
 */
import { request as httpsRequest, type Agent } from 'node:https';
import type { ClientRequest } from 'node:http';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { adoptedHandshakes } from './connection.ts';
import type { Exchange } from './exchange.ts';
import type { HttpForward } from './forward.ts';
import type { RawHeaders } from './headers.ts';
import { relay } from './relay.ts';
import { CLOSED_MID_RESPONSE, upstreamFailure } from './status.ts';
import { MAX_RESPONSE_HEAD_BYTES } from './upstream.ts';

/** Times a bodiless request is sent again after its kept-alive upstream connection was closed under it. */
export const MAX_RETRIES = 2;

/** The request to the apiserver, as kubectl sent it (method, path, headers), on the given agent. */
export function upstreamRequest(agent: Agent, x: Exchange, upstreamPath: string, headers: RawHeaders): ClientRequest {
  const up = httpsRequest({
    agent,
    host: x.facts.upstream.host,
    port: x.facts.upstream.port,
    method: x.facts.method,
    path: upstreamPath,
    headers,
    setHost: false,
    maxHeaderSize: MAX_RESPONSE_HEAD_BYTES,
  });
  // Node keeps only the first 2,000 header lines by default and drops the rest silently; Go counts
  // bytes, not lines. The byte limit above bounds the head.
  up.maxHeadersCount = 0;
  // TCP_NODELAY, as Go's dialer sets on every connection (kubectl's and the apiserver's): Node writes a
  // request's head and its body or chunk framing as separate small writes, and with Nagle's algorithm the
  // second waits for the apiserver's delayed ACK: +40 ms per HTTP/1.1 request to the real kube-apiserver
  // (bench/RESULTS.md, 2026-12-07, workload 1 over HTTP/1.1).
  up.setNoDelay(true);
  return up;
}

/**
 * Publish the connect and TLS times of a new upstream connection once its handshake is done. A socket an
 * HTTP/2 attempt opened (the apiserver chose http/1.1) is already connected: its times are known.
 */
export function timeNewConnection(socket: Duplex, x: Exchange, t: number): void {
  const adopted = adoptedHandshakes.get(socket);
  if (adopted) {
    adoptedHandshakes.delete(socket);
    x.connected({ t, reused: false, connectEnd: Math.max(adopted.connectEnd, t), tlsEnd: Math.max(adopted.tlsEnd, t) });
    return;
  }
  let connectEnd: number | undefined;
  socket.once('connect', () => (connectEnd = performance.now()));
  socket.once('secureConnect', () =>
    x.connected({ t, reused: false, connectEnd: connectEnd ?? t, tlsEnd: performance.now() }),
  );
}

export function sendHttp1(f: HttpForward, retriesLeft: number): void {
  const { x, req, res } = f;
  const route = f.target.route;
  const attempt = upstreamRequest(f.agent, x, f.target.upstreamPath, f.headers);
  f.cancel = () => attempt.destroy();
  // A reused connection is published with the answer (or the final failure), so a retried attempt
  // publishes only the connection that carried the request.
  let reusedAt: number | undefined;
  const publishReused = (): void => {
    if (reusedAt !== undefined) x.connected({ t: reusedAt, reused: true });
    reusedAt = undefined;
  };
  attempt.on('socket', (socket) => {
    const t = performance.now();
    if (attempt.reusedSocket) {
      reusedAt = t;
      return;
    }
    timeNewConnection(socket, x, adoptedHandshakes.has(socket) ? (f.h2AskedAt ?? t) : t);
  });
  attempt.on('finish', () => (x.requestSent = performance.now()));

  attempt.on('error', (err: NodeJS.ErrnoException) => {
    if (x.ended) return;
    if (
      !res.headersSent &&
      retriesLeft > 0 &&
      attempt.reusedSocket &&
      f.replayable &&
      req.readableEnded &&
      (err.code === 'ECONNRESET' || err.code === 'EPIPE')
    ) {
      sendHttp1(f, retriesLeft - 1);
      return;
    }
    publishReused();
    f.upstreamFailed(upstreamFailure(err, route));
  });

  attempt.on('response', (upRes) => {
    publishReused();
    if (
      !f.relayResponse(
        upRes.statusCode ?? 502,
        upRes.statusMessage,
        upRes.rawHeaders,
        upRes,
        upRes.headers['content-length'] !== undefined,
      )
    )
      return;
    upRes.on('end', () => x.finish('complete'));
    upRes.on('error', (err) => f.upstreamFailed(upstreamFailure(err, route)));
    upRes.on('aborted', () => f.upstreamFailed(CLOSED_MID_RESPONSE));
  });

  if (retriesLeft < MAX_RETRIES) attempt.end();
  else relay(req, attempt, (chunk) => (x.bytesUp += chunk.length));
}
