/**
 * A request forwarded as an HTTP/2 stream: kubectl's own stream on its connection's own HTTP/2 connection
 * (stream for stream: body, trailers and resets carried through), or, with --reuse-upstream, a watch on the
 * (cluster, identity)'s shared connection (upstream.ts). Over HTTP/1.1 instead when the apiserver does not
 * speak h2, or the head does not fit HTTP/2.
 */
import { constants as h2c, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { performance } from 'node:perf_hooks';
import { isH2Response } from './exchange.ts';
import type { HttpForward } from './forward.ts';
import { MAX_RETRIES, sendHttp1 } from './forward-http1.ts';
import { h2RawHeaders, h2RequestHeaders, h2ResponseHeaders, withoutPseudoHeaders } from './headers.ts';
import { relay } from './relay.ts';
import { CLOSED_MID_RESPONSE, upstreamFailure, type ProxyAnswer } from './status.ts';
import type { H2Lease } from './upstream.ts';

const REFUSED: ProxyAnswer = {
  code: 502,
  ktCode: 'KT_ERR_UPSTREAM',
  message:
    'kubetrail: the apiserver refused the stream (REFUSED_STREAM or GOAWAY); kubectl was told the same, and sends it again',
};

/** Send the request as an HTTP/2 stream, or over HTTP/1.1 when the apiserver does not speak h2. */
export function sendOverH2(f: HttpForward, retriesLeft: number): void {
  const askedAt = performance.now();
  f.h2AskedAt = askedAt;
  const route = f.target.route;
  f.upstreams.h2For(f.upstreamRoute, f.identity).then(
    (lease) => {
      if (f.x.ended) lease?.release();
      else if (lease) sendOnLease(f, lease, askedAt, retriesLeft);
      else sendHttp1(f, MAX_RETRIES);
    },
    (err: unknown) => {
      if (!f.x.ended) f.answer(upstreamFailure(err, route));
    },
  );
}

function sendOnLease(f: HttpForward, lease: H2Lease, askedAt: number, retriesLeft: number): void {
  const { x } = f;
  const route = f.target.route;
  const o = lease.opened;
  // Published once, for the attempt that carried the request (as on HTTP/1.1): at the answer, or at the
  // final failure; a refused attempt that is sent again publishes nothing.
  let published = false;
  const publishConnected = (): void => {
    if (published) return;
    published = true;
    x.connected(
      o
        ? {
            t: askedAt,
            reused: false,
            connectEnd: Math.max(o.connectEnd, askedAt),
            tlsEnd: Math.max(o.tlsEnd, askedAt),
            protocol: 'h2',
          }
        : { t: askedAt, reused: true, protocol: 'h2' },
    );
  };
  let stream: ClientHttp2Stream;
  try {
    stream = lease.session.request(h2RequestHeaders(f.headers, x.facts.method, f.target.upstreamPath), {
      endStream: !f.hasBody,
    });
  } catch (err) {
    lease.release();
    const code = (err as NodeJS.ErrnoException).code;
    if (
      code === 'ERR_HTTP2_INVALID_SESSION' ||
      code === 'ERR_HTTP2_GOAWAY_SESSION' ||
      code === 'ERR_HTTP2_OUT_OF_STREAMS'
    ) {
      // The connection went away between the lease and the request: another one.
      lease.retire();
      if (retriesLeft > 0) sendOverH2(f, retriesLeft - 1);
      else f.answer(upstreamFailure(err, route));
    } else {
      // A head HTTP/2 cannot carry as kubectl sent it (a repeated single-value header such as
      // User-Agent): HTTP/1.1 forwards it exactly, and the connection stays for everyone else.
      sendHttp1(f, MAX_RETRIES);
    }
    return;
  }
  // kubectl reset its stream (a cancelled watch: CANCEL): the apiserver's stream gets the same code.
  f.cancel = () => stream.close(f.clientResetCode || h2c.NGHTTP2_CANCEL);
  if (f.hasBody) {
    stream.on('finish', () => (x.requestSent = performance.now()));
    relay(f.req, stream, (chunk) => (x.bytesUp += chunk.length));
  } else {
    x.requestSent = performance.now();
  }
  let answered = false;
  let retried = false;
  /**
   * A stream the apiserver refused (REFUSED_STREAM: it never processed it) or that a GOAWAY left
   * unprocessed. On kubectl's HTTP/2 connection the refusal is passed on as REFUSED_STREAM: kubectl sends
   * it again itself, as it would to the apiserver. Otherwise (HTTP/1.1 kubectl, shared connection) a
   * bodiless request is sent again on another connection, as Go's transport does; kubetrail also takes the
   * refusing connection out of the pool for new streams (its open streams go on).
   */
  const retryUnprocessed = (err?: NodeJS.ErrnoException): boolean => {
    if (answered || retried) return retried;
    if (stream.rstCode !== h2c.NGHTTP2_REFUSED_STREAM && err?.code !== 'ERR_HTTP2_GOAWAY_SESSION') return false;
    if (f.upstreams.mirrorsRefusals && isH2Response(f.res)) {
      retried = true;
      publishConnected();
      f.cut(h2c.NGHTTP2_REFUSED_STREAM);
      x.finish('upstream_error', REFUSED);
      return true;
    }
    if (retriesLeft === 0 || f.hasBody) return false;
    retried = true;
    lease.retire();
    sendOverH2(f, retriesLeft - 1);
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
    if (
      !f.relayResponse(
        Number(h[':status'] ?? 502),
        undefined,
        raw,
        stream,
        h['content-length'] !== undefined,
        endsCleanly,
        () => stream.rstCode,
      )
    )
      return;
    stream.on('trailers', (trailers: IncomingHttpHeaders, _fl: number, rawTrailers?: string[]) => {
      // Trailers reach an HTTP/2 kubectl as sent; HTTP/1.1 (chunked trailers) never asked for them.
      if (isH2Response(f.res))
        f.res.addTrailers(
          Object.fromEntries(pairs(h2ResponseHeaders(withoutPseudoHeaders(rawTrailers ?? h2RawHeaders(trailers))))),
        );
    });
    stream.on('end', () => {
      if (endsCleanly()) x.finish('complete');
      else if (f.clientGone) x.finish('client_abort');
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
    if (f.clientGone) {
      x.finish('client_abort');
    } else if (!answered) {
      f.answer({
        code: 502,
        ktCode: 'KT_ERR_UPSTREAM',
        message: 'kubetrail: the apiserver closed the stream before answering',
      });
    } else if (!stream.readableEnded) {
      f.cut(stream.rstCode);
      x.finish('upstream_error', CLOSED_MID_RESPONSE);
    }
  });
}

/** A raw list's pairs, repeated names joined into arrays. */
function pairs(raw: readonly string[]): [string, string | string[]][] {
  const out = new Map<string, string | string[]>();
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] ?? '').toLowerCase();
    const value = raw[i + 1] ?? '';
    const prev = out.get(name);
    out.set(name, prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value]);
  }
  return [...out];
}
