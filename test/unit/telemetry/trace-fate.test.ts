import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startTracing } from '../../../src/telemetry/sdk.ts';
import { refusedPort } from '../../helpers/ports.ts';

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

  afterEach(() => {
    vi.useRealTimers();
  });

  it('a collector that still refuses connections: dropped at once, the wrapped command is not held for a recheck (#18)', async () => {
    const endpoint = `http://127.0.0.1:${await refusedPort()}/v1/traces`;
    // The batch would go out in a minute: only knowing that the collector refuses can settle the fate sooner.
    const t = startTracing({
      endpoint,
      version: 'test',
      env: { OTEL_BSP_SCHEDULE_DELAY: '60000' },
      warn: () => undefined,
    });
    const trace = (): string => {
      const span = t.tracer.startSpan('kubectl get');
      span.end();
      return span.spanContext().traceId;
    };
    const why = `cannot export to ${endpoint} (connection refused)`;
    // Once kubetrail knows the collector refuses (it checks at start), a fate asked without waiting says so.
    await vi.waitFor(async () => expect(await t.traceFate(trace(), 0)).toEqual({ state: 'dropped', why }), {
      timeout: 5000,
    });
    const id = trace();
    // Timers stand still: a fate that waited for the recheck (or the batch) would never come. Only the
    // refused connect, which is I/O, can answer; the deadline is an interval, which is not faked.
    vi.useFakeTimers({ toFake: ['setTimeout'] });
    let deadline: NodeJS.Timeout | undefined;
    const fate = await Promise.race([
      t.traceFate(id, 800),
      new Promise((resolve) => (deadline = setInterval(() => resolve('held'), 5000))),
    ]);
    clearInterval(deadline);
    vi.useRealTimers();
    expect(fate).toEqual({ state: 'dropped', why });
    await t.shutdown(100);
  });
});
