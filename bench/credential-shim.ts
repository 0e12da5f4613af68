/**
 * `npm run bench:shim [-- --runs 200] [-- --slow-runs 20]`
 *
 * What kubetrail's credential shim (src/kubeconfig/credential-shim.ts) costs per exec credential plugin
 * run, and how close its `kubectl credential` span is to the plugin's real duration. Issue #14 asks ≤ 5 ms
 * per run. Two measurements, each printed as medians:
 *
 * 1. Cost: a trivial plugin (`sh` printing an ExecCredential) run `--runs` times directly and `--runs`
 *    times through the shim, interleaved one by one, each by spawnSync from this process (the spawn's own
 *    cost is in both). Wall ms per run, and the children's CPU (utime+stime of the waited-for children,
 *    /proc/self/stat cutime+cstime, summed over the runs: 10 ms ticks, so only the per-run mean is given).
 * 2. Accuracy: a plugin that sleeps 300 ms, run `--slow-runs` times through the shim: the span the shim
 *    recorded (as telemetry reads it: kubeconfig/timing.ts) next to the wall time seen from here.
 *
 * Linux, a POSIX sh. Prints the machine's load: on a busy machine every process start costs more, the
 * plugin's as much as the shim's.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { installShim, shimExec } from '../src/kubeconfig/credential-shim.ts';
import { parseTiming } from '../src/kubeconfig/timing.ts';
import { median } from './lib/stats.ts';

const { values: args } = parseArgs({
  options: { runs: { type: 'string', default: '200' }, 'slow-runs': { type: 'string', default: '20' } },
});
const RUNS = Number(args.runs);
const SLOW_RUNS = Number(args['slow-runs']);

const CRED = '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t"}}';
const dir = mkdtempSync(join(tmpdir(), 'kt-bench-shim-'));
const stateDir = join(dir, 'state');

/** Children's CPU ms so far (waited-for children only: spawnSync waits). */
function childCpuMs(): number {
  const s = readFileSync('/proc/self/stat', 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // Fields 16 and 17 (cutime, cstime) are f[13], f[14] after the comm; clock ticks, 100 per second on Linux.
  return (Number(f[13]) + Number(f[14])) * 10;
}

function plugin(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\nprintf '%s' '${CRED}'\n`);
  chmodSync(p, 0o755);
  return p;
}

/** The argv kubectl would run for this plugin, given the rewritten kubeconfig's exec stanza. */
function shimmed(command: string, timingFile: string): [string, string[]] {
  const exec = shimExec({ command, args: [] }, { install: (c) => installShim(stateDir, c), timingFile });
  return [exec.command as string, exec.args as string[]];
}

function run(cmd: string, argv: string[]): { ms: number; cpu: number } {
  const c0 = childCpuMs();
  const t0 = performance.now();
  const r = spawnSync(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  const ms = performance.now() - t0;
  if (r.status !== 0 || r.stdout.toString() !== CRED)
    throw new Error(`${cmd} failed: ${r.status} ${r.stdout.toString()}`);
  return { ms, cpu: childCpuMs() - c0 };
}

const f = (x: number): string => x.toFixed(2);
try {
  const sh = realpathSync('/bin/sh');
  console.log(
    `credential shim bench: /bin/sh is ${sh}; load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}; ${RUNS} runs each, ${SLOW_RUNS} slow runs`,
  );

  // 1. Cost.
  const trivial = plugin('trivial-plugin', ':');
  const timing = join(dir, 'timing-cost');
  const [shim, shimArgs] = shimmed(trivial, timing);
  for (let i = 0; i < 10; i++) {
    run(trivial, []);
    run(shim, shimArgs);
  }
  const direct: number[] = [];
  const through: number[] = [];
  let directCpu = 0;
  let throughCpu = 0;
  for (let i = 0; i < RUNS; i++) {
    const order = i % 2 === 0;
    const a = order ? run(trivial, []) : undefined;
    const b = run(shim, shimArgs);
    const c = order ? undefined : run(trivial, []);
    const d = (a ?? c) as { ms: number; cpu: number };
    direct.push(d.ms);
    directCpu += d.cpu;
    through.push(b.ms);
    throughCpu += b.cpu;
  }
  const stamp = readFileSync(timing, 'utf8').split('\n')[0]?.split(' ')[1] ?? '';
  const clock = stamp.startsWith('up')
    ? '/proc/uptime (10 ms steps)'
    : /^\d+[.,]\d+$/.test(stamp)
      ? '$EPOCHREALTIME'
      : 'date';
  console.log(`shim clock: ${clock}`);
  console.log(
    `cost, wall ms per run (median of ${RUNS}): direct ${f(median(direct))} · through the shim ${f(median(through))} · shim ${f(median(through) - median(direct))}`,
  );
  console.log(
    `cost, children's CPU ms per run (mean of ${RUNS}): direct ${f(directCpu / RUNS)} · through the shim ${f(throughCpu / RUNS)} · shim ${f((throughCpu - directCpu) / RUNS)}`,
  );

  // 2. Accuracy.
  const slow = plugin('slow-plugin', 'sleep 0.3');
  const slowTiming = join(dir, 'timing-slow');
  const [slowShim, slowArgs] = shimmed(slow, slowTiming);
  const walls: number[] = [];
  for (let i = 0; i < SLOW_RUNS; i++) walls.push(run(slowShim, slowArgs).ms);
  const spans = parseTiming(readFileSync(slowTiming, 'utf8')).credentials.map((c) => c.end - c.start);
  const off = spans.map((s) => Math.abs(s - 300));
  console.log(
    `300 ms plugin, ms (median of ${SLOW_RUNS}): credential span ${f(median(spans))} (min ${f(Math.min(...spans))}, max ${f(Math.max(...spans))}, max |span − 300| ${f(Math.max(...off))}) · wall from here ${f(median(walls))}`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
