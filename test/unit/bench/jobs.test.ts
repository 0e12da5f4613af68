/**
 * The bench's helper protocol (bench/lib/jobs.ts), parent and helper joined without a process: a
 * measurement that times out must be cancelled in the helper, and its late answer must never be taken for
 * the next measurement's (the 01:43Z run's workload 3 was void because of exactly that).
 */
import { describe, expect, it } from 'vitest';
import {
  Caller,
  Runner,
  type Cancel,
  type ErrorAnswer,
  type JobContext,
  type Tagged,
} from '../../../bench/lib/jobs.ts';

type In = { type: 'measure'; name: string } | { type: 'ping' };
type Out = { type: 'measured'; name: string } | { type: 'window'; name: string } | { type: 'pong' } | ErrorAnswer;

/** A gate a test opens by hand: the job's answer comes when the test says so. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open = (): void => undefined;
  const wait = new Promise<void>((resolve) => (open = resolve));
  return { wait, open };
}

/** Parent and helper joined by asynchronous hops, as IPC is; `run` is the helper's job. */
function pair(run: (m: In, ctx: JobContext<Out>) => Promise<Out | undefined>): {
  caller: Caller<In, Out>;
  runner: Runner<In, Out>;
  toHelper: (Tagged<In> | Cancel)[];
} {
  const toHelper: (Tagged<In> | Cancel)[] = [];
  const link: { caller?: Caller<In, Out> } = {};
  const runner = new Runner<In, Out>((m) => setImmediate(() => link.caller?.deliver(m)), run);
  const caller = new Caller<In, Out>((m) => {
    toHelper.push(m);
    setImmediate(() => runner.receive(m));
  });
  link.caller = caller;
  return { caller, runner, toHelper };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('bench helper protocol', () => {
  it('a timed-out call is cancelled in the helper, and the next call gets its own answer, not the late one', async () => {
    const slow = gate();
    const signals: AbortSignal[] = [];
    const { caller, runner, toHelper } = pair(async (m, ctx) => {
      if (m.type !== 'measure') return { type: 'pong' };
      signals.push(ctx.signal);
      // The first job ignores its signal on purpose (a request that ends anyway): its answer must still be dropped.
      if (m.name === 'mitmproxy') await slow.wait;
      return { type: 'measured', name: m.name };
    });

    await expect(caller.call({ type: 'measure', name: 'mitmproxy' }, 'measured', 30)).rejects.toThrow(
      /no answer to measure .* within 30 ms \(cancelled\)/,
    );
    await tick();
    expect(toHelper.at(-1)).toEqual({ type: 'cancel', id: 1 });
    expect(signals[0]?.aborted).toBe(true);
    expect(runner.running).toBe(0);

    const next = caller.call({ type: 'measure', name: 'nginx' }, 'measured', 5000);
    slow.open(); // the cancelled job finishes while the next one runs
    await expect(next).resolves.toMatchObject({ type: 'measured', name: 'nginx' });
    expect(signals[1]?.aborted).toBe(false);
  });

  it('a late answer from a helper that ignored the cancel is dropped, not handed to the call waiting now', async () => {
    const sent: (Tagged<In> | Cancel)[] = [];
    const caller = new Caller<In, Out>((m) => sent.push(m));
    await expect(caller.call({ type: 'measure', name: 'a' }, 'measured', 10)).rejects.toThrow(/cancelled/);
    const b = caller.call({ type: 'measure', name: 'b' }, 'measured', 5000);
    caller.deliver({ type: 'measured', name: 'a', id: 1 });
    caller.deliver({ type: 'measured', name: 'b', id: 2 });
    await expect(b).resolves.toMatchObject({ name: 'b' });
    expect(caller.dropped).toBe(1);
    expect(sent.map((m) => `${m.type}:${m.id}`)).toEqual(['measure:1', 'cancel:1', 'measure:2']);
  });

  it('progress messages reach only their own call, errors reject it, unasked messages wait for next()', async () => {
    const { caller } = pair((m, ctx) => {
      if (m.type === 'ping') return Promise.reject(new Error('boom'));
      ctx.emit({ type: 'window', name: m.name });
      return Promise.resolve({ type: 'measured', name: m.name });
    });
    const windows: string[] = [];
    const r = await caller.call(
      { type: 'measure', name: 'w2' },
      'measured',
      5000,
      (o) => o.type === 'window' && windows.push(o.name),
    );
    expect(r.name).toBe('w2');
    expect(windows).toEqual(['w2']);
    await expect(caller.call({ type: 'ping' }, 'pong', 5000)).rejects.toThrow('bench: helper failed: Error: boom');

    caller.deliver({ type: 'pong', id: 0 });
    await expect(caller.next(1000)).resolves.toMatchObject({ type: 'pong' });
  });

  it('a helper that exits fails the waiting call at once, and later calls too', async () => {
    const caller = new Caller<In, Out>(() => undefined);
    const waiting = caller.call({ type: 'ping' }, 'pong', 60_000);
    caller.exited(new Error('bench: a helper process exited'));
    await expect(waiting).rejects.toThrow('exited');
    await expect(caller.call({ type: 'ping' }, 'pong', 60_000)).rejects.toThrow('exited');
  });
});
