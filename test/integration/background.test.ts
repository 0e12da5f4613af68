/**
 * Wrap mode with a background kubetrail (--linger, the default at a fixed port): the first wrapped command
 * starts it, later ones reuse it, each command gets its own trace and waterfall, it exits when idle, a
 * changed configuration replaces it (unless it is in use: then the command runs in-process), a pid reused
 * after an unclean exit is never signalled or waited for, a kubetrail that changes or hangs under a
 * wrapped command costs it no error and little time, its control calls need the state dir's token, and
 * kubectl sees the same bytes and exit codes as without kubetrail.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { createConnection, createServer as createNetServer } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freshHome, kubetrailEnv } from '../helpers/compare.ts';
import { makeConfigMap, makePod } from '../helpers/fake-apiserver.ts';
import { withFakeCluster } from '../helpers/fake-cluster.ts';
import { kubectl, kubectlPath } from '../helpers/kubectl.ts';
import { startOtlpReceiver } from '../helpers/otlp-receiver.ts';
import { alive as pidRuns, stopBackgroundKubetrails } from '../helpers/global-tmp.ts';
import { unusedPort } from '../helpers/ports.ts';
import { KUBETRAIL_BIN, runKubetrail, type RunResult } from '../helpers/run-kubetrail.ts';

const cluster = withFakeCluster({
  prefix: 'kt-bg-',
  apiserver: { tokens: { 'tina-token': { user: 'tina' } } },
  kubeconfig: {
    users: [
      { name: 'alice', cert: { groups: ['dev'] } },
      { name: 'tina', token: 'tina-token' },
    ],
  },
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
  env: NodeJS.ProcessEnv;
}

async function setup(extraEnv: Record<string, string> = {}): Promise<Setup> {
  const home = freshHome();
  const port = await unusedPort();
  return {
    home,
    port,
    stateDir: join(home, 'kubetrail-state'),
    env: kubetrailEnv(home, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: cluster.receiver.url, ...extraEnv }),
  };
}

function wrapped(s: Setup, args: string[], flags: string[] = [], env: Record<string, string> = {}): Promise<RunResult> {
  return runKubetrail(
    [
      '--kubeconfig',
      cluster.kubeconfig,
      '--listen',
      `127.0.0.1:${s.port}`,
      ...flags,
      '--',
      kubectlPath('1.33'),
      ...args,
    ],
    { env: { ...s.env, ...env }, timeoutMs: 40_000 },
  );
}

function stateFile(s: Setup): string {
  return join(s.stateDir, 'background', `127.0.0.1-${s.port}.json`);
}

function backgroundPid(s: Setup): number | undefined {
  try {
    return (JSON.parse(readFileSync(stateFile(s), 'utf8')) as { pid: number }).pid;
  } catch {
    return undefined;
  }
}

/** What wrapped commands left in the commands directory (the kubetrail's spare launcher FIFOs are its own). */
function commandFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => !/\.slot-[0-9a-z]{10}\.fifo$/.test(f));
}

function alive(pid: number | undefined): boolean {
  return pid !== undefined && pidRuns(pid);
}

async function stop(s: Setup): Promise<void> {
  const pid = backgroundPid(s);
  await runKubetrail(['stop'], { env: s.env });
  if (alive(pid)) process.kill(pid ?? 0, 'SIGKILL');
}

const traceIds = (stderr: string): string[] =>
  [...stderr.matchAll(/^trace: \S+\/trace\/([0-9a-f]{32})/gm)].map((m) => m[1] ?? '');
const STARTED =
  /^kubetrail: started a background kubetrail on 127\.0\.0\.1:\d+ \(pid (\d+)\) for the next commands; it exits after 10m idle\. Stop it: kubetrail stop; never: --linger 0$/m;

