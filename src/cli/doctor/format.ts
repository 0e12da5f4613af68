/**
 * What every doctor check returns (findings) and the one way they are printed. A new check: a file in
 * this folder returning Finding[] (or one), called from doctor.ts.
 */
export type Level = 'ok' | 'warn' | 'fail';

export interface Finding {
  level: Level;
  /** What was checked: `config`, `kubeconfig`, `context alice`, `otlp`, `jaeger`, `state dir`, `listen`. */
  subject: string;
  message: string;
  /** What to do; present on every warn and fail. */
  fix?: string;
}

export function formatFindings(findings: Finding[]): string[] {
  const lines: string[] = [];
  for (const f of findings) {
    lines.push(`${f.level.padEnd(4)}  ${f.subject}: ${f.message}`);
    if (f.fix) lines.push(`      fix: ${f.fix}`);
  }
  const fails = findings.filter((f) => f.level === 'fail').length;
  const warns = findings.filter((f) => f.level === 'warn').length;
  lines.push(fails + warns === 0 ? 'doctor: all checks passed' : `doctor: ${fails} failed, ${warns} warning(s)`);
  return lines;
}
