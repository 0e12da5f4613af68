import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { ROOT_CONTEXT, trace as otel } from '@opentelemetry/api';
import { describe, expect, it } from 'vitest';
import {
  lastStoredTrace,
  readStoredTrace,
  STORE_MAX_TRACES,
  traceStoreProcessor,
} from '../../../src/telemetry/trace-store.ts';

describe('the local trace store (#12 item 4)', () => {
  it('keeps the last traces whole once their root ends, 0600 in a 0700 dir, at most STORE_MAX_TRACES', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'kt-store-')), 'traces');
    const store = traceStoreProcessor(dir, () => undefined);
    const tracer = new BasicTracerProvider({ spanProcessors: [store] }).getTracer('test');
    const ids: string[] = [];
    for (let i = 0; i < STORE_MAX_TRACES + 5; i++) {
      const root = tracer.startSpan('kubectl get', { root: true });
      tracer.startSpan('list pods', {}, otel.setSpan(ROOT_CONTEXT, root)).end();
      root.end();
      ids.push(root.spanContext().traceId);
      await store.forceFlush();
      await new Promise((r) => setTimeout(r, 5));
    }
    const files = readdirSync(dir);
    expect(files.sort()).toEqual(
      ids
        .slice(-STORE_MAX_TRACES)
        .map((id) => `${id}.json`)
        .sort(),
    );
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    for (const f of files) expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);
    expect(lastStoredTrace(dir)).toBe(ids.at(-1));
    const last = JSON.parse(readStoredTrace(dir, ids.at(-1) ?? '') ?? '{}') as {
      resourceSpans: { scopeSpans: { spans: { name: string }[] }[] }[];
    };
    expect(last.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans.map((x) => x.name))).sort()).toEqual([
      'kubectl get',
      'list pods',
    ]);
    expect(readStoredTrace(dir, '../../etc/passwd')).toBeUndefined();
    expect(readFileSync(join(dir, files[0] ?? ''), 'utf8')).toMatch(/^\{"resourceSpans":/);
  });
});
