/**
 * The terminal waterfall for one finished command: a row per HTTP request in time order on a shared time
 * axis, the slowest request's stage breakdown, the discovery share, and the Jaeger link. Pure: summary in,
 * lines out. Sized to the terminal's width (80 columns when it is not a terminal); colour only when asked
 * (a TTY).
 */
import type { RbacOutcome } from '../stages/rbac.ts';
import { totals, type CommandSummary, type CommandTotals, type RequestSummary } from '../telemetry/commands.ts';
import { divisionLine, exitNote, findingLines, rbacFixLines, timedFromNote } from './findings.ts';
import { fit, fmtBytes, fmtMs, plural } from './format.ts';

export interface WaterfallOptions {
  jaegerUrl: string;
  color: boolean;
  /** The terminal's columns; 80 when undefined. */
  width?: number | undefined;
  /** Why this command's spans were not sent (export off, collector failing): said instead of a dead link. */
  exportNote?: string | undefined;
}

/** Narrower than this, lines wrap rather than lose the status and duration columns. */
const MIN_WIDTH = 40;
const NAME_MIN = 12;
/** Beyond this a name is truncated: the bar needs the room more. */
const NAME_MAX = 64;
const BAR_MIN = 10;
/** The bar keeps at least this share of the room names and bars divide. */
const BAR_SHARE = 0.4;
const STATUS_W = 3;
const DURATION_W = 7;

function paint(on: boolean, code: string, s: string): string {
  return on ? `\x1b[${code}m${s}\x1b[0m` : s;
}

function statusColor(r: RequestSummary): string {
  if (r.outcome !== 'complete' && r.outcome !== 'client_abort') return '31';
  const s = r.statusCode ?? 0;
  return s >= 500 ? '31' : s >= 400 ? '33' : r.discovery ? '36' : '32';
}

/** `3 items`, `1 item`, `≥3902 items` (a lower bound). */
export function itemsText(n: number, partial: boolean): string {
  return partial ? `≥${n} items` : plural(n, 'item');
}

/**
 * What the command read, lists and single objects apart: `600 items in 2 pages`, `1 object`, or both;
 * '' when it read nothing (totals(): a Table of one row or `-o yaml` is 1 object, a NotFound nothing).
 */
export function readText(sum: CommandTotals): string {
  const parts: string[] = [];
  if (sum.items > 0) parts.push(`${itemsText(sum.items, sum.itemsPartial)} in ${plural(sum.pages, 'page')}`);
  if (sum.objects > 0) parts.push(plural(sum.objects, 'object'));
  return parts.join(', ');
}

function detail(r: RequestSummary): string {
  const parts: string[] = [];
  // A single object's GET says what it read in its name (`get configmaps`); a Table's one row is a format.
  if (r.items !== undefined && r.reads !== 'object') parts.push(itemsText(r.items, r.itemsPartial === true));
  if (r.watchEvents !== undefined) parts.push(`${r.watchEvents} ev`);
  parts.push(fmtBytes(r.bytes));
  return parts.join(' ');
}

export function isWatch(r: RequestSummary): boolean {
  return r.name.startsWith('watch ');
}

/**
 * Row names: the span name, with the API group added the way kubectl writes `resource.group` where two
 * requests of the command share a name but not a group (`list events` and `list events.events.k8s.io`).
 */
export function rowNames(requests: readonly RequestSummary[]): string[] {
  const groups = new Map<string, Set<string>>();
  for (const r of requests)
    if (r.group !== undefined) groups.set(r.name, (groups.get(r.name) ?? new Set()).add(r.group));
  return requests.map((r) => {
    if (!r.group || (groups.get(r.name)?.size ?? 0) < 2) return r.name;
    // `verb resource[/subresource]` → `verb resource.group[/subresource]`
    return r.name.replace(/^(\S+ [^/]+)/, `$1.${r.group}`);
  });
}

interface Columns {
  name: number;
  bar: number;
  /** 0: no room for the items/bytes column. */
  detail: number;
}

/** Row: `  <name> <status> <bar> <duration> <detail>`; the name column as wide as the names, the bar the rest. */
function columns(width: number, names: readonly string[], details: readonly string[]): Columns {
  const longest = Math.max(0, ...names.map((n) => n.length));
  const fixed = 2 + 1 + STATUS_W + 1 + 1 + DURATION_W;
  let detail = Math.max(0, ...details.map((d) => d.length));
  let room = width - fixed - (detail + 1);
  if (room < NAME_MIN + BAR_MIN) {
    detail = 0;
    room = width - fixed;
  }
  const name = Math.max(
    Math.min(longest, NAME_MIN),
    Math.min(longest, NAME_MAX, room - Math.max(BAR_MIN, Math.round(room * BAR_SHARE))),
  );
  return { name, bar: Math.max(1, room - name), detail };
}

export function traceUrl(jaegerUrl: string, traceId: string): string {
  return `${jaegerUrl.replace(/\/$/, '')}/trace/${traceId}`;
}

/**
 * `trace: <url>`, whole on one line: a terminal finds a link only in one unbroken run of characters, so
 * when it does not fit beside the label the URL goes on its own line (wrapped by the terminal, never cut).
 * A trace that was not sent gets no link: it would lead nowhere.
 */
