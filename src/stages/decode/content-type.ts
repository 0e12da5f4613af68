import type { DecodeFormat, DecodeInput } from './types.ts';

/** Parameters kept in `decode.content_type`: low-cardinality and meaningful for Kubernetes. */
const KEPT_PARAMS = new Set(['as', 'g', 'v', 'stream']);

export interface MediaType {
  /** Lower-cased `type/subtype`, '' when the header is missing or unparsable. */
  type: string;
  /** Lower-cased parameter names with their values (quotes removed), in header order. */
  params: [string, string][];
}

export function parseMediaType(header: string | undefined): MediaType {
  if (header === undefined) return { type: '', params: [] };
  const parts = header.split(';');
  const type = (parts[0] ?? '').trim().toLowerCase();
  const params: [string, string][] = [];
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i] ?? '';
    const eq = p.indexOf('=');
    if (eq < 0) continue;
    const name = p.slice(0, eq).trim().toLowerCase();
    let value = p.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (name !== '') params.push([name, value]);
  }
  return { type: /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/.test(type) ? type : '', params };
}

/**
 * The attribute form: `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`,
 * `application/vnd.kubernetes.protobuf;stream=watch`, `text/plain` (charset dropped).
 */
export function normalizeContentType(mt: MediaType): string | undefined {
  if (mt.type === '') return undefined;
  let out = mt.type;
  for (const [name, value] of mt.params) {
    if (KEPT_PARAMS.has(name)) out += `;${name}=${value}`;
  }
  return out;
}

function param(mt: MediaType, name: string): string | undefined {
  for (const [n, v] of mt.params) if (n === name) return v;
  return undefined;
}

/** Which reader a body gets, from its headers alone (the apiserver's Content-Type is authoritative). */
export function selectFormat(mt: MediaType, input: Pick<DecodeInput, 'isWatch' | 'statusCode'>): DecodeFormat {
  // A watch that failed before streaming (401/403/410/...) answers with one Status document.
  const streaming =
    (input.isWatch && input.statusCode >= 200 && input.statusCode < 300) || param(mt, 'stream') === 'watch';
  const t = mt.type;
  if (t === 'application/json' || (t.startsWith('application/') && t.endsWith('+json'))) {
    return streaming ? 'json-watch' : 'json';
  }
  if (t === 'application/vnd.kubernetes.protobuf') return streaming ? 'protobuf-watch' : 'protobuf';
  if (t === 'text/plain') return 'text';
  return 'opaque';
}

export type ContentCoding = 'identity' | 'gzip' | 'deflate' | 'unsupported';

export function parseContentEncoding(header: string | undefined): { coding: ContentCoding; normalized?: string } {
  if (header === undefined) return { coding: 'identity' };
  const normalized = header.trim().toLowerCase();
  if (normalized === '' || normalized === 'identity') return { coding: 'identity' };
  if (normalized === 'gzip' || normalized === 'x-gzip') return { coding: 'gzip', normalized };
  if (normalized === 'deflate') return { coding: 'deflate', normalized };
  return { coding: 'unsupported', normalized };
}
