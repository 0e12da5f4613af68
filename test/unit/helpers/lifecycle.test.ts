/**
 * expectLifecycle() (test/helpers/lifecycle.ts) itself: it passes every shape docs/lifecycle.md allows and
 * fails each way of breaking it, naming the request and the event that broke it. And the recorder passes
 * on to the test's own observer exactly the hooks it has.
 */
import { describe, expect, it } from 'vitest';
import type { StageObserver } from '../../../src/proxy/events.ts';
import {
  expectLifecycle,
  openRequests,
  recordLifecycle,
  type LifecycleEvent,
  type LifecycleKind,
} from '../../helpers/lifecycle.ts';
import { requestEnd, requestStart, responseStart } from '../../helpers/events.ts';

/** `seq('a', 'start upstream end')`: request a's events; `end` is `complete` unless `end:<outcome>`. */
function seq(id: string, kinds: string): LifecycleEvent[] {
  return kinds
    .split(' ')
    .filter(Boolean)
    .map((k) => {
      const [kind, outcome] = k.split(':') as [LifecycleKind, string | undefined];
      if (kind === 'start') return { kind, id, request: { method: 'GET', path: `/api/v1/${id}` } };
      if (kind === 'end') return { kind, id, outcome: outcome ?? 'complete' };
      return { kind, id };
    });
}

/** The message expectLifecycle fails with ('' when it passes). */
function failure(events: LifecycleEvent[], check?: Parameters<typeof expectLifecycle>[1]): string {
  try {
    expectLifecycle(events, check);
    return '';
  } catch (err) {
    return (err as Error).message;
  }
}

