/**
 * What the telemetry hands the reports (src/telemetry/commands.ts), for unit tests of the waterfall and
 * the findings. The factory fills a plain, allowed `list pods`; a test overrides only the facts it is about.
 */
import type { RequestSummary } from '../../src/telemetry/commands.ts';

let seq = 0;

export function requestSummary(over: Partial<RequestSummary> = {}): RequestSummary {
  seq++;
  return {
    id: `q${seq}`,
    name: 'list pods',
    method: 'GET',
    path: '/api/v1/pods',
    cluster: 'c',
    discovery: false,
    startedAt: 1_000,
    durationMs: 10,
    statusCode: 200,
    outcome: 'complete',
    errorCode: undefined,
    bytes: 2048,
    items: undefined,
    page: false,
    watchEvents: undefined,
    connectMs: undefined,
    tlsMs: undefined,
    ttfbMs: undefined,
    transferMs: undefined,
    reused: true,
    rbac: { decision: 'allowed' },
    reads: (over.name ?? 'list pods').startsWith('list ') ? 'list' : undefined,
    ...over,
  };
}
