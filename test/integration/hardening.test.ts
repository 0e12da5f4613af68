/**
 * Hardening (issue #15): what an adversarial review broke, each reproduced as the review did. The state
 * dir on a nearly full filesystem (a small tmpfs), owned by another user (`nobody`: the tests run as root),
 * open to others, and holding symlinks planted where kubetrail writes or trusts a file.
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { request as httpsRequest } from 'node:https';
import {
  connect as netConnect,
  createServer as createNetServer,
  type AddressInfo,
  type Server as NetServer,
} from 'node:net';
import { tmpdir } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { startKubetrailProcess, type KubetrailProcess } from '../../scripts/soak.ts';
import { freshHome, kubetrailEnv } from '../helpers/compare.ts';
import { makePod, startFakeApiserver, type FakeApiserver } from '../helpers/fake-apiserver.ts';
import { withFakeCluster } from '../helpers/fake-cluster.ts';
import { alive } from '../helpers/global-tmp.ts';
import { kubectlPath } from '../helpers/kubectl.ts';
import { startOtlpReceiver } from '../helpers/otlp-receiver.ts';
import { unusedPort } from '../helpers/ports.ts';
import { KUBETRAIL_BIN, runKubetrail, type RunResult } from '../helpers/run-kubetrail.ts';

const root = process.getuid?.() === 0;
const NOBODY = 65534;
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kt-hard-'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** A kubeconfig of `n` clusters (no apiserver needed: `kubetrail kubeconfig` only rewrites it). */
function kubeconfigOf(n: number, name = `kc-${n}`): string {
  const names = Array.from({ length: n }, (_, i) => `c${i}`);
  const file = join(dir, name);
  writeFileSync(
    file,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: names.map((c, i) => ({ name: c, cluster: { server: `https://127.0.0.1:${6000 + i}` } })),
      users: [{ name: 'u', user: { token: 'kt-hardening-token' } }],
      contexts: names.map((c) => ({ name: c, context: { cluster: c, user: 'u' } })),
      'current-context': 'c0',
    }),
    { mode: 0o600 },
  );
  return file;
}

function writeKubeconfigCmd(kubeconfig: string, stateDir: string): Promise<RunResult> {
  return runKubetrail(['kubeconfig', '--kubeconfig', kubeconfig, '--listen', '127.0.0.1:17443'], {
    env: kubetrailEnv(freshHome(), { KUBETRAIL_STATE_DIR: stateDir }),
  });
}

/** stderr is exactly one line. */
function oneLine(r: RunResult): string {
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  return lines[0] ?? '';
}

