/**
 * `kubetrail start`: one line per finished request — time, status, method and path, milliseconds, bytes.
 * Never a header value, a query's secrets (there are none in kube queries but `continue` tokens, which are
 * left out) or a body.
 */
import type { RequestStart, StageObserver } from '../proxy/events.ts';

interface Pending {
  start: RequestStart;
  status?: number;
}

function clock(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(11, 23);
}

export function requestLog(write: (line: string) => void): StageObserver {
  const pending = new Map<string, Pending>();
  return {
    onRequestStart(start) {
      pending.set(start.id, { start });
      return undefined;
    },
    onUpstreamConnected() {},
    onResponseStart(id, ev) {
      const p = pending.get(id);
      if (p) p.status = ev.statusCode;
    },
    onRequestEnd(id, ev) {
      const p = pending.get(id);
      if (!p) return;
      pending.delete(id);
      const { start } = p;
      const ms = (ev.t - start.t0).toFixed(1);
      const query = start.query.replace(/(^|&)continue=[^&]*/, '$1continue=…');
      const status = p.status ?? (ev.error ? 'ERR' : '-');
      const note = ev.outcome === 'complete' ? '' : ` ${ev.outcome}${ev.error ? ` ${ev.error.code}` : ''}`;
      write(`${clock(start.startedAt)} ${status} ${start.method} ${start.path}${query ? `?${query}` : ''} ${ms}ms ${ev.bytesDown}B [${start.cluster}]${note}`);
    },
  };
}
