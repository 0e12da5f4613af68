/**
 * The five workloads' measurement loops. Paths are interleaved (round r starts at path r mod n), every loop
 * is bounded in count and time, and memory peaks are read from a fresh proxy process per measurement.
 */
import type { Forked } from './child.ts';
import {
  distFresh,
  KUBETRAIL_DIST,
  KUBETRAIL_SRC,
  PATH_LABELS,
  startPath,
  type BenchEnv,
  type PathKind,
  type RunningPath,
  type UpstreamSpec,
} from './paths.ts';
import { cpuMsAll, peakRssBytes, rssBytes } from './proc.ts';
import { median, summarize, type Summary } from './stats.ts';
import type { ConnCounts, Encoding, Job, JobResult, Proto } from './target.ts';

export type LoadGen = Forked<Job, JobResult>;

export interface Ctx {
  env: BenchEnv;
  lg: LoadGen;
  log: (line: string) => void;
  /** The stand-in's connection counters (absent on the real apiserver). */
  upstreamConns?: () => Promise<{ accepted: ConnCounts; open: ConnCounts }>;
}

/** Connections a measurement opened: client → path (the load generator's), path → upstream (the stand-in's count). */
export interface Conns {
  client: ConnCounts;
  upstream?: ConnCounts;
}

/** b − a per protocol (counters only grow), without the zeros. */
export function connDelta(a: ConnCounts, b: ConnCounts): ConnCounts {
  const out: ConnCounts = {};
  for (const [k, v] of Object.entries(b)) if (v - (a[k] ?? 0) !== 0) out[k] = v - (a[k] ?? 0);
  return out;
}

/** Runs `job`, and says how many connections it opened on each leg. */
async function measured<T>(
  ctx: Ctx,
  job: () => Promise<T & { conns: ConnCounts }>,
): Promise<{ res: T & { conns: ConnCounts }; conns: Conns }> {
  const before = await ctx.upstreamConns?.();
  const res = await job();
  const after = await ctx.upstreamConns?.();
  return {
    res,
    conns: { client: res.conns, ...(before && after ? { upstream: connDelta(before.accepted, after.accepted) } : {}) },
  };
}

/**
 * One measured way through a path: its process, and the protocol the load generator speaks to it. HTTP/1.1
 * keep-alive agents are how the bench measured before #13 (rows comparable with earlier runs); h2 (one
 * connection, every request a stream of it) is what kubectl itself does with a listener that offers it.
 */
export interface Leg {
  path: RunningPath;
  proto: Proto;
}

/** The HTTP/1.1 leg of every path, and an h2 leg for those in `h2Kinds` whose listener offers h2. */
export function legsOf(paths: readonly RunningPath[], h2Kinds: readonly PathKind[]): Leg[] {
  return paths.flatMap((p) => [
    { path: p, proto: 'h1' as const },
    ...(p.target.h2 && h2Kinds.includes(p.kind) ? [{ path: p, proto: 'h2' as const }] : []),
  ]);
}

const legKey = (kind: PathKind, proto: Proto): string => `${kind}\0${proto}`;

