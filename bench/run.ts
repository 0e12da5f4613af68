/**
 * `npm run bench [-- --quick] [-- --workloads 1,2,3,4,5] [-- --no-real] [-- --no-profile] [-- --update-results-md]`
 * `[-- --upstream-delay-ms N]`: the stand-in holds every single-pod answer N ms (workload 1 with an
 * apiserver-like think time, to tell what a proxy costs when it waits between its two legs).
 * `[-- --render bench/results/<run>.json]`: measure nothing; print that run's tables again with the current
 * report code (and splice them into RESULTS.md with --update-results-md).
 *
 * What one kubetrail hop costs, next to the alternatives, measured in one run on one machine: the
 * stand-in apiserver (bench/lib/upstream.ts, a process of its own) and then the real kube-apiserver of the
 * e2e stack; every path (direct, kubetrail with a live OTLP receiver, kubetrail with the OTLP endpoint
 * refused, nginx, mitmproxy, kubectl proxy) is driven by the same load generator process
 * (bench/lib/loadgen.ts), interleaved round by round. Prints markdown tables, writes JSON (and the tables)
 * to bench/results/, and with --update-results-md refreshes the generated part of bench/RESULTS.md.
 *
 * Needs: nginx and mitmproxy on PATH (Debian packages nginx-light and mitmproxy), kubectl 1.33 at
 * /usr/lib/google-cloud-sdk/bin/kubectl.1.33, and for the real upstream the e2e stack's binaries
 * (built on first use by test/e2e/stack/build.ts; Go needed then).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { VERSION } from '../src/version.ts';
import { Forked } from './lib/child.ts';
import { summarizeProfile, type ProfileSummary } from './lib/cpuprofile.ts';
import {
  DIAG_PATHS,
  distFresh,
  KUBETRAIL_DIST,
  PATHS,
  startPath,
  useKubetrailBin,
  type PathKind,
} from './lib/paths.ts';
import { createPods, startReal, w5Kubectl, wrapBreakdown, type Real } from './lib/real.ts';
import { renderMarkdown, type Machine, type Results } from './lib/report.ts';
import { KUBECTL, setupBench, startStandIn, type Bench, type StandIn } from './lib/setup.ts';
import type { Job, JobResult, Proto } from './lib/target.ts';
import {
  legsOf,
  startAll,
  startMemory,
  stopAll,
  w1Latency,
  w2Throughput,
  w3Large,
  w4Watches,
  type Ctx,
} from './lib/workloads.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    workloads: { type: 'string', default: '1,2,3,4,5' },
    'no-real': { type: 'boolean', default: false },
    'no-profile': { type: 'boolean', default: false },
    'update-results-md': { type: 'boolean', default: false },
    kubetrail: { type: 'string', default: 'src' },
    diag: { type: 'boolean' },
    'upstream-delay-ms': { type: 'string', default: '0' },
    render: { type: 'string' },
    'w4-proto': { type: 'string', default: 'h2' },
    'no-h2-legs': { type: 'boolean', default: false },
    paths: { type: 'string' },
    'w3-big-mb': { type: 'string' },
  },
});
if (args['w4-proto'] !== 'h1' && args['w4-proto'] !== 'h2') throw new Error('--w4-proto is h1 or h2');
const W4_PROTO: Proto = args['w4-proto'];
if (args.kubetrail === 'dist') useKubetrailBin(KUBETRAIL_DIST);
else if (args.kubetrail !== 'src') throw new Error('--kubetrail is src or dist');

const QUICK = args.quick;
const ROOT = join(import.meta.dirname, '..');
/** `--w3-big-mb 0`: no very large list (a run on a busy machine that must end in time). */
const BIG_MB = args['w3-big-mb'] === undefined ? undefined : Number(args['w3-big-mb']);
const WANT = new Set(args.workloads.split(',').map((s) => Number(s.trim())));
const CFG = QUICK
  ? {
      w1: { rounds: 3, perRound: 250, warmup: 300 },
      w2: { rounds: 1, concurrency: 32, warmupMs: 300, durationMs: 1000 },
      w3: { items: 5_000, rounds: 1, requests: 1, bigMb: 0 },
      mem: { runs: 1, concurrency: 16, burstMs: 1000, listMb: 28 },
      w4: { n: 200, rate: 500, durationMs: 1000 },
      real: { w1: { rounds: 2, perRound: 150, warmup: 150 }, w3Items: 2_000, w3Rounds: 1, w5Runs: 4, breakdownRuns: 2 },
    }
  : {
      w1: { rounds: 10, perRound: 500, warmup: 500 },
      w2: { rounds: 3, concurrency: 32, warmupMs: 1000, durationMs: 5000 },
      w3: { items: 20_000, rounds: 3, requests: 2, bigMb: 200 },
      mem: { runs: 3, concurrency: 16, burstMs: 3000, listMb: 28 },
      w4: { n: 1000, rate: 1000, durationMs: 10_000 },
      real: {
        w1: { rounds: 5, perRound: 300, warmup: 300 },
        w3Items: 20_000,
        w3Rounds: 2,
        w5Runs: 20,
        breakdownRuns: 10,
      },
    };