describe('the first wrapped command starts a background kubetrail', () => {
  it("prints kubectl's bytes and exit code as direct, says once what it started, and leaves it serving", async () => {
    const s = await setup();
    try {
      const direct = await kubectl(['--context', 'alice', 'get', 'pods'], { kubeconfig: cluster.kubeconfig });
      const first = await wrapped(s, ['--context', 'alice', 'get', 'pods']);
      expect(first.code).toBe(0);
      expect(first.stdout.toString()).toBe(direct.stdout.toString());
      const pid = Number(STARTED.exec(first.stderr)?.[1]);
      expect(pid).toBeGreaterThan(0);
      expect(first.stderr).toMatch(/^kubectl get · \d+ requests · /m);
      expect(traceIds(first.stderr)).toHaveLength(1);
      expect(backgroundPid(s)).toBe(pid);
      expect(alive(pid)).toBe(true);
      // On glibc's malloc unless KUBETRAIL_ALLOCATOR=mimalloc asks (cli/allocator.ts).
      expect(readFileSync(`/proc/${pid}/maps`, 'utf8')).not.toContain('libmimalloc');

      // Private files: the state dir and its background dir 0700, every file in it 0600.
      expect(statSync(s.stateDir).mode & 0o777).toBe(0o700);
      const bg = join(s.stateDir, 'background');
      expect(statSync(bg).mode & 0o777).toBe(0o700);
      for (const f of readdirSync(bg))
        if (statSync(join(bg, f)).isFile()) expect(statSync(join(bg, f)).mode & 0o777, f).toBe(0o600);
      expect(statSync(join(s.stateDir, 'control-token')).mode & 0o777).toBe(0o600);
      // The per-command kubeconfig is gone once the command is.
      expect(commandFiles(join(bg, 'commands'))).toEqual([]);

      // An error is kubectl's, byte for byte, with its exit code.
      const directErr = await kubectl(['--context', 'alice', 'get', 'pod', 'nope'], { kubeconfig: cluster.kubeconfig });
      const err = await wrapped(s, ['--context', 'alice', 'get', 'pod', 'nope'], ['--quiet']);
      expect(err.code).toBe(directErr.code);
      expect(err.code).toBe(1);
      expect(err.stderr).toBe(directErr.stderr);
      expect(err.stdout.toString()).toBe(directErr.stdout.toString());
    } finally {
      await stop(s);
    }
  });

  it('later commands reuse it: no new process, and each command gets only its own requests, also when run at once', async () => {
    const s = await setup();
    try {
      const first = await wrapped(s, ['--context', 'alice', 'get', 'pods']);
      expect(first.code).toBe(0);
      const pid = backgroundPid(s);
      const [pods, cms] = await Promise.all([
        wrapped(s, ['--context', 'alice', 'get', 'pods', '-o', 'name']),
        wrapped(s, ['--context', 'tina', 'get', 'configmaps', '-o', 'name']),
      ]);
      expect(pods.code, pods.stderr).toBe(0);
      expect(cms.code, cms.stderr).toBe(0);
      expect(pods.stdout.toString()).toBe('pod/web-0\n');
      expect(cms.stdout.toString()).toBe('configmap/settings\n');
      expect(backgroundPid(s)).toBe(pid);
      expect(pods.stderr).not.toMatch(STARTED);
      expect(cms.stderr).not.toMatch(STARTED);
      // One trace each, different, and each waterfall lists its own command's requests only.
      const [a, b] = [traceIds(pods.stderr), traceIds(cms.stderr)];
      expect(a).toHaveLength(1);
      expect(b).toHaveLength(1);
      expect(a[0]).not.toBe(b[0]);
      expect(pods.stderr).toMatch(/^ {2}list pods +200 /m);
      expect(pods.stderr).not.toMatch(/configmaps/);
      expect(cms.stderr).toMatch(/^ {2}list configmaps +200 /m);
      expect(cms.stderr).not.toMatch(/list pods/);
      // The exported traces agree: every request span of a trace carries that command's kubectl session.
      await expect
        .poll(
          () => cluster.receiver.spans.filter((sp) => sp.traceId === b[0] && sp.name === 'list configmaps').length,
          {
            timeout: 5000,
          },
        )
        .toBe(1);
      expect(cluster.receiver.spans.filter((sp) => sp.traceId === b[0] && sp.name === 'list pods')).toEqual([]);
      expect(cluster.receiver.spans.filter((sp) => sp.traceId === a[0] && sp.name === 'list configmaps')).toEqual([]);
    } finally {
      await stop(s);
    }
  });

  it('two commands started at once with none running start exactly one', async () => {
    const s = await setup();
    try {
      const runs = await Promise.all(
        [0, 1, 2].map(() => wrapped(s, ['--context', 'alice', 'get', 'pods', '-o', 'name'])),
      );
      for (const r of runs) {
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout.toString()).toBe('pod/web-0\n');
        expect(traceIds(r.stderr)).toHaveLength(1);
      }
      expect(runs.filter((r) => STARTED.test(r.stderr))).toHaveLength(1);
      expect(existsSync(join(s.stateDir, 'background', `127.0.0.1-${s.port}.lock`))).toBe(false);
    } finally {
      await stop(s);
    }
  });
});

