/**
 * kubetrail's own answers, shaped as Kubernetes `Status` objects so kubectl prints them like any server
 * error ("Error from server (BadGateway): kubetrail: ...").
 */
import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../errors.ts';

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
export function sendStatus(res: ServerResponse, a: ProxyAnswer, opts: { plainText?: boolean } = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = opts.plainText ? `${a.message}\n` : statusBody(a);
  res.writeHead(a.code, HEADERS(body, opts.plainText ? 'text/plain; charset=utf-8' : 'application/json'));
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
