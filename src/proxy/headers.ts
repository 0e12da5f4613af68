/**
 * Header handling, pure. kubetrail relays headers as a raw list (Node's `rawHeaders`: name, value, name,
 * value...), never as an object: order, case and duplicates (`Warning`, `Impersonate-Group`) reach the other
 * side as they were sent. Node accepts such a list wherever it takes headers (`request({ headers })`,
 * `writeHead`), so nothing here needs a cast.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import type { ResponseStart } from './events.ts';

/** A flat header list: `[name0, value0, name1, value1, ...]`, as Node's `rawHeaders`. */
export type RawHeaders = readonly string[];

/** Headers that describe one connection, not the message (RFC 9110 §7.6.1), plus the proxy's own. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
]);

export interface ForwardOptions {
  /** Keep Connection and Upgrade (an upgrade request is forwarded as one). */
  keepUpgrade: boolean;
  /** Replace Host with this (the apiserver's host), keeping the first Host's position. */
  host?: string;
  /** Headers kubetrail adds (traceparent, Audit-ID); any the client sent by the same name are dropped. */
  add?: Record<string, string> | undefined;
}

/** Copy raw headers (order, case and duplicates kept) minus hop-by-hop ones and those Connection names. */
export function forwardHeaders(raw: RawHeaders, opts: ForwardOptions): string[] {
  const drop = new Set(HOP_BY_HOP);
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]?.toLowerCase() === 'connection') {
      for (const token of (raw[i + 1] ?? '').split(',')) drop.add(token.trim().toLowerCase());
    }
  }
  if (opts.keepUpgrade) {
    drop.delete('connection');
    drop.delete('upgrade');
  }
  const added = new Set(Object.keys(opts.add ?? {}).map((k) => k.toLowerCase()));
  const out: string[] = [];
  let hostSeen = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? '';
    const lower = name.toLowerCase();
    if (drop.has(lower)) continue;
    if (lower === 'host' && opts.host !== undefined) {
      if (!hostSeen) out.push(name, opts.host);
      hostSeen = true;
      continue;
    }
    if (added.has(lower)) continue;
    out.push(name, raw[i + 1] ?? '');
  }
  if (opts.host !== undefined && !hostSeen) out.unshift('Host', opts.host);
  for (const [k, v] of Object.entries(opts.add ?? {})) out.push(k, v);
  return out;
}

/** The first value of a header (case-insensitive name), if present. */
export function header(raw: RawHeaders, name: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === name) return raw[i + 1];
  return undefined;
}

/** Every value of a header, in order. */
export function headerAll(raw: RawHeaders, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === name) out.push(raw[i + 1] ?? '');
  return out;
}

/** The size of a request head, near enough to compare with a limit: path plus every name and value. */
export function headBytes(raw: RawHeaders, path: string): number {
  let n = path.length;
  for (const h of raw) n += h.length;
  return n;
}

/**
 * Headers HTTP/2 forbids (RFC 9113 §8.2.2) that forwardHeaders leaves in (it drops the hop-by-hop ones:
 * Connection, Keep-Alive, TE, Upgrade...); Host becomes :authority.
 */
const NOT_ON_H2 = new Set(['host', 'transfer-encoding', 'http2-settings']);

/** A request head as forwardHeaders makes it for HTTP/1.1, as an HTTP/2 request head. */
export function h2RequestHeaders(raw: RawHeaders, method: string, path: string): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':method': method, ':path': path };
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] ?? '').toLowerCase();
    const value = raw[i + 1] ?? '';
    if (name === 'host') out[':authority'] = value;
    if (NOT_ON_H2.has(name)) continue;
    const prev = out[name];
    out[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [String(prev), value];
  }
  return out;
}

/** A response head as forwardHeaders makes it, without what HTTP/2 forbids (an HTTP/1.1 answer's Transfer-Encoding). */
export function h2ResponseHeaders(raw: RawHeaders): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? '';
    if (!NOT_ON_H2.has(name.toLowerCase())) out.push(name, raw[i + 1] ?? '');
  }
  return out;
}

/** An HTTP/2 head's headers as a raw list, pseudo-headers left out (for a Node without the raw list). */
export function h2RawHeaders(h: IncomingHttpHeaders): string[] {
  const out: string[] = [];
  for (const [name, value] of Object.entries(h)) {
    if (name.startsWith(':') || value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) out.push(name, String(v));
  }
  return out;
}

/** An HTTP/2 raw header list without its pseudo-headers (`:status`, `:path`...), which are not relayed. */
export function withoutPseudoHeaders(raw: RawHeaders): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? '';
    if (!name.startsWith(':')) out.push(name, raw[i + 1] ?? '');
  }
  return out;
}

/** An HTTP/1.1 response head, byte for byte as given, for a raw socket (the upgrade path). */
export function responseHead(status: number, message: string | undefined, raw: RawHeaders): string {
  let s = `HTTP/1.1 ${status} ${message ?? ''}\r\n`;
  for (let i = 0; i < raw.length; i += 2) s += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return `${s}\r\n`;
}

/** What the stages read from an answer's head (`t`: when it arrived, on performance.now()'s clock). */
export function responseFacts(t: number, status: number, raw: RawHeaders): ResponseStart {
  return {
    t,
    statusCode: status,
    contentType: header(raw, 'content-type'),
    contentEncoding: header(raw, 'content-encoding'),
    auditId: header(raw, 'audit-id'),
    flowSchemaUid: header(raw, 'x-kubernetes-pf-flowschema-uid'),
    priorityLevelUid: header(raw, 'x-kubernetes-pf-prioritylevel-uid'),
    retryAfter: header(raw, 'retry-after'),
    warnings: headerAll(raw, 'warning'),
  };
}
