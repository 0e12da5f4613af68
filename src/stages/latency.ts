/**
 * The `upstream` stage's timing attributes, from monotonic timestamps (ms, performance.now()).
 * Pure: numbers in, attributes out. A duration whose ends are missing or out of order is omitted.
 *
 * - `upstream.connect_ms` = connectEnd − socketAssigned (or start): TCP connect, DNS included.
 * - `upstream.tls_ms` = tlsEnd − connectEnd: the TLS handshake.
 *   Both only for a new connection; a reused one reports `upstream.connection_reused=true` instead.
 * - `upstream.ttfb_ms` = firstByte − requestSent: from the request (head and body) being handed
 *   to the socket to the first response byte, so connect and TLS are never counted twice. When
 *   requestSent is unknown (upgrades), the moment the connection could be written to stands in:
 *   tlsEnd (or connectEnd) for a new connection, socketAssigned (or start) for a reused one.
 * - `upstream.transfer_ms` = end − firstByte: reading the response to its last byte.
 * Values are rounded to 0.1 ms. `network.protocol.version` is "2" for a stream on a shared HTTP/2
 * connection (watches, where the apiserver offers h2), else "1.1".
 */
import { setAttr, type Attributes } from './attributes.ts';

export interface UpstreamTimings {
  /** The request reached the upstream stage. */
  start: number;
  /** The request got a socket (new or from the keep-alive pool). */
  socketAssigned?: number | undefined;
  /** TCP connected (new connections only). */
  connectEnd?: number | undefined;
  /** TLS handshake done (new connections only). */
  tlsEnd?: number | undefined;
  /** Request head and body fully handed to the socket. */
  requestSent?: number | undefined;
  /** First response byte (the response head) arrived. */
  firstByte?: number | undefined;
  /** Last response byte arrived. */
  end?: number | undefined;
  /** The socket came from the keep-alive pool. */
  reused: boolean;
  /** An HTTP/2 stream rather than an HTTP/1.1 exchange. */
  h2?: boolean | undefined;
}

/** The upstream stage's durations (ms, 0.1 ms steps); one missing when its ends are unknown or out of order. */
export interface UpstreamLatency {
  /** An HTTP/2 stream rather than an HTTP/1.1 exchange. */
  h2: boolean;
  reused: boolean;
  /** New connections only. */
  connectMs?: number | undefined;
  tlsMs?: number | undefined;
  ttfbMs?: number | undefined;
  transferMs?: number | undefined;
}

export function upstreamLatency(t: UpstreamTimings): UpstreamLatency {
  const writable = t.reused ? (t.socketAssigned ?? t.start) : (t.tlsEnd ?? t.connectEnd);
  return {
    h2: t.h2 === true,
    reused: t.reused,
    connectMs: t.reused ? undefined : duration(t.socketAssigned ?? t.start, t.connectEnd),
    tlsMs: t.reused ? undefined : duration(t.connectEnd, t.tlsEnd),
    ttfbMs: duration(t.requestSent ?? writable, t.firstByte),
    transferMs: duration(t.firstByte, t.end),
  };
}

export function upstreamLatencyAttributes(l: UpstreamLatency): Attributes {
  const attrs: Attributes = { 'network.protocol.version': l.h2 ? '2' : '1.1', 'upstream.connection_reused': l.reused };
  setAttr(attrs, 'upstream.connect_ms', l.connectMs);
  setAttr(attrs, 'upstream.tls_ms', l.tlsMs);
  setAttr(attrs, 'upstream.ttfb_ms', l.ttfbMs);
  setAttr(attrs, 'upstream.transfer_ms', l.transferMs);
  return attrs;
}

function duration(from: number | undefined, to: number | undefined): number | undefined {
  if (from === undefined || to === undefined || !(to >= from)) return undefined;
  return Math.round((to - from) * 10) / 10;
}
