/**
 * In-process micro-benchmark of the observer side of a workload-2 request: the span observer fed the
 * events of a 10-pod list (decode result included), and the OTLP serialization of the spans it ends,
 * JSON (what kubetrail sends) and protobuf (for comparison). µs per request, median of runs.
 *
 *   npx node bench/lib/cpu-spans.ts [--n 20000] [--runs 7]
 */
import { parseArgs } from 'node:util';
import { JsonTraceSerializer, ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { ExportResultCode } from '@opentelemetry/core';
import type { RequestStart } from '../../src/proxy/events.ts';
import { createDecoder } from '../../src/stages/decode/index.ts';
import { parseRequestInfo } from '../../src/stages/request-info.ts';
import { startTracing } from '../../src/telemetry/sdk.ts';
import { createSpanObserver } from '../../src/telemetry/spans.ts';
import { podObject } from './pods.ts';
import { median } from './stats.ts';

const { values: args } = parseArgs({
  options: { n: { type: 'string', default: '20000' }, runs: { type: 'string', default: '7' } },
});
const N = Number(args.n);
const RUNS = Number(args.runs);

const parts: Buffer[] = [
  Buffer.from('{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"200010"},"items":['),
];
for (let i = 0; i < 10; i++)
  parts.push(Buffer.from((i === 0 ? '' : ',') + JSON.stringify(podObject(`pod-${i}`, 'default', i))));
parts.push(Buffer.from(']}\n'));
const body = Buffer.concat(parts);
const d = createDecoder({
  contentType: 'application/json',
  contentEncoding: undefined,
  statusCode: 200,
  isWatch: false,
});
d.write(body);
const decode = d.end();

const collected: ReadableSpan[] = [];
const sink: SpanExporter = {
  export(spans, done) {
    for (const s of spans) if (collected.length < 5200) collected.push(s);
    done({ code: ExportResultCode.SUCCESS });
  },
  shutdown: () => Promise.resolve(),
};

const tracing = startTracing({
  endpoint: 'http://127.0.0.1:1/v1/traces',
  version: 'bench',
  warn: () => undefined,
  env: {},
  exporter: sink,
});
const obs = createSpanObserver({ tracer: tracing.tracer, idleMs: 30_000 });
let seq = 0;
let session = '';
function one(): void {
  const id = `r${++seq}`;
  if (seq % 10 === 1) session = `s-${seq}`;
  const t0 = performance.now();
  const start: RequestStart = {
    id,
    startedAt: Date.now(),
    t0,
    method: 'GET',
    path: '/api/v1/namespaces/default/pods',
    query: '',
    // Parsed by the proxy for every request (exchange.ts): part of the per-request cost measured here.
    info: parseRequestInfo('GET', '/api/v1/namespaces/default/pods', ''),
    cluster: 'standin',
    upstream: { host: '127.0.0.1', port: 40000 },
    upgrade: false,
    userAgent: 'kubectl/v1.33.0 (linux/amd64) kubernetes/bench',
    kubectlCommand: 'kubectl get',
    kubectlSession: session,
    commandTag: undefined,
    clientAuditId: undefined,
    auth: { 'auth.method': 'client_cert', 'auth.user': 'bench-admin', 'auth.groups': ['system:masters'] },
    insecure: false,
  };
  obs.onRequestStart(start);
  obs.onUpstreamConnected(id, { t: t0 + 0.01, reused: true });
  obs.onResponseStart(id, {
    t: t0 + 0.2,
    statusCode: 200,
    contentType: 'application/json',
    contentEncoding: undefined,
    auditId: 'a1b2c3d4-0000-4000-8000-000000000000',
    flowSchemaUid: 'fs-uid',
    priorityLevelUid: 'pl-uid',
    retryAfter: undefined,
    warnings: [],
  });
  obs.onRequestEnd(id, {
    t: t0 + 0.5,
    outcome: 'complete',
    bytesDown: body.length,
    bytesUp: 0,
    requestSent: t0 + 0.02,
    decode,
  });
}

const observe: number[] = [];
for (let r = 0; r < RUNS + 2; r++) {
  const t = performance.now();
  for (let i = 0; i < N; i++) one();
  if (r >= 2) observe.push(((performance.now() - t) * 1000) / N);
}
obs.finishAll();
await tracing.shutdown(100);
const spansPerReq = collected.length > 0 ? 5 : 0;
const batch = collected.slice(0, 512);
const ser = (f: (s: ReadableSpan[]) => Uint8Array | undefined): { us: number; bytes: number } => {
  const us: number[] = [];
  let bytes = 0;
  for (let r = 0; r < RUNS + 2; r++) {
    const t = performance.now();
    for (let k = 0; k < 50; k++) bytes = f(batch)?.length ?? 0;
    if (r >= 2) us.push(((performance.now() - t) * 1000) / 50 / (batch.length / spansPerReq));
  }
  return { us: median(us), bytes: (bytes / batch.length) * spansPerReq };
};
const json = ser((s) => JsonTraceSerializer.serializeRequest(s));
const proto = ser((s) => ProtobufTraceSerializer.serializeRequest(s));
process.stdout.write(
  `observer (spans built, handed to the batch processor): ${median(observe).toFixed(1)} µs/request\n`,
);
process.stdout.write(
  `OTLP JSON serialization:     ${json.us.toFixed(1)} µs/request, ${json.bytes.toFixed(0)} B/request\n`,
);
process.stdout.write(
  `OTLP protobuf serialization: ${proto.us.toFixed(1)} µs/request, ${proto.bytes.toFixed(0)} B/request\n`,
);
