/**
 * kubetrail's own answers, shaped as Kubernetes `Status` objects so kubectl prints them like any server
 * error ("Error from server (BadGateway): kubetrail: ...").
 */
import type { ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { Duplex } from 'node:stream';
import { describeWithoutNodeAdvice, isTlsErrorCode, type ErrorCode } from '../errors.ts';
import type { ClusterRoute } from './routing.ts';

const REASONS: Record<number, string> = {
  401: 'Unauthorized',
  404: 'NotFound',
  502: 'BadGateway',
  503: 'ServiceUnavailable',
  504: 'Timeout',
};

export interface ProxyAnswer {
  code: number;
  ktCode: ErrorCode;
  message: string;
}

export function statusBody(a: ProxyAnswer): string {
  return `${JSON.stringify({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: a.message,
    reason: REASONS[a.code] ?? 'InternalError',
    details: { causes: [{ reason: a.ktCode, message: a.message }] },
    code: a.code,
  })}\n`;
}

const HEADERS = (body: string, contentType = 'application/json'): Record<string, string | number> => ({
  'content-type': contentType,
  'content-length': Buffer.byteLength(body),
  'cache-control': 'no-cache, private',
  'x-kubetrail-error': 'true',
});

/**
 * Answer with a Status, or, with `plainText`, with the message alone as text/plain. client-go reads
 * discovery documents raw (`Do().Raw()`): of a failed one it shows a text body, but of a JSON one only
 * "an error on the server ("unknown")", which would hide why kubetrail failed on kubectl's first request.
 */
export function sendStatus(
  res: ServerResponse | Http2ServerResponse,
  a: ProxyAnswer,
  opts: { plainText?: boolean } = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = opts.plainText ? `${a.message}\n` : statusBody(a);
  const headers = HEADERS(body, opts.plainText ? 'text/plain; charset=utf-8' : 'application/json');
  if ('stream' in res) res.writeHead(a.code, headers);
  else res.writeHead(a.code, headers);
  res.end(body);
}

/** The same answer on a raw socket (an upgrade request that never reached the apiserver). */
export function sendStatusRaw(socket: Duplex, a: ProxyAnswer): void {
  const body = statusBody(a);
  const head = Object.entries({ ...HEADERS(body), connection: 'close' })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.end(`HTTP/1.1 ${a.code} ${REASONS[a.code] ?? 'Error'}\r\n${head}\r\n${body}`);
}

/** The upstream went away after the answer's head: kubectl's connection is cut, and the span says this. */
export const CLOSED_MID_RESPONSE: ProxyAnswer = {
  code: 502,
  ktCode: 'KT_ERR_UPSTREAM',
  message: 'kubetrail: the apiserver closed the connection mid-response',
};

/** What kubectl is told when the apiserver could not be reached, verified or understood. */
export function upstreamFailure(err: unknown, route: ClusterRoute): ProxyAnswer {
  const e = err as NodeJS.ErrnoException;
  const tls = isTlsErrorCode(e.code);
  const ktCode: ErrorCode = tls ? 'KT_ERR_UPSTREAM_TLS' : 'KT_ERR_UPSTREAM';
  const detail = `${e.code ? `${e.code}: ` : ''}${describeWithoutNodeAdvice(err)}`;
  if (typeof e.code === 'string' && e.code.startsWith('HPE_')) {
    // Node's HTTP parser: the apiserver (or something in its place) answered, but not in HTTP/1.1.
    return {
      code: 502,
      ktCode,
      message: `kubetrail: the kube-apiserver at ${route.server.origin} sent a malformed HTTP response: ${detail}`,
    };
  }
  const what = tls ? 'TLS verification of' : 'cannot reach';
  return {
    code: 502,
    ktCode,
    message: `kubetrail: ${what} the kube-apiserver at ${route.server.origin} failed: ${detail}`,
  };
}
