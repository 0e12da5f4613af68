/**
 * `kubetrail start`: one line per finished request — time it ended, status, verb and resource, path,
 * duration, items and bytes, cluster. Never a header value, a query (continue tokens, selectors) or a body.
 *
 * Long requests (a watch, logs -f, a large list) show a live count while they last: on a terminal, one
 * status line under the log, redrawn when bytes flow and every second between them; otherwise a
 * `(still open)` line per request every `progressEveryMs`, bytes flowing or not.
 */
import type { RequestProgress, RequestStart, StageObserver } from '../proxy/events.ts';
import { spanName } from '../stages/request-info.ts';
import { rbacOutcome } from '../stages/rbac.ts';
import { readKind } from '../telemetry/commands.ts';
import { fmtBytes, fmtMs, plural } from './format.ts';
import { denialText, itemsText } from './waterfall.ts';

interface Pending {
  start: RequestStart;
  name: string;
  /** A single object's GET: a Table's one row is not an item it listed (telemetry/commands.ts readKind). */
  single: boolean;
  status?: number;
  progress?: RequestProgress;
  /** performance.now() of the last `(still open)` line. */
  printedAt: number;
}

export interface RequestLogOptions {
  /** The log goes to a terminal: raw writes (no newline added) and its width, for the status line. */
  terminal?: { write(text: string): void; columns: number };
  /** Without a terminal: a `(still open)` line per long request at most this often; default 10 s. */
  progressEveryMs?: number;
  /** The monotonic clock the events' `t` come from (performance.now()); tests pass their own. */
  now?: () => number;
}

/** The status line is redrawn, and long requests checked, this often while any request is open. */
const TICK_MS = 1000;
/** A request shows on the status line once it has sent bytes or lasted this long. */
const LIVE_AFTER_MS = 1000;

function clock(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(11, 23);
}

function counts(items: number | undefined, events: number | undefined, bytes: number, partial = false): string {
  return `${items !== undefined ? ` ${itemsText(items, partial)}` : ''}${events !== undefined ? ` ${plural(events, 'event')}` : ''} ${fmtBytes(bytes)}`;
}

/** A watch counts events, anything else items; nothing before the first progress. */
function progressCounts(p: Pending): string {
  const pr = p.progress;
  const watch = p.name.startsWith('watch ');
  return counts(
    watch || p.single ? undefined : pr?.items || undefined,
    watch ? (pr?.watchEvents ?? 0) : undefined,
    pr?.bytesDown ?? 0,
  );
}

/** A 401/403 says who was refused what, as the waterfall's `rbac:` line does. */
function denial(status: number | undefined, body: string | undefined): string {
  if (status !== 401 && status !== 403) return '';
  const rbac = rbacOutcome({ statusCode: status, statusBody: body });
  const decision = rbac.decision;
  return decision === 'denied' || decision === 'unauthenticated' ? ` rbac: ${denialText(rbac)}` : '';
}

export interface RequestLog extends StageObserver {
  /** Print another line (e.g. a finished command's trace link) above the live status line. */
  print: (line: string) => void;
}

/**
 * Each line carries the time it is printed (a request's line: its end), so the log is in time order
 * whatever order requests start and end in; the duration says when the request started.
 */
export function requestLog(write: (line: string) => void, opts: RequestLogOptions = {}): RequestLog {
  const pending = new Map<string, Pending>();
  const every = opts.progressEveryMs ?? 10_000;
  const term = opts.terminal;
  const now = opts.now ?? (() => performance.now());
  let status = '';
  let ticker: NodeJS.Timeout | undefined;

  const elapsed = (p: Pending, t: number): number => Math.max(t, p.progress?.t ?? 0) - p.start.t0;
  const epoch = (p: Pending, t: number): number => p.start.startedAt + (t - p.start.t0);

  const statusText = (): string => {
    const t = now();
    const live = [...pending.values()].filter((p) => p.progress || t - p.start.t0 >= LIVE_AFTER_MS);
    if (live.length === 0) return '';
    const parts = live.slice(0, 3).map((p) => `${p.name}${progressCounts(p)} ${fmtMs(elapsed(p, t))}`);
    const text = `open: ${parts.join(' · ')}${live.length > 3 ? ` · +${live.length - 3} more` : ''}`;
    return text.length < term!.columns ? text : `${text.slice(0, Math.max(0, term!.columns - 2))}…`;
  };
  const line = (text: string): void => {
    if (!term) return write(text);
    term.write(`${status ? '\r\x1b[K' : ''}${text}\n`);
    status = statusText();
    if (status) term.write(status);
  };
  const redraw = (): void => {
    const next = statusText();
    if (next === status) return;
    term!.write(`\r\x1b[K${next}`);
    status = next;
  };
  const stillOpen = (p: Pending, t: number): void => {
    p.printedAt = t;
    const { start } = p;
    write(
      `${clock(epoch(p, t))} ${p.status ?? 'ERR'} ${p.name} ${start.path} ${fmtMs(t - start.t0)}${progressCounts(p)} [${start.cluster}] (still open)`,
    );
  };
  // Between events the clock still moves: a watch with nothing to say must not look dead.
  const tick = (): void => {
    if (term) return redraw();
    const t = now();
    for (const p of pending.values()) if (t - p.printedAt >= every) stillOpen(p, t);
  };

  return {
    print: line,
    onRequestStart(start) {
      const { info } = start;
      pending.set(start.id, {
        start,
        name: spanName(info, start.method),
        single: readKind(info) === 'object',
        printedAt: start.t0,
      });
      if (!ticker) {
        ticker = setInterval(tick, TICK_MS);
        ticker.unref();
      }
    },
    onUpstreamConnected() {},
    onResponseStart(id, ev) {
      const p = pending.get(id);
      if (p) p.status = ev.statusCode;
    },
    onProgress(id, ev) {
      const p = pending.get(id);
      if (!p) return;
      p.progress = ev;
      if (term) return redraw();
      if (ev.t - p.printedAt >= every) stillOpen(p, ev.t);
    },
    onRequestEnd(id, ev) {
      const p = pending.get(id);
      if (!p) return;
      pending.delete(id);
      if (pending.size === 0 && ticker) {
        clearInterval(ticker);
        ticker = undefined;
      }
      const { start } = p;
      const status = p.status ?? 'ERR';
      const note = ev.outcome === 'complete' ? '' : ` ${ev.outcome}${ev.error ? ` ${ev.error.code}` : ''}`;
      line(
        `${clock(epoch(p, ev.t))} ${status} ${p.name} ${start.path} ${fmtMs(ev.t - start.t0)}${counts(p.single ? undefined : ev.decode?.items, ev.decode?.watch?.events, ev.bytesDown, ev.decode?.partial === true)} [${start.cluster}]${note}${denial(p.status, ev.statusBody)}`,
      );
    },
  };
}