describe('a collector that fails (#12 item 5)', () => {
  it('every command whose spans were dropped says so instead of a link, not only the first; a collector back gets links again', async () => {
    const failing = await startOtlpReceiver('500');
    const s = await setup({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: failing.url });
    const NOT_SENT = new RegExp(
      `^trace not sent: cannot export to ${failing.url.replace(/[.]/g, '\\.')} \\(.+\\)$`,
      'm',
    );
    try {
      for (let i = 0; i < 3; i++) {
        const r = await wrapped(s, ['--context', 'alice', 'get', 'pods', '-o', 'name']);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout.toString()).toBe('pod/web-0\n');
        expect(r.stderr, `command ${i + 1}`).toMatch(NOT_SENT);
        expect(traceIds(r.stderr), `command ${i + 1}`).toEqual([]);
      }
      failing.mode = 'ok';
      const back = await wrapped(s, ['--context', 'alice', 'get', 'pods', '-o', 'name']);
      const [id] = traceIds(back.stderr);
      expect(id, back.stderr).toMatch(/^[0-9a-f]{32}$/);
      expect(back.stderr).not.toMatch(/trace not sent/);
      await expect.poll(() => failing.spans.some((sp) => sp.traceId === id), { timeout: 5000 }).toBe(true);
    } finally {
      await stop(s);
      await failing.close();
    }
  });

  it('a refused collector: the same, from the first command on', async () => {
    const s = await setup({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:9/v1/traces' });
    try {
      for (let i = 0; i < 2; i++) {
        const r = await wrapped(s, ['--context', 'alice', 'get', 'pods', '-o', 'name']);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stderr, `command ${i + 1}`).toMatch(
          /^trace not sent: cannot export to http:\/\/127\.0\.0\.1:9\/v1\/traces \(.+\)$/m,
        );
        expect(traceIds(r.stderr)).toEqual([]);
      }
    } finally {
      await stop(s);
    }
  });
});

