/**
 * How the stand-in apiserver writes answers: Go-style JSON, the headers every kube-apiserver response
 * carries, `Status` bodies, gzip above 128 KiB, and a response sink that fault injection can cut short.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Http2ServerResponse } from 'node:http2';
import type { Duplex } from 'node:stream';
import { gzipSync } from 'node:zlib';

export type AnyResponse = ServerResponse | Http2ServerResponse;

/** `encoding/json` escapes these inside strings; JSON.stringify does not. */
const GO_ESCAPES = /[<>&\u2028\u2029]/g;

/** JSON as the apiserver's serializer writes it: HTML-safe escapes and a trailing newline. */
export function goJson(value: unknown): string {
  return `${JSON.stringify(value).replace(GO_ESCAPES, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}\n`;
}

/** `WriteRawJSON` (used for /version): indented, no trailing newline. */
export function goJsonIndent(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(
    GO_ESCAPES,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

export interface StatusDetails {
  name?: string;
  group?: string;
  kind?: string;
  uid?: string;
  causes?: { reason?: string; message?: string; field?: string }[];
  retryAfterSeconds?: number;
}

export interface Status {
  kind: 'Status';
  apiVersion: 'v1';
  /** ListMeta: empty, except `continue` on the 410 for an expired continue token. */
  metadata: { continue?: string };
  status: 'Success' | 'Failure';
  message?: string;
  reason?: string;
  details?: StatusDetails;
  code?: number;
}

/** A `metav1.Status` with its fields in Go struct order and Go's omitempty rules. */
export function status(code: number, reason: string, message: string, details?: StatusDetails): Status {
  const s: Status = {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: code >= 200 && code < 300 ? 'Success' : 'Failure',
  };
  if (message !== '') s.message = message;
  if (reason !== '') s.reason = reason;
  if (details !== undefined) s.details = orderedDetails(details);
  s.code = code;
  return s;
}

function orderedDetails(d: StatusDetails): StatusDetails {
  const out: StatusDetails = {};
  if (d.name) out.name = d.name;
  if (d.group) out.group = d.group;
  if (d.kind) out.kind = d.kind;
  if (d.uid) out.uid = d.uid;
  if (d.causes && d.causes.length > 0) out.causes = d.causes;
  if (d.retryAfterSeconds) out.retryAfterSeconds = d.retryAfterSeconds;
  return out;
}

/** The errors the handlers raise; `ApiError.status` is what goes on the wire. */
export class ApiError extends Error {
  readonly status: Status;
  readonly headers: Record<string, string>;
  constructor(st: Status, headers: Record<string, string> = {}) {
    super(st.message ?? st.reason ?? 'error');
    this.status = st;
    this.headers = headers;
  }
}

export const errors = {
  badRequest: (message: string) => new ApiError(status(400, 'BadRequest', message)),
  notFound: (resource: string, name: string, group = '') =>
    new ApiError(
      status(404, 'NotFound', `${qualified(resource, group)} "${name}" not found`, { name, group, kind: resource }),
    ),
  alreadyExists: (resource: string, name: string, group = '') =>
    new ApiError(
      status(409, 'AlreadyExists', `${qualified(resource, group)} "${name}" already exists`, {
        name,
        group,
        kind: resource,
      }),
    ),
  conflict: (resource: string, name: string, why: string, group = '') =>
    new ApiError(
      status(409, 'Conflict', `Operation cannot be fulfilled on ${qualified(resource, group)} "${name}": ${why}`, {
        name,
        group,
        kind: resource,
      }),
    ),
  invalid: (kind: string, name: string, field: string, causeReason: string, message: string, group = '') =>
    new ApiError(
      status(422, 'Invalid', `${kind}${group ? `.${group}` : ''} "${name}" is invalid: ${field}: ${message}`, {
        name,
        group,
        kind,
        causes: [{ reason: causeReason, message, field }],
      }),
    ),
  methodNotAllowed: () =>
    new ApiError(status(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')),
  notAcceptable: (message: string) => new ApiError(status(406, 'NotAcceptable', message)),
  unsupportedMediaType: (contentType: string) =>
    new ApiError(
      status(
        415,
        'UnsupportedMediaType',
        `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got ${contentType})`,
      ),
    ),
  expired: (message: string, continueToken?: string) => {
    const st = status(410, 'Expired', message);
    if (continueToken !== undefined) st.metadata = { continue: continueToken };
    return new ApiError(st);
  },
  internal: (message: string) =>
    new ApiError(status(500, 'InternalError', `Internal error occurred: ${message}`, { causes: [{ message }] })),
  pathNotFound: () =>
    new ApiError(status(404, 'NotFound', 'the server could not find the requested resource', { causes: [] })),
};

function qualified(resource: string, group: string): string {
  return group ? `${resource}.${group}` : resource;
}

/** The headers `Go` would canonicalize; Node keeps the case we give on HTTP/1.1 (h2 lower-cases). */
export interface CommonHeaderOptions {
  auditId: string;
  /** Undefined for long-running non-watch requests and 401s, which skip API Priority and Fairness. */
  apf?: { flowSchemaUid: string; priorityLevelUid: string } | undefined;
  cacheControl?: string;
}

export function commonHeaders(o: CommonHeaderOptions): [string, string][] {
  const h: [string, string][] = [
    ['Audit-Id', o.auditId],
    ['Cache-Control', o.cacheControl ?? 'no-cache, private'],
  ];
  if (o.apf) {
    h.push(['X-Kubernetes-Pf-Flowschema-Uid', o.apf.flowSchemaUid]);
    h.push(['X-Kubernetes-Pf-Prioritylevel-Uid', o.apf.priorityLevelUid]);
  }
  return h;
}

/** `Audit-ID` from the client if it sent one (the apiserver keeps it), else a fresh UUID. */
export function auditIdFor(headers: IncomingHttpHeaders): string {
  const v = headers['audit-id'];
  const s = Array.isArray(v) ? v[0] : v;
  return s !== undefined && s.trim() !== '' ? s.trim() : randomUUID();
}

/** Go sorts header keys when it writes them; do the same so HTTP/1.1 answers look alike. */
export function sortHeaders(h: [string, string][]): [string, string][] {
  return [...h].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

export function acceptsGzip(headers: IncomingHttpHeaders): boolean {
  const v = headers['accept-encoding'];
  const s = Array.isArray(v) ? v.join(',') : (v ?? '');
  return s
    .split(',')
    .map((t) => t.trim().split(';')[0]?.trim().toLowerCase())
    .includes('gzip');
}

/**
 * Where a handler writes its answer. Every write goes through here so that a fault (`resetAfterBytes`,
 * `hangAfterHeaders`) can act on the bytes, and so that `close()` can end every open stream.
 */
export class Sink {
  readonly res: AnyResponse;
  readonly isH2: boolean;
  private written = 0;
  private resetAfter: number | undefined;
  private hang = false;
  private finished = false;
  /** Set when the client went away (or the server is closing). */
  closed = false;
  private readonly closeListeners = new Set<() => void>();

  constructor(
    res: AnyResponse,
    opts: { resetAfterBytes?: number | undefined; hangAfterHeaders?: boolean | undefined },
  ) {
    this.res = res;
    this.isH2 = 'stream' in res;
    this.resetAfter = opts.resetAfterBytes;
    this.hang = opts.hangAfterHeaders === true;
    res.on('close', () => this.markClosed());
  }

  private markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fn of this.closeListeners) fn();
    this.closeListeners.clear();
  }

  onClose(fn: () => void): () => void {
    if (this.closed) {
      fn();
      return () => undefined;
    }
    this.closeListeners.add(fn);
    return () => this.closeListeners.delete(fn);
  }

  private get out(): { write(b: Buffer): boolean } {
    const res: { write(b: Buffer): boolean } = this.res;
    return res;
  }

  get headersSent(): boolean {
    return this.res.headersSent;
  }

  /** Called with the status and headers when the head is written (the server records them). */
  onHead: ((code: number, headers: [string, string][]) => void) | undefined;

  /** Status line and headers, in the given order (Go's sorted order), plus Date, flushed at once for streams. */
  head(code: number, headers: [string, string][], opts: { flush?: boolean } = {}): void {
    this.onHead?.(code, headers);
    const res = this.res;
    res.statusCode = code;
    // Go writes the handler's headers (sorted), then Date, then Content-Length or Transfer-Encoding
    // (Node appends the latter itself).
    const date = !this.isH2 && !headers.some(([k]) => k.toLowerCase() === 'date');
    for (const [k, v] of headers) {
      if (date && k.toLowerCase() === 'content-length' && !res.hasHeader('Date'))
        res.setHeader('Date', new Date().toUTCString());
      res.setHeader(k, v);
    }
    if (!this.isH2) {
      // Go writes neither `Connection: keep-alive` nor `Keep-Alive`; removing the header keeps Node quiet
      // about it while keeping the connection persistent.
      (res as ServerResponse).removeHeader('Connection');
      if (!res.hasHeader('Date')) res.setHeader('Date', new Date().toUTCString());
    }
    if (opts.flush || this.hang) {
      if (this.isH2) (res as Http2ServerResponse).writeHead(code);
      else {
        (res as ServerResponse).writeHead(code);
        (res as ServerResponse).flushHeaders();
      }
    }
  }

  write(chunk: string | Buffer): boolean {
    if (this.closed || this.finished || this.hang) return false;
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (this.resetAfter !== undefined && this.written + buf.length >= this.resetAfter) {
      const keep = Math.max(0, this.resetAfter - this.written);
      if (keep > 0) this.out.write(buf.subarray(0, keep));
      this.written += keep;
      // Let the bytes leave before the reset, as a peer dying mid-body would.
      setImmediate(() => this.reset());
      this.finished = true;
      return false;
    }
    this.written += buf.length;
    return this.out.write(buf);
  }

  end(chunk?: string | Buffer): void {
    if (this.closed || this.finished) return;
    if (this.hang) {
      // Headers went out; the body never comes. `close()` or the client ends it.
      return;
    }
    if (chunk !== undefined && chunk.length > 0) {
      if (!this.write(chunk)) {
        if (this.finished) return;
      }
    }
    this.finished = true;
    this.res.end();
  }

  /** Tear the stream down: RST_STREAM on h2, a destroyed socket on HTTP/1.1. */
  reset(): void {
    this.finished = true;
    if (this.isH2) {
      const stream = (this.res as Http2ServerResponse).stream;
      if (!stream.destroyed) stream.close(0x2 /* NGHTTP2_INTERNAL_ERROR */);
    } else {
      (this.res as ServerResponse).socket?.destroy();
    }
    this.markClosed();
  }

  /** Used by `close()`: finish a stream that would otherwise stay open (watch, logs -f, hung answer). */
  terminate(): void {
    if (this.finished && !this.hang) return;
    this.finished = true;
    this.hang = false;
    try {
      if (!this.res.headersSent) this.res.statusCode = 503;
      this.res.end();
    } catch {
      this.reset();
    }
    this.markClosed();
  }
}

/**
 * Write a complete JSON answer the way `SerializeObject` does: gzip (level 1) when the client accepts it and
 * the body exceeds the threshold, Content-Length only for small bodies, compressed or not (Go switches to
 * chunked once its 2 KiB HTTP/1.1 or 4 KiB h2 buffer fills before the handler returns; a gzipped answer
 * that compresses below that gets a Content-Length too).
 */
export function writeBody(
  sink: Sink,
  code: number,
  headers: [string, string][],
  body: string | Buffer,
  opts: { gzip: boolean; gzipThreshold: number; contentType: string },
): void {
  let buf = typeof body === 'string' ? Buffer.from(body) : body;
  const h: [string, string][] = [...headers, ['Content-Type', opts.contentType]];
  if (opts.gzip && buf.length > opts.gzipThreshold) {
    h.push(['Content-Encoding', 'gzip'], ['Vary', 'Accept-Encoding']);
    buf = gzipSync(buf, { level: 1 });
  }
  const sorted = sortHeaders(h);
  if (buf.length <= (sink.isH2 ? 4096 : 2048)) sorted.push(['Content-Length', String(buf.length)]);
  sink.head(code, sorted);
  sink.end(buf);
}

/** `http.NotFound`: what the apiserver's mux answers for a path no handler serves (unknown groups too). */
export const NOT_FOUND_TEXT = '404 page not found\n';

/** A whole HTTP/1.1 answer on a raw socket (upgrade requests that get no 101). */
export function writeRawResponse(
  socket: Duplex,
  code: number,
  reason: string,
  headers: [string, string][],
  body: string | Buffer,
): void {
  const buf = typeof body === 'string' ? Buffer.from(body) : body;
  const lines = [`HTTP/1.1 ${code} ${reason}`];
  for (const [k, v] of headers) lines.push(`${k}: ${v}`);
  lines.push(`Date: ${new Date().toUTCString()}`);
  lines.push(`Content-Length: ${buf.length}`);
  if (!socket.destroyed && socket.writable) {
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    socket.end(buf);
  }
}

export const REASON_PHRASES: Record<number, string> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  304: 'Not Modified',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  409: 'Conflict',
  410: 'Gone',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};
