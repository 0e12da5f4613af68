import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { RequestStart } from '../../../src/proxy/events.ts';
import { requestLog } from '../../../src/report/request-log.ts';
import { requestStart, responseStart } from '../../helpers/events.ts';

function start(id: string, query: string, t0 = 0, over: Partial<RequestStart> = {}): RequestStart {
  const startedAt = Date.UTC(2026, 10, 24, 10, 0, 0) + t0;
  return requestStart({ id, startedAt, t0, query, userAgent: undefined, ...over });
}

describe('request log: a long watch shows a live count', () => {
  it('without a terminal, prints a (still open) line every 10 s while events flow, then the final line', () => {
    const lines: string[] = [];
    const log = requestLog((l) => lines.push(l));
    log.onRequestStart(start('w', 'watch=true'));
    log.onResponseStart('w', responseStart({ t: 5, statusCode: 200 }));
    log.onProgress?.('w', { t: 1_000, bytesDown: 900, items: 0, watchEvents: 3 });
    log.onProgress?.('w', { t: 9_000, bytesDown: 9_000, items: 0, watchEvents: 30 });
    expect(lines).toEqual([]);
    log.onProgress?.('w', { t: 10_500, bytesDown: 10_500, items: 0, watchEvents: 35 });
    log.onProgress?.('w', { t: 11_500, bytesDown: 11_500, items: 0, watchEvents: 38 });
    log.onProgress?.('w', { t: 21_000, bytesDown: 21_000, items: 0, watchEvents: 70 });
    expect(lines).toEqual([
      '10:00:10.500 200 watch pods /api/v1/namespaces/default/pods 10.5s 35 events 10.3kB [kind] (still open)',
      '10:00:21.000 200 watch pods /api/v1/namespaces/default/pods 21.0s 70 events 20.5kB [kind] (still open)',
    ]);
    log.onRequestEnd('w', {
      t: 30_000,
      outcome: 'client_abort',
      bytesDown: 30_000,
      bytesUp: 0,
      decode: { format: 'json-watch', items: undefined, watch: { events: 99 } } as never,
    });
    expect(lines[2]).toBe(
      '10:00:30.000 200 watch pods /api/v1/namespaces/default/pods 30.0s 99 events 29.3kB [kind] client_abort',
    );
  });

  it('on a terminal, keeps one status line under the log with the open requests, rewritten in place', () => {
    let screen = '';
    const log = requestLog(() => undefined, { now: () => 0, terminal: { write: (t) => (screen += t), columns: 200 } });
    log.onRequestStart(start('w', 'watch=true'));
    log.onRequestStart(start('l', 'limit=0'));
    log.onProgress?.('w', { t: 1_000, bytesDown: 2048, items: 0, watchEvents: 4 });
    expect(screen).toBe('\r\x1b[Kopen: watch pods 4 events 2.0kB 1000ms');
    log.onProgress?.('l', { t: 1_000, bytesDown: 3 << 20, items: 1200, watchEvents: 0 });
    expect(screen.split('\r\x1b[K').at(-1)).toBe(
      'open: watch pods 4 events 2.0kB 1000ms · list pods 1200 items 3.0MB 1000ms',
    );
    screen = '';
    log.onRequestEnd('l', {
      t: 2_000,
      outcome: 'complete',
      bytesDown: 4 << 20,
      bytesUp: 0,
      decode: { items: 1500 } as never,
    });
    // The finished line replaces the status line, which is drawn again below it.
    expect(screen).toBe(
      '\r\x1b[K10:00:02.000 ERR list pods /api/v1/namespaces/default/pods 2000ms 1500 items 4.0MB [kind]\nopen: watch pods 4 events 2.0kB 1000ms',
    );
    // Other lines (a finished command's trace link) also go above it, never onto it.
    screen = '';
    log.print('trace: http://localhost:16686/trace/abc kubectl get');
    expect(screen).toBe(
      '\r\x1b[Ktrace: http://localhost:16686/trace/abc kubectl get\nopen: watch pods 4 events 2.0kB 1000ms',
    );
  });
});

