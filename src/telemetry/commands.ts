/**
 * What one kubectl command did, as plain data: its requests with their stage facts. Built from stage
 * events by telemetry/spans.ts, read by the terminal report. No OpenTelemetry types here.
 */
import { programName, type CredentialRun } from '../kubeconfig/timing.ts';
import type { RbacOutcome } from '../stages/rbac.ts';
import type { RequestInfo } from '../stages/request-info.ts';
import type { Throttling } from '../stages/throttle.ts';

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
  /**
   * What the request asked to read, by its verb: `list` (a list or Table of items), `object` (a single
   * object's GET, whatever format it came back in); undefined for anything else (discovery, watches,
   * writes, subresources such as logs). See reads().
   */
  reads?: 'list' | 'object' | undefined;
  /** A resource request's namespace and object name ('' when none): kubectl's namespace check, see reads(). */
  namespace?: string | undefined;
  objectName?: string | undefined;
  watchEvents: number | undefined;
  connectMs: number | undefined;
  tlsMs: number | undefined;
  ttfbMs: number | undefined;
  transferMs: number | undefined;
  reused: boolean | undefined;
  /** The rbac stage's outcome; undefined when no answer came back. */
  rbac: RbacOutcome | undefined;
  /** A pod list's pods per lower-case phase (stages/decode). */
  podPhases?: Record<string, number>;
}

/** Pods per phase over a command's pod lists (every page), or undefined when it listed none. */
export function podPhaseTotals(requests: readonly RequestSummary[]): Record<string, number> | undefined {
  let out: Record<string, number> | undefined;
  for (const r of requests) {
    for (const [phase, n] of Object.entries(r.podPhases ?? {})) {
      out ??= {};
      out[phase] = (out[phase] ?? 0) + n;
    }
  }
  return out;
}

/**
 * Where a command's root span begins: kubectl's start (a wrapped command: kubetrail started it), the first
 * credential plugin run (start mode, a plugin ran), or the first request (start mode: no process to watch).
 */
export type TimedFrom = 'process_start' | 'credential' | 'first_request';

/** A wrapped kubectl's life, as its wrapper saw it: epoch ms, and how it ended. */
export interface KubectlLife {
  spawnedAt: number;
  exitedAt: number;
  exitCode: number;
}

/** How the command's wall time divides (ms); `ownMs` is what no request, plugin or limiter explains. */
export interface TimeDivision {
  wallMs: number;
  requestsMs: number;
  credentialMs: number;
  throttledMs: number;
  ownMs: number;
}

export interface CommandSummary {
  traceId: string;
  /** `kubectl get`, or the request's own name when kubectl sent no Kubectl-Command. */
  command: string;
  session: string | undefined;
  /** Epoch ms the root span begins (see timedFrom). */
  startedAt: number;
  /** The root span's duration: kubectl's wall time in wrap mode. */
  durationMs: number;
  requests: RequestSummary[];
  timedFrom?: TimedFrom;
  /** kubectl's exit code, in wrap mode. */
  exitCode?: number | undefined;
  credentials?: CredentialRun[];
  throttling?: Throttling;
  division?: TimeDivision;
  /** Upstream connections were shared across kubectl connections (--reuse-upstream). */
  upstreamShared?: boolean;
}

export interface CommandTotals {
  requests: number;
  discoveryRequests: number;
  discoveryMs: number;
  /** Items of the lists the command read, over every page. */
  items: number;
  /** Some list was decoded only up to the scan budget: `items` is a lower bound. */
  itemsPartial: boolean;
  /** List responses (pages) the command read. */
  pages: number;
  /** Single objects the command read (GETs by name), kept apart from lists' items. */
  objects: number;
  bytes: number;
  errors: number;
}

/** Wall time covered by a set of possibly overlapping requests (the union of their intervals). */
export function coveredMs(requests: readonly RequestSummary[]): number {
  return unionMs(requests.map((r) => [r.startedAt, r.startedAt + r.durationMs] as const));
}

/** Total length of the union of [from, to] intervals. */
export function unionMs(intervals: ReadonlyArray<readonly [number, number]>): number {
  const spans = [...intervals].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let end = -Infinity;
  for (const [s, e] of spans) {
    if (e <= end) continue;
    total += e - Math.max(s, end);
    end = e;
  }
  return total;
}

/** RequestSummary.reads from the request's path and verb. */
export function readKind(info: RequestInfo): RequestSummary['reads'] {
  if (!info.isResourceRequest) return undefined;
  if (info.verb === 'list') return 'list';
  return info.verb === 'get' && info.subresource === '' && info.name !== '' ? 'object' : undefined;
}

/**
 * What a request read, counted as the command's summary counts it: a list page's items, or one object for
 * a single object's GET whether kubectl asked for a Table (one row) or the object itself (`-o yaml`).
 * A request that failed read nothing (a NotFound, a 403), and neither does kubectl's namespace check: the
 * GET of namespace N it sends after a NotFound in N, to say which of the two is missing.
 */
export function reads(
  r: RequestSummary,
  command: readonly RequestSummary[],
): { list: number } | { object: 1 } | undefined {
  if (r.statusCode === undefined || r.statusCode < 200 || r.statusCode >= 300) return undefined;
  if (r.reads === 'list') return r.items !== undefined ? { list: r.items } : undefined;
  if (r.reads !== 'object' || namespaceCheck(r, command)) return undefined;
  return { object: 1 };
}

function namespaceCheck(r: RequestSummary, command: readonly RequestSummary[]): boolean {
  if (r.group !== '' || r.path !== `/api/v1/namespaces/${r.objectName ?? ''}`) return false;
  return command.some(
    (o) => o !== r && o.statusCode === 404 && o.namespace === r.objectName && o.startedAt <= r.startedAt,
  );
}

export function totals(requests: readonly RequestSummary[]): CommandTotals {
  const discovery = requests.filter((r) => r.discovery);
  // Discovery documents have `items` too (API groups); the command's counts are the resources it read.
  const read = requests.map((r) => [r, reads(r, requests)] as const);
  const lists = read.flatMap(([r, x]) => (x && 'list' in x ? [{ r, items: x.list }] : []));
  return {
    requests: requests.length,
    discoveryRequests: discovery.length,
    discoveryMs: Math.round(coveredMs(discovery) * 10) / 10,
    items: lists.reduce((n, l) => n + l.items, 0),
    itemsPartial: lists.some((l) => l.r.itemsPartial === true),
    pages: lists.length,
    objects: read.filter(([, x]) => x !== undefined && 'object' in x).length,
    bytes: requests.reduce((n, r) => n + r.bytes, 0),
    errors: requests.filter((r) => r.outcome !== 'complete' || (r.statusCode ?? 0) >= 400).length,
  };
}

/**
 * A root's name from a User-Agent: its program, lower-cased (`Helm/4.3.2` → `helm`; client-go's default,
 * `<program>/<version> (<os>/<arch>) kubernetes/<commit>`, → the program's file name). Never more: what
 * command a session-less client runs (`helm upgrade`) is not in its requests.
 */
export function programOf(userAgent: string | undefined): string | undefined {
  return programName(/^[^/\s]+/.exec(userAgent ?? '')?.[0] ?? '');
}
