import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { describe, expect, it } from 'vitest';
import { startTracing } from '../../../src/telemetry/sdk.ts';

/** An exporter that answers as told, after a few milliseconds, as a collector on loopback would. */
function collector(): SpanExporter & { ok: boolean } {
  return {
    ok: false,
    export(_spans: ReadableSpan[], done: (r: ExportResult) => void) {
      setTimeout(
        () =>
          done(
            this.ok
              ? { code: ExportResultCode.SUCCESS }
              : { code: ExportResultCode.FAILED, error: new Error('Not Found') },
          ),
        5,
      );
    },
    shutdown: () => Promise.resolve(),
  };
}

describe('traceFate: what became of one command’s spans (#12 item 5)', () => {
  it('dropped for every trace while the collector fails, sent once it is back', async () => {
    const exporter = collector();
    const t = startTracing({
      endpoint: 'http://collector.invalid/v1/traces',
      version: 'test',
      env: { OTEL_BSP_SCHEDULE_DELAY: '10' },
      warn: () => undefined,
      exporter,
    });
    const trace = (): string => {
      const span = t.tracer.startSpan('kubectl get');
      span.end();
      return span.spanContext().traceId;
    };
    for (let i = 0; i < 3; i++) {
      expect(await t.traceFate(trace(), 800), `trace ${i + 1}`).toEqual({
        state: 'dropped',
        why: 'cannot export to http://collector.invalid/v1/traces (Not Found)',
      });
    }
    exporter.ok = true;
    expect(await t.traceFate(trace(), 800)).toEqual({ state: 'sent' });
    // Known to work: no waiting for the next one's batch.
    const started = performance.now();
    expect((await t.traceFate(trace(), 800)).state).toMatch(/^(sent|pending)$/);
    expect(performance.now() - started).toBeLessThan(50);
    await t.shutdown(100);
  });
});
