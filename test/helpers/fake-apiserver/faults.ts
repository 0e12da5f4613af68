/**
 * Fault injection (`setFault`): which request takes which active fault, and the answer a `status` fault
 * writes instead of the handler's. The knobs themselves are `Fault` (types.ts); the chain applies them:
 * `delayHeadersMs` (a `sleep` before anything else), `dropConnection`, `status` (this answer), and, on
 * ordinary requests only, `resetAfterBytes` and `hangAfterHeaders`, which the response `Sink` (wire.ts) acts on.
 */
import type { Fault } from './types.ts';
import { commonHeaders, goJson, REASON_PHRASES, sortHeaders, status } from './wire.ts';

/** The active faults, in the order given; a fault with `times` is forgotten once used up. */
export class Faults {
  private active: (Fault & { left?: number })[] = [];

  /** Replace the active faults (`null` clears them). */
  set(f: Fault | Fault[] | null): void {
    this.active =
      f === null
        ? []
        : (Array.isArray(f) ? f : [f]).map((x) => (x.times !== undefined ? { ...x, left: x.times } : { ...x }));
  }

  /** The first active fault for this method and URL (path and query), counting one use of it. */
  take(method: string, url: string): Fault | undefined {
    for (const f of this.active) {
      if (f.method !== undefined && f.method.toUpperCase() !== method.toUpperCase()) continue;
      if (f.path !== undefined && !f.path.test(url)) continue;
      if (f.left !== undefined) {
        f.left--;
        if (f.left <= 0) this.active = this.active.filter((x) => x !== f);
      }
      return f;
    }
    return undefined;
  }
}

/** What a `status` fault answers: its body (or a Status, or APF's 429 text) and headers, Go-sorted. */
export function faultAnswer(f: Fault, auditId: string): { code: number; headers: [string, string][]; body: string } {
  const code = f.status ?? 500;
  const headers: [string, string][] = commonHeaders({ auditId });
  if (f.retryAfter !== undefined) headers.push(['Retry-After', String(f.retryAfter)]);
  for (const [k, val] of Object.entries(f.headers ?? {})) headers.push([k, val]);
  let body: string;
  if (typeof f.body === 'string') body = f.body;
  else if (f.body !== undefined) body = goJson(f.body);
  else if (code === 429) {
    body = 'Too many requests, please try again later.\n';
    headers.push(['X-Content-Type-Options', 'nosniff']);
  } else {
    const reasons: Record<number, [string, string]> = {
      400: ['BadRequest', 'fault injected'],
      404: ['NotFound', 'the server could not find the requested resource'],
      409: ['Conflict', 'fault injected'],
      500: ['InternalError', 'Internal error occurred: fault injected'],
      503: ['ServiceUnavailable', 'fault injected'],
      504: ['Timeout', 'Timeout: request did not complete within requested timeout - context deadline exceeded'],
    };
    const [reason, message] = reasons[code] ?? ['', REASON_PHRASES[code] ?? 'fault injected'];
    body = goJson(status(code, reason, message));
  }
  if (!headers.some(([k]) => k.toLowerCase() === 'content-type')) {
    headers.push([
      'Content-Type',
      code === 429 && f.body === undefined
        ? 'text/plain; charset=utf-8'
        : typeof f.body === 'string'
          ? 'text/plain; charset=utf-8'
          : 'application/json',
    ]);
  }
  return { code, headers: sortHeaders(headers), body };
}

/** `delayHeadersMs`: a timer that does not keep the process alive. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    t.unref();
  });
}
