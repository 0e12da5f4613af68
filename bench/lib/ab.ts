/**
 * Before/after of one change: `kubetrail start` from two checkouts (or entry points), against one stand-in
 * apiserver and one load generator, interleaved round by round (a fresh process per measurement), with
 * direct as the yardstick in the same rounds. For a change measured on a busy machine: the ratios of one
 * run are comparable, absolute times are not.
 *
 *   node bench/lib/ab.ts --before /other/checkout [--after .] --job w3-gzip|w3-gzip-next|w3-identity|w2|w1|mem [--rounds 5]
 *       [--items 20000] [--proto h1|h2] [--user-flags] [--entry src|dist]
 *
 * w1: p50 of 300 small GETs; w2: req/s of a 10-pod list at c=32 for 3 s; w3-*: TTLB of one large list
 * (w3-gzip-next: the TTFB of a second gzip list right after the first, on the same connection);
 * mem: VmHWM after a c=16 burst and a 28 MB list (what `kubetrail start` holds as a user runs it).
 */
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Forked } from './child.ts';
import { startPath, useKubetrailBin, type RunningPath } from './paths.ts';
import { peakRssBytes } from './proc.ts';
import { setupBench, startStandIn } from './setup.ts';
import { median } from './stats.ts';
import type { Job, JobResult, Proto, Target } from './target.ts';

const { values: args } = parseArgs({
  options: {
    before: { type: 'string' },
    after: { type: 'string', default: '.' },
    job: { type: 'string', default: 'w3-gzip' },
    rounds: { type: 'string', default: '5' },
    items: { type: 'string', default: '20000' },
    proto: { type: 'string', default: 'h1' },
    'user-flags': { type: 'boolean', default: false },
    entry: { type: 'string', default: 'src' },
  },
});
if (!args.before) throw new Error('ab: --before <checkout> is required');
const ROUNDS = Number(args.rounds);
const ITEMS = Number(args.items);
const PROTO = args.proto as Proto;
const JOB = args.job;
// src: type-stripped TypeScript (what the bench's paths run); dist: the built CLI, as `npx kubetrail` runs it.
const bin = (dir: string): string =>
  join(resolve(dir), args.entry === 'dist' ? 'dist/bin/kubetrail.js' : 'src/bin/kubetrail.ts');

const bench = await setupBench();
const si = await startStandIn(bench);
const lg = new Forked<Job, JobResult>('./loadgen.ts', [], bench.env.env);
const memItems = Math.ceil(28e6 / (si.podBytes + 1));
if (JOB.startsWith('w3') || JOB === 'mem')
  await si.proc.call({ type: 'prepare', counts: [JOB === 'mem' ? memItems : ITEMS] }, 'prepared', 300_000);

async function measure(target: Target, p: RunningPath | undefined): Promise<number> {
  switch (JOB) {
    case 'w1': {
      const r = await lg.call(
        {
          type: 'latency',
          target,
          proto: PROTO,
          path: '/api/v1/namespaces/default/pods/pod-0',
          count: 300,
          warmup: 100,
        },
        'latency',
      );
      return median(r.samples);
    }
    case 'w2': {
      const r = await lg.call(
        {
          type: 'throughput',
          target,
          proto: PROTO,
          path: '/api/v1/namespaces/default/pods',
          concurrency: 32,
          warmupMs: 500,
          durationMs: 3000,
        },
        'throughput',
        60_000,
      );
      return r.count / 3;
    }
    case 'w3-gzip':
    case 'w3-identity': {
      const r = await lg.call(
        {
          type: 'large',
          target,
          proto: PROTO,
          path: `/api/v1/namespaces/bench-n${ITEMS}/pods`,
          encoding: JOB === 'w3-gzip' ? 'gzip' : 'identity',
          count: 1,
        },
        'large',
        300_000,
      );
      if (r.firstError) throw new Error(r.firstError);
      return r.runs[0]?.ttlbMs ?? Number.NaN;
    }
    case 'w3-gzip-next': {
      // Two gzip lists in a row on one connection: the second's time to first byte, i.e. how long the
      // first one's decoding (after its relay) holds the next request back.
      const r = await lg.call(
        {
          type: 'large',
          target,
          proto: PROTO,
          path: `/api/v1/namespaces/bench-n${ITEMS}/pods`,
          encoding: 'gzip',
          count: 2,
        },
        'large',
        300_000,
      );
      if (r.firstError) throw new Error(r.firstError);
      return r.runs[1]?.ttfbMs ?? Number.NaN;
    }
    case 'mem': {
      if (!p) return Number.NaN;
      await lg.call(
        {
          type: 'throughput',
          target,
          proto: 'h1',
          path: '/api/v1/namespaces/default/pods',
          concurrency: 16,
          warmupMs: 0,
          durationMs: 3000,
        },
        'throughput',
        60_000,
      );
      await lg.call(
        {
          type: 'large',
          target,
          proto: 'h1',
          path: `/api/v1/namespaces/bench-n${memItems}/pods`,
          encoding: 'identity',
          count: 1,
        },
        'large',
        300_000,
      );
      return peakRssBytes(p.pids()) / 1e6;
    }
  }
  throw new Error(`ab: unknown --job ${JOB}`);
}

const directTarget: Target = (await startPath('direct', bench.env, si.spec)).target;
const out: Record<string, number[]> = { direct: [], before: [], after: [] };
try {
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const);
    if (JOB !== 'mem') out.direct?.push(await measure(directTarget, undefined));
    for (const which of order) {
      useKubetrailBin(bin(which === 'before' ? (args.before ?? '') : args.after));
      const p = await startPath('kubetrail', bench.env, si.spec, { userFlags: args['user-flags'] });
      try {
        out[which]?.push(await measure(p.target, p));
      } finally {
        await p.stop();
      }
    }
    process.stderr.write(
      `round ${r + 1}: ${Object.entries(out)
        .map(([k, v]) => `${k} ${v.at(-1)?.toFixed(2) ?? '-'}`)
        .join(', ')}\n`,
    );
  }
} finally {
  await lg.stop();
  si.proc.send({ type: 'stop' });
  await si.proc.stop();
  await bench.cleanup();
}
const unit = JOB === 'w2' ? 'req/s' : JOB === 'mem' ? 'MB peak' : 'ms';
const d = median(out.direct ?? []);
for (const [k, v] of Object.entries(out)) {
  if (v.length === 0) continue;
  const m = median(v);
  console.log(
    `${JOB} ${PROTO} ${k}: median ${m.toFixed(2)} ${unit}${Number.isFinite(d) && k !== 'direct' ? ` (${(m / d).toFixed(2)}× direct)` : ''}; runs ${v.map((x) => x.toFixed(1)).join(' ')}`,
  );
}