/**
 * Diagnostic paths (export off; no observer) next to the six: full mode, or --diag. On the stand-in for
 * workloads 1-3, and on the real apiserver for workload 1 (what the forwarding core alone adds there).
 */
/** --paths kubetrail,direct: only those paths (development; a run to quote measures them all). */
const ONLY = args.paths?.split(',').map((s) => s.trim());
const only = (ks: readonly PathKind[]): PathKind[] => ks.filter((k) => !ONLY || ONLY.includes(k));
const STANDIN_PATHS: readonly PathKind[] = only((args.diag ?? !QUICK) ? [...PATHS, ...DIAG_PATHS] : PATHS);
/**
 * Paths measured a second time over h2 in workloads 1-3 (one connection, every request a stream of it, as
 * kubectl does with a listener that offers h2): kubetrail and its core (h2 both legs), direct, and nginx
 * (h2 to the client, HTTP/1.1 upstream). The HTTP/1.1 rows stay, comparable with earlier runs.
 */
const H2_KINDS: readonly PathKind[] = args['no-h2-legs'] ? [] : ['direct', 'kubetrail', 'nginx', 'proxy-core'];
const POD = '/api/v1/namespaces/default/pods/pod-0';
const SMALL_LIST = '/api/v1/namespaces/default/pods';
const WATCH = '/api/v1/namespaces/default/pods?watch=1&resourceVersion=1';
const t0 = performance.now();
const log = (line: string): void => void process.stderr.write(`${line}\n`);
const elapsed = (): string => `${((performance.now() - t0) / 1000).toFixed(0)}s`;

function sh(cmd: string, argv: string[]): string {
  try {
    return execFileSync(cmd, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string };
    return (e.stderr || e.stdout || 'unavailable').trim();
  }
}

/** Some programs print their version on stderr. */
function shAll(cmd: string, argv: string[]): string {
  try {
    const r = spawnSync(cmd, argv, { encoding: 'utf8' });
    return `${r.stdout}${r.stderr}`.trim() || 'unavailable';
  } catch {
    return 'unavailable';
  }
}

function machine(): Machine {
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpus()[0]?.model ?? 'unknown';
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    mode: QUICK ? 'quick' : 'full',
    nproc: cpus().length,
    cpu,
    memGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    nginx: shAll('nginx', ['-v']).replace('nginx version: ', ''),
    mitmproxy: /Mitmproxy: (\S+)/.exec(sh('mitmdump', ['--version']))?.[1] ?? 'unavailable',
    kubectl: /"gitVersion":\s*"([^"]+)"/.exec(sh(KUBECTL, ['version', '--client', '-o', 'json']))?.[1] ?? 'unavailable',
    kubetrail: `${VERSION}, ${args.kubetrail === 'dist' ? 'dist/bin/kubetrail.js' : 'src/bin/kubetrail.ts'}`,
    commit: sh('git', ['rev-parse', '--short', 'HEAD']),
    loadStart: loadavg()[0],
  };
}

