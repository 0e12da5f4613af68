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
import { connect } from 'node:net';
import { TraceFlags, type Tracer } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';

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

export interface Tracing {
  tracer: Tracer;
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
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port });
    const done = (refused: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(refused);
    };
    const timer = setTimeout(() => done(false), 250);
    socket.once('connect', () => done(false));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED'));
  });
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
  readonly #onSettle = new Set<() => void>();
  readonly #inner: SpanExporter;
  readonly #endpoint: string;
  readonly #warn: (line: string) => void;

  constructor(inner: SpanExporter, endpoint: string, warn: (line: string) => void) {
    this.#inner = inner;
    this.#endpoint = endpoint;
    this.#warn = warn;
  }

  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.handedOver += spans.length;
    let settled = false;
    this.#inner.export(spans, (result) => {
      // An exporter answers once; count once even if one ever did not.
      if (settled) return;
      settled = true;
      if (result.code === ExportResultCode.SUCCESS) {
        this.exported += spans.length;
      } else {
        this.failed += spans.length;
        this.firstFailure ??= result.error?.message.split('\n')[0] ?? 'failed';
        if (!this.warned) {
          this.warned = true;
          this.#warn(`kubetrail: cannot export traces to ${this.#endpoint} (${this.firstFailure}); traces are dropped, kubectl is unaffected`);
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
  const env = opts.env ?? process.env;
  const disabled = /^true$/i.test(env.OTEL_SDK_DISABLED ?? '');
  const maxQueue = positiveInt(env.OTEL_BSP_MAX_QUEUE_SIZE) ?? MAX_QUEUE;
  const resource = defaultResource()
    .merge(resourceFromAttributes({ 'service.name': 'kubetrail', 'service.version': opts.version }))
    .merge(detectResources({ detectors: [envDetector] }));
  const exporter = new GuardedExporter(
    opts.exporter ?? new OTLPTraceExporter({ url: opts.endpoint, timeoutMillis: EXPORT_TIMEOUT_MS }),
    opts.endpoint,
    opts.warn,
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
      if (passedOn - exporter.handedOver >= maxQueue) {
        queueFull++;
        return;
      }
      passedOn++;
      processor.onEnd(span);
    },
    shutdown: () => processor.shutdown(),
    forceFlush: () => processor.forceFlush(),
  };
  const provider = new BasicTracerProvider({ resource, spanProcessors: disabled ? [] : [gate] });
  const drops = (): DropCounts => ({
    ended,
    exported: exporter.exported,
    queueFull,
    exportFailed: exporter.failed,
    unsent: Math.max(0, passedOn - exporter.exported - exporter.failed),
    maxQueue,
  });
  const dropped = (): number => ended - exporter.exported;
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
    const collector = collectorFailed ? `cannot export traces to ${opts.endpoint} (${exporter.firstFailure ?? 'no answer'}): ` : '';
    exporter.warned = true;
    opts.warn(`kubetrail: ${collector}${total} of ${d.ended} spans were dropped (${why.join(', ')}); kubectl was unaffected`);
  };
  return {
    tracer: provider.getTracer('kubetrail', opts.version),
    dropped,
    drops,
    async shutdown(timeoutMs = EXPORT_TIMEOUT_MS) {
      // A collector that refuses connections makes the exporter retry with a ~1 s backoff. When nothing
      // was ever exported, check first (a loopback connect answers in microseconds) and do not wait for it.
      if (!disabled && exporter.exported === 0 && (await refusesConnections(opts.endpoint))) {
        timeoutMs = 0;
        exporter.firstFailure ??= 'connection refused';
        if (!exporter.warned) {
          exporter.warned = true;
          opts.warn(`kubetrail: cannot export traces to ${opts.endpoint} (connection refused); traces are dropped, kubectl is unaffected`);
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
      if (!disabled) report();
    },
  };
}
