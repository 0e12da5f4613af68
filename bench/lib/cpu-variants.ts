/**
 * Where kubetrail's observer cost goes under workload 2 (10-pod list, concurrency 32, keep-alive): CPU ms
 * per request of bench/lib/proxy-core.ts with each BENCH_OBSERVER variant (and `kubetrail start` itself),
 * interleaved round by round against one stand-in apiserver and one load generator.
 *
 *   node bench/lib/cpu-variants.ts [--rounds 5] [--ms 3000] [--variants none,noop,headers,spans-off,full,start]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Forked } from './child.ts';
import { KUBETRAIL_SRC, kubetrailTarget } from './paths.ts';
import { cpuMs, stopChild } from './proc.ts';
import { setupBench, startStandIn } from './setup.ts';
import { median } from './stats.ts';
import type { Job, JobResult, Target } from './target.ts';

const { values: args } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    ms: { type: 'string', default: '3000' },
    warmup: { type: 'string', default: '700' },
    variants: { type: 'string', default: 'none,noop,headers,spans-off,full,start' },
    prof: { type: 'string' },
  },
});
const ROUNDS = Number(args.rounds);
const MS = Number(args.ms);
const WARMUP = Number(args.warmup);
const VARIANTS = args.variants.split(',');
const PROXY_CORE = fileURLToPath(new URL('./proxy-core.ts', import.meta.url));
const SMALL_LIST = '/api/v1/namespaces/default/pods';

const bench = await setupBench();
const si = await startStandIn(bench);
const lg = new Forked<Job, JobResult>('./loadgen.ts', [], bench.env.env);

interface Running {
  name: string;
  child: ChildProcess;
  target: Target;
}

/** `variant[+ENV=value...][@--node-flag...]`, e.g. `full+OTEL_BSP_MAX_EXPORT_BATCH_SIZE=128@--max-semi-space-size=32`. */
async function start(spec: string): Promise<Running> {
  const [head = '', ...flags] = spec.split('@');
  const [full = '', ...envs] = head.split('+');
  // `before:<variant>`: the same variant from another checkout (BENCH_BEFORE_DIR), for before/after runs.
  const before = full.startsWith('before:');
  const name = before ? full.slice('before:'.length) : full;
  const coreScript = before ? join(process.env.BENCH_BEFORE_DIR ?? '', 'bench/lib/proxy-core.ts') : PROXY_CORE;
  const extraEnv = Object.fromEntries(envs.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
  const stateDir = join(bench.workDir, 'state');
  const prof = [
    ...flags,
    ...(args.prof === spec || args.prof === 'all'
      ? ['--cpu-prof', `--cpu-prof-dir=${join(bench.workDir, 'prof', spec)}`]
      : []),
  ];
  const argv =
    name === 'start'
      ? [
          ...prof,
          KUBETRAIL_SRC,
          'start',
          '--kubeconfig',
          si.spec.kubeconfig,
          '--listen',
          '127.0.0.1:0',
          '--state-dir',
          stateDir,
          '--otlp-endpoint',
          bench.env.otlpLive,
          '--quiet',
        ]
      : [...prof, coreScript, si.spec.kubeconfig, stateDir, bench.env.otlpLive];
  mkdirSync(join(bench.workDir, 'logs'), { recursive: true });
  const errFd = openSync(join(bench.workDir, 'logs', `${spec.replace(/\W+/g, '_')}.log`), 'a');
  const child = spawn(process.execPath, argv, {
    env: { ...bench.env.env, ...extraEnv, BENCH_OBSERVER: name },
    stdio: ['ignore', 'pipe', errFd],
  });
  closeSync(errFd);
  const kcPath = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const m = /export KUBECONFIG=(\S+)\n/.exec(out);
      if (m) resolve(m[1] ?? '');
    });
    child.once('exit', (code) =>
      reject(
        new Error(
          `${name} exited ${code}: ${readFileSync(join(bench.workDir, 'logs', `${spec.replace(/\W+/g, '_')}.log`), 'utf8')}`,
        ),
      ),
    );
  });
  return { name: spec, child, target: kubetrailTarget(name, kcPath, si.spec) };
}