/** kubetrail under a workload with --cpu-prof: where its CPU goes. */
async function profileKubetrail(
  bench: Bench,
  si: StandIn,
  ctx: Ctx,
  what: 'w2' | 'w3-gzip' | 'w3-identity',
): Promise<ProfileSummary | undefined> {
  const dir = join(bench.workDir, `prof-${what}`);
  mkdirSync(dir, { recursive: true });
  const p = await startPath('kubetrail', bench.env, si.spec, { nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${dir}`] });
  try {
    if (what === 'w2') {
      await ctx.lg.call(
        {
          type: 'throughput',
          target: p.target,
          proto: 'h1',
          path: SMALL_LIST,
          concurrency: 32,
          warmupMs: 500,
          durationMs: 3000,
        },
        'throughput',
        60_000,
      );
    } else {
      await ctx.lg.call(
        {
          type: 'large',
          target: p.target,
          proto: 'h1',
          path: `/api/v1/namespaces/bench-n${CFG.w3.items}/pods`,
          encoding: what === 'w3-gzip' ? 'gzip' : 'identity',
          count: 2,
        },
        'large',
        120_000,
      );
    }
  } finally {
    await p.stop();
  }
  const f = readdirSync(dir).find((x) => x.endsWith('.cpuprofile'));
  return f ? summarizeProfile(join(dir, f)) : undefined;
}

async function standInWorkloads(bench: Bench, ctx0: Ctx, results: Results): Promise<void> {
  log(`[${elapsed()}] stand-in apiserver`);
  const si = await startStandIn(bench, Number(args['upstream-delay-ms']));
  results.standIn.podBytes = si.podBytes;
  const up = si.spec;
  const ctx: Ctx = {
    ...ctx0,
    upstreamConns: async () => {
      const c = await si.proc.call({ type: 'conns' }, 'conns', 10_000);
      return { accepted: c.accepted, open: c.open };
    },
  };
  try {
    if (WANT.has(1) || WANT.has(2)) {
      const paths = await startAll(ctx, STANDIN_PATHS, up);
      try {
        if (WANT.has(1)) {
          log(
            `[${elapsed()}] workload 1: small GET, concurrency 1 (${CFG.w1.rounds} rounds × ${CFG.w1.perRound} requests per path)`,
          );
          results.standIn.w1 = await w1Latency(ctx, legsOf(paths, H2_KINDS), { path: POD, ...CFG.w1 });
        }
        if (WANT.has(2)) {
          log(
            `[${elapsed()}] workload 2: small list, concurrency ${CFG.w2.concurrency} (${CFG.w2.rounds} × ${CFG.w2.durationMs} ms per path)`,
          );
          results.standIn.w2 = await w2Throughput(ctx, legsOf(paths, H2_KINDS), { path: SMALL_LIST, ...CFG.w2 });
        }
      } finally {
        await stopAll(paths);
      }
    }
    if (WANT.has(3)) {
      const counts = [CFG.w3.items];
      const bigMb = BIG_MB ?? CFG.w3.bigMb;
      const bigItems = bigMb > 0 ? Math.ceil((bigMb * 1e6) / (si.podBytes + 1)) : 0;
      if (bigItems > 0) counts.push(bigItems);
      const memItems = Math.ceil((CFG.mem.listMb * 1e6) / (si.podBytes + 1));
      counts.push(memItems);
      log(`[${elapsed()}] workload 3: preparing lists of ${counts.join(', ')} pods`);
      await si.proc.call({ type: 'prepare', counts }, 'prepared', 300_000);
      log(`[${elapsed()}] workload 3: ${CFG.w3.items} pods, identity and gzip, fresh proxy per measurement`);
      results.standIn.w3 = await w3Large(ctx, up, STANDIN_PATHS, {
        items: CFG.w3.items,
        listPath: `/api/v1/namespaces/bench-n${CFG.w3.items}/pods`,
        encodings: ['identity', 'gzip'],
        rounds: CFG.w3.rounds,
        requests: CFG.w3.requests,
        slow: ['mitmproxy'],
        h2Kinds: H2_KINDS,
      });
      if (bigItems > 0) {
        log(
          `[${elapsed()}] workload 3: ${bigItems} pods (~${CFG.w3.bigMb} MB), mitmproxy left out (it buffers whole bodies)`,
        );
        const kinds: PathKind[] = only(['direct', 'kubetrail', 'kubetrail-refused', 'nginx', 'kubectl-proxy']);
        results.standIn.w3big = await w3Large(ctx, up, kinds, {
          items: bigItems,
          listPath: `/api/v1/namespaces/bench-n${bigItems}/pods`,
          encodings: ['identity', 'gzip'],
          rounds: 1,
          requests: 1,
        });
      }
      if (!ONLY || ONLY.includes('kubetrail')) {
        log(
          `[${elapsed()}] kubetrail start's memory as a user runs it: c=${CFG.mem.concurrency} burst, then a ${CFG.mem.listMb} MB list (${memItems} pods), ${CFG.mem.runs} fresh processes per variant`,
        );
        results.standIn.startMem = await startMemory(ctx, up, {
          runs: CFG.mem.runs,
          concurrency: CFG.mem.concurrency,
          burstMs: CFG.mem.burstMs,
          smallPath: SMALL_LIST,
          listPath: `/api/v1/namespaces/bench-n${memItems}/pods`,
        });
      }
    }
    if (WANT.has(4)) {
      log(
        `[${elapsed()}] workload 4: ${CFG.w4.n} watches, ${CFG.w4.rate} events/s for ${CFG.w4.durationMs} ms, fresh proxy per path`,
      );
      const control = {
        emit: async (rate: number, durationMs: number): Promise<number> =>
          (await si.proc.call({ type: 'emit', rate, durationMs }, 'emitted', durationMs + 60_000)).sent,
        watches: async (): Promise<number> => (await si.proc.call({ type: 'watches' }, 'watches', 10_000)).count,
      };
      results.standIn.w4 = await w4Watches(
        ctx,
        up,
        only(PATHS),
        { n: CFG.w4.n, rate: CFG.w4.rate, durationMs: CFG.w4.durationMs, watchPath: WATCH, proto: W4_PROTO },
        control,
      );
    }
    if (!args['no-profile'] && !QUICK) {
      log(`[${elapsed()}] CPU profiles of kubetrail (workload 2, workload 3 gzip and identity)`);
      results.profiles = {};
      for (const what of ['w2', 'w3-gzip', 'w3-identity'] as const) {
        try {
          const p = await profileKubetrail(bench, si, ctx, what);
          if (p)
            results.profiles[
              `kubetrail, ${what === 'w2' ? 'workload 2 (small list, c=32)' : `workload 3 (${CFG.w3.items} pods, ${what.slice(3)})`}`
            ] = p;
        } catch (err) {
          results.errors.push(`profile ${what}: ${String(err)}`);
        }
      }
    }
  } finally {
    si.proc.send({ type: 'stop' });
    await si.proc.stop();
  }
}

