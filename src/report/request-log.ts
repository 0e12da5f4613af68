/**
 * `kubetrail start`: one line per finished request — time, status, verb and resource, path, milliseconds,
 * items and bytes, cluster. Never a header value, a query (continue tokens, selectors) or a body.
 */
import type { RequestStart, StageObserver } from '../proxy/events.ts';
import { parseRequestInfo, spanName } from '../stages/request-info.ts';
import { fmtBytes, fmtMs } from './format.ts';

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
      const name = spanName(parseRequestInfo(start.method, start.path, start.query), start.method);
      const status = p.status ?? 'ERR';
      const items = ev.decode?.items !== undefined ? ` ${ev.decode.items} items` : '';
      const events = ev.decode?.watch ? ` ${ev.decode.watch.events} events` : '';
      const note = ev.outcome === 'complete' ? '' : ` ${ev.outcome}${ev.error ? ` ${ev.error.code}` : ''}`;
      write(`${clock(start.startedAt)} ${status} ${name} ${start.path} ${fmtMs(ev.t - start.t0)}${items}${events} ${fmtBytes(ev.bytesDown)} [${start.cluster}]${note}`);
    },
  };
}
