/**
 * When a large answer's `end` event (and the decoding it carries, tap.ts) happens: after the relay's last
 * bytes are with the OS, never while they still wait in kubetrail's buffer for kubectl to read on (#18,
 * W3 gzip: the decoding of a list held back its last ~64 KiB for the whole decode).
 */
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { RequestEnd, RequestStart, StageObserver } from '../../../src/proxy/events.ts';
import { Exchange } from '../../../src/proxy/exchange.ts';
import { expectLifecycle, recordLifecycle, type LifecycleEvent } from '../../helpers/lifecycle.ts';

const list = (n: number): Buffer =>
  Buffer.from(
    `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[${Array.from(
      { length: n },
      // A uid each, so that gzip leaves more than the inline threshold (256 KiB) on the wire.
      (_, i) =>
        `{"metadata":{"name":"pod-${i}","namespace":"default","uid":"${randomBytes(16).toString('hex')}"},"status":{"phase":"Running"}}`,
    ).join(',')}]}`,
  );
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function observed(): { observer: StageObserver; ends: RequestEnd[]; events: LifecycleEvent[] } {
  const ends: RequestEnd[] = [];
  const lifecycle = recordLifecycle();
  return {
    ends,
    events: lifecycle.events,
    observer: lifecycle.observer({
      onRequestStart: () => undefined,
      onUpstreamConnected: () => undefined,
      onResponseStart: () => undefined,
      onRequestEnd: (_id, ev) => ends.push(ev),
    }),
  };
}

/** A client side whose writes the OS has not taken yet: each is held until `flush()`. */
function slowClient(): { client: Writable; flush: () => void } {
  const held: (() => void)[] = [];
  const client = new Writable({
    highWaterMark: 16 * 1024,
    write(_chunk, _enc, done) {
      held.push(done);
    },
  });
  return {
    client,
    flush: () => {
      // Writable hands the next buffered chunk over only after the previous one is done.
      while (held.length > 0) {
        held.shift()?.();
      }
    },
  };
}

function exchange(observer: StageObserver): Exchange {
  const facts = {
    id: 'r1',
    startedAt: Date.now(),
    t0: performance.now(),
    method: 'GET',
    path: '/api/v1/namespaces/default/pods',
    query: '',
    cluster: 'c',
    upstream: { host: '127.0.0.1', port: 6443 },
    upgrade: false,
    userAgent: undefined,
    kubectlCommand: undefined,
    kubectlSession: undefined,
    commandTag: undefined,
  } as unknown as RequestStart;
  return new Exchange(observer, facts, { progress: false });
}

describe('a large answer’s end event waits for the relay to reach the OS', () => {
  it('publishes end, with the whole body decoded, only once the client side has flushed', async () => {
    const body = gzipSync(list(20_000));
    expect(body.length).toBeGreaterThan(256 * 1024);
    const { observer, ends, events } = observed();
    const { client, flush } = slowClient();
    const x = exchange(observer);
    x.responded(200, ['Content-Type', 'application/json', 'Content-Encoding', 'gzip'], {
      isWatch: false,
      podList: true,
      client,
    });
    for (let i = 0; i < body.length; i += 64 * 1024) {
      const chunk = body.subarray(i, i + 64 * 1024);
      client.write(chunk);
      x.down(chunk);
    }
    client.end();
    x.finish('complete');
    // The upstream has ended, but the last bytes are still kubetrail's to write: no decoding in their way.
    for (let i = 0; i < 5; i++) await turn();
    expect(ends).toHaveLength(0);
    // They reach the OS (kubectl read on): the end event follows, with the facts of the whole body.
    for (let i = 0; i < 50 && ends.length === 0; i++) {
      flush();
      await turn();
    }
    expect(ends).toHaveLength(1);
    expect(ends[0]).toMatchObject({ outcome: 'complete', decode: { kind: 'PodList', items: 20_000 } });
    expectLifecycle(events);
  });

  it('does not wait for a client side that was never ended (a cut answer)', async () => {
    const { observer, ends, events } = observed();
    const { client } = slowClient();
    const x = exchange(observer);
    x.responded(200, ['Content-Type', 'application/json'], { isWatch: false, client });
    const body = list(20_000);
    client.write(body);
    x.down(body);
    x.finish('upstream_error');
    await turn();
    expect(ends).toHaveLength(1);
    expect(ends[0]?.outcome).toBe('upstream_error');
    expectLifecycle(events);
  });
});

describe('a large answer’s decoding holds no other request back (#18, W3)', () => {
  it('runs in slices with the event loop turning between them, and ends with the whole body', async () => {
    const body = gzipSync(list(20_000));
    const { observer, ends } = observed();
    const x = exchange(observer);
    x.responded(200, ['Content-Type', 'application/json', 'Content-Encoding', 'gzip'], {
      isWatch: false,
      podList: true,
    });
    for (let i = 0; i < body.length; i += 16 * 1024) x.down(body.subarray(i, i + 16 * 1024));
    // Another connection's work, as the event loop would serve it: one step per loop turn.
    let turns = 0;
    let ticking = true;
    const tick = (): void => {
      turns++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const started = turns;
    x.finish('complete');
    for (let i = 0; i < 10_000 && ends.length === 0; i++) await turn();
    ticking = false;
    expect(ends).toHaveLength(1);
    expect(ends[0]).toMatchObject({ outcome: 'complete', decode: { kind: 'PodList', items: 20_000 } });
    // Decoded in one go, the loop would have turned once or twice between finish() and the end event.
    expect(turns - started).toBeGreaterThanOrEqual(3);
  });
});
