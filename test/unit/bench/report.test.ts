/**
 * The bench's verdicts (bench/lib/report.ts): what `npm run bench` prints as met or not met.
 */
import { describe, expect, it } from 'vitest';
import { evaluateTargets, type Results } from '../../../bench/lib/report.ts';

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
    standIn: { podBytes: 4300, w2: [row('kubetrail', w2.live), row('kubetrail-refused', w2.refused)] as unknown as NonNullable<Results['standIn']['w2']> },
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