async function realWorkloads(bench: Bench, ctx: Ctx, results: Results): Promise<void> {
  if (!(WANT.has(1) || WANT.has(3) || WANT.has(5))) return;
  log(`[${elapsed()}] real stack: kube-apiserver + etcd + Jaeger`);
  let real: Real;
  try {
    real = await startReal(bench, log);
  } catch (err) {
    results.errors.push(`real stack did not start: ${String(err)}`);
    log(`  real stack did not start: ${String(err)}`);
    return;
  }
  results.machine.apiserver = real.stack.apiserverVersion;
  results.real = {};
  const rctx: Ctx = { ...ctx, env: { ...ctx.env, otlpLive: real.jaegerOtlp } };
  try {
    await createPods(real.spec, 'default', 5, log);
    if (WANT.has(1)) {
      log(`[${elapsed()}] real workload 1: small GET`);
      const paths = await startAll(rctx, STANDIN_PATHS, real.spec);
      try {
        results.real.w1 = await w1Latency(rctx, legsOf(paths, H2_KINDS), { path: POD, ...CFG.real.w1 });
      } finally {
        await stopAll(paths);
      }
    }
    if (WANT.has(3)) {
      log(`[${elapsed()}] real workload 3: creating ${CFG.real.w3Items} pods`);
      results.real.podsCreatedMs = await createPods(real.spec, 'bench-large', CFG.real.w3Items, log);
      log(
        `[${elapsed()}] real workload 3: list of ${CFG.real.w3Items} pods (created in ${(results.real.podsCreatedMs / 1000).toFixed(1)} s)`,
      );
      results.real.w3 = await w3Large(rctx, real.spec, only(PATHS), {
        items: CFG.real.w3Items,
        listPath: '/api/v1/namespaces/bench-large/pods',
        encodings: ['identity', 'gzip'],
        rounds: CFG.real.w3Rounds,
        requests: CFG.w3.requests,
        slow: ['mitmproxy'],
        h2Kinds: H2_KINDS.filter((k) => k !== 'proxy-core'),
      });
    }
    if (WANT.has(5)) {
      log(`[${elapsed()}] workload 5: kubectl get pods, ${CFG.real.w5Runs} runs per variant`);
      results.real.w5 = await w5Kubectl(bench, real, CFG.real.w5Runs, log);
      log(`[${elapsed()}] workload 5: breakdown of the wrapped run (${CFG.real.breakdownRuns} runs)`);
      results.real.breakdown = await wrapBreakdown(bench, real, CFG.real.breakdownRuns, log, !QUICK);
    }
  } finally {
    await real.stack.stop();
  }
}

