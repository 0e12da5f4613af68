import { describe, expect, it } from 'vitest';
import { kubeconfigPaths } from '../../../src/kubeconfig/load.ts';
import { parseDuration } from '../../../src/config/load.ts';
import { isCommandTag, randomTag } from '../../../src/command-tag.ts';
import { kubeconfigCandidates } from '../../../src/background/state.ts';
import { tokenMatches } from '../../../src/background/token.ts';

describe('the wrapper fast path mirrors the modules it does not import', () => {
  it('kubeconfig candidates are kubectl rules as kubeconfig/load.ts implements them', () => {
    const cases: [string | undefined, NodeJS.ProcessEnv][] = [
      ['rel/kc', {}],
      ['/abs/kc', { KUBECONFIG: '/a:/b' }],
      [undefined, { KUBECONFIG: '/a::b:/a', HOME: '/h' }],
      [undefined, { HOME: '/home/u' }],
      [undefined, { KUBECONFIG: '', HOME: '/home/u' }],
    ];
    for (const [explicitPath, env] of cases)
      expect(kubeconfigCandidates(explicitPath, env)).toEqual(kubeconfigPaths({ explicitPath, env }).paths);
  });

  it('a random command tag is a valid one', () => {
    for (let i = 0; i < 100; i++) expect(isCommandTag(randomTag())).toBe(true);
  });
});

describe('tokens and durations', () => {
  it('compares tokens whole, whatever their length', () => {
    expect(tokenMatches('abc', 'abc')).toBe(true);
    for (const t of ['ab', 'abcd', '', undefined, ['abc']]) expect(tokenMatches('abc', t)).toBe(false);
  });

  it('parses --linger durations', () => {
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('0')).toBe(0);
    for (const bad of ['10', 'soon', '-1m', '']) expect(parseDuration(bad)).toBeUndefined();
  });
});
