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
import type { Tracer } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, type ReadableSpan, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';

export const EXPORT_TIMEOUT_MS = 2000;
export const MAX_QUEUE = 4096;

export interface Tracing {
  tracer: Tracer;
  /** Spans ended but not exported (queue full, export failed, or not yet flushed): exact after shutdown. */
  dropped(): number;
  /** Flush and stop, waiting at most `timeoutMs`. Never throws. */
  shutdown(timeoutMs?: number): Promise<void>;
}

export interface TracingOptions {
  endpoint: string;
  env?: NodeJS.ProcessEnv;
  version: string;
  /** Called at most once, for the first failed export. */
  warn: (line: string) => void;
}

/** Counts failures and reports the first one, without the exporter's own (possibly long) error text. */
class GuardedExporter implements SpanExporter {
  #warned = false;
  #exported = 0;
  readonly #inner: SpanExporter;
  readonly #endpoint: string;
  readonly #warn: (line: string) => void;

  constructor(inner: SpanExporter, endpoint: string, warn: (line: string) => void) {
    this.#inner = inner;
    this.#endpoint = endpoint;
    this.#warn = warn;
  }

  get exported(): number {
    return this.#exported;
  }

  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.#inner.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) {
        this.#exported += spans.length;
      } else {
        if (!this.#warned) {
          this.#warned = true;
          const why = result.error?.message.split('\n')[0] ?? 'failed';
          this.#warn(`kubetrail: cannot export traces to ${this.#endpoint} (${why}); traces are dropped, kubectl is unaffected`);
        }
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.#inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.#inner.forceFlush?.() ?? Promise.resolve();
  }
}

export function startTracing(opts: TracingOptions): Tracing {
  const env = opts.env ?? process.env;
  const disabled = /^true$/i.test(env.OTEL_SDK_DISABLED ?? '');
  const resource = defaultResource()
    .merge(resourceFromAttributes({ 'service.name': 'kubetrail', 'service.version': opts.version }))
    .merge(detectResources({ detectors: [envDetector] }));
  const exporter = new GuardedExporter(
    new OTLPTraceExporter({ url: opts.endpoint, timeoutMillis: EXPORT_TIMEOUT_MS }),
    opts.endpoint,
    opts.warn,
  );
  const processor = new BatchSpanProcessor(exporter, {
    maxQueueSize: MAX_QUEUE,
    maxExportBatchSize: 512,
    scheduledDelayMillis: 500,
    exportTimeoutMillis: EXPORT_TIMEOUT_MS,
  });
  let ended = 0;
  const counting: SpanProcessor = {
    onStart: () => undefined,
    onEnd: () => void ended++,
    shutdown: () => Promise.resolve(),
    forceFlush: () => Promise.resolve(),
  };
  const provider = new BasicTracerProvider({ resource, spanProcessors: disabled ? [] : [counting, processor] });
  return {
    tracer: provider.getTracer('kubetrail', opts.version),
    dropped: () => ended - exporter.exported,
    async shutdown(timeoutMs = EXPORT_TIMEOUT_MS) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
        timer.unref();
      });
      await Promise.race([provider.shutdown().catch(() => undefined), deadline]);
      clearTimeout(timer);
    },
  };
}
