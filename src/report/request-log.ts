/**
 * `kubetrail start`: one line per finished request — time, status, verb and resource, path, milliseconds,
 * items and bytes, cluster. Never a header value, a query (continue tokens, selectors) or a body.
 *
 * Long requests (a watch, logs -f, a large list) show a live count while they last: on a terminal, one
 * status line under the log, rewritten in place at most once a second; otherwise a `(still open)` line per
 * request every `progressEveryMs` while its bytes flow.
 */
import type { RequestProgress, RequestStart, StageObserver } from '../proxy/events.ts';
import { parseRequestInfo, spanName } from '../stages/request-info.ts';
import { fmtBytes, fmtMs } from './format.ts';

interface Pending {
  start: RequestStart;
  name: string;
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
}

function clock(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(11, 23);
}

function counts(items: number | undefined, events: number | undefined, bytes: number, partial = false): string {
  return `${items !== undefined ? ` ${partial ? '≥' : ''}${items} items` : ''}${events !== undefined ? ` ${events} events` : ''} ${fmtBytes(bytes)}`;
}

export interface RequestLog extends StageObserver {
  /** Print another line (e.g. a finished command's trace link) above the live status line. */
  print: (line: string) => void;
}

export function requestLog(write: (line: string) => void, opts: RequestLogOptions = {}): RequestLog {
  const pending = new Map<string, Pending>();
  const every = opts.progressEveryMs ?? 10_000;
  const term = opts.terminal;
  let status = '';

  const statusText = (): string => {
    const live = [...pending.values()].filter((p) => p.progress);
    if (live.length === 0) return '';
    const parts = live.slice(0, 3).map((p) => {
      const pr = p.progress as RequestProgress;
      const watch = p.name.startsWith('watch ');
      return `${p.name}${counts(watch ? undefined : pr.items || undefined, watch ? pr.watchEvents : undefined, pr.bytesDown)} ${fmtMs(pr.t - p.start.t0)}`;
    });
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

  return {
    print: line,
    onRequestStart(start) {
      pending.set(start.id, { start, name: spanName(parseRequestInfo(start.method, start.path, start.query), start.method), printedAt: start.t0 });
      return undefined;
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
      if (ev.t - p.printedAt < every) return;
      p.printedAt = ev.t;
      const watch = p.name.startsWith('watch ');
      const { start } = p;
      write(`${clock(start.startedAt + (ev.t - start.t0))} ${p.status ?? 'ERR'} ${p.name} ${start.path} ${fmtMs(ev.t - start.t0)}${counts(watch ? undefined : ev.items || undefined, watch ? ev.watchEvents : undefined, ev.bytesDown)} [${start.cluster}] (still open)`);
    },
    onRequestEnd(id, ev) {
      const p = pending.get(id);
      if (!p) return;
      pending.delete(id);
      const { start } = p;
      const status = p.status ?? 'ERR';
      const note = ev.outcome === 'complete' ? '' : ` ${ev.outcome}${ev.error ? ` ${ev.error.code}` : ''}`;
      line(`${clock(start.startedAt)} ${status} ${p.name} ${start.path} ${fmtMs(ev.t - start.t0)}${counts(ev.decode?.items, ev.decode?.watch?.events, ev.bytesDown, ev.decode?.partial === true)} [${start.cluster}]${note}`);
    },
  };
}