describe('its life', () => {
  it('exits after --linger with no request and no wrapped command, and removes its state file', async () => {
    const s = await setup();
    const r = await wrapped(s, ['--context', 'alice', 'get', 'pods'], ['--linger', '1s']);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('it exits after 1s idle');
    const pid = backgroundPid(s);
    expect(alive(pid)).toBe(true);
    await expect.poll(() => alive(pid), { timeout: 8000, interval: 100 }).toBe(false);
    expect(existsSync(stateFile(s))).toBe(false);
  });

  it('a wrapped command that runs longer than --linger keeps it alive', async () => {
    const s = await setup();
    try {
      const script = `sleep 2; ${kubectlPath('1.33')} --context alice get pods -o name`;
      const r = await runKubetrail(
        [
          '--kubeconfig',
          cluster.kubeconfig,
          '--listen',
          `127.0.0.1:${s.port}`,
          '--linger',
          '500ms',
          '--quiet',
          '--',
          'sh',
          '-c',
          script,
        ],
        { env: s.env },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.toString()).toBe('pod/web-0\n');
    } finally {
      await stop(s);
    }
  });

  it('a changed configuration replaces it: the new one serves the new settings', async () => {
    const s = await setup();
    try {
      const a = await wrapped(s, ['--context', 'alice', 'get', 'pods'], ['--jaeger-url', 'http://jaeger.a:16686']);
      expect(a.code).toBe(0);
      const pidA = backgroundPid(s);
      expect(a.stderr).toMatch(/^trace: http:\/\/jaeger\.a:16686\/trace\//m);
      const b = await wrapped(s, ['--context', 'alice', 'get', 'pods'], ['--jaeger-url', 'http://jaeger.b:16686']);
      expect(b.code).toBe(0);
      // Says why: a --jaeger-url of its own.
      expect(b.stderr).toMatch(
        /^kubetrail: restarted the background kubetrail on 127\.0\.0\.1:\d+ \(it had other settings \(kubeconfig, --context, --otlp-endpoint, --jaeger-url, OTEL_\*, or another kubetrail's code\)\) \(pid \d+\) for the next commands;/m,
      );
      expect(b.stderr).toMatch(/^trace: http:\/\/jaeger\.b:16686\/trace\//m);
      const pidB = backgroundPid(s);
      expect(pidB).not.toBe(pidA);
      expect(alive(pidA)).toBe(false);

      // So does an edited kubeconfig (never stale credentials), and so does another OTEL_* setting.
      const copy = join(mkdtempSync(join(tmpdir(), 'kt-bg-kc-')), 'config');
      writeFileSync(copy, readFileSync(cluster.kubeconfig));
      const c1 = await runKubetrail(
        [
          '--kubeconfig',
          copy,
          '--listen',
          `127.0.0.1:${s.port}`,
          '--quiet',
          '--',
          kubectlPath('1.33'),
          '--context',
          'alice',
          'get',
          'pods',
          '-o',
          'name',
        ],
        { env: s.env },
      );
      expect(c1.code, c1.stderr).toBe(0);
      const pidC = backgroundPid(s);
      writeFileSync(copy, `${readFileSync(copy, 'utf8')}\n# edited\n`);
      const c2 = await runKubetrail(
        [
          '--kubeconfig',
          copy,
          '--listen',
          `127.0.0.1:${s.port}`,
          '--quiet',
          '--',
          kubectlPath('1.33'),
          '--context',
          'alice',
          'get',
          'pods',
          '-o',
          'name',
        ],
        { env: s.env },
      );
      expect(c2.code, c2.stderr).toBe(0);
      expect(backgroundPid(s)).not.toBe(pidC);
      const pidD = backgroundPid(s);
      const c3 = await runKubetrail(
        [
          '--kubeconfig',
          copy,
          '--listen',
          `127.0.0.1:${s.port}`,
          '--quiet',
          '--',
          kubectlPath('1.33'),
          '--context',
          'alice',
          'get',
          'pods',
          '-o',
          'name',
        ],
        { env: { ...s.env, OTEL_SERVICE_NAME: 'other' } },
      );
      expect(c3.code, c3.stderr).toBe(0);
      expect(backgroundPid(s)).not.toBe(pidD);
    } finally {
      await stop(s);
    }
  });

  it('killed, it is replaced by the next wrapped command', async () => {
    const s = await setup();
    try {
      expect((await wrapped(s, ['--context', 'alice', 'get', 'pods'])).code).toBe(0);
      const pid = backgroundPid(s) ?? 0;
      process.kill(pid, 'SIGKILL');
      await expect.poll(() => alive(pid)).toBe(false);
      const r = await wrapped(s, ['--context', 'alice', 'get', 'pods', '-o', 'name']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.toString()).toBe('pod/web-0\n');
      expect(r.stderr).toMatch(STARTED);
      expect(backgroundPid(s)).not.toBe(pid);
    } finally {
      await stop(s);
    }
  });

  it('`kubetrail stop` stops it; --linger 0 serves the command in-process and starts nothing', async () => {
    const s = await setup();
    expect((await wrapped(s, ['--context', 'alice', 'get', 'pods'])).code).toBe(0);
    const pid = backgroundPid(s);
    const st = await runKubetrail(['stop'], { env: s.env });
    expect(st.code).toBe(0);
    expect(st.stderr).toBe(`kubetrail: stopped the background kubetrail on 127.0.0.1:${s.port} (pid ${pid})\n`);
    expect(alive(pid)).toBe(false);
    expect((await runKubetrail(['stop'], { env: s.env })).stderr).toBe(
      'kubetrail: no background kubetrail is running\n',
    );

    for (const r of [
      await wrapped(s, ['--context', 'alice', 'get', 'pods', '-o', 'name'], ['--linger', '0']),
      await wrapped(s, ['--context', 'alice', 'get', 'pods', '-o', 'name'], [], { KUBETRAIL_LINGER: '0' }),
    ]) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.toString()).toBe('pod/web-0\n');
      expect(r.stderr).not.toMatch(/background/);
      expect(traceIds(r.stderr)).toHaveLength(1);
      expect(existsSync(stateFile(s))).toBe(false);
    }
    const bad = await wrapped(s, ['get', 'pods'], ['--linger', 'soon']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe(
      'kubetrail: --linger "soon": expected a duration such as 10m, 30s or 0 (no background kubetrail)\n',
    );
  });

  it('a wrapped command uses a foreground `kubetrail start` with the same configuration, with its own waterfall', async () => {
    const s = await setup();
    const start = spawn(
      process.execPath,
      [KUBETRAIL_BIN, 'start', '--kubeconfig', cluster.kubeconfig, '--listen', `127.0.0.1:${s.port}`],
      { env: s.env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let log = '';
    start.stdout.on('data', (c: Buffer) => (log += c.toString()));
    try {
      await expect.poll(() => log, { timeout: 15_000 }).toMatch(/^export KUBECONFIG=/m);
      const r = await wrapped(s, ['--context', 'alice', 'get', 'pods', '-o', 'name']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.toString()).toBe('pod/web-0\n');
      expect(r.stderr).toContain(`using the kubetrail already listening on 127.0.0.1:${s.port}`);
      expect(r.stderr).toMatch(/^ {2}list pods +200 /m);
      await expect.poll(() => log, { timeout: 10_000 }).toMatch(/ 200 list pods /);
      // `kubetrail stop` leaves it alone.
      expect((await runKubetrail(['stop'], { env: s.env })).stderr).toMatch(
        /is a foreground `kubetrail start`: stop it in its terminal/,
      );
      expect(start.exitCode).toBe(null);
    } finally {
      start.kill('SIGTERM');
      await new Promise((r) => start.on('close', r));
    }
    expect(existsSync(stateFile(s))).toBe(false);
  });
});

describe('after an unclean exit', () => {
  /** The state file of a SIGKILLed background kubetrail, its pid now another process of the same user. */
  async function impostor(s: Setup, pid: number): Promise<void> {
    const bg = backgroundPid(s);
    if (bg === undefined || bg <= 0) throw new Error('no background kubetrail to kill');
    process.kill(bg, 'SIGKILL');
    await expect.poll(() => alive(bg)).toBe(false);
    const st = JSON.parse(readFileSync(stateFile(s), 'utf8')) as Record<string, unknown>;
    writeFileSync(stateFile(s), JSON.stringify({ ...st, pid }));
  }

  it('a reused pid is neither waited for nor signalled: not by wrapped commands, `kubetrail stop` or `kubetrail start`', async () => {
    const s = await setup();
    const other = spawn('sleep', ['120'], { stdio: 'ignore' });
    const otherPid = other.pid ?? 0;
    try {
      expect((await wrapped(s, ['--context', 'alice', 'get', 'pods'], ['--quiet'])).code).toBe(0);
      // Same configuration: taken for stale at once (it waited 30 s for "a kubetrail that is stopping").
      await impostor(s, otherPid);
      const t0 = Date.now();
      const same = await wrapped(s, ['--context', 'alice', 'get', 'pods', '-o', 'name']);
      expect(same.code, same.stderr).toBe(0);
      expect(same.stdout.toString()).toBe('pod/web-0\n');
      expect(Date.now() - t0).toBeLessThan(10_000);
      expect(same.stderr).toMatch(STARTED);
      expect(alive(otherPid)).toBe(true);

      // Another configuration: the process is not "stopped" (it was sent SIGTERM).
      await impostor(s, otherPid);
      const changed = await wrapped(
        s,
        ['--context', 'alice', 'get', 'pods', '-o', 'name'],
        ['--jaeger-url', 'http://jaeger.c:16686'],
      );
      expect(changed.code, changed.stderr).toBe(0);
      expect(changed.stderr).toMatch(/^trace: http:\/\/jaeger\.c:16686\/trace\//m);
      expect(alive(otherPid)).toBe(true);

      await impostor(s, otherPid);
      const stale = readFileSync(stateFile(s));
      expect((await runKubetrail(['stop'], { env: s.env })).stderr).toBe(
        'kubetrail: no background kubetrail is running\n',
      );
      expect(alive(otherPid)).toBe(true);
      expect(existsSync(stateFile(s))).toBe(false);

      // `kubetrail start` finding the port held (here by another program) does not signal it either.
      writeFileSync(stateFile(s), stale);
      const holder = createNetServer();
      await new Promise<void>((r) => holder.listen(s.port, '127.0.0.1', r));
      try {
        const start = await runKubetrail(
          ['start', '--kubeconfig', cluster.kubeconfig, '--listen', `127.0.0.1:${s.port}`],
          {
            env: s.env,
          },
        );
        expect(start.code).toBe(2);
        expect(start.stderr).toContain(`--listen 127.0.0.1:${s.port} is in use by another program`);
      } finally {
        holder.close();
      }
      expect(alive(otherPid)).toBe(true);
    } finally {
      other.kill('SIGKILL');
      await stop(s);
    }
  });
});

describe('a background kubetrail in use', () => {
  it('is not replaced for another configuration: the command runs in-process, a later one replaces it once idle', async () => {
    const s = await setup();
    try {
      expect(
        (await wrapped(s, ['--context', 'alice', 'get', 'pods'], ['--jaeger-url', 'http://jaeger.a:16686', '--quiet']))
          .code,
      ).toBe(0);
      const pidA = backgroundPid(s);
      // Another terminal watches through it.
      const watch = runKubetrail(
        [
          '--kubeconfig',
          cluster.kubeconfig,
          '--listen',
          `127.0.0.1:${s.port}`,
          '--jaeger-url',
          'http://jaeger.a:16686',
          '--quiet',
          '--',
          'timeout',
          '6',
          kubectlPath('1.33'),
          '--context',
          'alice',
          'get',
          'pods',
          '-w',
          '-o',
          'name',
        ],
        { env: s.env, timeoutMs: 40_000 },
      );
      await new Promise((r) => setTimeout(r, 1500));
      const b = await wrapped(
        s,
        ['--context', 'alice', 'get', 'pods', '-o', 'name'],
        ['--jaeger-url', 'http://jaeger.b:16686'],
      );
      expect(b.code, b.stderr).toBe(0);
      expect(b.stdout.toString()).toBe('pod/web-0\n');
      expect(b.stderr).toContain(
        `kubetrail: the background kubetrail on 127.0.0.1:${s.port} has another configuration and is in use (1 command running, 1 request open); serving this command in-process\n`,
      );
      expect(b.stderr).toMatch(/^trace: http:\/\/jaeger\.b:16686\/trace\//m);
      expect(b.stderr).not.toMatch(/started|restarted/);
      expect(backgroundPid(s)).toBe(pidA);
      expect(alive(pidA)).toBe(true);
      // --quiet: no line about it.
      const q = await wrapped(
        s,
        ['--context', 'alice', 'get', 'pods', '-o', 'name'],
        ['--jaeger-url', 'http://jaeger.b:16686', '--quiet'],
      );
      expect(q.code, q.stderr).toBe(0);
      expect(q.stderr).toBe('');
      expect(backgroundPid(s)).toBe(pidA);
      // The watch ran its course (timeout's 124), uncut.
      const w = await watch;
      expect(w.code, w.stderr).toBe(124);
      expect(w.stdout.toString()).toBe('pod/web-0\n');
      // Idle now: the next command replaces it.
      const c = await wrapped(s, ['--context', 'alice', 'get', 'pods'], ['--jaeger-url', 'http://jaeger.b:16686']);
      expect(c.code, c.stderr).toBe(0);
      expect(c.stderr).toMatch(
        /^kubetrail: restarted the background kubetrail on 127\.0\.0\.1:\d+ \(it had other settings /m,
      );
      expect(backgroundPid(s)).not.toBe(pidA);
      expect(alive(pidA)).toBe(false);
    } finally {
      await stop(s);
    }
  });
});

describe('a background kubetrail that changes under a wrapped command', () => {
  it('a template gone or not its own: the command still runs, in-process', async () => {
    const s = await setup();
    try {
      expect((await wrapped(s, ['--context', 'alice', 'get', 'pods'], ['--quiet'])).code).toBe(0);
      const st = JSON.parse(readFileSync(stateFile(s), 'utf8')) as { template: string };
      const other = join(s.home, 'other-template.yaml');
      writeFileSync(
        other,
        readFileSync(st.template, 'utf8').replace(
          /--w[0-9a-z]+\.kubetrail\.localhost/g,
          '--wzzzzzzzzzz.kubetrail.localhost',
        ),
      );
      for (const template of [join(s.home, 'gone.yaml'), other]) {
        writeFileSync(stateFile(s), JSON.stringify({ ...st, template }));
        const r = await wrapped(s, ['--context', 'alice', 'get', 'pods', '-o', 'name']);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout.toString()).toBe('pod/web-0\n');
        expect(traceIds(r.stderr)).toHaveLength(1);
        expect(r.stderr).not.toMatch(/unexpected|error/i);
      }
      expect(commandFiles(join(s.stateDir, 'background', 'commands'))).toEqual([]);
    } finally {
      await stop(s);
    }
  });
});

describe('the finish call', () => {
  it('a kubetrail that does not answer on its socket costs a wrapped command at most ~1.5 s, and one warning', async () => {
    const s = await setup();
    // Answers a status call (relayed to the real socket) but never a finish call.
    let realSock = '';
    const hung = createNetServer((c) => {
      c.once('data', (line: Buffer) => {
        if (!line.toString().includes('"op":"status"')) return;
        const up = createConnection(realSock, () => up.end(line));
        up.on('data', (d: Buffer) => c.write(d));
        up.on('end', () => c.end());
        up.on('error', () => c.destroy());
      });
    });
    const sock = join(s.home, 'hung.sock');
    await new Promise<void>((r) => hung.listen(sock, r));
    try {
      expect((await wrapped(s, ['--context', 'alice', 'get', 'pods'], ['--quiet'])).code).toBe(0);
      const st = JSON.parse(readFileSync(stateFile(s), 'utf8')) as Record<string, unknown>;
      realSock = String(st.socket);
      writeFileSync(stateFile(s), JSON.stringify({ ...st, socket: sock }));
      const t0 = Date.now();
      const r = await wrapped(s, ['--context', 'alice', 'get', 'pod', 'nope']);
      const took = Date.now() - t0;
      expect(r.code).toBe(1);
      expect(r.stderr.match(/^kubetrail: /gm)).toEqual(['kubetrail: ']);
      expect(r.stderr).toMatch(
        new RegExp(
          `^kubetrail: no trace summary from the kubetrail on 127\\.0\\.0\\.1:${s.port}: no answer within 1500 ms$`,
          'm',
        ),
      );
      expect(took).toBeLessThan(4000);

      // No socket to connect to: the same call over HTTPS on the listener.
      writeFileSync(stateFile(s), JSON.stringify({ ...st, socket: join(s.home, 'none.sock') }));
      const h = await wrapped(s, ['--context', 'alice', 'get', 'pods']);
      expect(h.code, h.stderr).toBe(0);
      expect(traceIds(h.stderr)).toHaveLength(1);
    } finally {
      hung.close();
      await stop(s);
    }
  });
});

describe('a background kubetrail that is hung', () => {
  it('still accepts connections but answers nothing: the command runs in-process, with one line saying so', async () => {
    const s = await setup();
    try {
      expect((await wrapped(s, ['--context', 'alice', 'get', 'pods'], ['--quiet'])).code).toBe(0);
      const pid = backgroundPid(s) ?? 0;
      process.kill(pid, 'SIGSTOP');
      try {
        const direct = await kubectl(['--context', 'alice', 'get', 'pods'], { kubeconfig: cluster.kubeconfig });
        const t0 = Date.now();
        const r = await wrapped(s, ['--context', 'alice', 'get', 'pods']);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout.toString()).toBe(direct.stdout.toString());
        expect(Date.now() - t0).toBeLessThan(10_000);
        expect(r.stderr).toMatch(
          new RegExp(
            `^kubetrail: the background kubetrail on 127\\.0\\.0\\.1:${s.port} \\(pid ${pid}\\) does not answer; serving this command in-process`,
            'm',
          ),
        );
        expect(traceIds(r.stderr)).toHaveLength(1);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
    } finally {
      await stop(s);
    }
  });
});

describe('`kubetrail start` after wrapped commands', () => {
  it('takes the port over from the background kubetrail of the same state dir', async () => {
    const s = await setup();
    expect((await wrapped(s, ['--context', 'alice', 'get', 'pods'], ['--quiet'])).code).toBe(0);
    const pid = backgroundPid(s);
    const start = spawn(
      process.execPath,
      [
        KUBETRAIL_BIN,
        'start',
        '--kubeconfig',
        cluster.kubeconfig,
        '--listen',
        `127.0.0.1:${s.port}`,
        '--jaeger-url',
        'http://other:16686',
      ],
      { env: s.env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    start.stdout.on('data', (c: Buffer) => (out += c.toString()));
    start.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const closed = new Promise((r) => start.on('close', r));
    try {
      await expect.poll(() => out, { timeout: 15_000 }).toMatch(/^export KUBECONFIG=/m);
      expect(err).toContain(`kubetrail: stopped the background kubetrail on 127.0.0.1:${s.port} to serve here`);
      expect(alive(pid)).toBe(false);
    } finally {
      start.kill('SIGTERM');
      await closed;
    }
  });
});

describe('the control endpoint', () => {
  it('refuses a missing or wrong token, and answers the state dir token', async () => {
    const s = await setup();
    try {
      expect((await wrapped(s, ['--context', 'alice', 'get', 'pods'])).code).toBe(0);
      const ca = readFileSync(join(s.stateDir, 'ca.crt'), 'utf8');
      const token = readFileSync(join(s.stateDir, 'control-token'), 'utf8').trim();
      const call = (method: string, path: string, tok?: string): Promise<{ status: number; body: string }> =>
        new Promise((resolve, reject) => {
          const req = request(
            {
              host: '127.0.0.1',
              port: s.port,
              method,
              path: `/.kubetrail/v1/${path}`,
              ca,
              servername: 'localhost',
              agent: false,
              headers: tok === undefined ? {} : { 'x-kubetrail-token': tok },
            },
            (res) => {
              let body = '';
              res.on('data', (c: Buffer) => (body += c.toString()));
              res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
            },
          );
          req.on('error', reject);
          req.end();
        });
      for (const tok of [undefined, '', 'wrong', `${token}x`, token.slice(0, -1)]) {
        for (const [method, path] of [
          ['GET', 'status'],
          ['POST', 'stop'],
          ['POST', 'commands/abcdef1234/finish'],
        ] as const) {
          const r = await call(method, path, tok);
          expect(r.status, `${method} ${path} ${String(tok)}`).toBe(401);
          expect(r.body).toBe('{"error":"unauthorized"}');
        }
      }
      expect(alive(backgroundPid(s))).toBe(true);
      const ok = await call('GET', 'status', token);
      expect(ok.status).toBe(200);
      expect(JSON.parse(ok.body)).toMatchObject({ kubetrail: true, kind: 'linger', pid: backgroundPid(s) });
    } finally {
      await stop(s);
    }
  });
});

describe('test hygiene', () => {
  it("the run's teardown finds and stops every background kubetrail under a directory", async () => {
    const s = await setup();
    expect((await wrapped(s, ['--context', 'alice', 'get', 'pods'], ['--quiet'])).code).toBe(0);
    const pid = backgroundPid(s);
    expect(alive(pid)).toBe(true);
    expect(await stopBackgroundKubetrails(s.home)).toBe(1);
    expect(alive(pid)).toBe(false);
  });
});