/** CPU ms per thread name (main thread `node`, V8 GC helpers `V8 DefaultWorke`, libuv's pool `libuv-worker`). */
function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'));
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      const ms = ((Number(f[11]) + Number(f[12])) * 1000) / 100;
      out.set(comm, (out.get(comm) ?? 0) + ms);
    } catch {
      // the thread ended
    }
  }
  return out;
}

const running: Running[] = [];
for (const v of VARIANTS) running.push(await start(v));
const acc = new Map<string, { cpu: number[]; rps: number[]; threads: Map<string, number[]> }>();
const sink0 = { requests: bench.sink.requests, bytes: bench.sink.bytes };
try {
  for (let r = 0; r < ROUNDS; r++) {
    const k = r % running.length;
    for (const p of [...running.slice(k), ...running.slice(0, k)]) {
      const pid = p.child.pid ?? 0;
      let c0 = 0;
      let c1 = 0;
      let t0 = new Map<string, number>();
      let t1 = new Map<string, number>();
      const res = await lg.call(
        {
          type: 'throughput',
          target: p.target,
          proto: 'h1',
          path: SMALL_LIST,
          concurrency: 32,
          warmupMs: WARMUP,
          durationMs: MS,
        },
        'throughput',
        MS + WARMUP + 60_000,
        (m) => {
          if (m.type === 'window' && m.phase === 'start') {
            c0 = cpuMs(pid);
            t0 = threadCpu(pid);
          }
          if (m.type === 'window' && m.phase === 'end') {
            c1 = cpuMs(pid);
            t1 = threadCpu(pid);
          }
        },
      );
      if (res.errors > 0) process.stderr.write(`${p.name}: ${res.errors} errors (${res.firstError})\n`);
      const a = acc.get(p.name) ?? { cpu: [], rps: [], threads: new Map<string, number[]>() };
      a.cpu.push((c1 - c0) / res.count);
      for (const [k, v] of t1) {
        const list = a.threads.get(k) ?? [];
        list.push((v - (t0.get(k) ?? 0)) / res.count);
        a.threads.set(k, list);
      }
      a.rps.push(res.count / (res.ms / 1000));
      acc.set(p.name, a);
      process.stderr.write(
        `round ${r} ${p.name}: ${((c1 - c0) / res.count).toFixed(3)} ms/req, ${(res.count / (res.ms / 1000)).toFixed(0)} rps\n`,
      );
    }
  }
} finally {
  for (const p of running) await stopChild(p.child);
}
process.stdout.write(
  '| variant | CPU ms/req (median) | rounds | req/s (median) | by thread (median ms/req) |\n|---|---|---|---|---|\n',
);
for (const v of VARIANTS) {
  const a = acc.get(v) ?? { cpu: [], rps: [], threads: new Map<string, number[]>() };
  const threads = [...a.threads]
    .map(([k, xs]) => [k, median(xs)] as const)
    .filter(([, x]) => x >= 0.001)
    .sort((x, y) => y[1] - x[1]);
  process.stdout.write(
    `| ${v} | ${median(a.cpu).toFixed(3)} | ${a.cpu.map((x) => x.toFixed(3)).join(' ')} | ${median(a.rps).toFixed(0)} | ${threads.map(([k, x]) => `${k} ${x.toFixed(3)}`).join(', ')} |\n`,
  );
}
process.stdout.write(
  `OTLP sink: ${bench.sink.requests - sink0.requests} posts, ${((bench.sink.bytes - sink0.bytes) / 1e6).toFixed(1)} MB\n`,
);
if (args.prof) process.stdout.write(`profile in ${join(bench.workDir, 'prof')}\n`);
await lg.stop();
si.proc.send({ type: 'stop' });
await si.proc.stop();
if (!args.prof) await bench.cleanup();
else await bench.sink.close();
