/**
 * The launcher (bin/kubetrail, the installed `kubetrail`): a wrapped command that a running background
 * kubetrail can serve starts no Node process, and kubectl still prints the same bytes, reads the same
 * stdin, exits with the same code and gets the same signals as direct; its trace and waterfall are the
 * same as through the Node CLI. Anything it does not serve itself (no kubetrail yet, another
 * configuration, a state dir that is not private, a kubetrail that does not answer) runs the Node CLI.
 *
 * Which one ran is seen through PATH: `node` there is a script that records each run, then runs Node.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { freshHome, kubetrailEnv } from '../helpers/compare.ts';
import { makeConfigMap, makePod } from '../helpers/fake-apiserver.ts';
import { withFakeCluster } from '../helpers/fake-cluster.ts';
import { kubectl, kubectlAvailable, kubectlPath } from '../helpers/kubectl.ts';
import { alive, stopBackgroundKubetrails } from '../helpers/global-tmp.ts';
import { nodeRecorder, type NodeRecorder } from '../helpers/node-recorder.ts';
import { unusedPort } from '../helpers/ports.ts';
import { KUBETRAIL_BIN, runKubetrail, runProcess, type RunResult } from '../helpers/run-kubetrail.ts';

const LAUNCHER = fileURLToPath(new URL('../../bin/kubetrail', import.meta.url));

const cluster = withFakeCluster({
  prefix: 'kt-launch-',
  kubeconfig: { users: [{ name: 'alice', cert: { groups: ['system:masters'] } }] },
  seed: (fake) => {
    fake.create(makePod('web-0', { ageSeconds: 86_400 }));
    fake.create(makeConfigMap('settings', { a: '1' }));
  },
  otlp: true,
});

interface Setup {
  home: string;
  port: number;
  stateDir: string;
  /** Counts the Node CLI's runs. */
  node: NodeRecorder;
  env: NodeJS.ProcessEnv;
}

