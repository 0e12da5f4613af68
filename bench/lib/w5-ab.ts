/**
 * Before/after of a wrap-mode change (workload 5's shape, on the stand-in apiserver so that it needs no
 * real stack): `kubectl get pods` direct, and `kubetrail -- kubectl get pods` from two checkouts, each
 * with its own warm background kubetrail, interleaved run by run. The stand-in answers in well under a
 * millisecond, so what is left is the wrapper's own cost: read it as "added ms" more than as a ratio.
 * With `perf` on PATH each run's CPU time (task-clock: kubetrail's wrapper and kubectl, all threads) is
 * reported too: on a loaded machine it varies far less than wall time.
 *
 *   node bench/lib/w5-ab.ts --before /other/checkout [--after .] [--runs 20] [--entry dist|src|launcher]
 *                           [--after-entry dist|src|launcher] [--otlp live|refused]
 *
 * `launcher` runs the checkout's bin/kubetrail (the installed command since the launcher, with dist/
 * behind it); `--after-entry` defaults to `--entry`.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startFakeApiserver, makePod } from '../../test/helpers/fake-apiserver.ts';
import { freePort, run } from './proc.ts';
import { KUBECTL, setupBench } from './setup.ts';
import { median } from './stats.ts';
import { rotation } from './workloads.ts';

const { values: args } = parseArgs({
  options: {
    before: { type: 'string' },
    after: { type: 'string', default: '.' },
    runs: { type: 'string', default: '20' },
    entry: { type: 'string', default: 'dist' },
    'after-entry': { type: 'string' },
    otlp: { type: 'string', default: 'live' },
  },
});
if (!args.before) throw new Error('w5-ab: --before <checkout> is required');
const RUNS = Number(args.runs);
const entryOf = (v: 'before' | 'after'): string =>
  (v === 'after' ? args['after-entry'] : undefined) ?? args.entry ?? 'dist';
const bin = (v: 'before' | 'after'): string =>
  join(
    resolve(v === 'before' ? (args.before ?? '') : args.after),
    { src: 'src/bin/kubetrail.ts', launcher: 'bin/kubetrail' }[entryOf(v)] ?? 'dist/bin/kubetrail.js',
  );
/** The command that runs kubetrail: the launcher is run itself, the Node entries by this Node. */
const kubetrail = (v: 'before' | 'after'): string[] =>
  entryOf(v) === 'launcher' ? [bin(v)] : [process.execPath, bin(v)];

const bench = await setupBench();
const api = await startFakeApiserver();
for (let i = 0; i < 5; i++) api.create(makePod(`pod-${i}`));
const admin = await api.issueUser('admin', ['system:masters']);
const kubeconfig = await api.writeKubeconfig(join(bench.workDir, 'kc'), {
  users: [{ name: 'admin', cert: admin }],
});
const home = join(bench.workDir, 'kubectl-home');
mkdirSync(home, { recursive: true });
// The launcher runs `node` from PATH for what it does not serve itself: this Node.
const env = { ...bench.env.env, HOME: home, PATH: `${dirname(process.execPath)}:${bench.env.env.PATH ?? ''}` };

type Variant = 'direct' | 'before' | 'after';
const ports: Record<Variant, number> = { direct: 0, before: await freePort(), after: await freePort() };
const argv = (v: Variant): string[] =>
  v === 'direct'
    ? [KUBECTL, '--kubeconfig', kubeconfig, 'get', 'pods']
    : [
        ...kubetrail(v),
        '--kubeconfig',
        kubeconfig,
        '--listen',
        `127.0.0.1:${ports[v]}`,
        '--state-dir',
        join(bench.workDir, `state-${v}`),
        '--otlp-endpoint',
        args.otlp === 'refused' ? bench.env.otlpRefused : bench.env.otlpLive,
        '--quiet',
        '--',
        KUBECTL,
        'get',
        'pods',
      ];

const variants: Variant[] = ['direct', 'before', 'after'];
const walls: Record<Variant, number[]> = { direct: [], before: [], after: [] };
const cpus: Record<Variant, number[]> = { direct: [], before: [], after: [] };
const perfOut = join(bench.workDir, 'perf.csv');
const perf =
  (await run('perf', ['stat', '-x,', '-e', 'task-clock', '-o', perfOut, 'true']).catch(() => undefined))?.code === 0;
/** task-clock ms of the last run under perf. */
const cpuOf = (): number => Number(/^([\d.]+),msec,task-clock/m.exec(readFileSync(perfOut, 'utf8'))?.[1]);
try {
  // Warm: kubectl's discovery cache per server URL, the background kubetrails, the page cache.
  for (const v of variants)
    for (let i = 0; i < 3; i++) {
      const [cmd = '', ...rest] = argv(v);
      const r = await run(cmd, rest, { env, timeoutMs: 60_000 });
      if (r.code !== 0) throw new Error(`w5-ab: warm-up ${v} failed (${r.code}): ${r.stderr.slice(0, 400)}`);
    }
  for (let i = 0; i < RUNS; i++)
    for (const v of rotation(variants, i)) {
      const [cmd = '', ...rest] = argv(v);
      const r = perf
        ? await run('perf', ['stat', '-x,', '-e', 'task-clock', '-o', perfOut, cmd, ...rest], {
            env,
            timeoutMs: 60_000,
          })
        : await run(cmd, rest, { env, timeoutMs: 60_000 });
      if (r.code !== 0) throw new Error(`w5-ab: ${v} failed (${r.code}): ${r.stderr.slice(0, 400)}`);
      walls[v].push(r.ms);
      if (perf) cpus[v].push(cpuOf());
    }
} finally {
  for (const v of ['before', 'after'] as const) {
    const [cmd = '', ...rest] = [...kubetrail(v), 'stop', '--state-dir', join(bench.workDir, `state-${v}`)];
    await run(cmd, rest, { env }).catch(() => undefined);
  }
  await api.close();
  await bench.cleanup();
}
const line = (what: string, xs: Record<Variant, number[]>): void => {
  const d = median(xs.direct);
  for (const v of variants) {
    const m = median(xs[v]);
    console.log(
      `w5 ${what} ${v}: median ${m.toFixed(1)} ms${v !== 'direct' ? ` (+${(m - d).toFixed(1)} ms, ${(m / d).toFixed(2)}× direct)` : ''}; runs ${xs[v].map((x) => x.toFixed(0)).join(' ')}`,
    );
  }
};
line('wall', walls);
if (perf) line('cpu', cpus);
const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
console.log(`load average at the end: ${load}`);
