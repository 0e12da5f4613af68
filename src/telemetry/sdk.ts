/**
 * The OpenTelemetry SDK, set up for a proxy that must never slow traffic: a batch processor with a bounded
 * queue (spans beyond it are dropped and counted), an OTLP/HTTP exporter with a 2 s timeout, export
 * failures reported once, and shutdown raced against a timer.
 *
 * Why not @opentelemetry/sdk-node: importing it costs ~400 ms (measured on our machines; it loads every
 * exporter and instrumentation) on every wrapped kubectl command, three times a warm `kubectl get pods`.
 * sdk-trace-base + exporter-trace-otlp-http cost ~90 ms and honour the same OTEL_* variables
 * (OTEL_TRACES_SAMPLER[_ARG], OTEL_BSP_*, OTEL_EXPORTER_OTLP_[TRACES_]HEADERS/TIMEOUT); the resource
 * detector reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; OTEL_SDK_DISABLED turns export off.
 */
import { TraceFlags, type Tracer } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { socketHost } from '../net/host.ts';
import { tcpProbe } from '../net/tcp-probe.ts';
import { redactUrl, redactUserinfo } from '../redact.ts';

export const EXPORT_TIMEOUT_MS = 2000;
/** Spans waiting for export, at most (OTEL_BSP_MAX_QUEUE_SIZE overrides); beyond it they are dropped. */
export const MAX_QUEUE = 4096;

export interface DropCounts {
  /** Sampled spans that ended. */
  ended: number;
  exported: number;
  /** Refused at the door: the queue held `maxQueue` spans already. */
  queueFull: number;
  /** In a batch the collector refused, failed or did not answer in time. */
  exportFailed: number;
  /** Still queued or in flight when shutdown gave up waiting. */
  unsent: number;
  maxQueue: number;
}

/**
 * What became of one trace's spans: all handed to the collector, some dropped (`why`), or still on their
 * way. `pending` with the collector failing (its last export failed) is reported as dropped.
 */
export type TraceFate = { state: 'sent' } | { state: 'dropped'; why: string } | { state: 'pending' };

/** Traces whose fate is remembered (the last ones ended); older ones are forgotten. */
const TRACES_KEPT = 256;
/** At shutdown, how long the local trace store may take to write what it holds. */
const STORE_FLUSH_MS = 1000;
/** While the collector fails, how long traceFate() waits for a trace's own export at most. */
const FAILING_RECHECK_MS = 150;

export interface Tracing {
  tracer: Tracer;
  /**
   * The fate of a trace's spans, waiting at most `waitMs` for it to settle: not at all while the collector
   * is known to work (`pending` then means on its way), at most FAILING_RECHECK_MS while it fails (then
   * `dropped`), up to `waitMs` before any export has answered.
   */
  traceFate(traceId: string, waitMs?: number): Promise<TraceFate>;
  /** Spans ended but not exported (queue full, export failed, or not yet flushed): exact after shutdown. */
  dropped(): number;
  /** The same, by cause. */
  drops(): DropCounts;
  /**
   * Flush and stop, waiting at most `timeoutMs`; then report dropped spans, if any, in one `warn` line (once,
   * however often it is called). Never throws.
   */
  shutdown(timeoutMs?: number): Promise<void>;
}

export interface TracingOptions {
  endpoint: string;
  env?: NodeJS.ProcessEnv;
  version: string;
  /**
   * Called at most twice: for the first failed export while running (a collector that is down, hung or
   * failing), and at shutdown with the number of spans dropped, when any were.
   */
  warn: (line: string) => void;
  /** Replaces the OTLP/HTTP exporter (benchmarks); the batch processor, the gate and the counts stay. */
  exporter?: SpanExporter;
  /** Also keep each finished trace here (the local trace store, telemetry/trace-store.ts). */
  store?: SpanProcessor;
}

/** True only when the endpoint's host actively refuses a TCP connection (within 250 ms). */
export function refusesConnections(endpoint: string): Promise<boolean> {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return Promise.resolve(false);
  }
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  return tcpProbe(socketHost(url.hostname), port, 250).then((r) => r === 'refused');
}

/** Counts what the batch processor hands over and what comes back, and reports the first failure. */
class GuardedExporter implements SpanExporter {
  /** The first failure has been reported (or must no longer be: the shutdown summary said it). */
  warned = false;
  /** Why the first export failed, once one has. */
  firstFailure: string | undefined;
  handedOver = 0;
  exported = 0;
  failed = 0;
  /** Why the last export failed, until one succeeds: the collector is failing now. */
  failing: string | undefined;
  /** Some export has answered, either way. */
  answered = false;
  readonly #onSettle = new Set<() => void>();
  readonly #inner: SpanExporter;
  readonly #endpoint: string;
  readonly #warn: (line: string) => void;
  readonly #account: (spans: readonly ReadableSpan[], ok: boolean) => void;

