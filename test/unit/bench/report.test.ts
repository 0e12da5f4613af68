/**
 * The bench's verdicts (bench/lib/report.ts): what `npm run bench` prints as met or not met.
 */
import { describe, expect, it } from 'vitest';
import { evaluateTargets, fmtConnRounds, fmtConns, type Results } from '../../../bench/lib/report.ts';

function run(w2: { live: number; refused: number }): Results {
  const row = (path: 'kubetrail' | 'kubetrail-refused', rps: number) => ({
    path,
    rps,
    rpsRounds: [rps * 0.99, rps, rps * 1.01],
    cpuMsPerReq: undefined,
    cpuRounds: [],
    latency: { n: 0, p50: 0, p90: 0, p99: 0, max: 0, mean: 0 },
    errors: 0,
  });
  return {
    machine: {} as Results['machine'],
    config: {},
    standIn: {
      podBytes: 4300,
      w2: [row('kubetrail', w2.live), row('kubetrail-refused', w2.refused)] as unknown as NonNullable<
        Results['standIn']['w2']
      >,
    },
  } as Results;
}

const refusedVerdict = (r: Results): string | undefined => evaluateTargets(r).find((t) => t.id === 'refused')?.verdict;

describe('the "OTLP refused costs nothing" verdict', () => {
  it('is met when the refused path is within noise, or better', () => {
    expect(refusedVerdict(run({ live: 3000, refused: 2950 }))).toBe('met');
    expect(refusedVerdict(run({ live: 3000, refused: 4000 }))).toBe('met');
  });

  it('is not met when the refused path is worse beyond noise', () => {
    expect(refusedVerdict(run({ live: 3000, refused: 2000 }))).toBe('NOT met');
  });
});

describe('rows over HTTP/1.1 and h2 side by side', () => {
  const lat = (path: 'direct' | 'kubetrail', proto: 'h1' | 'h2', p50: number) => ({
    path,
    proto,
    summary: { n: 1, p50, p90: p50, p99: p50, min: p50, max: p50, mean: p50 },
    roundP50: [p50],
    errors: 0,
  });
  const results = {
    machine: {} as Results['machine'],
    config: {},
    standIn: {
      podBytes: 4300,
      w1: [
        lat('direct', 'h1', 0.1),
        lat('direct', 'h2', 0.2),
        lat('kubetrail', 'h1', 0.3),
        lat('kubetrail', 'h2', 1.0),
      ],
    },
    durationS: 0,
    errors: [],
  } as Results;

  it('judges each protocol against direct over the same protocol', () => {
    const t = evaluateTargets(results);
    expect(t.find((x) => x.id === 'w1-added')).toMatchObject({ value: '0.200 ms', verdict: 'met' });
    expect(t.find((x) => x.id === 'w1-added, h2')).toMatchObject({ value: '0.800 ms', verdict: 'NOT met' });
  });
});

describe('connection counts', () => {
  it('name each protocol and show rounds that differ', () => {
    expect(fmtConns({ h2: 1 })).toBe('1 h2');
    expect(fmtConns({ 'http/1.1': 32, none: 1 })).toBe('32 h1 + 1 h1 (no ALPN)');
    expect(fmtConns({})).toBe('0');
    expect(
      fmtConnRounds([
        { client: { h2: 1 }, upstream: { 'http/1.1': 1 } },
        { client: { h2: 1 }, upstream: {} },
      ]),
    ).toBe('1 h2 / 1 h1, 0');
    expect(fmtConnRounds([{ client: { http: 1 } }])).toBe('1 h1 (plain) / –');
  });
});
