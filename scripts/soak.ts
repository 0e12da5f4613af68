/**
 * A bounded soak: one `kubetrail start` (a child process, so its memory and descriptors can be read from
 * /proc) in front of the stand-in apiserver, and a loop of mixed kubectl commands through it for a fixed
 * time: gets and lists as two users, raw gets, a forbidden list, watches and `logs -f` stopped after a while,
 * exec to completion, exec tunnels and lists killed midway. Reports RSS and open descriptors at the start
 * (after a warm-up), every 20 s and at the end (after idle connections have closed).
 *
 *   node scripts/soak.ts --minutes 2            (npx node ... with the system's Node older than 22)
 *
 * All traffic stays on 127.0.0.1; at most two kubectl processes run at once; it stops by itself.
 * test/integration/faults.test.ts runs a 20-second version and bounds the growth.
 * The probes (`startKubetrailProcess`, `processStats`, `handles`) are exported for the fault tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { makeConfigMap, makePod, startFakeApiserver } from '../test/helpers/fake-apiserver.ts';
import { startKubectl, type KubectlResult } from '../test/helpers/kubectl.ts';
import { startOtlpReceiver } from '../test/helpers/otlp-receiver.ts';

const KUBETRAIL_BIN = fileURLToPath(new URL('../src/bin/kubetrail.ts', import.meta.url));

// ---------------------------------------------------------------------------------------------- probes

export interface ProcessStats {
  rssKb: number;
  /** Peak RSS (VmHWM) since the process started. */
  hwmKb: number;
  fds: number;
}

export function processStats(pid: number): ProcessStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return { rssKb: kb('VmRSS'), hwmKb: kb('VmHWM'), fds: readdirSync(`/proc/${pid}/fd`).length };
}

export interface Handles {
  /** Every open descriptor. */
  fds: number;
  /** Descriptors that are not sockets (files, pipes, event loop internals). */
  nonSockets: number;
  /** TCP connections accepted on `listenPort` (kubectl's side), in any state. */
  clients: number;
  /** Other TCP connections (to apiservers, the collector), in any state. */
  outbound: number;
  /** TCP connections the peer closed and this process did not: a leak when it lasts. */
  closeWait: number;
  listening: number;
}

const TCP_CLOSE_WAIT = '08';
const TCP_LISTEN = '0A';

/** Classify the open descriptors of `pid` (Linux /proc). */
export function handles(pid: number, listenPort: number): Handles {
  const inodes = new Set<string>();
  let fds = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    fds++;
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // closed while listing
    }
  }
  const out: Handles = { fds, nonSockets: fds - inodes.size, clients: 0, outbound: 0, closeWait: 0, listening: 0 };
  for (const table of ['tcp', 'tcp6']) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      const inode = f[9];
      if (!inode || !inodes.has(inode)) continue;
      const state = f[3];
      const localPort = parseInt(f[1]?.split(':')[1] ?? '0', 16);
      if (state === TCP_LISTEN) out.listening++;
      else if (localPort === listenPort) out.clients++;
      else out.outbound++;
      if (state === TCP_CLOSE_WAIT) out.closeWait++;
    }
  }
  return out;
}

export interface KubetrailProcess {
  child: ChildProcess;
  pid: number;
  port: number;
  /** The rewritten kubeconfig `start` printed. */
  kubeconfig: string;
  /** The route of the first cluster: base URL, CA and SNI name, for plain HTTPS clients. */
  route(cluster?: string): { base: string; caPem: Buffer; servername: string };
  stdout(): string;
  stderr(): string;
  /** SIGTERM, then wait for the exit (SIGKILL after 10 s). */
  stop(): Promise<number>;
}

interface RewrittenCluster {
  name: string;
  cluster: { server: string; 'certificate-authority-data': string; 'tls-server-name': string };
}