describe.skipIf(!root)('a full disk (item 1)', () => {
  const mnt = join(tmpdir(), `kt-full-${process.pid}`);
  beforeAll(() => {
    mkdirSync(mnt, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', mnt]);
  });
  afterAll(() => {
    execFileSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  });

  it('a kubeconfig that does not fit: the old file is kept, no temporary file is left, exit 2 with a KT_ERR_STATE_DIR line', async () => {
    const stateDir = join(mnt, 'state');
    // Two runs with the same file list and address write the same path: the second replaces the first.
    const kubeconfig = kubeconfigOf(1, 'full-disk');
    const first = await writeKubeconfigCmd(kubeconfig, stateDir);
    expect(first.code, first.stderr).toBe(0);
    const written = first.stdout.toString().trim();
    const before = readFileSync(written, 'utf8');
    // The next rewrite is ~10 pages; leave one free page (tmpfs: 4 KiB blocks).
    kubeconfigOf(12, 'full-disk');
    const fs = statfsSync(mnt);
    writeFileSync(join(mnt, 'filler'), Buffer.alloc((fs.bavail - 1) * fs.bsize));
    expect(statfsSync(mnt).bavail).toBe(1);

    const r = await writeKubeconfigCmd(kubeconfig, stateDir);
    rmSync(join(mnt, 'filler'));
    expect(r.code).toBe(2);
    expect(oneLine(r)).toMatch(
      new RegExp(
        `^kubetrail: cannot write ${written.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ENOSPC: no space left on device.*\\(KT_ERR_STATE_DIR\\)$`,
      ),
    );
    expect(r.stdout.toString()).toBe('');
    expect(readFileSync(written, 'utf8')).toBe(before);
    expect(readdirSync(join(stateDir, 'kubeconfigs'))).toEqual([written.split('/').at(-1)]);

    // With room again, the same command succeeds and writes the whole file.
    const again = await writeKubeconfigCmd(kubeconfig, stateDir);
    expect(again.code, again.stderr).toBe(0);
    expect(readFileSync(written, 'utf8')).toMatch(/name: c11\n/);
  });
});

describe.skipIf(!root)('a state dir someone else controls is refused, as ssh does (item 2)', () => {
  it('owned by another user (`nobody`): refused with one line, nothing written or read from it', async () => {
    const stateDir = join(mkdtempSync(join(dir, 'owner-')), 'state');
    mkdirSync(join(stateDir, 'kubeconfigs'), { recursive: true, mode: 0o700 });
    // What the review did: the other user puts a kubeconfig with an exec plugin where kubetrail writes one.
    chownSync(join(stateDir, 'kubeconfigs'), NOBODY, NOBODY);
    chownSync(stateDir, NOBODY, NOBODY);
    const r = await writeKubeconfigCmd(kubeconfigOf(1), stateDir);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toBe(
      `kubetrail: refusing the state dir: ${stateDir} belongs to uid ${NOBODY}, not to you (uid 0); fix: chmod 700 it if it is yours, or pass --state-dir DIR (KT_ERR_STATE_DIR)`,
    );
    expect(readdirSync(stateDir).sort()).toEqual(['kubeconfigs']);
    expect(readdirSync(join(stateDir, 'kubeconfigs'))).toEqual([]);
  });

  it('a subdirectory owned by another user is refused too', async () => {
    const stateDir = join(mkdtempSync(join(dir, 'sub-')), 'state');
    mkdirSync(join(stateDir, 'kubeconfigs'), { recursive: true, mode: 0o700 });
    chownSync(join(stateDir, 'kubeconfigs'), NOBODY, NOBODY);
    const r = await writeKubeconfigCmd(kubeconfigOf(1), stateDir);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toContain(`refusing the state dir: ${join(stateDir, 'kubeconfigs')} belongs to uid ${NOBODY}`);
    expect(readdirSync(join(stateDir, 'kubeconfigs'))).toEqual([]);
  });

  it('one that others can write to is refused (not tightened: what they put there stays theirs)', async () => {
    const stateDir = join(mkdtempSync(join(dir, 'open-')), 'state');
    mkdirSync(stateDir, { mode: 0o700 });
    chmodSync(stateDir, 0o777);
    const r = await writeKubeconfigCmd(kubeconfigOf(1), stateDir);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toContain(`refusing the state dir: ${stateDir} is 0777: others can write to it`);
    expect(readdirSync(stateDir)).toEqual([]);
  });

  it("a wrapped command whose background subdirectory is another user's: refused before anything runs", async () => {
    const home = freshHome();
    const stateDir = join(home, 'kubetrail-state');
    mkdirSync(join(stateDir, 'background'), { recursive: true, mode: 0o700 });
    chownSync(join(stateDir, 'background'), NOBODY, NOBODY);
    const marker = join(home, 'ran');
    const port = await unusedPort();
    const r = await runKubetrail(
      ['--kubeconfig', kubeconfigOf(1), '--listen', `127.0.0.1:${port}`, '--', 'touch', marker],
      { env: kubetrailEnv(home) },
    );
    expect(r.code).toBe(2);
    expect(oneLine(r)).toContain(`refusing the state dir: ${join(stateDir, 'background')} belongs to uid ${NOBODY}`);
    expect(existsSync(marker)).toBe(false);
    expect(readdirSync(join(stateDir, 'background'))).toEqual([]);
  });
});

describe('a state dir opened to others after the background kubetrail made it private (item 2)', () => {
  it("its commands directory, where each command's kubeconfig goes: the next wrapped command is refused", async () => {
    const home = freshHome();
    const stateDir = join(home, 'kubetrail-state');
    const port = await unusedPort();
    const env = kubetrailEnv(home);
    const argv = (marker: string): string[] => [
      '--kubeconfig',
      kubeconfigOf(1),
      '--listen',
      `127.0.0.1:${port}`,
      '--',
      'touch',
      marker,
    ];
    try {
      const first = await runKubetrail(argv(join(home, 'first')), { env });
      expect(first.code, first.stderr).toBe(0);
      const commands = join(stateDir, 'background', 'commands');
      chmodSync(commands, 0o777);
      const r = await runKubetrail(argv(join(home, 'second')), { env });
      expect(r.code).toBe(2);
      expect(oneLine(r)).toContain(`refusing the state dir: ${commands} is 0777: others can write to it`);
      expect(existsSync(join(home, 'second'))).toBe(false);
      chmodSync(commands, 0o700);
    } finally {
      await runKubetrail(['stop'], { env });
    }
  });
});

describe('symlinks in the state dir are never followed (item 3)', () => {
  it('a background/<addr>.log symlink: the file it points at is neither truncated nor re-moded, and the command is refused', async () => {
    const home = freshHome();
    const stateDir = join(home, 'kubetrail-state');
    const port = await unusedPort();
    mkdirSync(join(stateDir, 'background'), { recursive: true, mode: 0o700 });
    const victim = join(home, 'victim.txt');
    writeFileSync(victim, 'precious\n'.repeat(200_000), { mode: 0o644 });
    chmodSync(victim, 0o644);
    const log = join(stateDir, 'background', `127.0.0.1-${port}.log`);
    symlinkSync(victim, log);
    const marker = join(home, 'ran');
    const r = await runKubetrail(
      ['--kubeconfig', kubeconfigOf(1), '--listen', `127.0.0.1:${port}`, '--', 'touch', marker],
      { env: kubetrailEnv(home) },
    );
    expect(readFileSync(victim, 'utf8')).toBe('precious\n'.repeat(200_000));
    expect(statSync(victim).mode & 0o777).toBe(0o644);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toBe(
      `kubetrail: refusing ${log}: it is a symbolic link (kubetrail never follows one in its state dir); remove it (KT_ERR_STATE_DIR)`,
    );
    expect(existsSync(marker)).toBe(false);
    expect(lstatSync(log).isSymbolicLink()).toBe(true);
  });

  it("a ca.pem symlink to someone else's CA is refused, not used", async () => {
    const stateDir = join(mkdtempSync(join(dir, 'ca-')), 'state');
    // A working CA made by kubetrail elsewhere stands in for the attacker's.
    const other = join(mkdtempSync(join(dir, 'attacker-')), 'state');
    expect((await writeKubeconfigCmd(kubeconfigOf(1), other)).code).toBe(0);
    mkdirSync(stateDir, { mode: 0o700 });
    symlinkSync(join(other, 'ca.pem'), join(stateDir, 'ca.pem'));
    const r = await writeKubeconfigCmd(kubeconfigOf(1), stateDir);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toBe(
      `kubetrail: refusing ${join(stateDir, 'ca.pem')}: it is a symbolic link (kubetrail never follows one in its state dir); remove it (KT_ERR_STATE_DIR)`,
    );
    expect(readdirSync(stateDir)).toEqual(['ca.pem']);
  });

  it.skipIf(!root)("a ca.pem of another user's is refused", async () => {
    const stateDir = join(mkdtempSync(join(dir, 'caown-')), 'state');
    expect((await writeKubeconfigCmd(kubeconfigOf(1), stateDir)).code).toBe(0);
    chownSync(join(stateDir, 'ca.pem'), NOBODY, NOBODY);
    const r = await writeKubeconfigCmd(kubeconfigOf(1), stateDir);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toBe(
      `kubetrail: refusing ${join(stateDir, 'ca.pem')} belongs to uid ${NOBODY}, not to you (uid 0); remove it (KT_ERR_STATE_DIR)`,
    );
  });
});

/** A wrapped command left running (another terminal's watch): its output so far, and how it ended. */
function startWrapped(
  args: string[],
  env: NodeJS.ProcessEnv,
): { stdout: () => string; stderr: () => string; result: Promise<{ code: number; stderr: string }>; kill: () => void } {
  const child = spawn(process.execPath, [KUBETRAIL_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const result = new Promise<{ code: number; stderr: string }>((resolve) =>
    child.on('close', (code) => resolve({ code: code ?? 128, stderr: err })),
  );
  return { stdout: () => out, stderr: () => err, result, kill: () => child.kill('SIGKILL') };
}

describe('a busy background kubetrail and `kubetrail start` (item 6)', () => {
  const cluster = withFakeCluster({
    prefix: 'kt-hard-busy-',
    apiserver: { tokens: { 'tina-token': { user: 'tina' } } },
    kubeconfig: { users: [{ name: 'tina', token: 'tina-token' }] },
    seed: (fake) => void fake.create(makePod('web-0')),
  });

  it("start refuses to stop it while another terminal's watch runs; `kubetrail stop` does, and the cut watch exits non-zero, saying so", async () => {
    const home = freshHome();
    const env = kubetrailEnv(home, { OTEL_SDK_DISABLED: 'true' });
    const port = await unusedPort();
    const common = ['--kubeconfig', cluster.kubeconfig, '--listen', `127.0.0.1:${port}`];
    const watch = startWrapped(
      [...common, '--quiet', '--', kubectlPath('1.33'), 'get', 'pods', '-w', '-o', 'name'],
      env,
    );
    try {
      await expect.poll(watch.stdout, { timeout: 30_000 }).toBe('pod/web-0\n');
      const state = JSON.parse(
        readFileSync(join(home, 'kubetrail-state', 'background', `127.0.0.1-${port}.json`), 'utf8'),
      ) as { pid: number };
      const start = await runKubetrail(['start', ...common], { env, timeoutMs: 20_000 });
      expect(start.code).toBe(2);
      expect(oneLine(start)).toBe(
        `kubetrail: --listen 127.0.0.1:${port}: the background kubetrail there is in use (1 command running, 1 request open); stopping it would cut them: retry when they end, or stop it anyway with \`kubetrail stop\``,
      );
      expect(alive(state.pid)).toBe(true);
      // The watch still sees changes.
      cluster.fake.create(makePod('web-1'));
      await expect.poll(watch.stdout, { timeout: 10_000 }).toBe('pod/web-0\npod/web-1\n');

      // The user says so: the watch is cut, and does not end like a complete one.
      const stop = await runKubetrail(['stop'], { env });
      expect(stop.code, stop.stderr).toBe(0);
      const w = await watch.result;
      expect(w.code).toBe(1);
      expect(w.stderr).toMatch(
        new RegExp(
          `^kubetrail: the background kubetrail on 127\\.0\\.0\\.1:${port} stopped while this command had a request open \\(stop requested\\): its output was cut short$`,
          'm',
        ),
      );
    } finally {
      watch.kill();
      await runKubetrail(['stop'], { env });
    }
  }, 120_000);
});

describe('a start lock held by a live pid (item 9)', () => {
  function procStart(pid: number): string {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  }
  function plantLock(home: string, port: number, pid: number): void {
    const bg = join(home, 'kubetrail-state', 'background');
    mkdirSync(bg, { recursive: true, mode: 0o700 });
    chmodSync(join(home, 'kubetrail-state'), 0o700);
    // The holder's real start time: only what runs under that pid tells it is no kubetrail.
    writeFileSync(join(bg, `127.0.0.1-${port}.lock`), `${pid} ${procStart(pid)} abcdefghij\n`, { mode: 0o600 });
  }

  it('another program under the pid: the lock is stale at once, not waited for 30 s', async () => {
    const home = freshHome();
    const env = kubetrailEnv(home, { OTEL_SDK_DISABLED: 'true' });
    const port = await unusedPort();
    const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      plantLock(home, port, sleeper.pid ?? 0);
      const r = await runKubetrail(
        ['--kubeconfig', kubeconfigOf(1), '--listen', `127.0.0.1:${port}`, '--quiet', '--', 'true'],
        { env, timeoutMs: 60_000 },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      // Waiting for the lock's holder would take START_WAIT_MS (30 s) before the wrapper gave up on it.
      expect(r.ms).toBeLessThan(25_000);
    } finally {
      sleeper.kill('SIGKILL');
      await runKubetrail(['stop'], { env });
    }
  }, 90_000);

  it('a kubetrail under the pid: waited for, and the wrapper says what it waits for', async () => {
    const home = freshHome();
    const env = kubetrailEnv(home, { OTEL_SDK_DISABLED: 'true' });
    const port = await unusedPort();
    // A process whose command line is a kubetrail's (its bin named kubetrail), that never finishes starting.
    const bin = join(mkdtempSync(join(dir, 'holder-')), 'kubetrail.mjs');
    writeFileSync(bin, 'setTimeout(() => undefined, 60_000);\n');
    const holder = spawn(process.execPath, [bin], { stdio: 'ignore' });
    try {
      await expect
        .poll(() => readFileSync(`/proc/${holder.pid}/cmdline`, 'utf8'), { timeout: 5000 })
        .toContain('kubetrail.mjs');
      plantLock(home, port, holder.pid ?? 0);
      const wrapper = startWrapped(
        ['--kubeconfig', kubeconfigOf(1), '--listen', `127.0.0.1:${port}`, '--', 'true'],
        env,
      );
      const line = new RegExp(
        `^kubetrail: waiting for kubetrail pid ${holder.pid}, which is starting the background kubetrail on 127\\.0\\.0\\.1:${port} \\(at most \\d+s more\\)$`,
        'm',
      );
      await expect.poll(wrapper.stderr, { timeout: 25_000 }).toMatch(line);
      // The holder goes away (its start failed): the wrapper takes over the stale lock.
      holder.kill('SIGKILL');
      const r = await wrapper.result;
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr.match(/waiting for/g)).toHaveLength(1);
      expect(r.stderr).toMatch(/started a background kubetrail/);
    } finally {
      holder.kill('SIGKILL');
      await runKubetrail(['stop'], { env });
    }
  }, 90_000);
});

describe('a running kubetrail with other telemetry settings (item 5)', () => {
  const cluster = withFakeCluster({
    prefix: 'kt-hard-collectors-',
    apiserver: { tokens: { 'tina-token': { user: 'tina' } } },
    kubeconfig: { users: [{ name: 'tina', token: 'tina-token' }] },
    seed: (fake) => void fake.create(makePod('web-0')),
  });

  it.each([
    ['a background kubetrail, and a wrapped command with --linger 0', 'background'],
    ['a `kubetrail start`, and a wrapped command', 'start'],
  ])(
    '%s asking for another collector: served in-process, its spans reach the collector it asked for',
    async (_what, kind) => {
      const [a, b] = [await startOtlpReceiver(), await startOtlpReceiver()];
      const home = freshHome();
      const env = kubetrailEnv(home);
      const port = await unusedPort();
      const common = ['--kubeconfig', cluster.kubeconfig, '--listen', `127.0.0.1:${port}`];
      let start: ReturnType<typeof startWrapped> | undefined;
      try {
        if (kind === 'background') {
          const first = await runKubetrail(
            [...common, '--otlp-endpoint', a.url, '--quiet', '--', kubectlPath('1.33'), 'get', 'pods'],
            { env, timeoutMs: 40_000 },
          );
          expect(first.code, first.stderr).toBe(0);
        } else {
          start = startWrapped(['start', ...common, '--otlp-endpoint', a.url, '--quiet'], env);
          await expect.poll(start.stdout, { timeout: 30_000 }).toMatch(/^export KUBECONFIG=/);
        }
        if (kind === 'background') await expect.poll(() => a.spans.length, { timeout: 15_000 }).toBeGreaterThan(0);
        // The first command's spans may reach A in several batches: count them once A has gone quiet.
        let spansAtA = -1;
        for (let i = 0; i < 20 && spansAtA !== a.spans.length; i++) {
          spansAtA = a.spans.length;
          await new Promise((res) => setTimeout(res, 700));
        }
        const r = await runKubetrail(
          [
            ...common,
            '--otlp-endpoint',
            b.url,
            ...(kind === 'background' ? ['--linger', '0'] : []),
            '--',
            kubectlPath('1.33'),
            'get',
            'pods',
            '-o',
            'name',
          ],
          { env, timeoutMs: 40_000 },
        );
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout.toString()).toBe('pod/web-0\n');
        expect(r.stderr).toContain(
          `kubetrail: the kubetrail on 127.0.0.1:${port} exports elsewhere (another collector, trace link or OTEL_* setting); serving this command in-process, exporting to ${b.url}\n`,
        );
        await expect.poll(() => b.spans.length, { timeout: 15_000 }).toBeGreaterThan(0);
        await new Promise((res) => setTimeout(res, 500));
        expect(a.spans.length).toBe(spansAtA);
      } finally {
        start?.kill();
        await runKubetrail(['stop'], { env });
        await a.close();
        await b.close();
      }
    },
    120_000,
  );
});

describe('what any local process can do with the listener (item 10)', () => {
  let fake: FakeApiserver;
  let proxy: NetServer;
  const connects: { auth: string | undefined }[] = [];
  let kt: KubetrailProcess | undefined;
  let ktAnon: KubetrailProcess | undefined;

  /** A CONNECT proxy that records whether each tunnel carried proxy credentials. */
  function startConnectProxy(): Promise<NetServer> {
    const server = createNetServer((client) => {
      let head = '';
      const onData = (c: Buffer): void => {
        head += c.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end === -1) return;
        client.off('data', onData);
        const auth = /\r\nproxy-authorization: ([^\r]*)/i.exec(head)?.[1];
        connects.push({ auth });
        const [host, port] = (/^CONNECT (\S+) /.exec(head)?.[1] ?? '').split(':');
        const up = netConnect(Number(port), host ?? '127.0.0.1', () => {
          client.write('HTTP/1.1 200 Connection established\r\n\r\n');
          up.pipe(client);
          client.pipe(up);
        });
        up.on('error', () => client.destroy());
        client.on('error', () => up.destroy());
      };
      client.on('data', onData);
    });
    return new Promise((r) => server.listen(0, '127.0.0.1', () => r(server)));
  }

  beforeAll(async () => {
    fake = await startFakeApiserver({ tokens: { 'tina-token': { user: 'tina' } } });
    fake.create(makePod('web-0'));
    proxy = await startConnectProxy();
    const proxyUrl = `http://puser:kt-SECRET-proxy-pass@127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const base = await fake.writeKubeconfig(join(dir, 'proxied'), { users: [{ name: 'tina', token: 'tina-token' }] });
    const doc = parse(readFileSync(base, 'utf8')) as {
      clusters: { cluster: Record<string, unknown> }[];
      users: { name: string; user: Record<string, unknown> }[];
      contexts: { name: string; context: Record<string, unknown> }[];
    };
    for (const c of doc.clusters) c.cluster['proxy-url'] = proxyUrl;
    writeFileSync(join(dir, 'proxied', 'tokens-only'), stringify(doc), { mode: 0o600 });
    // The same cluster, and a context whose user is anonymous: its requests carry no credential on purpose.
    doc.users.push({ name: 'nobody', user: {} });
    doc.contexts.push({ name: 'anon', context: { cluster: doc.contexts[0]?.context.cluster, user: 'nobody' } });
    writeFileSync(join(dir, 'proxied', 'with-anonymous'), stringify(doc), { mode: 0o600 });
    kt = await startKubetrailProcess({
      kubeconfig: join(dir, 'proxied', 'tokens-only'),
      home: freshHome(),
      args: ['--quiet'],
    });
    ktAnon = await startKubetrailProcess({
      kubeconfig: join(dir, 'proxied', 'with-anonymous'),
      home: freshHome(),
      args: ['--quiet'],
    });
  });
  afterAll(async () => {
    await kt?.stop();
    await ktAnon?.stop();
    proxy.close();
    await fake.close();
  });

  /** A request through kubetrail's route with no credential at all (any local process can send one). */
  function anonymous(k: KubetrailProcess, path: string): Promise<number> {
    const route = k.route();
    const url = new URL(`${route.base}${path}`);
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          ca: route.caPem,
          servername: route.servername,
          agent: false,
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it("an anonymous request gets no proxy-url credentials; the kubeconfig's token user does", async () => {
    if (!kt) throw new Error('no kubetrail');
    connects.length = 0;
    await anonymous(kt, '/api/v1/namespaces/default/pods');
    expect(connects).toEqual([{ auth: undefined }]);
    connects.length = 0;
    const r = await runKubetrail(
      [
        '--kubeconfig',
        join(dir, 'proxied', 'tokens-only'),
        '--listen',
        '127.0.0.1:0',
        '--linger',
        '0',
        '--quiet',
        '--',
        kubectlPath('1.33'),
        'get',
        'pods',
        '-o',
        'name',
      ],
      { env: kubetrailEnv(freshHome(), { OTEL_SDK_DISABLED: 'true' }), timeoutMs: 40_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(connects.length).toBeGreaterThan(0);
    for (const c of connects)
      expect(c.auth).toBe(`Basic ${Buffer.from('puser:kt-SECRET-proxy-pass').toString('base64')}`);
  });

  it('unless a kubeconfig user of that cluster is itself anonymous', async () => {
    if (!ktAnon) throw new Error('no kubetrail');
    connects.length = 0;
    await anonymous(ktAnon, '/version');
    expect(connects).toEqual([{ auth: `Basic ${Buffer.from('puser:kt-SECRET-proxy-pass').toString('base64')}` }]);
  });

  it('item 11: dot segments and an absolute-form request line reach the apiserver as a clean origin-form path', async () => {
    if (!kt) throw new Error('no kubetrail');
    const route = kt.route();
    const prefix = new URL(route.base).pathname.replace(/\/$/, '');
    const raw = (target: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port: kt?.port, ca: route.caPem, servername: route.servername }, () =>
          s.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tina-token\r\nConnection: close\r\n\r\n`),
        );
        let buf = '';
        s.on('data', (c: Buffer) => (buf += c.toString()));
        s.on('close', () => resolve(buf));
        s.on('error', reject);
      });
    for (const target of [
      `${prefix}/api/../../../version`,
      `${prefix}/%2e%2e/%2E%2E/version`,
      `https://elsewhere.example${prefix}/version`,
    ]) {
      const mark = fake.requests.length;
      expect(await raw(target)).toMatch(/^HTTP\/1\.1 200 /);
      expect(fake.requests.slice(mark).map((q) => q.url)).toEqual(['/version']);
    }
  });

  it('control endpoints answer nothing without the control token: no pid, no probeable route ids', async () => {
    if (!kt) throw new Error('no kubetrail');
    const route = kt.route();
    const id = route.servername.replace(/\.kubetrail\.localhost$/, '');
    const get = (path: string): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const req = httpsRequest(
          { host: '127.0.0.1', port: kt?.port, path, ca: route.caPem, servername: 'localhost', agent: false },
          (res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end();
      });
    const info = await get('/.kubetrail/v1/info');
    expect(info.status).toBe(404);
    expect(info.body).not.toContain(String(kt.pid));
    expect((await get(`/.kubetrail/v1/routes/${id}`)).status).toBe(
      (await get('/.kubetrail/v1/routes/no-such-route')).status,
    );
    expect((await get('/.kubetrail/v1/status')).status).toBe(401);
  });
});
