import { describe, expect, it } from 'vitest';
import { inferThrottling, type TimedRequest } from '../../../src/stages/throttle.ts';

/** Sequential requests of `dur` ms as kubectl's QPS 5 / burst 10 limiter releases them. */
function limited(n: number, dur: number, qps = 5, burst = 10): TimedRequest[] {
  const out: TimedRequest[] = [];
  let tokens = burst;
  let t = 1_000_000;
  let last = t;
  for (let i = 0; i < n; i++) {
    tokens = Math.min(burst, tokens + ((t - last) * qps) / 1000) - 1;
    last = t;
    const start = tokens < 0 ? t - (tokens * 1000) / qps : t;
    out.push({ startedAt: start, durationMs: dur, discovery: false });
    t = start + dur;
  }
  return out;
}

describe('inferThrottling', () => {
  it("finds ~3.9 s in 30 fast sequential GETs under kubectl's limiter, and the limiter it matches", () => {
    const t = inferThrottling(limited(30, 5));
    expect(t.totalMs).toBeGreaterThan(3800);
    expect(t.totalMs).toBeLessThan(4000);
    expect(t.waits).toHaveLength(20);
    expect(t.limiter).toEqual({ qps: 5, burst: 10 });
  });

  it('finds none in a burst-sized command, nor in requests kubectl sent slower than its limit', () => {
    expect(inferThrottling(limited(10, 5)).totalMs).toBe(0);
    const slow = Array.from({ length: 40 }, (_, i) => ({ startedAt: i * 300, durationMs: 20, discovery: false }));
    expect(inferThrottling(slow).totalMs).toBe(0);
    expect(inferThrottling([]).limiter).toBeUndefined();
  });

  it('infers nothing when the starts break the bucket (a kubectl with other limits)', () => {
    const fast = Array.from({ length: 40 }, (_, i) => ({ startedAt: i * 50, durationMs: 5, discovery: false }));
    expect(inferThrottling(fast).totalMs).toBe(0);
  });

  it('keeps discovery on its own bucket (QPS 50, burst 300): 100 quick discovery requests wait nothing', () => {
    const disc = Array.from({ length: 100 }, (_, i) => ({ startedAt: i * 2, durationMs: 1, discovery: true }));
    expect(inferThrottling([...disc, ...limited(5, 5)]).totalMs).toBe(0);
  });

  it('counts a wait only up to the predicted release: a request seen later than that waited in kubectl, not in the limiter', () => {
    const reqs = limited(11, 5);
    const last = reqs[10] as TimedRequest;
    const predicted = inferThrottling(reqs).totalMs;
    last.startedAt += 500;
    expect(inferThrottling(reqs).totalMs).toBeCloseTo(predicted, 0);
  });
});
