/**
 * `kubetrail show <trace-id | last> [--json]`: a trace as a tree of spans on stdout, from Jaeger's query
 * API (kubetrail's spans, the apiserver's and etcd's: GET /api/v3/traces/<id>, OTLP JSON) or, when that
 * Jaeger cannot be reached or does not have the trace, from the local store of the last commands' traces
 * (kubetrail's spans only). `last` is the newest trace in the local store. `--json` prints the trace as
 * OTLP JSON instead, for a bug report. Where it came from goes to stderr.
 */
import type { Config } from '../config/schema.ts';
import { describeError, KtError } from '../errors.ts';
import { renderTraceTree, treeSpans, type OtlpTrace } from '../report/trace-tree.ts';
import { lastStoredTrace, readStoredTrace, traceStoreDir } from '../telemetry/trace-store.ts';
import { errLine, outLine } from './output.ts';

const JAEGER_TIMEOUT_MS = 3000;

type Fetched = { trace: OtlpTrace } | { missing: string };

/** The trace from Jaeger's API v3, or why not. */
async function fromJaeger(jaegerUrl: string, traceId: string): Promise<Fetched> {
  const url = `${jaegerUrl.replace(/\/$/, '')}/api/v3/traces/${traceId}`;
  try {
    const res = await fetch(url, {
      signal: AbortSignal.timeout(JAEGER_TIMEOUT_MS),
      headers: { accept: 'application/json' },
    });
    const text = await res.text();
    if (res.status === 404) return { missing: `Jaeger at ${jaegerUrl} does not have it` };
    if (!res.ok) return { missing: `Jaeger at ${jaegerUrl} answered ${res.status}` };
    const body = JSON.parse(text) as { result?: OtlpTrace };
    if (!body.result?.resourceSpans?.length) return { missing: `Jaeger at ${jaegerUrl} does not have it` };
    return { trace: body.result };
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    return { missing: `Jaeger at ${jaegerUrl} cannot be reached (${describeError(cause ?? err)})` };
  }
}

export async function runShow(config: Config, target: string, opts: { json: boolean }): Promise<number> {
  const dir = traceStoreDir(config.stateDir);
  const traceId = target === 'last' ? lastStoredTrace(dir) : target.toLowerCase();
  if (traceId === undefined)
    throw new KtError('KT_ERR_USAGE', `show last: no trace kept in ${dir} yet; run a command through kubetrail first`);
  if (!/^[0-9a-f]{32}$/.test(traceId))
    throw new KtError('KT_ERR_USAGE', `show ${target}: not a trace id (32 hex digits) or "last"`);

  const jaeger = await fromJaeger(config.jaegerUrl, traceId);
  let trace: OtlpTrace;
  let source: string;
  if ('trace' in jaeger) {
    trace = jaeger.trace;
    source = `from Jaeger at ${config.jaegerUrl}`;
  } else {
    const stored = readStoredTrace(dir, traceId);
    if (stored === undefined)
      throw new KtError('KT_ERR_USAGE', `show ${traceId}: not found: ${jaeger.missing}, and ${dir} does not keep it`);
    try {
      trace = JSON.parse(stored) as OtlpTrace;
    } catch (err) {
      throw new KtError(
        'KT_ERR_STATE_DIR',
        `show ${traceId}: ${dir}/${traceId}.json is not JSON: ${describeError(err)}`,
        { cause: err },
      );
    }
    source = `from the local store (kubetrail's spans only; ${jaeger.missing})`;
  }
  errLine(`kubetrail: trace ${traceId} ${source}`);
  if (opts.json) outLine(JSON.stringify(trace));
  else for (const line of renderTraceTree(treeSpans(trace))) outLine(line);
  return 0;
}
