/**
 * The waterfall's account of the whole command: how its wall time divides, and each finding with what it
 * means: time in a credential plugin, in kubectl's rate limiter. Pure: summary in, lines out; the
 * waterfall places them.
 */
import type { CommandSummary } from '../telemetry/commands.ts';
import { fmtMs } from './format.ts';

/** The header's note on where the time starts, when it is not kubectl's start. */
export function timedFromNote(cmd: CommandSummary): string {
  if (cmd.timedFrom === 'first_request') return ' (from its first request: no process to watch)';
  if (cmd.timedFrom === 'credential') return ' (from its credential plugin: no process to watch)';
  return '';
}

/** The header's tail: kubectl's exit code when it failed. */
export function exitNote(cmd: CommandSummary): string {
  return cmd.exitCode !== undefined && cmd.exitCode !== 0 ? ` · exit ${cmd.exitCode}` : '';
}

/** `time: requests 150ms · throttled 3900ms · credential 300ms · kubectl 70ms` (they add up to the header's) */
export function divisionLine(cmd: CommandSummary): string | undefined {
  const d = cmd.division;
  if (!d) return undefined;
  const parts: string[] = [`requests ${fmtMs(d.requestsMs)}`];
  if (d.throttledMs > 0) parts.push(`throttled ${fmtMs(d.throttledMs)}`);
  if (d.credentialMs > 0) parts.push(`credential ${fmtMs(d.credentialMs)}`);
  parts.push(`kubectl itself ${fmtMs(d.ownMs)}`);
  return `time: ${parts.join(' · ')}`;
}

export function findingLines(cmd: CommandSummary): string[] {
  const lines: string[] = [];
  const creds = cmd.credentials ?? [];
  if (creds.length > 0) {
    const byName = new Map<string, { runs: number; ms: number; failed: number }>();
    for (const c of creds) {
      const e = byName.get(c.command) ?? { runs: 0, ms: 0, failed: 0 };
      e.runs++;
      e.ms += c.end - c.start;
      if (c.exitCode !== 0) e.failed++;
      byName.set(c.command, e);
    }
    for (const [name, e] of byName) {
      const runs = e.runs === 1 ? '' : ` in ${e.runs} runs`;
      const failed = e.failed > 0 ? `, ${e.failed} failed` : '';
      lines.push(`credential plugin: ${name} ${fmtMs(e.ms)}${runs}${failed}`);
    }
  }
  const t = cmd.throttling;
  if (t && t.totalMs > 0 && t.limiter) {
    lines.push(`client-side throttling: ${fmtMs(t.totalMs)} (kubectl's limiter: QPS ${t.limiter.qps}, burst ${t.limiter.burst})`);
  }
  return lines;
}