function traceLines(url: string, notSent: string | undefined, width: number): string[] {
  if (notSent !== undefined) return [`trace not sent: ${notSent}`];
  return `trace: ${url}`.length <= width ? [`trace: ${url}`] : ['trace:', url];
}

/** Start mode's line for a finished command: its link, or why there is none. */
export function commandTraceLine(cmd: CommandSummary, jaegerUrl: string, notSent: string | undefined): string {
  const what = `${cmd.command} (${plural(cmd.requests.length, 'request')}, ${fmtMs(cmd.durationMs)})`;
  return notSent !== undefined
    ? `trace not sent: ${what}: ${notSent}`
    : `trace: ${traceUrl(jaegerUrl, cmd.traceId)} ${what}`;
}

export function renderWaterfall(cmd: CommandSummary, opts: WaterfallOptions): string[] {
  const width = Math.max(MIN_WIDTH, opts.width ?? 80);
  const c = opts.color;
  const sum = totals(cmd.requests);
  const t0 = cmd.startedAt;
  const span = Math.max(cmd.durationMs, ...cmd.requests.map((r) => r.startedAt - t0 + r.durationMs), 1);
  const lines: string[] = [];
  const head = `${cmd.command} · ${plural(sum.requests, 'request')} · ${fmtMs(span)}${exitNote(cmd)}${timedFromNote(cmd)}`;
  const read = readText(sum);
  const extra = read ? ` · ${read}` : '';
  lines.push(paint(c, '1', fit(head + extra, width)));

  const names = rowNames(cmd.requests);
  const details = cmd.requests.map(detail);
  const col = columns(width, names, details);
  cmd.requests.forEach((r, i) => {
    const from = Math.min(col.bar - 1, Math.floor(((r.startedAt - t0) / span) * col.bar));
    const len = Math.min(col.bar - from, Math.max(1, Math.round((r.durationMs / span) * col.bar)));
    const bar = ' '.repeat(from) + paint(c, statusColor(r), '█'.repeat(len)) + ' '.repeat(col.bar - from - len);
    const status = r.statusCode !== undefined ? String(r.statusCode) : r.errorCode ? 'ERR' : '-';
    const row = `  ${fit(names[i] ?? r.name, col.name).padEnd(col.name)} ${paint(c, statusColor(r), status.padStart(STATUS_W))} ${bar} ${fmtMs(r.durationMs).padStart(DURATION_W)}`;
    lines.push(col.detail > 0 ? `${row} ${details[i] ?? ''}` : row);
  });

  // A watch lasts as long as the user chose: its duration is not latency, and the share of it spent on
  // discovery says nothing. Its row already shows its events.
  const watching = cmd.requests.some(isWatch);
  const slowest = [...cmd.requests].sort((a, b) => b.durationMs - a.durationMs)[0];
  if (slowest && !watching) {
    const stages = [
      slowest.reused ? 'reused conn' : undefined,
      slowest.connectMs !== undefined ? `connect ${fmtMs(slowest.connectMs)}` : undefined,
      slowest.tlsMs !== undefined ? `TLS ${fmtMs(slowest.tlsMs)}` : undefined,
      slowest.ttfbMs !== undefined ? `TTFB ${fmtMs(slowest.ttfbMs)}` : undefined,
      slowest.transferMs !== undefined ? `transfer ${fmtMs(slowest.transferMs)}` : undefined,
    ].filter((s): s is string => s !== undefined);
    lines.push(
      fit(`slowest: ${names[cmd.requests.indexOf(slowest)] ?? slowest.name} ${fmtMs(slowest.durationMs)}`, width),
    );
    if (stages.length) lines.push(fit(`  ${stages.join(' · ')}`, width));
  }
  if (sum.discoveryRequests > 0 && !watching) {
    const share = Math.round((sum.discoveryMs / span) * 100);
    lines.push(
      fit(
        `discovery: ${plural(sum.discoveryRequests, 'request')}, ${fmtMs(sum.discoveryMs)} (${share}% of the command)`,
        width,
      ),
    );
  }
  const division = divisionLine(cmd);
  if (division) lines.push(fit(division, width));
  for (const f of findingLines(cmd)) lines.push(paint(c, '33', fit(f, width)));
  const denied = cmd.requests.find((r) => r.rbac?.decision === 'denied' || r.rbac?.decision === 'unauthenticated');
  if (denied?.rbac) lines.push(paint(c, '33', fit(`rbac: ${denialText(denied.rbac)}`, width)));
  if (cmd.upstreamShared === true) {
    lines.push(
      paint(
        c,
        '33',
        fit('upstream: shared connections (--reuse-upstream): connect/TLS are not what kubectl alone pays', width),
      ),
    );
  }
  // Never cut: they are commands to copy.
  lines.push(...rbacFixLines(cmd));
  lines.push(...traceLines(traceUrl(opts.jaegerUrl, cmd.traceId), opts.exportNote, width));
  return lines;
}

/** `denied for mallory: cannot list pods`: the rbac stage's facts in words (waterfall and request log). */
export function denialText(rbac: RbacOutcome): string {
  const d = rbac.denial;
  const who = d?.user ? ` for ${d.user}` : '';
  const what = d?.verb ? `: cannot ${d.verb} ${d.resource ?? d.path ?? ''}` : '';
  return `${rbac.decision}${who}${what}`;
}
