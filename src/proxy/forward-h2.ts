/**
 * A watch forwarded as a stream on the (cluster, identity)'s HTTP/2 connection to the apiserver
 * (upstream.ts), or over HTTP/1.1 when the apiserver does not speak h2 or the head does not fit HTTP/2.
 */
import { constants as h2c, type ClientHttp2Stream } from 'node:http2';
import { performance } from 'node:perf_hooks';
import type { HttpForward } from './forward.ts';
import { MAX_RETRIES, sendHttp1 } from './forward-http1.ts';
import { h2RawHeaders, h2RequestHeaders, withoutPseudoHeaders } from './headers.ts';
import { CLOSED_MID_RESPONSE, upstreamFailure } from './status.ts';
import type { H2Lease, UpstreamPool } from './upstream.ts';

/** Send the watch over HTTP/2, or over HTTP/1.1 when the apiserver does not speak h2. */
export function sendWatchOverH2(f: HttpForward, pool: UpstreamPool, retriesLeft: number): void {
  const askedAt = performance.now();
  const route = f.target.route;
  pool.h2For(route, f.identity).then(
    (lease) => {
      if (f.x.ended) lease?.release();
      else if (lease) sendOnLease(f, pool, lease, askedAt, retriesLeft);
      else sendHttp1(f, MAX_RETRIES);
    },
    (err: unknown) => {
      if (!f.x.ended) f.answer(upstreamFailure(err, route));
    },
  );
}

function sendOnLease(f: HttpForward, pool: UpstreamPool, lease: H2Lease, askedAt: number, retriesLeft: number): void {
  const { x, res } = f;
  const route = f.target.route;
  const o = lease.opened;
  // Published once, for the attempt that carried the request (as on HTTP/1.1): at the answer, or at the
  // final failure; a refused attempt that is sent again publishes nothing.
  let published = false;
  const publishConnected = (): void => {
    if (published) return;
    published = true;
    x.connected(
      o ? { t: askedAt, reused: false, connectEnd: Math.max(o.connectEnd, askedAt), tlsEnd: Math.max(o.tlsEnd, askedAt), protocol: 'h2' } : { t: askedAt, reused: true, protocol: 'h2' },
    );
  };
  let stream: ClientHttp2Stream;
  try {
    stream = lease.session.request(h2RequestHeaders(f.headers, x.facts.method, f.target.upstreamPath), { endStream: true });
  } catch (err) {
    lease.release();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ERR_HTTP2_INVALID_SESSION' || code === 'ERR_HTTP2_GOAWAY_SESSION' || code === 'ERR_HTTP2_OUT_OF_STREAMS') {
      // The connection went away between the lease and the request: another one.
      lease.retire();
      if (retriesLeft > 0) sendWatchOverH2(f, pool, retriesLeft - 1);
      else f.answer(upstreamFailure(err, route));
    } else {
      // A head HTTP/2 cannot carry as kubectl sent it (a repeated single-value header such as
      // User-Agent): HTTP/1.1 forwards it exactly, and the connection stays for everyone else.
      sendHttp1(f, MAX_RETRIES);
    }
    return;
  }
  f.cancel = () => stream.close(h2c.NGHTTP2_CANCEL);
  x.requestSent = performance.now();
  let answered = false;
  let retried = false;
  /**
   * A stream the apiserver refused (REFUSED_STREAM: it never processed it) or that a GOAWAY left
   * unprocessed is sent again on another connection, as Go's transport does; kubetrail also takes the
   * refusing connection out of the pool for new streams (its open streams go on).
   */
  const retryUnprocessed = (err?: NodeJS.ErrnoException): boolean => {
    if (answered || retried || retriesLeft === 0) return retried;
    if (stream.rstCode !== h2c.NGHTTP2_REFUSED_STREAM && err?.code !== 'ERR_HTTP2_GOAWAY_SESSION') return false;
    retried = true;
    lease.retire();
    sendWatchOverH2(f, pool, retriesLeft - 1);
    return true;
  };
  stream.on('response', (h, _flags, rawHeaders?: string[]) => {
    answered = true;
    if (x.ended) return;
    publishConnected();
    const raw = withoutPseudoHeaders(rawHeaders ?? h2RawHeaders(h));
    // A stream whose connection died ends its readable side as well, reset (CANCEL) rather than
    // finished: that is a cut, as a closed HTTP/1.1 connection mid-body would be.
    const endsCleanly = (): boolean => !stream.rstCode;
    if (!f.relayResponse(Number(h[':status'] ?? 502), undefined, raw, stream, h['content-length'] !== undefined, endsCleanly)) return;
    stream.on('end', () => {
      if (endsCleanly()) x.finish('complete');
      else x.finish('upstream_error', CLOSED_MID_RESPONSE);
    });
  });
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (x.ended || retryUnprocessed(err)) return;
    publishConnected();
    f.upstreamFailed(upstreamFailure(err, route));
  });
  stream.on('close', () => {
    lease.release();
    if (x.ended || retryUnprocessed()) return;
    publishConnected();
    // Reset without an error code Node reports (NO_ERROR, CANCEL), or the connection went away.
    if (!answered) {
      f.answer({ code: 502, ktCode: 'KT_ERR_UPSTREAM', message: 'kubetrail: the apiserver closed the stream before answering' });
    } else if (!stream.readableEnded) {
      res.destroy();
      x.finish('upstream_error', CLOSED_MID_RESPONSE);
    }
  });
}
