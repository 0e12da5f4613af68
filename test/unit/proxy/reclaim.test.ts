/**
 * Memory back after a burst (src/proxy/reclaim.ts): V8's last-resort GC, then malloc_trim, once the process
 * has grown and connections have stopped coming and going; driven without sockets: fake timers, a fake RSS.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { exposedGc, watchBursts, type Trim } from '../../../src/proxy/reclaim.ts';

const MB = 1024 * 1024;
const QUIET = 30_000;
beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** A process whose RSS the test sets; its GC gives `freed` MB back; `trim`, when given, runs after it. */
function setup(
  freed = 50,
  trim?: Trim,
): {
  gc: ReturnType<typeof vi.fn>;
  w: ReturnType<typeof watchBursts>;
  setRss: (mb: number) => void;
  reclaimed: [number, number][];
} {
  let rss = 100 * MB;
  const gc = vi.fn(() => {
    rss -= freed * MB;
  });
  const reclaimed: [number, number][] = [];
  const w = watchBursts(gc, () => rss, {
    growth: 32 * MB,
    quietMs: QUIET,
    trim,
    onReclaim: (b, a) => reclaimed.push([b / MB, a / MB]),
  });
  return { gc, w, setRss: (mb) => (rss = mb * MB), reclaimed };
}

describe('a reclaim after the process grew', () => {
  it('runs once connections have stopped coming and going for QUIET_MS, not before, and once', () => {
    const { gc, w, setRss, reclaimed } = setup();
    setRss(200);
    w.closed(); // grown by 100 MB: waiting
    vi.advanceTimersByTime(QUIET - 500);
    w.opened(); // still coming: the wait starts again
    vi.advanceTimersByTime(QUIET - 500);
    w.closed(); // and again
    vi.advanceTimersByTime(QUIET - 1);
    expect(gc).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(gc).toHaveBeenCalledTimes(1);
    expect(reclaimed).toEqual([[200, 150]]);
    vi.advanceTimersByTime(10 * QUIET);
    expect(gc).toHaveBeenCalledTimes(1);
  });

  it('never while the process stays within GROWTH of its smallest size, however connections come and go', () => {
    const { gc, w, setRss } = setup();
    for (let i = 0; i < 200; i++) {
      setRss(100 + (i % 31));
      w.opened();
      w.closed();
      vi.advanceTimersByTime(QUIET + 1000);
    }
    expect(gc).not.toHaveBeenCalled();
  });

  it('measures growth from the smallest size since the last reclaim: one that gave nothing back is not repeated', () => {
    const { gc, w, setRss } = setup(0); // a GC that gives nothing back (no trim here)
    setRss(200);
    w.closed();
    vi.advanceTimersByTime(QUIET);
    expect(gc).toHaveBeenCalledTimes(1);
    // Still 200 MB: connections closing now are no reason for another.
    for (let i = 0; i < 10; i++) w.closed();
    vi.advanceTimersByTime(3 * QUIET);
    expect(gc).toHaveBeenCalledTimes(1);
    // Memory given back later lowers the floor; the next growth over it counts.
    setRss(120);
    w.closed();
    setRss(160);
    w.closed();
    vi.advanceTimersByTime(QUIET);
    expect(gc).toHaveBeenCalledTimes(2);
  });

  it('not when the growth is gone by the time the wait is over, nor after stop()', () => {
    const { gc, w, setRss } = setup();
    setRss(200);
    w.closed();
    setRss(110);
    vi.advanceTimersByTime(QUIET);
    expect(gc).not.toHaveBeenCalled();
    setRss(200);
    w.closed();
    w.stop();
    vi.advanceTimersByTime(3 * QUIET);
    expect(gc).not.toHaveBeenCalled();
  });

  it('then trims: what the GC freed to malloc goes to the system, and the floor is what is left after it', async () => {
    let finish: (released: boolean) => void = () => undefined;
    let setRss: (mb: number) => void = () => undefined;
    const trim = vi.fn(
      () =>
        new Promise<boolean>((resolve) => {
          finish = (released) => {
            if (released) setRss(110);
            resolve(released);
          };
        }),
    );
    const s = setup(0, trim); // glibc: the GC frees to malloc, RSS does not move
    setRss = s.setRss;
    s.setRss(200);
    s.w.closed();
    vi.advanceTimersByTime(QUIET);
    expect(s.gc).toHaveBeenCalledTimes(1);
    expect(trim).toHaveBeenCalledTimes(1);
    // While it runs (on the thread pool), connections coming and going start nothing new.
    s.w.opened();
    s.w.closed();
    vi.advanceTimersByTime(3 * QUIET);
    expect(s.gc).toHaveBeenCalledTimes(1);
    expect(trim).toHaveBeenCalledTimes(1);
    expect(s.reclaimed).toEqual([]);
    finish(true);
    await vi.advanceTimersByTimeAsync(0);
    expect(s.reclaimed).toEqual([[200, 110]]);
    // The floor is 110 MB now: growing 40 MB over it is a burst again.
    s.setRss(150);
    s.w.closed();
    await vi.advanceTimersByTimeAsync(QUIET);
    expect(trim).toHaveBeenCalledTimes(2);
    finish(false);
    await vi.advanceTimersByTimeAsync(0);
    expect(s.reclaimed).toEqual([
      [200, 110],
      [150, 150],
    ]);
  });

  it('a trim that fails is as one that gave nothing back', async () => {
    const s = setup(0, () => Promise.reject(new Error('no')));
    s.setRss(200);
    s.w.closed();
    await vi.advanceTimersByTimeAsync(QUIET);
    expect(s.reclaimed).toEqual([[200, 200]]);
  });

  it("uses V8's last-resort GC, only where Node exposes gc (--expose-gc: NODE_FLAGS)", () => {
    const had = (globalThis as { gc?: unknown }).gc;
    try {
      (globalThis as { gc?: unknown }).gc = undefined;
      expect(exposedGc()).toBeUndefined();
      const v8gc = vi.fn();
      (globalThis as { gc?: unknown }).gc = v8gc;
      exposedGc()?.();
      expect(v8gc.mock.calls).toEqual([[{ type: 'major', execution: 'sync', flavor: 'last-resort' }]]);
    } finally {
      (globalThis as { gc?: unknown }).gc = had;
    }
  });
});