describe('expectLifecycle: the shapes the rule allows', () => {
  it.each([
    ['start end (a Status of its own, a refused identity)', 'start end:proxy_error'],
    ['start upstream end (an upstream failure before the answer)', 'start upstream end:upstream_error'],
    ['start response end (upstream is optional)', 'start response end'],
    ['start upstream response end', 'start upstream response end'],
    ['progress between response and end, any number', 'start upstream response progress progress progress end'],
    ['a client abort', 'start upstream response progress end:client_abort'],
    ['a cut answer', 'start upstream response end:upstream_error'],
  ])('%s', (_name, kinds) => {
    expect(failure(seq('a', kinds))).toBe('');
  });

  it('requests interleaved: each is read on its own', () => {
    const a = seq('a', 'start upstream response end');
    const b = seq('b', 'start upstream response progress end');
    const events = [a[0]!, b[0]!, b[1]!, a[1]!, a[2]!, b[2]!, b[3]!, a[3]!, b[4]!];
    expect(failure(events)).toBe('');
  });

  it('no events at all', () => {
    expect(failure([])).toBe('');
  });

  it('in flight: a request without its end yet passes only when that is allowed', () => {
    const events = seq('a', 'start upstream response progress');
    expect(failure(events, { inFlight: true })).toBe('');
    expect(failure(events)).toMatch(/request a \(GET \/api\/v1\/a\): no `end` \(last event: `progress` \(event #3\)\)/);
  });

  it('`only` checks the named requests and leaves the others alone', () => {
    const events = [...seq('good', 'start end'), ...seq('bad', 'start')];
    expect(failure(events, { only: new Set(['good']) })).toBe('');
    expect(failure(events, { only: new Set(['bad']) })).toMatch(
      /request bad .*: no `end` \(last event: `start` \(event #2\)\)/,
    );
  });
});

describe('expectLifecycle: each way of breaking the rule fails, naming the request and the event', () => {
  it.each([
    ['missing end', 'start upstream response', /no `end` \(last event: `response` \(event #2\)\)/],
    ['two ends', 'start response end end', /a second `end` \(event #3\); the first was `end` \(event #2\)/],
    ['two starts', 'start start upstream end', /a second `start` \(event #1\); the first was `start` \(event #0\)/],
    [
      'two upstreams',
      'start upstream upstream response end',
      /a second `upstream` \(event #2\); the first was `upstream` \(event #1\)/,
    ],
    ['two responses', 'start upstream response response end', /a second `response` \(event #3\)/],
    [
      'upstream after response',
      'start response upstream end',
      /`upstream` \(event #2\) after its `response` \(event #1\)/,
    ],
    [
      'upstream after progress',
      'start response progress upstream end',
      /`upstream` \(event #3\) after its `progress` \(event #2\)/,
    ],
    [
      'progress before response',
      'start upstream progress response end',
      /`progress` \(event #2\) before any `response`/,
    ],
    [
      'an event after end',
      'start upstream response end progress',
      /`progress` \(event #4\) after its `end` \(event #3\)/,
    ],
    ['a response after end', 'start end response', /`response` \(event #2\) after its `end` \(event #1\)/],
    [
      'an upstream after end',
      'start end:client_abort upstream',
      /`upstream` \(event #2\) after its `end` \(event #1\)/,
    ],
    ['no start', 'upstream response end', /`upstream` \(event #0\) before any `start`/],
    ['an end alone', 'end', /`end` \(event #0\) before any `start`/],
    [
      'an outcome that is not one',
      'start end:done',
      /`end` \(event #1\) with outcome "done", not one of complete, client_abort/,
    ],
  ])('%s', (_name, kinds, message) => {
    const got = failure(seq('r1', kinds));
    expect(got).toMatch(/^stage events break start → \[upstream\] → \[response\] → end \(docs\/lifecycle\.md\)/);
    // Named by id, and by method and path when its start was recorded.
    expect(got).toContain(kinds.startsWith('start') ? 'request r1 (GET /api/v1/r1): ' : 'request r1: ');
    expect(got).toMatch(message);
    expect(got).toContain(`its events: ${kinds.replace(/:\w+/g, '').split(' ').join(' → ')}`);
  });

  it('names every broken request, and only those, counting them among all', () => {
    const events = [...seq('ok', 'start upstream response end'), ...seq('x', 'start end end'), ...seq('y', 'start')];
    const got = failure(events);
    expect(got).toMatch(/for 2 of 3 requests:/);
    expect(got).toMatch(/request x .*: a second `end` \(event #6\); the first was `end` \(event #5\)/);
    expect(got).toMatch(/request y .*: no `end`/);
    expect(got).not.toMatch(/request ok/);
  });

  it('numbers events by their place in the whole sequence, interleaved as recorded', () => {
    const a = seq('a', 'start response upstream end');
    const b = seq('b', 'start end');
    const got = failure([a[0]!, b[0]!, a[1]!, b[1]!, a[2]!, a[3]!]);
    expect(got).toMatch(/request a .*: `upstream` \(event #4\) after its `response` \(event #2\)/);
    expect(got).toMatch(/for 1 of 2 requests/);
  });
});

describe('recordLifecycle', () => {
  it('records each event before the test’s observer sees it, and passes every event on', () => {
    const rec = recordLifecycle();
    const seen: string[] = [];
    const observer = rec.observer({
      onRequestStart: (s) => void seen.push(`start ${s.id} ${rec.events.length}`),
      onUpstreamConnected: (id) => void seen.push(`upstream ${id}`),
      onResponseStart: (id) => void seen.push(`response ${id}`),
      onRequestEnd: (id, e) => void seen.push(`end ${id} ${e.outcome}`),
    });
    const s = requestStart({ method: 'GET', path: '/api/v1/pods' });
    observer.onRequestStart(s);
    observer.onUpstreamConnected(s.id, { t: 1, reused: false });
    observer.onResponseStart(s.id, responseStart());
    observer.onRequestEnd(s.id, requestEnd({ outcome: 'client_abort' }));
    expect(seen).toEqual([`start ${s.id} 1`, `upstream ${s.id}`, `response ${s.id}`, `end ${s.id} client_abort`]);
    expect(rec.events).toEqual([
      { kind: 'start', id: s.id, request: { method: 'GET', path: '/api/v1/pods' } },
      { kind: 'upstream', id: s.id },
      { kind: 'response', id: s.id },
      { kind: 'end', id: s.id, outcome: 'client_abort' },
    ]);
    expect(openRequests(rec.events)).toEqual([]);
  });

  it('has exactly the optional hooks the test’s observer has: the proxy does less without them', () => {
    const rec = recordLifecycle();
    const bare = rec.observer();
    expect(Object.keys(bare).sort()).toEqual([
      'onRequestEnd',
      'onRequestStart',
      'onResponseStart',
      'onUpstreamConnected',
    ]);
    const progress: string[] = [];
    const closed: string[] = [];
    const full: StageObserver = {
      onRequestStart: () => undefined,
      upstreamHeaders: () => ({ 'X-Test': 'yes' }),
      onUpstreamConnected: () => undefined,
      onResponseStart: () => undefined,
      onRequestEnd: () => undefined,
      onProgress: (id) => void progress.push(id),
      onConnectionClosed: (c) => void closed.push(c),
    };
    const wrapped = rec.observer(full);
    expect(Object.keys(wrapped).sort()).toEqual(Object.keys(full).sort());
    expect(wrapped.upstreamHeaders?.(requestStart())).toEqual({ 'X-Test': 'yes' });
    wrapped.onProgress?.('p', { t: 1, bytesDown: 1, items: 0, watchEvents: 0 });
    wrapped.onConnectionClosed?.('c1');
    expect(progress).toEqual(['p']);
    expect(closed).toEqual(['c1']);
    expect(rec.events).toEqual([{ kind: 'progress', id: 'p' }]);
  });

  it('expectSettled waits for an open request’s end, then checks only the requests seen since the last call', async () => {
    const rec = recordLifecycle();
    const o = rec.observer();
    const a = requestStart();
    o.onRequestStart(a);
    o.onResponseStart(a.id, responseStart());
    setTimeout(() => o.onRequestEnd(a.id, requestEnd()), 50);
    await rec.expectSettled(2000);
    // A broken request, then a later check that does not touch it: only the first check fails.
    const b = requestStart();
    o.onRequestStart(b);
    o.onRequestEnd(b.id, requestEnd());
    o.onRequestEnd(b.id, requestEnd());
    await expect(rec.expectSettled(100)).rejects.toThrow(new RegExp(`request ${b.id} .*a second \`end\``));
    const c = requestStart();
    o.onRequestStart(c);
    o.onRequestEnd(c.id, requestEnd());
    await rec.expectSettled(100);
  });

  it('expectSettled fails on a request that never ends, once it has waited', async () => {
    const rec = recordLifecycle();
    const o = rec.observer();
    const a = requestStart({ path: '/api/v1/namespaces/default/pods' });
    o.onRequestStart(a);
    const t = Date.now();
    await expect(rec.expectSettled(150)).rejects.toThrow(
      new RegExp(`request ${a.id} \\(GET /api/v1/namespaces/default/pods\\): no \`end\``),
    );
    expect(Date.now() - t).toBeGreaterThanOrEqual(140);
  });
});
