/**
 * The proxy's stage events checked against their lifecycle rule (docs/lifecycle.md, src/proxy/events.ts):
 * per request `start` → [`upstream`] → [`response`] → `end`. Exactly one `start` and exactly one `end`, in
 * that order; `upstream` and `response` at most once each, between them, `upstream` before `response`;
 * nothing after `end`; `end` names one of the four outcomes.
 *
 * `progress` is not a step of the rule: it reports body bytes relayed so far, so it may only come between
 * `response` and `end` (any number of times). `connectionClosed` is about a client connection, not a
 * request, and is not recorded.
 *
 * `recordLifecycle()` wraps a test's own observer so that every event is recorded first; `expectLifecycle()`
 * checks a recorded sequence.
 */
import { expect } from 'vitest';
import type { Outcome, StageObserver } from '../../src/proxy/events.ts';

export type LifecycleKind = 'start' | 'upstream' | 'response' | 'progress' | 'end';

export interface LifecycleEvent {
  kind: LifecycleKind;
  /** The request's id (RequestStart.id; the other hooks' first argument). */
  id: string;
  /** `start`: what the request was, for the failure message. */
  request?: { method: string; path: string };
  /** `end`: its outcome. */
  outcome?: string;
}

const OUTCOMES: readonly Outcome[] = ['complete', 'client_abort', 'upstream_error', 'proxy_error'];

/** Where each step may come: a step of lower rank never follows one of a higher rank. */
const RANK: Record<LifecycleKind, number> = { start: 0, upstream: 1, response: 2, progress: 3, end: 4 };

/**
 * The first way one request's events break the rule, or undefined. `indexes` are the events' places in the
 * whole recorded sequence, for the message.
 */
function violation(events: LifecycleEvent[], indexes: number[], open: boolean): string | undefined {
  const at = (i: number): string => `\`${events[i]?.kind}\` (event #${indexes[i]})`;
  const seen = new Map<LifecycleKind, number>();
  let last: number | undefined;
  for (let i = 0; i < events.length; i++) {
    const kind = events[i]!.kind;
    if (i === 0 && kind !== 'start') return `${at(i)} before any \`start\``;
    const before = seen.get(kind);
    if (before !== undefined && kind !== 'progress') return `a second ${at(i)}; the first was ${at(before)}`;
    const end = seen.get('end');
    if (end !== undefined) return `${at(i)} after its ${at(end)}`;
    if (kind === 'progress' && !seen.has('response')) return `${at(i)} before any \`response\``;
    if (last !== undefined && RANK[kind] < RANK[events[last]!.kind]) return `${at(i)} after its ${at(last)}`;
    if (kind === 'end' && !OUTCOMES.includes(events[i]!.outcome as Outcome))
      return `${at(i)} with outcome ${JSON.stringify(events[i]!.outcome)}, not one of ${OUTCOMES.join(', ')}`;
    seen.set(kind, i);
    last = i;
  }
  if (!open && !seen.has('end')) return `no \`end\` (last event: ${at(events.length - 1)})`;
  return undefined;
}

export interface LifecycleCheck {
  /** Requests still in flight may lack their `end` (everything else is checked all the same). */
  inFlight?: boolean;
  /** Check only these requests (the others' events are still read, for the events' numbers). */
  only?: ReadonlySet<string>;
}

/**
 * Every request in `events` follows the rule. Fails naming each request that does not (its id, method and
 * path), the first event that breaks the rule, and the request's whole sequence.
 */
export function expectLifecycle(events: readonly LifecycleEvent[], check: LifecycleCheck = {}): void {
  const byId = new Map<string, { events: LifecycleEvent[]; indexes: number[] }>();
  events.forEach((e, i) => {
    if (check.only && !check.only.has(e.id)) return;
    const group = byId.get(e.id) ?? { events: [], indexes: [] };
    group.events.push(e);
    group.indexes.push(i);
    byId.set(e.id, group);
  });
  const broken: string[] = [];
  for (const [id, group] of byId) {
    const why = violation(group.events, group.indexes, check.inFlight ?? false);
    if (why === undefined) continue;
    const req = group.events.find((e) => e.kind === 'start')?.request;
    broken.push(
      `request ${id}${req ? ` (${req.method} ${req.path})` : ''}: ${why}; its events: ${group.events.map((e) => e.kind).join(' → ')}`,
    );
  }
  if (broken.length > 0)
    expect.fail(
      `stage events break start → [upstream] → [response] → end (docs/lifecycle.md) for ${broken.length} of ${byId.size} requests:\n  ${broken.join('\n  ')}`,
    );
}

/** Requests in `events` that have started and not yet ended. */
export function openRequests(events: readonly LifecycleEvent[]): string[] {
  const open = new Set<string>();
  for (const e of events) {
    if (e.kind === 'start') open.add(e.id);
    else if (e.kind === 'end') open.delete(e.id);
  }
  return [...open];
}

const nothing: StageObserver = {
  onRequestStart: () => undefined,
  onUpstreamConnected: () => undefined,
  onResponseStart: () => undefined,
  onRequestEnd: () => undefined,
};

export interface LifecycleRecorder {
  /** Every event recorded so far, in the order the proxy published them. */
  readonly events: LifecycleEvent[];
  /**
   * `inner` with each event recorded before `inner` sees it. It has exactly the optional hooks `inner` has
   * (`upstreamHeaders`, `onProgress`, `onConnectionClosed`): the proxy skips work for an observer without
   * them, and the recorder must not change what the test exercises.
   */
  observer(inner?: StageObserver): StageObserver;
  /**
   * For an afterEach: the requests that had events since the last call follow the rule, each with its
   * `end`. Those still open are waited for first (up to `timeoutMs`: a cut stream's `end` comes a moment
   * after the client saw the cut), then checked: one still open by then fails as "no `end`".
   */
  expectSettled(timeoutMs?: number): Promise<void>;
}

export function recordLifecycle(): LifecycleRecorder {
  const events: LifecycleEvent[] = [];
  let checked = 0;
  return {
    events,
    observer(inner = nothing) {
      const recording: StageObserver = {
        onRequestStart(req) {
          events.push({ kind: 'start', id: req.id, request: { method: req.method, path: req.path } });
          inner.onRequestStart(req);
        },
        onUpstreamConnected(id, ev) {
          events.push({ kind: 'upstream', id });
          inner.onUpstreamConnected(id, ev);
        },
        onResponseStart(id, ev) {
          events.push({ kind: 'response', id });
          inner.onResponseStart(id, ev);
        },
        onRequestEnd(id, ev) {
          events.push({ kind: 'end', id, outcome: ev.outcome });
          inner.onRequestEnd(id, ev);
        },
      };
      if (inner.upstreamHeaders) recording.upstreamHeaders = (req) => inner.upstreamHeaders?.(req);
      if (inner.onProgress)
        recording.onProgress = (id, ev) => {
          events.push({ kind: 'progress', id });
          inner.onProgress?.(id, ev);
        };
      if (inner.onConnectionClosed) recording.onConnectionClosed = (c) => inner.onConnectionClosed?.(c);
      return recording;
    },
    async expectSettled(timeoutMs = 5000) {
      const from = checked;
      const touched = new Set(events.slice(from).map((e) => e.id));
      const deadline = Date.now() + timeoutMs;
      while (openRequests(events).some((id) => touched.has(id)) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      checked = events.length;
      expectLifecycle(events, { only: touched });
    },
  };
}