/** Replace the generated part of bench/RESULTS.md (between its markers) with `md`. */
function updateResultsMd(md: string): void {
  const file = join(import.meta.dirname, 'RESULTS.md');
  const begin =
    '<!-- bench:begin (generated by `npm run bench -- --update-results-md`; edit outside these markers) -->';
  const end = '<!-- bench:end -->';
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    text = `# kubetrail benchmark results\n\n${begin}\n${end}\n`;
  }
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  text =
    i === -1 || j === -1
      ? `${text}\n${begin}\n${md}\n${end}\n`
      : `${text.slice(0, i + begin.length)}\n${md}\n${text.slice(j)}`;
  writeFileSync(file, text);
}

async function main(): Promise<void> {
  if (args.render !== undefined) {
    const md = renderMarkdown(JSON.parse(readFileSync(args.render, 'utf8')) as Results);
    console.log(md);
    if (args['update-results-md']) updateResultsMd(md);
    return;
  }
  const results: Results = {
    machine: machine(),
    config: { quick: QUICK, ...CFG, w4Rate: CFG.w4.rate, w4DurationMs: CFG.w4.durationMs },
    standIn: { podBytes: 0 },
    durationS: 0,
    errors: [],
  };
  log(
    `kubetrail bench (${QUICK ? 'quick' : 'full'}): ${results.machine.nproc} cores, ${results.machine.cpu}, Node ${results.machine.node}`,
  );
  // What users run is the built CLI (`npx kubetrail`, the package): `kubetrail start`'s memory and W5 are
  // measured on dist/ as well as src/, so a stale dist/ is built first rather than left out (the run of
  // 2026-12-07 12:36Z measured src/ alone because dist/ was older than src/).
  if (!distFresh()) {
    log('dist/ is older than src/: building it (tsc -p tsconfig.build.json)');
    execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {
      cwd: ROOT,
      stdio: 'inherit',
    });
  }
  const bench = await setupBench();
  const lg = new Forked<Job, JobResult>('./loadgen.ts', [], bench.env.env);
  const ctx: Ctx = { env: bench.env, lg, log };
  const stop = (): void => {
    log('bench: interrupted');
    process.exitCode = 130;
  };
  process.once('SIGINT', stop);
  try {
    await standInWorkloads(bench, ctx, results);
    if (!args['no-real']) await realWorkloads(bench, ctx, results);
  } catch (err) {
    results.errors.push(String(err));
    log(`bench: ${String(err)}`);
    process.exitCode = 1;
  } finally {
    if (lg.dropped > 0) results.errors.push(`${lg.dropped} late answer(s) of cancelled load-generator jobs dropped`);
    await lg.stop();
    await bench.cleanup();
  }
  results.durationS = (performance.now() - t0) / 1000;
  results.machine.loadEnd = loadavg()[0];
  const md = renderMarkdown(results);
  console.log(md);
  const dir = join(import.meta.dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const stamp = results.machine.date.replace(/[:]/g, '');
  writeFileSync(join(dir, `bench-${results.machine.mode}-${stamp}.json`), JSON.stringify(results, null, 2));
  writeFileSync(join(dir, `bench-${results.machine.mode}-${stamp}.md`), md);
  writeFileSync(join(dir, 'latest.json'), JSON.stringify(results, null, 2));
  writeFileSync(join(dir, 'latest.md'), md);
  if (args['update-results-md']) updateResultsMd(md);
  log(`bench: done in ${results.durationS.toFixed(0)} s; results in bench/results/`);
}

await main();