  constructor(
    inner: SpanExporter,
    endpoint: string,
    warn: (line: string) => void,
    account: (spans: readonly ReadableSpan[], ok: boolean) => void,
  ) {
    this.#inner = inner;
    this.#endpoint = redactUrl(endpoint);
    this.#warn = warn;
    this.#account = account;
  }

  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.handedOver += spans.length;
    let settled = false;
    this.#inner.export(spans, (result) => {
      // An exporter answers once; count once even if one ever did not.
      if (settled) return;
      settled = true;
      this.answered = true;
      const ok = result.code === ExportResultCode.SUCCESS;
      this.failing = ok ? undefined : redactUserinfo(result.error?.message.split('\n')[0] ?? 'failed');
      this.#account(spans, ok);
      if (ok) {
        this.exported += spans.length;
      } else {
        this.failed += spans.length;
        this.firstFailure ??= this.failing;
        if (!this.warned) {
          this.warned = true;
          this.#warn(
            `kubetrail: cannot export traces to ${this.#endpoint} (${this.firstFailure}); traces are dropped, kubectl is unaffected`,
          );
        }
      }
      for (const fn of this.#onSettle) fn();
      done(result);
    });
  }

  /** Resolves once every span handed over so far has been exported or has failed. */
  settled(): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.exported + this.failed < this.handedOver) return;
        this.#onSettle.delete(check);
        resolve();
      };
      this.#onSettle.add(check);
      check();
    });
  }

  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }
}

