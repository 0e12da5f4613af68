import { describe, expect, it } from 'vitest';
import { redactQuery } from '../../../src/telemetry/request-spans.ts';

describe('redactQuery', () => {
  it("never records exec's command line or a continue token, and keeps everything else", () => {
    const q =
      'command=sh&command=-c&command=PASSWORD%3Dhunter2+run&container=app&stdout=true&continue=eyJ2IjoibWV0YSJ9&limit=500';
    const out = redactQuery(q);
    expect(out).toBe(
      'command=REDACTED&command=REDACTED&command=REDACTED&container=app&stdout=true&continue=REDACTED&limit=500',
    );
    expect(out).not.toContain('hunter2');
    expect(redactQuery('labelSelector=app%3Dweb&limit=500')).toBe('labelSelector=app%3Dweb&limit=500');
  });
});