async function setup(): Promise<Setup> {
  const home = freshHome();
  const port = await unusedPort();
  const node = nodeRecorder(home);
  return {
    home,
    port,
    stateDir: join(home, 'kubetrail-state'),
    node,
    env: kubetrailEnv(home, {
      PATH: `${node.bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
      KUBECONFIG: cluster.kubeconfig,
      KUBETRAIL_LISTEN: `127.0.0.1:${port}`,
      KUBETRAIL_ENTRY: KUBETRAIL_BIN,
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: cluster.receiver.url,
    }),
  };
}

const nodeRuns = (s: Setup): number => s.node.runs();

function launched(s: Setup, args: string[], opts: { flags?: string[]; input?: string; env?: NodeJS.ProcessEnv } = {}) {
  return runProcess(LAUNCHER, [...(opts.flags ?? []), '--', kubectlPath('1.33'), ...args], {
    env: { ...s.env, ...opts.env },
    timeoutMs: 40_000,
    input: opts.input,
  });
}

/** The same command through the launcher and the Node CLI's count of runs it took. */
async function fast(s: Setup, args: string[], opts: Parameters<typeof launched>[2] = {}): Promise<RunResult> {
  const before = nodeRuns(s);
  const r = await launched(s, args, opts);
  expect(nodeRuns(s) - before, `${args.join(' ')}: the Node CLI ran\n${r.stderr}`).toBe(0);
  return r;
}

const traceIds = (stderr: string): string[] =>
  [...stderr.matchAll(/^trace: \S+\/trace\/([0-9a-f]{32})/gm)].map((m) => m[1] ?? '');

/**
 * Run a watch in its own process group (a terminal's job), wait for its first line, then signal it as the
 * user would: SIGTERM to the process only (the launcher must pass it on), SIGINT to the group (^C).
 */
async function watchThenSignal(
  argv: string[],
  env: NodeJS.ProcessEnv,
  signal: 'SIGTERM' | 'SIGINT',
): Promise<{ code: number | null; signal: NodeJS.Signals | null; out: string; err: string }> {
  const [cmd = '', ...args] = argv;
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const closed = new Promise<[number | null, NodeJS.Signals | null]>((r) => child.on('close', (c, sig) => r([c, sig])));
  await expect.poll(() => out, { timeout: 15_000 }).toContain('web-0');
  // kubectl prints the list before it sets up its signal handling for the watch: a signal in between ends
  // it as the default action would (143 instead of 1), direct as well.
  await new Promise((r) => setTimeout(r, 700));
  if (signal === 'SIGTERM') process.kill(child.pid ?? 0, 'SIGTERM');
  else process.kill(-(child.pid ?? 0), 'SIGINT');
  const [code, sig] = await closed;
  return { code, signal: sig, out, err };
}

async function stop(s: Setup): Promise<void> {
  await runKubetrail(['stop'], { env: s.env });
  await stopBackgroundKubetrails(s.stateDir);
}

/** A test's own background kubetrail, started as a user's first command starts it, and stopped after. */
async function withBackground(body: (s: Setup) => Promise<void>): Promise<void> {
  const s = await setup();
  try {
    await first(s);
    await body(s);
  } finally {
    await stop(s);
  }
}

/** Start the background kubetrail the way a user's first command does (through the Node CLI). */
async function first(s: Setup): Promise<void> {
  const r = await launched(s, ['get', 'pods', '-o', 'name']);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toMatch(/^kubetrail: started a background kubetrail on /m);
  expect(nodeRuns(s)).toBe(1);
}

describe.skipIf(!kubectlAvailable('1.33'))('the launcher serves a wrapped command without Node', () => {
  it("prints kubectl's bytes and exit codes as direct, reads its stdin, and gives each command its trace", async () => {
    await withBackground(async (s) => {
      for (const args of [
        ['get', 'pods'],
        ['get', 'configmap', 'settings', '-o', 'json'],
        ['get', 'pod', 'nope'],
        ['get', 'pods', '--bogus-flag'],
      ]) {
        const direct = await kubectl(args, { kubeconfig: cluster.kubeconfig });
        const r = await fast(s, args, { flags: ['--quiet'] });
        expect(r.code, args.join(' ')).toBe(direct.code);
        expect(r.stdout.toString(), args.join(' ')).toBe(direct.stdout.toString());
        expect(r.stderr, args.join(' ')).toBe(direct.stderr);
      }
      // stdin reaches kubectl.
      const cm = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'from-stdin' }, data: {} });
      const applied = await fast(s, ['apply', '-f', '-'], { input: cm });
      expect(applied.code, applied.stderr).toBe(0);
      expect(applied.stdout.toString()).toBe('configmap/from-stdin created\n');

      // Without --quiet: the waterfall and one trace per command, exported with kubectl's exit code.
      const shown = await fast(s, ['get', 'pod', 'nope']);
      expect(shown.code).toBe(1);
      expect(shown.stderr).toMatch(/^kubectl get · \d+ requests? · /m);
      const [id] = traceIds(shown.stderr);
      expect(id).toMatch(/^[0-9a-f]{32}$/);
      await expect
        .poll(() => cluster.receiver.spans.find((sp) => sp.traceId === id && sp.parentSpanId === undefined), {
          timeout: 5000,
        })
        .toBeDefined();
      const root = cluster.receiver.spans.find((sp) => sp.traceId === id && sp.parentSpanId === undefined);
      expect(root?.attributes['process.exit.code']).toBe(1);
      // Nothing of the commands is left (kubeconfigs, requests, claims): only the kubetrail's spare FIFOs.
      const left = readdirSync(join(s.stateDir, 'background', 'commands'));
      expect(left.filter((f) => !/^127\.0\.0\.1-\d+\.slot-[0-9a-z]{10}\.fifo$/.test(f))).toEqual([]);
      expect(left.length).toBeLessThanOrEqual(8);
    });
  });

  it('passes SIGTERM on to kubectl and lets ^C reach it, as direct, then still finishes its trace', async () => {
    await withBackground(async (s) => {
      for (const signal of ['SIGTERM', 'SIGINT'] as const) {
        const before = nodeRuns(s);
        const direct = await watchThenSignal([kubectlPath('1.33'), 'get', 'pods', '-w'], s.env, signal);
        const r = await watchThenSignal([LAUNCHER, '--', kubectlPath('1.33'), 'get', 'pods', '-w'], s.env, signal);
        expect([r.code, r.signal], `${signal}: ${r.err}`).toEqual([direct.code, direct.signal]);
        expect(r.out).toBe(direct.out);
        expect(r.err).toMatch(/^kubectl get · \d+ requests? · /m);
        expect(nodeRuns(s)).toBe(before);
      }
    });
  });

  it("gives the command the user's environment and umask, and shows no token even with SHELLOPTS=xtrace", async () => {
    await withBackground(async (s) => {
      // Names a launcher could use for itself, exported by the user: they reach the command unchanged.
      const mine = { token: 'mine', state: 'mine', line: 'mine', key: 'mine', tag: 'mine' };
      const before = nodeRuns(s);
      const r = await runProcess(LAUNCHER, ['--', 'sh', '-c', 'umask; env'], {
        env: { ...s.env, ...mine },
        timeoutMs: 40_000,
      });
      expect(r.code, r.stderr).toBe(0);
      expect(nodeRuns(s)).toBe(before);
      const [umask = '', ...envLines] = r.stdout.toString().trim().split('\n');
      expect(umask).toBe(execFileSync('sh', ['-c', 'umask'], { encoding: 'utf8' }).trim());
      const env = Object.fromEntries(envLines.map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
      for (const [k, v] of Object.entries(mine)) expect(env[k], k).toBe(v);
      expect(Object.keys(env).filter((k) => k.startsWith('_kt_'))).toEqual([]);
      expect(env.KUBECONFIG).toMatch(/\/background\/commands\/127\.0\.0\.1-\d+\.\d+-[0-9a-z]{10}\.yaml$/);
      // An exported SHELLOPTS=xtrace traces what bash runs: not the token's line, and a bash run by the
      // command does not get the launcher's noclobber.
      const token = readFileSync(join(s.stateDir, 'control-token'), 'utf8').trim();
      const traced = await runProcess(LAUNCHER, ['--', 'bash', '-c', 'case $- in *C*) echo noclobber;; esac'], {
        env: { ...s.env, SHELLOPTS: 'xtrace' },
        timeoutMs: 40_000,
      });
      expect(traced.code, traced.stderr).toBe(0);
      expect(nodeRuns(s)).toBe(before);
      expect(traced.stdout.toString()).toBe('');
      expect(traced.stderr).not.toContain(token);
    });
  });

  it('`kubectl trail get pods` (the plugin, found by the real kubectl) is served the same way', async () => {
    await withBackground(async (s) => {
      const bin = join(s.home, 'plugin-bin');
      mkdirSync(bin);
      symlinkSync(fileURLToPath(new URL('../../bin/kubectl-trail', import.meta.url)), join(bin, 'kubectl-trail'));
      symlinkSync(kubectlPath('1.33'), join(bin, 'kubectl'));
      const env = { ...s.env, PATH: `${bin}:${s.env.PATH ?? ''}` };
      const before = nodeRuns(s);
      const r = await runProcess(join(bin, 'kubectl'), ['trail', 'get', 'pods', '-o', 'name'], {
        env,
        timeoutMs: 40_000,
      });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.toString()).toBe('pod/web-0\n');
      expect(r.stderr).toMatch(/^kubectl get · \d+ requests? · /m);
      expect(nodeRuns(s)).toBe(before);
      // Its own help is the Node plugin's.
      const help = await runProcess(join(bin, 'kubectl'), ['trail', '--help'], { env });
      expect(help.code).toBe(0);
      expect(help.stdout.toString()).toMatch(/^kubectl trail \S+: run kubectl through kubetrail/);
    });
  });

  it('a stream cut by a stopping kubetrail ends non-zero and says so, never as if complete', async () => {
    await withBackground(async (s) => {
      const child = spawn(LAUNCHER, ['--', kubectlPath('1.33'), 'get', 'pods', '-w'], {
        env: s.env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (err += c.toString()));
      await expect.poll(() => out, { timeout: 15_000 }).toContain('web-0');
      // Stopped by hand (the user said so): the watch is cut.
      const closed = new Promise<number | null>((r) => child.on('close', (c) => r(c)));
      await runKubetrail(['stop'], { env: s.env });
      const exit = await closed;
      expect(exit).not.toBe(0);
      expect(err).toMatch(
        /^kubetrail: the background kubetrail on 127\.0\.0\.1:\d+ stopped while this command had a request open \(.+\): its output was cut short$/m,
      );
    });
  });
});

describe.skipIf(!kubectlAvailable('1.33'))('the launcher hands everything else to the Node CLI', () => {
  it('with no kubetrail running, another collector, or kubectl --kubeconfig: Node decides, as before', async () => {
    await withBackground(async (s) => {
      // Another configuration (telemetry elsewhere): the Node CLI replaces the idle background kubetrail.
      const other = await launched(s, ['get', 'pods', '-o', 'name'], {
        env: { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:9/v1/traces' },
      });
      expect(other.code, other.stderr).toBe(0);
      expect(other.stdout.toString()).toBe('pod/web-0\n');
      expect(other.stderr).toMatch(/^kubetrail: restarted the background kubetrail on .+ \(it had other settings/m);
      expect(nodeRuns(s)).toBe(2);
      // kubectl's own --kubeconfig: rewritten by the Node CLI.
      const own = await launched(s, ['--kubeconfig', cluster.kubeconfig, 'get', 'pods', '-o', 'name']);
      expect(own.code, own.stderr).toBe(0);
      expect(nodeRuns(s)).toBe(3);
      // A command that cannot run: the Node CLI's one line.
      const missing = await runProcess(LAUNCHER, ['--', 'no-such-kubectl-here', 'get', 'pods'], { env: s.env });
      expect(nodeRuns(s)).toBe(4);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(
        /^kubetrail: cannot run no-such-kubectl-here: not found on PATH; give its full path$/m,
      );
    });
  });

  it('never uses a state dir others can write to: the Node CLI refuses it', async () => {
    await withBackground(async (s) => {
      chmodSync(join(s.stateDir, 'background', 'commands'), 0o777);
      const r = await launched(s, ['get', 'pods', '-o', 'name']);
      expect(nodeRuns(s)).toBe(2);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/refusing the state dir: .*commands is 0777: others can write to it/);
      chmodSync(join(s.stateDir, 'background', 'commands'), 0o700);
    });
  });

  it.skipIf(process.getuid?.() !== 0)(
    "another user's FIFO in the kubetrail's place gets no token: the Node CLI serves the command",
    async () => {
      await withBackground(async (s) => {
        const fifo = join(s.stateDir, 'background', `127.0.0.1-${s.port}.fifo`);
        rmSync(fifo);
        execFileSync('mkfifo', ['-m', '666', fifo]);
        chownSync(fifo, 65534, 65534);
        // What the other user would read from it.
        const fd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
        try {
          const r = await launched(s, ['get', 'pods', '-o', 'name']);
          expect(r.code, r.stderr).toBe(0);
          expect(r.stdout.toString()).toBe('pod/web-0\n');
          expect(nodeRuns(s)).toBe(2);
          const buf = Buffer.alloc(4096);
          let n = 0;
          try {
            n = readSync(fd, buf);
          } catch (err) {
            expect((err as NodeJS.ErrnoException).code).toBe('EAGAIN');
          }
          expect(n).toBe(0);
        } finally {
          closeSync(fd);
        }
      });
    },
  );

  it('a kubetrail that no longer reads its FIFO (killed) costs one Node run, not a hang', async () => {
    await withBackground(async (s) => {
      const state = JSON.parse(readFileSync(join(s.stateDir, 'background', `127.0.0.1-${s.port}.json`), 'utf8')) as {
        pid: number;
      };
      process.kill(state.pid, 'SIGKILL');
      await expect.poll(() => alive(state.pid)).toBe(false);
      expect(existsSync(join(s.stateDir, 'background', `127.0.0.1-${s.port}.fifo`))).toBe(true);
      const r = await launched(s, ['get', 'pods', '-o', 'name']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.toString()).toBe('pod/web-0\n');
      expect(nodeRuns(s)).toBe(2);
      expect(r.ms).toBeLessThan(15_000);
      // And the next command is served by the kubetrail that one started, without Node.
      const next = await fast(s, ['get', 'pods', '-o', 'name']);
      expect(next.stdout.toString()).toBe('pod/web-0\n');
    });
  });
});
