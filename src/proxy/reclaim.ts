/**
 * Memory back after a burst (#15 item 8). When the process has grown by GROWTH_BYTES or more over the smallest
 * it has been (a flood of connections, a burst of requests) and no connection has opened or closed for QUIET_MS,
 * it gives that memory back, in two steps:
 *
 * 1. V8's most thorough garbage collection (its `last-resort` flavor: full collections until nothing more is
 *    freed, then the pages V8 keeps pooled for its heap go back to the system). What a flood's connections
 *    held natively (socket and TLS buffers, OpenSSL's objects) is owned by JavaScript objects that had reached
 *    V8's old generation; only a full GC frees it, and a process gone quiet may run none for a long time. An
 *    ordinary full GC frees it to malloc but leaves V8's pooled pages resident.
 * 2. malloc_trim(0) (native/trim.c, built at install where there is a C compiler), on the thread pool: glibc's
 *    malloc returns only the top of its heap on its own, and a flood's chunks lie between longer-lived ones.
 *
 * Measured (scripts/flood.ts defaults, glibc, 2026-12-08; docs/decisions.md has the rest): idle 117.7 MB, peak
 * 415.5, 119.6 MB 40 s and 60 s after (before this, two ordinary GCs: 421.3 MB 60 s after a 420.2 peak; with the
 * trim but ordinary GCs, 164.2). The cost is one pause of the event loop per burst, once the
 * process has been quiet for QUIET_MS: the GC 100-200 ms at that load, and the trim 90-460 ms on the thread
 * pool, during which the event loop waits only where it allocates (measured 0-256 ms). A command that starts
 * in that half second waits for it; one that starts 30 s after the last connection of a burst is rare.
 *
 * The GC is V8's (`gc`, there when Node was started with --expose-gc: NODE_FLAGS, so the background kubetrail,
 * `start` and the image); without it, or without the trim, that step is left out.
 */
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';

/** Growth over the smallest RSS seen since the last reclaim (or the start) that makes one worth it. */
export const GROWTH_BYTES = 32 * 1024 * 1024;
/**
 * How long no connection may have opened or closed before the reclaim runs: long enough that it does not land
 * between the commands of someone at work (its pause would be in their trace), short enough that a flood's
 * memory is back within a minute.
 */
export const QUIET_MS = 30_000;

/** V8's most thorough full GC (see above). */
export type Gc = () => void;
/** Gives free malloc memory back to the system, off the event loop; true when there was some. */
export type Trim = () => Promise<boolean>;

/** Where native/build.sh puts the addon: the package's own directory, beside dist/ and src/. */
export const TRIM_ADDON = fileURLToPath(new URL('../../native/build/trim.node', import.meta.url));

let loaded: { trim: Trim | undefined } | undefined;

/**
 * malloc_trim(0) from native/build/trim.node, when it was built at install time (a C compiler was there) and
 * loads on this system; else undefined. Loaded once.
 */
export function nativeTrim(path: string = TRIM_ADDON): Trim | undefined {
  if (path === TRIM_ADDON && loaded) return loaded.trim;
  let trim: Trim | undefined;
  if (process.platform === 'linux') {
    try {
      const mod = { exports: {} as { trim?: unknown } };
      process.dlopen(mod, path);
      if (typeof mod.exports.trim === 'function') trim = mod.exports.trim as Trim;
    } catch {
      // not built (no compiler at install), or built for another system: glibc keeps what it has
    }
  }
  if (path === TRIM_ADDON) loaded = { trim };
  return trim;
}

type V8Gc = (opts?: { type: 'major'; execution: 'sync'; flavor: 'last-resort' }) => void;

/** V8's last-resort full GC when Node exposes `gc` (--expose-gc), else undefined. */
export function exposedGc(): Gc | undefined {
  const gc = (globalThis as { gc?: unknown }).gc;
  if (typeof gc !== 'function') return undefined;
  return () => (gc as V8Gc)({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}

export interface BurstWatch {
  opened(): void;
  closed(): void;
  /** Cancels a pending reclaim (the proxy is closing). */
  stop(): void;
}

/**
 * Where a burst watch is: `watching` for growth; `waiting` for connections to stop coming and going
 * (QUIET_MS without an open or a close); `trimming` while the trim runs on the thread pool.
 */
type State = 'watching' | 'waiting' | 'trimming';

/**
 * Runs `gc`, then `trim` if given, once the process has grown by `growth` bytes over the smallest RSS it has
 * seen since its last reclaim and connections have stopped coming and going for `quietMs`. No sockets here:
 * the caller says when a connection opened or closed (server.ts's listener), and tests drive it with fake
 * timers and a fake RSS.
 */
export function watchBursts(
  gc: Gc,
  rss: () => number = () => process.memoryUsage.rss(),
  opts: {
    growth?: number;
    quietMs?: number;
    trim?: Trim;
    onReclaim?: (before: number, after: number) => void;
  } = {},
): BurstWatch {
  const growth = opts.growth ?? GROWTH_BYTES;
  const quietMs = opts.quietMs ?? QUIET_MS;
  let state: State = 'watching';
  let floor = rss();
  let timer: NodeJS.Timeout | undefined;
  const grown = (): boolean => {
    const now = rss();
    floor = Math.min(floor, now);
    return now - floor >= growth;
  };
  const wait = (): void => {
    state = 'waiting';
    clearTimeout(timer);
    timer = setTimeout(reclaim, quietMs);
    timer.unref();
  };
  const settled = (before: number): void => {
    state = 'watching';
    floor = rss();
    opts.onReclaim?.(before, floor);
  };
  const reclaim = (): void => {
    timer = undefined;
    state = 'watching';
    // What was freed may have reached the system meanwhile (mimalloc returns it as it goes): grown() follows.
    if (!grown()) return;
    const before = rss();
    gc();
    if (opts.trim === undefined) return settled(before);
    state = 'trimming';
    void opts
      .trim()
      .catch(() => false)
      .then(() => settled(before));
  };
  return {
    opened() {
      // Connections still coming: wait for them to stop.
      if (state === 'waiting') wait();
    },
    closed() {
      if (state === 'waiting' || (state === 'watching' && grown())) wait();
    },
    stop() {
      clearTimeout(timer);
      timer = undefined;
      state = 'watching';
    },
  };
}

/** Watches a listener's connections (every one, handed-over ones included, arrives as 'connection'). */
export function reclaimAfterBursts(server: {
  on(event: 'connection', fn: (s: Socket) => void): unknown;
}): BurstWatch | undefined {
  const gc = exposedGc();
  const trim = nativeTrim();
  if (gc === undefined && trim === undefined) return undefined;
  const watch = watchBursts(gc ?? (() => undefined), undefined, { trim });
  server.on('connection', (socket: Socket) => {
    watch.opened();
    socket.once('close', () => watch.closed());
  });
  return watch;
}
