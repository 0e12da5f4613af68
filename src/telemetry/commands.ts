/**
 * What one kubectl command did, as plain data: its requests with their stage facts. Built from stage
 * events by telemetry/spans.ts, read by the terminal report. No OpenTelemetry types here.
 */
import type { Attributes } from '../stages/attributes.ts';

export interface RequestSummary {
  id: string;
  /** Span name: `list pods`, `GET /api`. */
  name: string;
  method: string;
  path: string;
  /** API group of a resource request ('' for the core group); undefined otherwise. */
  group?: string | undefined;
  cluster: string;
  discovery: boolean;
  /** Epoch ms. */
  startedAt: number;
  durationMs: number;
  statusCode: number | undefined;
  outcome: string;
  errorCode: string | undefined;
  bytes: number;
  items: number | undefined;
  /** The body was decoded only up to the scan budget: `items` is a lower bound. */
  itemsPartial?: boolean;
  /** Continue page of a list: it carried a continue token. */
  page: boolean;
  watchEvents: number | undefined;
  connectMs: number | undefined;
  tlsMs: number | undefined;
  ttfbMs: number | undefined;
  transferMs: number | undefined;
  reused: boolean | undefined;
  rbac: Attributes;
}

export interface CommandSummary {
  traceId: string;
  /** `kubectl get`, or the request's own name when kubectl sent no Kubectl-Command. */
  command: string;
  session: string | undefined;
  startedAt: number;
  durationMs: number;
  requests: RequestSummary[];
}

export interface CommandTotals {
  requests: number;
  discoveryRequests: number;
  discoveryMs: number;
  items: number;
  /** Some response was decoded only up to the scan budget: `items` is a lower bound. */
  itemsPartial: boolean;
  pages: number;
  bytes: number;
  errors: number;
}

/** Wall time covered by a set of possibly overlapping requests (the union of their intervals). */
export function coveredMs(requests: readonly RequestSummary[]): number {
  const spans = requests.map((r) => [r.startedAt, r.startedAt + r.durationMs] as const).sort((a, b) => a[0] - b[0]);
  let total = 0;
  let end = -Infinity;
  for (const [s, e] of spans) {
    if (e <= end) continue;
    total += e - Math.max(s, end);
    end = e;
  }
  return total;
}

export function totals(requests: readonly RequestSummary[]): CommandTotals {
  const discovery = requests.filter((r) => r.discovery);
  const resources = requests.filter((r) => !r.discovery);
  return {
    requests: requests.length,
    discoveryRequests: discovery.length,
    discoveryMs: Math.round(coveredMs(discovery) * 10) / 10,
    // Discovery documents have `items` too (API groups); the command's items are the resources it read.
    items: resources.reduce((n, r) => n + (r.items ?? 0), 0),
    itemsPartial: resources.some((r) => r.itemsPartial === true),
    pages: resources.filter((r) => r.items !== undefined).length,
    bytes: requests.reduce((n, r) => n + r.bytes, 0),
    errors: requests.filter((r) => r.outcome !== 'complete' || (r.statusCode ?? 0) >= 400).length,
  };
}
