/**
 * The terminal waterfall for one finished command: a row per HTTP request in time order on a shared time
 * axis, the slowest request's stage breakdown, the discovery share, and the Jaeger link. Pure: summary in,
 * lines out. Fits 80 columns; colour only when asked (a TTY).
 */
import { totals, type CommandSummary, type RequestSummary } from '../telemetry/commands.ts';
import { divisionLine, exitNote, findingLines, rbacFixLines, timedFromNote } from './findings.ts';
import { fmtBytes, fmtMs } from './format.ts';

export interface WaterfallOptions {
  jaegerUrl: string;
  color: boolean;
  width?: number;
  /** Set when export is off or failing, so the link would lead nowhere. */
  exportNote?: string | undefined;
}

const NAME_W = 22;
const BAR_W = 24;


function fit(s: string, w: number): string {
  return s.length > w ? `${s.slice(0, w - 1)}…` : s.padEnd(w);
}

function paint(on: boolean, code: string, s: string): string {
  return on ? `\x1b[${code}m${s}\x1b[0m` : s;
}

function statusColor(r: RequestSummary): string {
  if (r.outcome !== 'complete' && r.outcome !== 'client_abort') return '31';
  const s = r.statusCode ?? 0;
  return s >= 500 ? '31' : s >= 400 ? '33' : r.discovery ? '36' : '32';
}

function detail(r: RequestSummary): string {
  const parts: string[] = [];
  if (r.items !== undefined) parts.push(`${r.itemsPartial === true ? '≥' : ''}${r.items} item${r.items === 1 && r.itemsPartial !== true ? '' : 's'}`);
  if (r.watchEvents !== undefined) parts.push(`${r.watchEvents} ev`);
  parts.push(fmtBytes(r.bytes));
  return parts.join(' ');
}

export function renderWaterfall(cmd: CommandSummary, opts: WaterfallOptions): string[] {
  const width = Math.max(70, Math.min(opts.width ?? 80, 160));
  const c = opts.color;
  const sum = totals(cmd.requests);
  const t0 = cmd.startedAt;
  const span = Math.max(cmd.durationMs, ...cmd.requests.map((r) => r.startedAt - t0 + r.durationMs), 1);
  const lines: string[] = [];
  const head = `${cmd.command} · ${sum.requests} request${sum.requests === 1 ? '' : 's'} · ${fmtMs(span)}${exitNote(cmd)}${timedFromNote(cmd)}`;
  const extra = sum.items > 0 ? ` · ${sum.itemsPartial ? '≥' : ''}${sum.items} items in ${sum.pages} page${sum.pages === 1 ? '' : 's'}` : '';
  lines.push(paint(c, '1', fit(head + extra, width).trimEnd()));

  const barW = BAR_W + (width - 80);
  for (const r of cmd.requests) {
    const from = Math.min(barW - 1, Math.floor(((r.startedAt - t0) / span) * barW));
    const len = Math.min(barW - from, Math.max(1, Math.round((r.durationMs / span) * barW)));
    const bar = ' '.repeat(from) + paint(c, statusColor(r), '█'.repeat(len)) + ' '.repeat(barW - from - len);
    const status = r.statusCode !== undefined ? String(r.statusCode) : r.errorCode ? 'ERR' : '-';
    lines.push(`  ${fit(r.name, NAME_W)} ${paint(c, statusColor(r), status.padStart(3))} ${bar} ${fmtMs(r.durationMs).padStart(7)} ${detail(r)}`);
  }

  const slowest = [...cmd.requests].sort((a, b) => b.durationMs - a.durationMs)[0];
  if (slowest) {
    const stages = [
      slowest.reused ? 'reused conn' : undefined,
      slowest.connectMs !== undefined ? `connect ${fmtMs(slowest.connectMs)}` : undefined,
      slowest.tlsMs !== undefined ? `TLS ${fmtMs(slowest.tlsMs)}` : undefined,
      slowest.ttfbMs !== undefined ? `TTFB ${fmtMs(slowest.ttfbMs)}` : undefined,
      slowest.transferMs !== undefined ? `transfer ${fmtMs(slowest.transferMs)}` : undefined,
    ].filter((s): s is string => s !== undefined);
    lines.push(`slowest: ${slowest.name} ${fmtMs(slowest.durationMs)}`);
    if (stages.length) lines.push(`  ${stages.join(' · ')}`);
  }
  if (sum.discoveryRequests > 0) {
    const share = Math.round((sum.discoveryMs / span) * 100);
    lines.push(`discovery: ${sum.discoveryRequests} request${sum.discoveryRequests === 1 ? '' : 's'}, ${fmtMs(sum.discoveryMs)} (${share}% of the command)`);
  }
  const division = divisionLine(cmd);
  if (division) lines.push(fit(division, width).trimEnd());
  for (const f of findingLines(cmd)) lines.push(paint(c, '33', fit(f, width).trimEnd()));
  const denied = cmd.requests.find((r) => r.rbac['rbac.decision'] === 'denied' || r.rbac['rbac.decision'] === 'unauthenticated');
  if (denied) {
    const who = denied.rbac['rbac.user'] ? ` for ${String(denied.rbac['rbac.user'])}` : '';
    const what = denied.rbac['rbac.verb'] ? `: cannot ${String(denied.rbac['rbac.verb'])} ${String(denied.rbac['rbac.resource'] ?? denied.rbac['rbac.path'] ?? '')}` : '';
    lines.push(paint(c, '33', fit(`rbac: ${String(denied.rbac['rbac.decision'])}${who}${what}`, width).trimEnd()));
  }
  lines.push(...rbacFixLines(cmd));
  lines.push(`trace: ${opts.jaegerUrl.replace(/\/$/, '')}/trace/${cmd.traceId}${opts.exportNote ? ` (${opts.exportNote})` : ''}`);
  return lines;
}
