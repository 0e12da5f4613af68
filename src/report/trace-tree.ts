/**
 * A trace as a tree of spans, one line each: `name [service] duration`, children indented under their
 * parent in start order (the README's tour draws the same). Input is OTLP JSON, as kubetrail exports it
 * and as Jaeger's /api/v3/traces answers; ids may be hex (the JS exporter) or base64 (the spec's JSON
 * mapping). Pure: text in, lines out.
 */
import { fmtMs } from './format.ts';

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
}

interface OtlpSpan {
  traceId?: string;
  spanId?: string;
  parentSpanId?: string;
  name?: string;
  startTimeUnixNano?: string | number;
  endTimeUnixNano?: string | number;
  attributes?: { key: string; value?: OtlpValue }[];
}

export interface OtlpTrace {
  resourceSpans?: {
    resource?: { attributes?: { key: string; value?: OtlpValue }[] };
    scopeSpans?: { spans?: OtlpSpan[] }[];
  }[];
}

export interface TreeSpan {
  id: string;
  parent: string | undefined;
  traceId: string;
  name: string;
  service: string;
  startNs: bigint;
  durationMs: number;
  status: number | undefined;
}

function hex(id: string | undefined): string {
  if (!id) return '';
  return /^[0-9a-f]+$/i.test(id) && (id.length === 16 || id.length === 32)
    ? id.toLowerCase()
    : Buffer.from(id, 'base64').toString('hex');
}

function scalar(v: OtlpValue | undefined): string | number | boolean | undefined {
  if (!v) return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  return v.doubleValue ?? v.boolValue;
}

function nanos(v: string | number | undefined): bigint {
  try {
    return BigInt(v ?? 0);
  } catch {
    return 0n;
  }
}

/** The spans of an OTLP JSON payload, flat. */
export function treeSpans(trace: OtlpTrace): TreeSpan[] {
  const out: TreeSpan[] = [];
  for (const rs of trace.resourceSpans ?? []) {
    const service = String(scalar(rs.resource?.attributes?.find((a) => a.key === 'service.name')?.value) ?? '?');
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        const start = nanos(s.startTimeUnixNano);
        const status = scalar(s.attributes?.find((a) => a.key === 'http.response.status_code')?.value);
        out.push({
          id: hex(s.spanId),
          parent: s.parentSpanId ? hex(s.parentSpanId) : undefined,
          traceId: hex(s.traceId),
          name: s.name ?? '?',
          service,
          startNs: start,
          durationMs: Number(nanos(s.endTimeUnixNano) - start) / 1e6,
          status: typeof status === 'number' ? status : undefined,
        });
      }
    }
  }
  return out;
}

/**
 * The tree's lines. A span whose parent is not in the trace (the apiserver links to kubetrail's span
 * rather than being its child, for most users) starts a tree of its own, after the root's.
 */
export function renderTraceTree(spans: readonly TreeSpan[]): string[] {
  const ids = new Set(spans.map((s) => s.id));
  const children = new Map<string | undefined, TreeSpan[]>();
  for (const s of spans) {
    const parent = s.parent !== undefined && ids.has(s.parent) ? s.parent : undefined;
    children.set(parent, [...(children.get(parent) ?? []), s]);
  }
  for (const list of children.values())
    list.sort((a, b) => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0));
  const lines: string[] = [];
  const seen = new Set<string>();
  const walk = (s: TreeSpan, depth: number): void => {
    // A span id twice (a malformed payload) must not loop.
    if (seen.has(s.id)) return;
    seen.add(s.id);
    lines.push(
      `${'  '.repeat(depth)}${s.name} [${s.service}] ${fmtMs(s.durationMs)}${s.status !== undefined ? ` ${s.status}` : ''}`,
    );
    for (const c of children.get(s.id) ?? []) walk(c, depth + 1);
  };
  for (const top of children.get(undefined) ?? []) walk(top, 0);
  return lines;
}