/** `kubetrail start --listen 127.0.0.1:0 ...` as a child process; resolves once it serves. */
export async function startKubetrailProcess(opts: {
  kubeconfig: string;
  home?: string;
  args?: string[];
  env?: Record<string, string>;
}): Promise<KubetrailProcess> {
  const home = opts.home ?? mkdtempSync(join(tmpdir(), 'kt-proc-'));
  const child = spawn(
    process.execPath,
    [KUBETRAIL_BIN, 'start', '--kubeconfig', opts.kubeconfig, '--listen', '127.0.0.1:0', ...(opts.args ?? [])],
    {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: home,
        KUBETRAIL_STATE_DIR: join(home, 'kubetrail-state'),
        NO_COLOR: '1',
        ...opts.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number>((resolve) =>
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1))),
  );
  const deadline = Date.now() + 20_000;
  let path: string | undefined;
  while (!(path = /^export KUBECONFIG=(\S+)$/m.exec(out)?.[1])) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`kubetrail start did not come up; stderr: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  const kubeconfig = path;
  const doc = parse(readFileSync(kubeconfig, 'utf8')) as { clusters: RewrittenCluster[] };
  const first = doc.clusters[0];
  if (!first || child.pid === undefined) throw new Error('kubetrail start wrote no cluster');
  const port = Number(new URL(first.cluster.server).port);
  return {
    child,
    pid: child.pid,
    port,
    kubeconfig,
    route(name) {
      const c = name === undefined ? first : doc.clusters.find((x) => x.name === name);
      if (!c) throw new Error(`no cluster ${name ?? ''} in the rewritten kubeconfig`);
      return {
        base: c.cluster.server,
        caPem: Buffer.from(c.cluster['certificate-authority-data'], 'base64'),
        servername: c.cluster['tls-server-name'],
      };
    },
    stdout: () => out,
    stderr: () => err,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Poll `probe` until `ok` holds or `timeoutMs` passes; returns the last value. */
export async function settle<T>(probe: () => T, ok: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let v = probe();
  while (!ok(v) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    v = probe();
  }
  return v;
}

// ------------------------------------------------------------------------------------------------ soak

export interface SoakSample extends ProcessStats {
  atS: number;
  commands: number;
}

export interface SoakReport {
  seconds: number;
  commands: number;
  /** Commands by kind: run / failed when they should have succeeded. */
  byKind: Record<string, { run: number; failed: number }>;
  /** Unexpected failures: kind, exit code and the first stderr line. */
  failures: string[];
  start: SoakSample;
  samples: SoakSample[];
  /** After the loop, once kubectl has gone and idle upstream connections have closed. */
  end: SoakSample;
  /** Peak RSS of the whole run. */
  hwmKb: number;
  handlesAtStart: Handles;
  handlesAtEnd: Handles;
}

interface Step {
  kind: string;
  args: string[];
  /** Kill kubectl after this long (a watch, a follow, an aborted list or tunnel); its exit code is not judged. */
  killAfterMs?: number;
  /** Exit code expected when it runs to completion. */
  code?: number;
}

const STEPS: Step[] = [
  { kind: 'get pods', args: ['--context', 'alice', 'get', 'pods'] },
  { kind: 'list pods -A (token)', args: ['--context', 'tina', 'get', 'pods', '-A', '-o', 'wide'] },
  { kind: 'get configmap -o yaml', args: ['--context', 'tina', 'get', 'configmap', 'settings', '-o', 'yaml'] },
  { kind: 'get --raw /version', args: ['--context', 'alice', 'get', '--raw', '/version'] },
  { kind: 'list 1500 pods (paged)', args: ['--context', 'alice', 'get', 'pods', '-n', 'big', '-o', 'name'] },
  { kind: 'forbidden list', args: ['--context', 'tom', 'get', 'pods'], code: 1 },
  { kind: 'exec', args: ['--context', 'alice', 'exec', 'web-0', '--', 'echo', 'hi'] },
  { kind: 'watch (stopped)', args: ['--context', 'alice', 'get', 'pods', '-w'], killAfterMs: 1500 },
  { kind: 'logs -f (stopped)', args: ['--context', 'tina', 'logs', '-f', 'web-0'], killAfterMs: 1200 },
  {
    kind: 'exec tunnel (killed)',
    args: ['--context', 'alice', 'exec', 'web-0', '--', 'sleep', '30'],
    killAfterMs: 800,
  },
  { kind: 'list (killed midway)', args: ['--context', 'alice', 'get', 'pods', '-n', 'big'], killAfterMs: 150 },
];

export async function runSoak(opts: {
  seconds: number;
  sampleEveryS?: number;
  log?: (line: string) => void;
  concurrency?: number;
}): Promise<SoakReport> {
  const log = opts.log ?? ((): void => undefined);
  const dir = mkdtempSync(join(tmpdir(), 'kt-soak-'));
  const receiver = await startOtlpReceiver('ok');
  const fake = await startFakeApiserver({
    tokens: { 'tina-soak-token': { user: 'tina' }, 'tom-soak-token': { user: 'tom' } },
    authorize: (user) => user.name !== 'tom',
    logFollow: { intervalMs: 100 },
  });
  let kt: KubetrailProcess | undefined;
  try {
    const alice = await fake.issueUser('alice', ['dev']);
    const kubeconfig = await fake.writeKubeconfig(dir, {
      users: [
        { name: 'alice', cert: alice },
        { name: 'tina', token: 'tina-soak-token' },
        { name: 'tom', token: 'tom-soak-token' },
      ],
    });
    fake.create(makePod('web-0'));
    fake.setLogs('default', 'web-0', ['started', 'ready']);
    fake.create(makeConfigMap('settings', { mode: 'soak' }));
    for (let i = 0; i < 1500; i++) fake.create(makePod(`p-${String(i).padStart(4, '0')}`, { namespace: 'big' }));

    kt = await startKubetrailProcess({
      kubeconfig,
      args: ['--otlp-endpoint', receiver.url, '--session-idle-ms', '500'],
    });
    const proxy = kt;
    // One HOME for every kubectl: warm discovery caches, as a user's would be.
    const home = mkdtempSync(join(tmpdir(), 'kt-soak-home-'));
    const byKind: SoakReport['byKind'] = {};
    const failures: string[] = [];
    let commands = 0;

    const runStep = async (step: Step): Promise<void> => {
      const k = startKubectl(step.args, { kubeconfig: proxy.kubeconfig, home, timeoutMs: 30_000 });
      let timer: NodeJS.Timeout | undefined;
      if (step.killAfterMs !== undefined) timer = setTimeout(() => k.kill('SIGKILL'), step.killAfterMs);
      const r: KubectlResult = await k.result;
      clearTimeout(timer);
      commands++;
      const entry = (byKind[step.kind] ??= { run: 0, failed: 0 });
      entry.run++;
      const killed = step.killAfterMs !== undefined && r.signal === 'SIGKILL';
      if (!killed && r.code !== (step.code ?? 0)) {
        entry.failed++;
        failures.push(`${step.kind}: exit ${r.code}: ${r.stderr.split('\n').find((l) => l.trim() !== '') ?? ''}`);
      }
    };

    // Warm-up: every step once, so caches, pools and the JIT are where they stay; the baseline is taken after.
    for (const step of STEPS) await runStep(step);
    await settle(
      () => handles(proxy.pid, proxy.port),
      (h) => h.clients === 0,
      5000,
    );
    const t0 = Date.now();
    const sample = (): SoakSample => ({
      atS: Math.round((Date.now() - t0) / 1000),
      commands,
      ...processStats(proxy.pid),
    });
    const start = sample();
    const handlesAtStart = handles(proxy.pid, proxy.port);
    log(
      `start: RSS ${(start.rssKb / 1024).toFixed(1)} MiB, ${start.fds} fds (${handlesAtStart.outbound} upstream, ${handlesAtStart.clients} client sockets)`,
    );
    const samples: SoakSample[] = [];
    const every = (opts.sampleEveryS ?? 20) * 1000;
    let nextSample = t0 + every;
    const until = t0 + opts.seconds * 1000;
    let i = 0;
    const worker = async (): Promise<void> => {
      while (Date.now() < until) {
        const step = STEPS[i++ % STEPS.length] as Step;
        await runStep(step);
        if (Date.now() >= nextSample) {
          nextSample += every;
          const s = sample();
          samples.push(s);
          log(`${s.atS}s: ${s.commands} commands, RSS ${(s.rssKb / 1024).toFixed(1)} MiB, ${s.fds} fds`);
        }
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency ?? 2 }, () => worker()));
    const seconds = (Date.now() - t0) / 1000;
    // Let kubectl's connections go and the pooled upstream ones idle out (the stand-in closes them after 5 s).
    const handlesAtEnd = await settle(
      () => handles(proxy.pid, proxy.port),
      (h) => h.clients === 0 && h.closeWait === 0 && h.fds <= handlesAtStart.fds,
      10_000,
    );
    const end = sample();
    log(
      `end: ${commands} commands in ${seconds.toFixed(0)} s, RSS ${(end.rssKb / 1024).toFixed(1)} MiB (peak ${(end.hwmKb / 1024).toFixed(1)} MiB), ${end.fds} fds; failures: ${failures.length}`,
    );
    return { seconds, commands, byKind, failures, start, samples, end, hwmKb: end.hwmKb, handlesAtStart, handlesAtEnd };
  } finally {
    await kt?.stop();
    await fake.close();
    await receiver.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--minutes');
  const minutes = i === -1 ? 2 : Number(process.argv[i + 1]);
  if (!Number.isFinite(minutes) || minutes <= 0 || minutes > 60)
    throw new Error('--minutes: a number of minutes, at most 60');
  const say = (line: string): void => void process.stdout.write(`${line}\n`);
  const report = await runSoak({ seconds: minutes * 60, log: say });
  say(JSON.stringify({ ...report, samples: undefined }, null, 2));
  say(`| when | commands | RSS MiB | peak MiB | open fds |\n|---|---|---|---|---|`);
  for (const s of [report.start, ...report.samples, report.end]) {
    say(
      `| ${s === report.end ? 'end' : `${s.atS} s`} | ${s.commands} | ${(s.rssKb / 1024).toFixed(1)} | ${(s.hwmKb / 1024).toFixed(1)} | ${s.fds} |`,
    );
  }
  process.exitCode = report.failures.length === 0 ? 0 : 1;
}