/** Round-robin order for round r: each path goes first once every n rounds. */
export function rotation<T>(xs: readonly T[], r: number): T[] {
  const k = r % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

export async function startAll(ctx: Ctx, kinds: readonly PathKind[], up: UpstreamSpec): Promise<RunningPath[]> {
  const out: RunningPath[] = [];
  for (const k of kinds) {
    try {
      out.push(await startPath(k, ctx.env, up));
    } catch (err) {
      ctx.log(`  ${PATH_LABELS[k]}: cannot start: ${String(err)}`);
    }
  }
  return out;
}

export async function stopAll(paths: readonly RunningPath[]): Promise<void> {
  for (const p of paths) await p.stop();
}

// ---- workload 1: small GET, keep-alive, concurrency 1 ----

export interface LatencyResult {
  path: PathKind;
  /** Absent in runs before the h2 legs: HTTP/1.1. */
  proto?: Proto;
  /** Connections each round opened (the load generator starts each round on fresh connections). */
  conns?: Conns[];
  summary: Summary;
  /** p50 of each round, to show the spread between rounds. */
  roundP50: number[];
  errors: number;
  error?: string;
}

export async function w1Latency(
  ctx: Ctx,
  legs: readonly Leg[],
  o: { path: string; rounds: number; perRound: number; warmup: number },
): Promise<LatencyResult[]> {
  const acc = new Map<
    string,
    { samples: number[]; rounds: number[]; conns: Conns[]; errors: number; first?: string }
  >();
  const slot = (l: Leg): { samples: number[]; rounds: number[]; conns: Conns[]; errors: number; first?: string } => {
    const k = legKey(l.path.kind, l.proto);
    const a = acc.get(k) ?? { samples: [], rounds: [], conns: [], errors: 0 };
    acc.set(k, a);
    return a;
  };
  // Warm every leg (JIT in the load generator and the proxies, connections, TLS sessions).
  for (const l of legs)
    await ctx.lg.call(
      { type: 'latency', target: l.path.target, proto: l.proto, path: o.path, count: 0, warmup: o.warmup },
      'latency',
    );
  for (let r = 0; r < o.rounds; r++) {
    for (const l of rotation(legs, r)) {
      const { res, conns } = await measured(ctx, () =>
        ctx.lg.call(
          { type: 'latency', target: l.path.target, proto: l.proto, path: o.path, count: o.perRound, warmup: 20 },
          'latency',
        ),
      );
      const a = slot(l);
      a.samples.push(...res.samples);
      a.rounds.push(median(res.samples));
      a.conns.push(conns);
      a.errors += res.errors;
      a.first ??= res.firstError;
    }
  }
  return legs.map((l) => {
    const a = slot(l);
    return {
      path: l.path.kind,
      proto: l.proto,
      conns: a.conns,
      summary: summarize(a.samples),
      roundP50: a.rounds,
      errors: a.errors,
      error: a.first,
    };
  });
}

// ---- workload 2: small list, concurrency 32, fixed duration ----

export interface ThroughputResult {
  path: PathKind;
  proto?: Proto;
  conns?: Conns[];
  /** Median over rounds. */
  rps: number;
  rpsRounds: number[];
  /** Proxy CPU ms per request (utime+stime delta over the window / requests), median over rounds. */
  cpuMsPerReq: number | undefined;
  cpuRounds: number[];
  latency: Summary;
  errors: number;
  error?: string;
}

export async function w2Throughput(
  ctx: Ctx,
  legs: readonly Leg[],
  o: { path: string; rounds: number; concurrency: number; warmupMs: number; durationMs: number },
): Promise<ThroughputResult[]> {
  type Acc = { rps: number[]; cpu: number[]; lat: number[]; conns: Conns[]; errors: number; first?: string };
  const acc = new Map<string, Acc>();
  const slot = (l: Leg): Acc => {
    const k = legKey(l.path.kind, l.proto);
    const a = acc.get(k) ?? { rps: [], cpu: [], lat: [], conns: [], errors: 0 };
    acc.set(k, a);
    return a;
  };
  for (let r = 0; r < o.rounds; r++) {
    for (const l of rotation(legs, r)) {
      const p = l.path;
      let cpu0 = 0;
      let cpu1 = 0;
      const { res, conns } = await measured(ctx, () =>
        ctx.lg.call(
          {
            type: 'throughput',
            target: p.target,
            proto: l.proto,
            path: o.path,
            concurrency: o.concurrency,
            warmupMs: o.warmupMs,
            durationMs: o.durationMs,
          },
          'throughput',
          o.warmupMs + o.durationMs + 60_000,
          (m) => {
            if (m.type === 'window' && m.phase === 'start') cpu0 = cpuMsAll(p.pids());
            if (m.type === 'window' && m.phase === 'end') cpu1 = cpuMsAll(p.pids());
          },
        ),
      );
      const a = slot(l);
      a.rps.push(res.count / (res.ms / 1000));
      if (p.pids().length > 0 && res.count > 0) a.cpu.push((cpu1 - cpu0) / res.count);
      a.lat.push(...res.samples);
      a.conns.push(conns);
      a.errors += res.errors;
      a.first ??= res.firstError;
    }
  }
  return legs.map((l) => {
    const a = slot(l);
    return {
      path: l.path.kind,
      proto: l.proto,
      conns: a.conns,
      rps: median(a.rps),
      rpsRounds: a.rps,
      cpuMsPerReq: a.cpu.length > 0 ? median(a.cpu) : undefined,
      cpuRounds: a.cpu,
      latency: summarize(a.lat),
      errors: a.errors,
      error: a.first,
    };
  });
}

// ---- workload 3: large list, identity and gzip: time to last byte, peak RSS ----

export interface LargeResult {
  path: PathKind;
  proto?: Proto;
  conns?: Conns[];
  items: number;
  encoding: Encoding;
  /** Wire bytes of one response. */
  bytes: number;
  ttlbMs: number;
  ttlbRuns: number[];
  ttfbMs: number;
  /** Proxy RSS right after start, before the request; and its peak (VmHWM) after the requests. */
  idleRss: number | undefined;
  peakRss: number | undefined;
  /** VmHWM of each fresh proxy process (peakRss is their maximum): shows whether a peak is an outlier. */
  peakRuns: number[];
  error?: string;
}

/**
 * A slow path's one large request gives up after this (mitmproxy's 86 MB identity relay took 47 s on a
 * quiet machine, > 600 s at load 13, > 240 s at load 20): the call is cancelled, and the table says it did
 * not finish in time.
 */
const SLOW_LARGE_TIMEOUT_MS = 120_000;

export async function w3Large(
  ctx: Ctx,
  up: UpstreamSpec,
  kinds: readonly PathKind[],
  o: {
    items: number;
    listPath: string;
    encodings: readonly Encoding[];
    rounds: number;
    requests: number;
    slow?: readonly PathKind[];
    h2Kinds?: readonly PathKind[];
  },
): Promise<LargeResult[]> {
  type Acc = {
    ttlb: number[];
    ttfb: number[];
    bytes: number;
    idle: number[];
    peak: number[];
    conns: Conns[];
    error?: string;
  };
  const acc = new Map<string, Acc>();
  const protosOf = (kind: PathKind): Proto[] => (o.h2Kinds?.includes(kind) ? ['h1', 'h2'] : ['h1']);
  for (let r = 0; r < o.rounds; r++) {
    for (const kind of rotation(kinds, r)) {
      // Very slow paths (mitmproxy buffers and copies whole bodies in Python): one request, first round only.
      const slow = o.slow?.includes(kind) ?? false;
      if (slow && r > 0) continue;
      for (const proto of protosOf(kind)) {
        for (const encoding of o.encodings) {
          const key = `${legKey(kind, proto)}\0${encoding}`;
          const a = acc.get(key) ?? { ttlb: [], ttfb: [], bytes: 0, idle: [], peak: [], conns: [] };
          acc.set(key, a);
          let p: RunningPath | undefined;
          try {
            // A fresh process per measurement: VmHWM cannot be reset.
            p = await startPath(kind, ctx.env, up);
            const target = p.target;
            if (p.pids().length > 0) a.idle.push(rssBytes(p.pids()));
            const { res, conns } = await measured(ctx, () =>
              ctx.lg.call(
                { type: 'large', target, proto, path: o.listPath, encoding, count: slow ? 1 : o.requests },
                'large',
                slow ? SLOW_LARGE_TIMEOUT_MS : 600_000,
              ),
            );
            if (res.firstError) throw new Error(res.firstError);
            for (const run of res.runs) {
              a.ttlb.push(run.ttlbMs);
              a.ttfb.push(run.ttfbMs);
              a.bytes = run.bytes;
            }
            a.conns.push(conns);
            if (p.pids().length > 0) a.peak.push(peakRssBytes(p.pids()));
          } catch (err) {
            a.error ??= String(err);
            ctx.log(`  ${PATH_LABELS[kind]} ${proto} ${encoding}: ${String(err)}`);
          } finally {
            await p?.stop();
          }
        }
      }
    }
  }
  const out: LargeResult[] = [];
  for (const kind of kinds) {
    for (const proto of protosOf(kind)) {
      for (const encoding of o.encodings) {
        const a = acc.get(`${legKey(kind, proto)}\0${encoding}`);
        if (!a) continue;
        out.push({
          path: kind,
          proto,
          conns: a.conns,
          items: o.items,
          encoding,
          bytes: a.bytes,
          ttlbMs: median(a.ttlb),
          ttlbRuns: a.ttlb,
          ttfbMs: median(a.ttfb),
          idleRss: a.idle.length > 0 ? median(a.idle) : undefined,
          peakRss: a.peak.length > 0 ? Math.max(...a.peak) : undefined,
          peakRuns: a.peak,
          error: a.error,
        });
      }
    }
  }
  return out;
}

// ---- workload 4: many concurrent watches receiving events ----

export interface WatchResult {
  path: PathKind;
  /** The load generator's protocol: h2 (every watch a stream of one connection) where the path offers it. */
  proto?: Proto;
  /** Connections the load generator opened; and the upstream connections open with the watches held. */
  conns?: Conns;
  watches: number;
  opened: number;
  openMs: number;
  /** Proxy RSS after start, with all watches open (before events), and peak (VmHWM) at the end. */
  idleRss: number | undefined;
  openRss: number | undefined;
  peakRss: number | undefined;
  /** Event delivery latency, µs: upstream write → load generator read. */
  latencyUs: Summary;
  events: number;
  sent: number;
  error?: string;
}

export async function w4Watches(
  ctx: Ctx,
  up: UpstreamSpec,
  kinds: readonly PathKind[],
  o: { n: number; rate: number; durationMs: number; watchPath: string; proto?: Proto },
  upstream: { emit: (rate: number, durationMs: number) => Promise<number>; watches: () => Promise<number> },
): Promise<WatchResult[]> {
  const out: WatchResult[] = [];
  for (const kind of kinds) {
    let p: RunningPath | undefined;
    const res: WatchResult = {
      path: kind,
      watches: o.n,
      opened: 0,
      openMs: 0,
      idleRss: undefined,
      openRss: undefined,
      peakRss: undefined,
      latencyUs: summarize([]),
      events: 0,
      sent: 0,
    };
    try {
      p = await startPath(kind, ctx.env, up, { stream: true });
      if (p.pids().length > 0) res.idleRss = rssBytes(p.pids());
      // As kubectl would: h2 where the path's listener offers it, unless the run asks for HTTP/1.1.
      const proto: Proto = p.target.h2 && o.proto !== 'h1' ? 'h2' : 'h1';
      res.proto = proto;
      const before = await ctx.upstreamConns?.();
      const t0 = performance.now();
      const ready = await ctx.lg.call(
        { type: 'watch', target: p.target, proto, path: o.watchPath, n: o.n, openConcurrency: 50, timeoutMs: 60_000 },
        'watch-ready',
        90_000,
      );
      // Open means: the upstream holds the watch (bounded wait).
      const deadline = performance.now() + 60_000;
      let held = 0;
      while ((held = await upstream.watches()) < ready.opened && performance.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      res.opened = held;
      res.openMs = performance.now() - t0;
      const after = await ctx.upstreamConns?.();
      // Accepted while the watches opened (the open counts still hold closing connections of earlier paths).
      res.conns = {
        client: ready.conns,
        ...(before && after ? { upstream: connDelta(before.accepted, after.accepted) } : {}),
      };
      if (p.pids().length > 0) res.openRss = rssBytes(p.pids());
      res.sent = await upstream.emit(o.rate, o.durationMs);
      // Let the last events arrive.
      await new Promise((resolve) => setTimeout(resolve, 500));
      if (p.pids().length > 0) res.peakRss = peakRssBytes(p.pids());
      const done = await ctx.lg.call({ type: 'watch-stop' }, 'watch-done');
      res.latencyUs = summarize(done.latenciesUs);
      res.events = done.events;
      const failed = ready.failed + done.failed;
      if (held < o.n || failed > 0)
        res.error = `${o.n - held} of ${o.n} watches not held by the upstream; ${failed} failed (${done.firstError ?? ready.firstError ?? 'timeout'})`;
      if (res.error) ctx.log(`  ${PATH_LABELS[kind]}: ${res.error}`);
    } catch (err) {
      res.error = String(err);
      ctx.log(`  ${PATH_LABELS[kind]}: ${String(err)}`);
      await ctx.lg.call({ type: 'watch-stop' }, 'watch-done', 10_000).catch(() => undefined);
    } finally {
      await p?.stop();
    }
    out.push(res);
  }
  return out;
}

// ---- `kubetrail start` as a user runs it: peak RSS after a burst and a large list ----

export interface StartMemResult {
  /** 'user': the bin alone, Node's defaults (as `npx kubetrail start` runs); 'flags': with NODE_FLAGS (the background kubetrail's). */
  variant: 'user' | 'flags';
  /** The entry point: the built CLI (what users run), or the TypeScript source (type stripping: ~30 MB more). Absent: src. */
  entry?: 'dist' | 'src';
  concurrency: number;
  listBytes: number;
  idleRss: number | undefined;
  /** VmHWM after the burst, and after the list too (the figure the goal is about). */
  burstPeak: number | undefined;
  peakRss: number | undefined;
  peakRuns: number[];
  error?: string;
}

/**
 * A fresh `kubetrail start` per run: a burst of small-list requests at concurrency `concurrency` over
 * HTTP/1.1 (one connection each), then one large list (identity), then VmHWM. What a user sees in `ps`
 * after a busy minute, with and without the background kubetrail's Node flags.
 */
export async function startMemory(
  ctx: Ctx,
  up: UpstreamSpec,
  o: { runs: number; concurrency: number; burstMs: number; smallPath: string; listPath: string },
): Promise<StartMemResult[]> {
  const out: StartMemResult[] = [];
  const dist = distFresh();
  if (!dist)
    ctx.log('  start memory: dist/ is missing or older than src/ (run `npm run build`): measured from src/ only');
  const variants: { variant: 'user' | 'flags'; entry: 'dist' | 'src' }[] = [
    ...(dist
      ? [
          { variant: 'user' as const, entry: 'dist' as const },
          { variant: 'flags' as const, entry: 'dist' as const },
        ]
      : []),
    { variant: 'user', entry: 'src' },
    { variant: 'flags', entry: 'src' },
  ];
  for (const { variant, entry } of variants) {
    const r: StartMemResult = {
      variant,
      entry,
      concurrency: o.concurrency,
      listBytes: 0,
      idleRss: undefined,
      burstPeak: undefined,
      peakRss: undefined,
      peakRuns: [],
    };
    const idle: number[] = [];
    const burst: number[] = [];
    for (let i = 0; i < o.runs; i++) {
      let p: RunningPath | undefined;
      try {
        p = await startPath('kubetrail', ctx.env, up, {
          userFlags: variant === 'user',
          bin: entry === 'dist' ? KUBETRAIL_DIST : KUBETRAIL_SRC,
        });
        idle.push(rssBytes(p.pids()));
        const b = await ctx.lg.call(
          {
            type: 'throughput',
            target: p.target,
            proto: 'h1',
            path: o.smallPath,
            concurrency: o.concurrency,
            warmupMs: 0,
            durationMs: o.burstMs,
          },
          'throughput',
          o.burstMs + 60_000,
        );
        if (b.firstError) throw new Error(b.firstError);
        burst.push(peakRssBytes(p.pids()));
        const l = await ctx.lg.call(
          { type: 'large', target: p.target, proto: 'h1', path: o.listPath, encoding: 'identity', count: 1 },
          'large',
          300_000,
        );
        if (l.firstError) throw new Error(l.firstError);
        r.listBytes = l.runs[0]?.bytes ?? 0;
        r.peakRuns.push(peakRssBytes(p.pids()));
      } catch (err) {
        r.error ??= String(err);
        ctx.log(`  start memory (${variant}): ${String(err)}`);
      } finally {
        await p?.stop();
      }
    }
    r.idleRss = idle.length > 0 ? median(idle) : undefined;
    r.burstPeak = burst.length > 0 ? median(burst) : undefined;
    r.peakRss = r.peakRuns.length > 0 ? median(r.peakRuns) : undefined;
    out.push(r);
  }
  return out;
}