describe('request log: long requests (#12 item 7)', () => {
  let now = 0;
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'setTimeout', 'clearTimeout'] });
    now = 0;
  });
  afterEach(() => vi.useRealTimers());

  const clockOf = (l: string): string => l.slice(0, 12);

  it('without a terminal, lines come in time order: a request is logged at its end, with how long it took', () => {
    const lines: string[] = [];
    const log = requestLog((l) => lines.push(l), { now: () => now });
    log.onRequestStart(start('w', 'watch=true'));
    log.onResponseStart('w', responseStart({ t: 5, statusCode: 200 }));
    log.onRequestStart(start('g', '', 100));
    log.onProgress?.('w', { t: 10_500, bytesDown: 10_500, items: 0, watchEvents: 35 });
    log.onRequestEnd('g', { t: 20_000, outcome: 'complete', bytesDown: 10, bytesUp: 0 });
    log.onRequestEnd('w', {
      t: 42_980,
      outcome: 'client_abort',
      bytesDown: 30_000,
      bytesUp: 0,
      decode: { format: 'json-watch', items: undefined, watch: { events: 99 } } as never,
    });
    expect(lines.map(clockOf)).toEqual(['10:00:10.500', '10:00:20.000', '10:00:42.980']);
    expect(lines.at(-1)).toBe(
      '10:00:42.980 200 watch pods /api/v1/namespaces/default/pods 43.0s 99 events 29.3kB [kind] client_abort',
    );
  });

  it('without a terminal, a request open for long says so even when no byte flows', () => {
    const lines: string[] = [];
    const log = requestLog((l) => lines.push(l), { now: () => now, progressEveryMs: 10_000 });
    log.onRequestStart(start('w', 'watch=true'));
    log.onResponseStart('w', responseStart({ t: 5, statusCode: 200 }));
    now = 12_000;
    vi.advanceTimersByTime(12_000);
    expect(lines).toEqual([
      '10:00:12.000 200 watch pods /api/v1/namespaces/default/pods 12.0s 0 events 0B [kind] (still open)',
    ]);
  });

  it('on a terminal, the status line ticks every second between events, in one time format', () => {
    let screen = '';
    const log = requestLog(() => undefined, {
      now: () => now,
      terminal: { write: (t) => (screen += t), columns: 200 },
    });
    log.onRequestStart(start('w', 'watch=true'));
    log.onResponseStart('w', responseStart({ t: 5, statusCode: 200 }));
    now = 1_000;
    log.onProgress?.('w', { t: 1_000, bytesDown: 2048, items: 0, watchEvents: 4 });
    expect(screen.split('\r\x1b[K').at(-1)).toBe('open: watch pods 4 events 2.0kB 1000ms');
    // No event for 30 s: the line still moves, once a second.
    for (const t of [2_000, 3_000]) {
      now = t;
      vi.advanceTimersByTime(1_000);
    }
    expect(screen.split('\r\x1b[K').at(-1)).toBe('open: watch pods 4 events 2.0kB 3000ms');
    now = 35_100;
    vi.advanceTimersByTime(32_100);
    expect(screen.split('\r\x1b[K').at(-1)).toBe('open: watch pods 4 events 2.0kB 35.1s');
    log.onRequestEnd('w', { t: 36_000, outcome: 'client_abort', bytesDown: 4096, bytesUp: 0 });
    // Nothing open: the line is gone and the ticking stops.
    expect(screen.endsWith('client_abort\n')).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('request log: a denial (#12 item 6)', () => {
  it('names the user and what was refused, as the waterfall does', () => {
    const lines: string[] = [];
    const log = requestLog((l) => lines.push(l), { now: () => 0 });
    log.onRequestStart(start('d', 'limit=500'));
    log.onResponseStart('d', responseStart({ t: 3, statusCode: 403 }));
    const statusBody = JSON.stringify({
      kind: 'Status',
      apiVersion: 'v1',
      status: 'Failure',
      reason: 'Forbidden',
      code: 403,
      message: 'pods is forbidden: User "tom" cannot list resource "pods" in API group "" in the namespace "default"',
    });
    log.onRequestEnd('d', { t: 4, outcome: 'complete', bytesDown: 248, bytesUp: 0, statusBody });
    expect(lines).toEqual([
      '10:00:00.004 403 list pods /api/v1/namespaces/default/pods 4.0ms 248B [kind] rbac: denied for tom: cannot list pods',
    ]);
  });
});

describe('request log: counts say what was read (#19 item 4)', () => {
  it('a single GET prints no items (a Table of one row is a format), a one-item list "1 item"', () => {
    const lines: string[] = [];
    const log = requestLog((l) => lines.push(l));
    log.onRequestStart(start('g', '', 0, { path: '/api/v1/namespaces/default/configmaps/x' }));
    log.onResponseStart('g', responseStart({ t: 5, statusCode: 200 }));
    log.onRequestEnd('g', {
      t: 10,
      outcome: 'complete',
      bytesDown: 900,
      bytesUp: 0,
      decode: { format: 'json', items: 1 } as never,
    });
    log.onRequestStart(start('l', ''));
    log.onResponseStart('l', responseStart({ t: 5, statusCode: 200 }));
    log.onRequestEnd('l', {
      t: 10,
      outcome: 'complete',
      bytesDown: 900,
      bytesUp: 0,
      decode: { format: 'json', items: 1 } as never,
    });
    expect(lines).toEqual([
      '10:00:00.010 200 get configmaps /api/v1/namespaces/default/configmaps/x 10.0ms 900B [kind]',
      '10:00:00.010 200 list pods /api/v1/namespaces/default/pods 10.0ms 1 item 900B [kind]',
    ]);
  });
});
