/**
 * Memory back after a burst (#15 item 8): when the process has grown by GROWTH_BYTES or more since it last
 * was small (a flood of connections, a large list) and no connection has opened or closed for QUIET_MS, a
 * full garbage collection, and a second one QUIET_MS later. Why: what a flood's connections held natively
 * (socket and TLS buffers, OpenSSL's objects) is owned by JavaScript objects that had lived long enough to
 * reach V8's old generation, and is freed only when a full GC finds them dead; a process that goes quiet
 * after a flood may run none for a long time, so the memory stayed allocated. Measured (scripts/flood.ts,
 * the test's flood, on mimalloc, 10 s after; idle 114-117, peak 177-220): 128-166 MB with the two GCs
 * (23-50% of the growth kept), 160-167 with one, 157-188 with none (49-75% kept). On glibc's malloc (the
 * default) the freed memory stays with malloc (211.5 MB at the peak and after): it pays off with mimalloc.
 *
 * The GC is V8's own (`gc`, there when Node was started with --expose-gc: NODE_FLAGS, so the background
 * kubetrail, `start` and the image); without it nothing happens. Each pauses the event loop (~10-30 ms),
 * only after such growth and only while no connection comes or goes: not on ordinary commands.
 */
import type { Socket } from 'node:net';

/** Growth over the smallest RSS seen since the last GC (or the start) that makes a GC worth it. */
export const GROWTH_BYTES = 32 * 1024 * 1024;
/** How long no connection may have opened or closed before the GC runs. */
export const QUIET_MS = 2000;

export type Gc = () => void;

/** V8's gc function when Node exposes it (--expose-gc), else undefined. */
export function exposedGc(): Gc | undefined {
  const gc = (globalThis as { gc?: unknown }).gc;
  return typeof gc === 'function' ? (gc as Gc) : undefined;
}

export interface BurstWatch {
  opened(): void;
  closed(): void;
  /** Cancels a pending GC (the proxy is closing). */
  stop(): void;
}

/**
 * Runs `gc` twice once the process has grown by `growth` bytes over the smallest RSS it has seen since its
 * last GCs and connections have stopped coming and going for `quietMs`. No sockets here: the caller says when a
 * connection opened or closed (server.ts's listener), and tests drive it with fake timers and a fake RSS.
 */
export function watchBursts(
  gc: Gc,
  rss: () => number = () => process.memoryUsage.rss(),
  opts: { growth?: number; quietMs?: number; onReclaim?: (before: number, after: number) => void } = {},
): BurstWatch {
  const growth = opts.growth ?? GROWTH_BYTES;
  const quietMs = opts.quietMs ?? QUIET_MS;
  let floor = rss();
  let timer: NodeJS.Timeout | undefined;
  const grown = (): boolean => {
    const now = rss();
    floor = Math.min(floor, now);
    return now - floor >= growth;
  };
  const arm = (): void => {
    clearTimeout(timer);
    timer = setTimeout(fire, quietMs);
    timer.unref();
  };
  const fire = (): void => {
    timer = undefined;
    if (!grown()) return;
    const before = rss();
    gc();
    // The first GC's finalizers free native objects (TLS sockets' OpenSSL state, Buffers' backing stores)
    // whose own garbage the second one collects (above: one GC 160-167 MB, two 128-166). What is freed may
    // reach the system only later (mimalloc returns it as it goes): the floor follows it down (grown()).
    timer = setTimeout(() => {
      timer = undefined;
      gc();
      floor = rss();
      opts.onReclaim?.(before, floor);
    }, quietMs);
    timer.unref();
  };
  return {
    opened() {
      // Connections still coming: wait for them to stop.
      if (timer !== undefined) arm();
    },
    closed() {
      if (timer !== undefined || grown()) arm();
    },
    stop() {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}

/** Watches a listener's connections (every one, handed-over ones included, arrives as 'connection'). */
export function reclaimAfterBursts(server: {
  on(event: 'connection', fn: (s: Socket) => void): unknown;
}): BurstWatch | undefined {
  const gc = exposedGc();
  if (gc === undefined) return undefined;
  const watch = watchBursts(gc);
  server.on('connection', (socket: Socket) => {
    watch.opened();
    socket.once('close', () => watch.closed());
  });
  return watch;
}