function positiveInt(value: string | undefined): number | undefined {
  const n = Number(value);
  return value !== undefined && value.trim() !== '' && Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

export function startTracing(opts: TracingOptions): Tracing {
  // Named in warnings and notes: never with its userinfo (the exporter still sends it).
  const shownEndpoint = redactUrl(opts.endpoint);
  const env = opts.env ?? process.env;
  const disabled = /^true$/i.test(env.OTEL_SDK_DISABLED ?? '');
  const maxQueue = positiveInt(env.OTEL_BSP_MAX_QUEUE_SIZE) ?? MAX_QUEUE;
  const resource = defaultResource()
    .merge(resourceFromAttributes({ 'service.name': 'kubetrail', 'service.version': opts.version }))
    .merge(detectResources({ detectors: [envDetector] }));
  // Per trace: spans ended, exported, and dropped (queue full or export failed), for traceFate().
  const traces = new Map<string, { ended: number; exported: number; dropped: number; why?: string }>();
  const traceOf = (id: string): { ended: number; exported: number; dropped: number; why?: string } => {
    let t = traces.get(id);
    if (!t) {
      if (traces.size >= TRACES_KEPT) traces.delete(traces.keys().next().value as string);
      t = { ended: 0, exported: 0, dropped: 0 };
      traces.set(id, t);
    }
    return t;
  };
  const exporter = new GuardedExporter(
    opts.exporter ?? new OTLPTraceExporter({ url: opts.endpoint, timeoutMillis: EXPORT_TIMEOUT_MS }),
    opts.endpoint,
    opts.warn,
    (spans, ok) => {
      for (const span of spans) {
        const t = traces.get(span.spanContext().traceId);
        if (!t) continue;
        if (ok) t.exported++;
        else {
          t.dropped++;
          t.why ??= `cannot export to ${shownEndpoint} (${exporter.failing ?? 'failed'})`;
        }
      }
    },
  );
  const processor = new BatchSpanProcessor(exporter, {
    maxQueueSize: maxQueue,
    // Explicit values override the processor's own OTEL_BSP_* fallbacks, so read them here.
    maxExportBatchSize: Math.min(positiveInt(env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE) ?? 512, maxQueue),
    scheduledDelayMillis: positiveInt(env.OTEL_BSP_SCHEDULE_DELAY) ?? 500,
    exportTimeoutMillis: positiveInt(env.OTEL_BSP_EXPORT_TIMEOUT) ?? EXPORT_TIMEOUT_MS,
  });
  // The batch processor drops spans beyond its queue without saying how many. This gate in front of it keeps
  // the same bound and counts: a span is queued from the moment it is passed on until the processor hands
  // it to the exporter, so the gate's count is never below the processor's queue, and the processor never
  // drops a span itself. A dropped span is not referenced anywhere: memory stays bounded by the queue.
  let ended = 0;
  let passedOn = 0;
  let queueFull = 0;
  let shutdownStarted = false;
  const gate: SpanProcessor = {
    onStart: (span, ctx) => processor.onStart(span, ctx),
    onEnd: (span) => {
      if (shutdownStarted || (span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
      ended++;
      const t = traceOf(span.spanContext().traceId);
      t.ended++;
      if (passedOn - exporter.handedOver >= maxQueue) {
        queueFull++;
        t.dropped++;
        t.why ??= `over the ${maxQueue}-span export queue`;
        return;
      }
      passedOn++;
      processor.onEnd(span);
    },
    shutdown: () => processor.shutdown(),
    forceFlush: () => processor.forceFlush(),
  };
  const provider = new BasicTracerProvider({
    resource,
    spanProcessors: disabled ? [] : opts.store ? [gate, opts.store] : [gate],
  });
  const drops = (): DropCounts => ({
    ended,
    exported: exporter.exported,
    queueFull,
    exportFailed: exporter.failed,
    unsent: Math.max(0, passedOn - exporter.exported - exporter.failed),
    maxQueue,
  });
  const dropped = (): number => ended - exporter.exported;
  // Known before any export fails: a collector that refuses connections (a loopback connect answers at
  // once). Until an export answers, this is what traceFate() knows of the collector.
  let refused = false;
  if (!disabled) void refusesConnections(opts.endpoint).then((r) => (refused = r && !exporter.answered));
  let finished = false;
  /** The trace's fate when it is settled: every span exported, or one dropped, or kubetrail gave up. */
  const settledFate = (traceId: string): TraceFate | undefined => {
    const t = traces.get(traceId);
    if (!t || t.ended === 0) return { state: 'sent' };
    if (t.dropped > 0) return { state: 'dropped', why: t.why ?? 'dropped' };
    if (t.exported >= t.ended) return { state: 'sent' };
    if (finished) return { state: 'dropped', why: `still unsent when kubetrail stopped waiting for ${shownEndpoint}` };
    return undefined;
  };
  const failingNow = (): string | undefined =>
    exporter.failing ?? (refused && !exporter.answered ? 'connection refused' : undefined);
  let reported = false;
  const report = (): void => {
    if (reported) return;
    reported = true;
    const d = drops();
    const total = d.queueFull + d.exportFailed + d.unsent;
    if (total === 0) return;
    const why: string[] = [];
    if (d.queueFull > 0) why.push(`${d.queueFull} over the ${d.maxQueue}-span queue limit`);
    if (d.exportFailed > 0) why.push(`${d.exportFailed} not accepted by the collector`);
    if (d.unsent > 0) why.push(`${d.unsent} still unsent when kubetrail stopped waiting`);
    // Name the collector here when it failed and that has not been reported yet (it failed during this
    // shutdown, or never answered at all); either way no export warning follows this line.
    const collectorFailed = d.exportFailed + d.unsent > 0 && !exporter.warned;
    const collector = collectorFailed
      ? `cannot export traces to ${shownEndpoint} (${exporter.firstFailure ?? 'no answer'}): `
      : '';
    exporter.warned = true;
    opts.warn(
      `kubetrail: ${collector}${total} of ${d.ended} spans were dropped (${why.join(', ')}); kubectl was unaffected`,
    );
  };
  return {
    tracer: provider.getTracer('kubetrail', opts.version),
    dropped,
    drops,
    async traceFate(traceId, waitMs = 0) {
      const from = performance.now();
      // Whether a failing collector still refuses connections, asked once (see below).
      let probe: Promise<boolean> | undefined;
      let stillRefused: boolean | undefined;
      for (;;) {
        const fate = settledFate(traceId);
        if (fate) return fate;
        const failing = failingNow();
        // A collector known to work: the spans are on their way, nothing to wait for.
        if (exporter.answered && failing === undefined) return { state: 'pending' };
        // A failing collector may be back: its batch goes out within a moment, and a failure answers fast.
        const budget = failing !== undefined ? Math.min(waitMs, FAILING_RECHECK_MS) : waitMs;
        if (performance.now() - from >= budget || stillRefused === true)
          return failing !== undefined
            ? { state: 'dropped', why: `cannot export to ${shownEndpoint} (${failing})` }
            : { state: 'pending' };
        // Unless it still refuses connections (a loopback connect answers at once): then this trace's batch
        // will be refused too, and waiting for it would hold the wrapped command's exit for nothing (~150 ms
        // per command, measured on workload 5 with the collector down).
        if (failing !== undefined) probe ??= refusesConnections(opts.endpoint).then((r) => (stillRefused = r));
        const tick = new Promise((r) => setTimeout(r, 10));
        await (probe !== undefined && stillRefused === undefined ? Promise.race([tick, probe]) : tick);
      }
    },
    async shutdown(timeoutMs = EXPORT_TIMEOUT_MS) {
      // A collector that refuses connections makes the exporter retry with a ~1 s backoff. When nothing
      // was ever exported, check first (a loopback connect answers in microseconds) and do not wait for it.
      if (!disabled && exporter.exported === 0 && (await refusesConnections(opts.endpoint))) {
        timeoutMs = 0;
        refused = true;
        exporter.firstFailure ??= 'connection refused';
        if (!exporter.warned) {
          exporter.warned = true;
          opts.warn(
            `kubetrail: cannot export traces to ${shownEndpoint} (connection refused); traces are dropped, kubectl is unaffected`,
          );
        }
      }
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        timer.unref();
      });
      // Shutdown settles at the first failed batch; wait for the others too (each ends within the export
      // timeout), so every span is counted as exported, refused or unsent, never twice.
      const flushed = provider
        .shutdown()
        .catch(() => undefined)
        .then(() => exporter.settled());
      shutdownStarted = true;
      await Promise.race([flushed, deadline]);
      clearTimeout(timer);
      finished = true;
      // The local store writes to the state dir, whatever the collector does: wait for it apart (bounded).
      if (opts.store && !disabled)
        await Promise.race([opts.store.forceFlush(), new Promise((r) => setTimeout(r, STORE_FLUSH_MS).unref())]);
      if (!disabled) report();
    },
  };
}
