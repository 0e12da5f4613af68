/**
 * Two full GCs once the process has grown and connections have stopped coming and going
 * (src/proxy/reclaim.ts), driven without sockets: fake timers and a fake RSS.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { exposedGc, watchBursts } from '../../../src/proxy/reclaim.ts';

const MB = 1024 * 1024;
beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** A process whose RSS the test sets; its GC gives `freed` MB back. */
function setup(freed = 50): {
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
    quietMs: 2000,
    onReclaim: (b, a) => reclaimed.push([b / MB, a / MB]),
  });
  return { gc, w, setRss: (mb) => (rss = mb * MB), reclaimed };
}

describe('two GCs after the process grew', () => {
  it('runs once connections have stopped coming and going for QUIET_MS, not before', () => {
    const { gc, w, setRss, reclaimed } = setup();
    setRss(200);
    w.closed(); // grown by 100 MB: armed
    vi.advanceTimersByTime(1500);
    w.opened(); // still coming: the wait starts again
    vi.advanceTimersByTime(1500);
    w.closed();
    vi.advanceTimersByTime(1999);
    expect(gc).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(gc).toHaveBeenCalledTimes(1);
    // And once more, for what the first one's finalizers freed.
    vi.advanceTimersByTime(2000);
    expect(gc).toHaveBeenCalledTimes(2);
    expect(reclaimed).toEqual([[200, 100]]);
    vi.advanceTimersByTime(60_000);
    expect(gc).toHaveBeenCalledTimes(2);
  });

  it('never while the process stays within GROWTH of its smallest size, however connections come and go', () => {
    const { gc, w, setRss } = setup();
    for (let i = 0; i < 200; i++) {
      setRss(100 + (i % 31));
      w.opened();
      w.closed();
      vi.advanceTimersByTime(3000);
    }
    expect(gc).not.toHaveBeenCalled();
  });

  it('measures growth from the smallest size since the last GC: a GC that gave nothing back is not repeated', () => {
    const { gc, w, setRss } = setup(0); // glibc keeps what it is given back
    setRss(200);
    w.closed();
    vi.advanceTimersByTime(4000);
    expect(gc).toHaveBeenCalledTimes(2);
    // Still 200 MB: connections closing now are no reason for another.
    for (let i = 0; i < 10; i++) w.closed();
    vi.advanceTimersByTime(10_000);
    expect(gc).toHaveBeenCalledTimes(2);
    // Memory given back later lowers the floor; the next growth over it counts.
    setRss(120);
    w.closed();
    setRss(160);
    w.closed();
    vi.advanceTimersByTime(4000);
    expect(gc).toHaveBeenCalledTimes(4);
  });

  it('not when the growth is gone by the time the wait is over, nor after stop()', () => {
    const { gc, w, setRss } = setup();
    setRss(200);
    w.closed();
    setRss(110);
    vi.advanceTimersByTime(2000);
    expect(gc).not.toHaveBeenCalled();
    setRss(200);
    w.closed();
    w.stop();
    vi.advanceTimersByTime(5000);
    expect(gc).not.toHaveBeenCalled();
  });

  it("uses V8's gc only where Node exposes it (--expose-gc: NODE_FLAGS)", () => {
    const had = (globalThis as { gc?: unknown }).gc;
    try {
      (globalThis as { gc?: unknown }).gc = undefined;
      expect(exposedGc()).toBeUndefined();
      const f = (): void => undefined;
      (globalThis as { gc?: unknown }).gc = f;
      expect(exposedGc()).toBe(f);
    } finally {
      (globalThis as { gc?: unknown }).gc = had;
    }
  });
});
