/**
 * The kubetrail command line as a user meets it: files it writes, the stable port and kubectl's caches,
 * sharing a running `kubetrail start`, bad input, and identities presented by a real kubectl.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { freshHome, kubetrailEnv } from '../helpers/compare.ts';
import { makePod, type FakeApiserver } from '../helpers/fake-apiserver.ts';
import { withFakeCluster } from '../helpers/fake-cluster.ts';
import { kubectl, kubectlPath } from '../helpers/kubectl.ts';
import { alive as pidAlive, stopBackgroundKubetrails } from '../helpers/global-tmp.ts';
import { KUBECTL_TRAIL_BIN, KUBETRAIL_BIN, runKubetrail, runProcess } from '../helpers/run-kubetrail.ts';
import { unusedPort } from '../helpers/ports.ts';
import { findMimalloc } from '../../src/cli/allocator.ts';
import { NODE_FLAGS } from '../../src/cli/node-flags.ts';

const cluster = withFakeCluster({
  prefix: 'kt-cli-',
  apiserver: { tokens: { 'tina-token': { user: 'tina' } } },
  kubeconfig: {
    users: [
      { name: 'alice', cert: { groups: ['dev'] } },
      { name: 'tina', token: 'tina-token' },
    ],
  },
  seed: (fake) => void fake.create(makePod('web-0', { ageSeconds: 86_400 })),
});

function wrapped(args: string[], home: string, extra: string[] = []): ReturnType<typeof runKubetrail> {
  return runKubetrail(['--kubeconfig', cluster.kubeconfig, '--quiet', ...extra, '--', kubectlPath('1.33'), ...args], {
    env: { ...kubetrailEnv(home), OTEL_SDK_DISABLED: 'true' },
  });
}

/** A foreground `kubetrail start` on `port` for this file's kubeconfig, ready (its export line out), for `fn`;
 * `log()` is its stdout so far (the export line, then the request log). Stopped afterwards. */
async function withStart<T>(
  port: number,
  home: string,
  fn: (log: () => string, pid: number) => Promise<T>,
  env: NodeJS.ProcessEnv = {},
): Promise<T> {
  const start = spawn(
    process.execPath,
    [KUBETRAIL_BIN, 'start', '--kubeconfig', cluster.kubeconfig, '--listen', `127.0.0.1:${port}`],
    { env: { ...kubetrailEnv(home), OTEL_SDK_DISABLED: 'true', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  start.stdout.on('data', (c: Buffer) => (log += c.toString()));
  try {
    await expect.poll(() => log, { timeout: 15_000 }).toMatch(/^export KUBECONFIG=\S+\.yaml$/m);
    return await fn(() => log, start.pid ?? -1);
  } finally {
    start.kill('SIGTERM');
    await new Promise((r) => start.on('close', r));
  }
}

const sha = (f: string): string => createHash('sha256').update(readFileSync(f)).digest('hex');
const discovery = (f: FakeApiserver, since: number): string[] =>
  f.requests
    .slice(since)
    .map((r) => r.path)
    .filter((p) => p === '/api' || p === '/apis' || (p.startsWith('/apis/') && p.split('/').length <= 4));

describe('files', () => {
  it('writes the rewritten kubeconfig 0600 in a 0700 state dir, and leaves the original byte for byte', async () => {
    const before = sha(cluster.kubeconfig);
    const home = freshHome();
    const r = await runKubetrail(['--kubeconfig', cluster.kubeconfig, 'kubeconfig'], { env: kubetrailEnv(home) });
    expect(r.code).toBe(0);
    const path = r.stdout.toString().trim();
    expect(path.startsWith(join(home, 'kubetrail-state'))).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(home, 'kubetrail-state')).mode & 0o777).toBe(0o700);
    expect(statSync(join(home, 'kubetrail-state', 'ca.pem')).mode & 0o777).toBe(0o600);
    expect(sha(cluster.kubeconfig)).toBe(before);
    const rewritten = parse(readFileSync(path, 'utf8')) as {
      clusters: { cluster: { server: string } }[];
      users: { name: string }[];
    };
    expect(rewritten.clusters[0]?.cluster.server).toMatch(/^https:\/\/127\.0\.0\.1:17443\/c\/[a-z0-9-]+$/);
    expect(rewritten.users.map((u) => u.name)).toEqual(['alice', 'tina']);
  });
});

describe('the stable port and kubectl caches', () => {
  it('a second wrapped `get pods` sends no discovery requests, exactly as a second direct run', async () => {
    const port = await unusedPort();
    const home = freshHome();
    let mark = cluster.fake.requests.length;
    expect((await wrapped(['--context', 'alice', 'get', 'pods'], home, ['--listen', `127.0.0.1:${port}`])).code).toBe(
      0,
    );
    expect(discovery(cluster.fake, mark).length).toBeGreaterThan(0);
    mark = cluster.fake.requests.length;
    const second = await wrapped(['--context', 'alice', 'get', 'pods'], home, ['--listen', `127.0.0.1:${port}`]);
    expect(second.code).toBe(0);
    expect(second.stdout.toString()).toContain('web-0');
    expect(discovery(cluster.fake, mark)).toEqual([]);
    expect(cluster.fake.requests.slice(mark).map((r) => r.path)).toEqual(['/api/v1/namespaces/default/pods']);

    // The same holds direct, which is what "transparent" means here.
    const directHome = freshHome();
    await kubectl(['--context', 'alice', 'get', 'pods'], { kubeconfig: cluster.kubeconfig, home: directHome });
    mark = cluster.fake.requests.length;
    await kubectl(['--context', 'alice', 'get', 'pods'], { kubeconfig: cluster.kubeconfig, home: directHome });
    expect(discovery(cluster.fake, mark)).toEqual([]);
  });

  it('refuses a port held by another program, naming the flag, instead of quietly going cold', async () => {
    const squatter: Server = createServer((s) => s.destroy());
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r));
    const port = (squatter.address() as AddressInfo).port;
    try {
      const r = await wrapped(['--context', 'alice', 'get', 'pods'], freshHome(), ['--listen', `127.0.0.1:${port}`]);
      expect(r.code).toBe(2);
      // The squatter is this test's process: the OS says so (Linux /proc), and the line names it.
      expect(r.stderr.trim()).toMatch(
        new RegExp(
          `^kubetrail: --listen 127\\.0\\.0\\.1:${port} is in use by another program \\(pid ${process.pid}: [^)]*node[^)]*\\): stop it, or pass --listen 127\\.0\\.0\\.1:<port> for another \\(and keep it: kubectl's caches are keyed by it\\)$`,
        ),
      );
      expect(r.stdout.length).toBe(0);
    } finally {
      await new Promise((r) => squatter.close(r));
    }
  });

  it('shares the port with a running `kubetrail start` for the same clusters; it logs the requests', async () => {
    const port = await unusedPort();
    const home = freshHome();
    await withStart(port, home, async (log) => {
      const r = await wrapped(['--context', 'alice', 'get', 'pods'], home, ['--listen', `127.0.0.1:${port}`]);
      expect(r.code).toBe(0);
      expect(r.stdout.toString()).toContain('web-0');
      expect(r.stderr).toContain(`using the kubetrail already listening on 127.0.0.1:${port}`);
      await expect
        .poll(() => log(), { timeout: 10_000 })
        .toMatch(
          /^\d\d:\d\d:\d\d\.\d{3} 200 list pods \/api\/v1\/namespaces\/default\/pods [\d.]+ms 1 item [\d.]+k?B \[/m,
        );
    });
  });
});

describe('`kubetrail start` as a user runs it (#18)', () => {
  it("runs with the background kubetrail's heap flags, in the process the user started (no second process)", async () => {
    const port = await unusedPort();
    await withStart(port, freshHome(), (_log, pid) => {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      for (const flag of NODE_FLAGS) expect(cmdline).toContain(flag);
      expect(cmdline).toContain('start');
      const children = readdirSync('/proc').filter(
        (p) =>
          /^\d+$/.test(p) &&
          existsSync(`/proc/${p}/stat`) &&
          readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]?.split(' ')[1] === String(pid),
      );
      expect(children).toEqual([]);
      return Promise.resolve();
    });
  });

  it.runIf(findMimalloc() !== undefined)(
    "runs on mimalloc when KUBETRAIL_ALLOCATOR=mimalloc asks (.ci/run installs it), the user's LD_PRELOAD kept; on glibc's malloc by default",
    async () => {
      const lib = findMimalloc();
      const theirs = join(freshHome(), 'theirs.so'); // not there: ld.so says so on stderr and goes on
      const mapped = (pid: number): boolean => readFileSync(`/proc/${pid}/maps`, 'utf8').includes('libmimalloc');
      await withStart(
        await unusedPort(),
        freshHome(),
        (_log, pid) => {
          expect(mapped(pid)).toBe(true);
          const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
          expect(environ).toContain(`LD_PRELOAD=${lib}:${theirs}`);
          return Promise.resolve();
        },
        { LD_PRELOAD: theirs, KUBETRAIL_ALLOCATOR: 'mimalloc' },
      );
      await withStart(await unusedPort(), freshHome(), (_log, pid) => {
        expect(mapped(pid)).toBe(false);
        return Promise.resolve();
      });
    },
  );

  it('refuses a KUBETRAIL_ALLOCATOR it does not know, in one line, exit 2', async () => {
    const r = await runKubetrail(['start', '--kubeconfig', cluster.kubeconfig, '--listen', '127.0.0.1:0'], {
      env: { ...kubetrailEnv(freshHome()), KUBETRAIL_ALLOCATOR: 'jemalloc' },
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('kubetrail: KUBETRAIL_ALLOCATOR=jemalloc: expected system (the default) or mimalloc\n');
  });
});

describe('--linger 0 next to a running `kubetrail start` (#19 item 3)', () => {
  it('serves the command in-process on another port, says so, and prints its own waterfall; the start logs nothing of it', async () => {
    const port = await unusedPort();
    const home = freshHome();
    await withStart(port, home, async (log) => {
      const r = await runKubetrail(
        [
          '--kubeconfig',
          cluster.kubeconfig,
          '--listen',
          `127.0.0.1:${port}`,
          '--linger',
          '0',
          '--',
          kubectlPath('1.33'),
          '--context',
          'alice',
          'get',
          'pods',
          '-o',
          'name',
        ],
        {
          env: { ...kubetrailEnv(home), OTEL_SDK_DISABLED: 'true' },
        },
      );
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.toString()).toBe(
        (
          await kubectl(['--context', 'alice', 'get', 'pods', '-o', 'name'], { kubeconfig: cluster.kubeconfig })
        ).stdout.toString(),
      );
      expect(r.stderr).not.toContain('its output shows this command');
      expect(r.stderr).toContain(
        `kubetrail: 127.0.0.1:${port} is served by another kubetrail; serving this command in-process on an ephemeral port`,
      );
      expect(r.stderr).toMatch(/^kubectl get · \d+ requests? · /m);
      expect(r.stderr).toMatch(/^ {2}list pods +200 /m);
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(log()).not.toMatch(/ list pods /);
    });
  });
});

/** The Google Cloud SDK's kubectl dispatcher (/usr/bin/kubectl here): it asks /version, with no Kubectl-Session, then runs the kubectl it picks. */
const DISPATCHER = '/usr/lib/google-cloud-sdk/bin/kubectl';

describe.skipIf(!existsSync(DISPATCHER))('`kubetrail start` and the gcloud kubectl dispatcher (#12 item 6)', () => {
  it("groups the dispatcher's /version with the kubectl command that follows: one trace line, as wrap mode", async () => {
    const port = await unusedPort();
    const home = freshHome();
    await withStart(port, home, async (log) => {
      const kc = /^export KUBECONFIG=(\S+)$/m.exec(log())?.[1] ?? '';
      const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const k = spawn(DISPATCHER, ['--context', 'alice', 'get', 'pods', '-o', 'name'], {
          env: { ...kubetrailEnv(home), KUBECONFIG: kc },
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        k.stdout.on('data', (c: Buffer) => (out += c.toString()));
        k.on('close', (code) => resolve({ code, out }));
      });
      expect(r.code).toBe(0);
      expect(r.out).toBe('pod/web-0\n');
      await expect.poll(() => log(), { timeout: 15_000 }).toMatch(/^trace not sent: kubectl get \(\d+ requests, /m);
      expect(log()).toMatch(/^\S+ 200 GET \/version \/version /m);
      // One trace for the whole command: none for the dispatcher's probe alone.
      await new Promise((res) => setTimeout(res, 2000));
      expect(log().match(/^trace/gm)).toHaveLength(1);
    });
  });
});

describe("a kubetrail started with another state dir (as `npm run demo` did with the stack's)", () => {
  const bgPid = (stateDir: string, port: number): number | undefined => {
    try {
      return (
        JSON.parse(readFileSync(join(stateDir, 'background', `127.0.0.1-${port}.json`), 'utf8')) as { pid: number }
      ).pid;
    } catch {
      return undefined;
    }
  };
  const run = (args: string[], env: NodeJS.ProcessEnv): ReturnType<typeof runKubetrail> =>
    runKubetrail(args, { env, timeoutMs: 40_000 });
  const get = (stateDir: string[], port: number): string[] => [
    '--kubeconfig',
    cluster.kubeconfig,
    '--listen',
    `127.0.0.1:${port}`,
    ...stateDir,
    '--',
    kubectlPath('1.33'),
    '--context',
    'alice',
    'get',
    'pods',
  ];

  it('does not block the next wrapped command, and `kubetrail stop` stops it, whatever state dir it has', async () => {
    const home = freshHome();
    const env = { ...kubetrailEnv(home), OTEL_SDK_DISABLED: 'true' };
    const port = await unusedPort();
    const demoState = join(home, 'demo-state');
    try {
      const first = await run(get(['--state-dir', demoState], port), env);
      expect(first.code, first.stderr).toBe(0);
      const demoPid = bgPid(demoState, port);
      expect(demoPid && pidAlive(demoPid)).toBe(true);

      // The next command, with the user's own state dir: served at once (the idle one is replaced).
      const next = await run(get([], port), env);
      expect(next.code, next.stderr).toBe(0);
      expect(next.stdout.toString()).toContain('web-0');
      expect(next.stderr).not.toMatch(/KT_ERR|in use/);
      await expect.poll(() => pidAlive(demoPid ?? 0), { timeout: 5000 }).toBe(false);

      // And the other way round: `kubetrail stop` with the default state dir stops the other one.
      const again = await run(get(['--state-dir', demoState], port), env);
      expect(again.code, again.stderr).toBe(0);
      const againPid = bgPid(demoState, port);
      expect(againPid && pidAlive(againPid)).toBe(true);
      const stop = await run(['stop'], env);
      expect(stop.code, stop.stderr).toBe(0);
      expect(stop.stderr).toBe(
        `kubetrail: stopped the background kubetrail on 127.0.0.1:${port} (pid ${againPid}) (state dir ${demoState})\n`,
      );
      expect(pidAlive(againPid ?? 0)).toBe(false);
      expect((await run(['stop'], env)).stderr).toBe('kubetrail: no background kubetrail is running\n');
    } finally {
      await stopBackgroundKubetrails(home);
    }
  });

  it('a `kubetrail start` with another state dir is named as such, not as another program', async () => {
    const home = freshHome();
    const env = { ...kubetrailEnv(home), OTEL_SDK_DISABLED: 'true' };
    const port = await unusedPort();
    const other = join(home, 'other-state');
    const start = spawn(
      process.execPath,
      [
        KUBETRAIL_BIN,
        'start',
        '--kubeconfig',
        cluster.kubeconfig,
        '--listen',
        `127.0.0.1:${port}`,
        '--state-dir',
        other,
      ],
      { env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    start.stdout.on('data', (c: Buffer) => (out += c.toString()));
    try {
      await expect.poll(() => out, { timeout: 15_000 }).toMatch(/^export KUBECONFIG=/m);
      const r = await run(get(['--quiet'], port), env);
      expect(r.code).toBe(2);
      expect(r.stderr).toBe(
        `kubetrail: --listen 127.0.0.1:${port} is in use by a \`kubetrail start\` (pid ${start.pid}) started with --state-dir ${other}: use the kubeconfig it printed, add --state-dir ${other}, stop it, or pass --listen 127.0.0.1:<port> for another (and keep it: kubectl's caches are keyed by it)\n`,
      );
      const stop = await run(['stop'], env);
      expect(stop.stderr).toBe(
        `kubetrail: the kubetrail on 127.0.0.1:${port} (pid ${start.pid}) (state dir ${other}) is a foreground \`kubetrail start\`: stop it in its terminal\n`,
      );
    } finally {
      start.kill('SIGTERM');
      await new Promise((r) => start.on('close', r));
    }
  });
});

describe('the wrapped command', () => {
  it("redirects kubectl's own --kubeconfig through kubetrail", async () => {
    const mark = cluster.fake.requests.length;
    const home = freshHome();
    const r = await runKubetrail(
      [
        '--listen',
        '127.0.0.1:0',
        '--',
        kubectlPath('1.33'),
        `--kubeconfig=${cluster.kubeconfig}`,
        '--context',
        'tina',
        'get',
        'pods',
        '-o',
        'name',
      ],
      { env: { ...kubetrailEnv(home), OTEL_SDK_DISABLED: 'true', NO_COLOR: '1' } },
    );
    expect(r.code).toBe(0);
    expect(r.stdout.toString()).toBe('pod/web-0\n');
    // The waterfall of the traced command (export is off here, so no link: #12 item 5).
    expect(r.stderr).toMatch(
      /^kubectl get · \d+ requests · .*\n[^]*^trace not sent: export disabled by OTEL_SDK_DISABLED$/m,
    );
    expect(cluster.fake.requests.length).toBeGreaterThan(mark);
  });

  it("exits with the command's own code and passes stdin through", async () => {
    const r = await runKubetrail(
      ['--kubeconfig', cluster.kubeconfig, '--quiet', '--listen', '127.0.0.1:0', '--', 'sh', '-c', 'cat; exit 7'],
      { env: { ...kubetrailEnv(freshHome()), OTEL_SDK_DISABLED: 'true' }, input: 'from stdin\n' },
    );
    expect(r.code).toBe(7);
    expect(r.stdout.toString()).toBe('from stdin\n');
  });

  it("leaves the command's stdout and stderr blocking while it proxies (kubectl drops output on EAGAIN)", async () => {
    const script = `${kubectlPath('1.33')} --context alice get pods -n default >/dev/null 2>&1; grep ^flags /proc/self/fdinfo/1 /proc/self/fdinfo/2`;
    const r = await runKubetrail(
      ['--kubeconfig', cluster.kubeconfig, '--quiet', '--listen', '127.0.0.1:0', '--', 'sh', '-c', script],
      { env: { ...kubetrailEnv(freshHome()), OTEL_SDK_DISABLED: 'true' } },
    );
    const flags = [...r.stdout.toString().matchAll(/flags:\s+([0-7]+)/g)].map((m) => parseInt(m[1] ?? '0', 8));
    expect(flags).toHaveLength(2);
    for (const f of flags) expect(f & 0o4000).toBe(0);
  });
});

describe('identity presented by a real kubectl', () => {
  it('a certificate kubectl holds but the proxied kubeconfig does not (same CN, other CA) never gets alice upstream', async () => {
    const home = freshHome();
    const written = await runKubetrail(['--kubeconfig', cluster.kubeconfig, 'kubeconfig', '--listen', '127.0.0.1:0'], {
      env: kubetrailEnv(home),
    });
    expect(written.code).toBe(0);
    // Serve the real kubeconfig...
    const port = await unusedPort();
    const start = spawn(
      process.execPath,
      [KUBETRAIL_BIN, 'start', '--kubeconfig', cluster.kubeconfig, '--listen', `127.0.0.1:${port}`, '--quiet'],
      { env: { ...kubetrailEnv(home), OTEL_SDK_DISABLED: 'true' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    start.stdout.on('data', (c: Buffer) => (out += c.toString()));
    try {
      await expect.poll(() => out, { timeout: 15_000 }).toMatch(/export KUBECONFIG=(\S+)/);
      const rewrittenPath = /export KUBECONFIG=(\S+)/.exec(out)?.[1] ?? '';
      // ...and let someone else point a kubectl at it with an impostor "alice" from their own CA.
      const { createCA, issueCert } = await import('../../src/pki/certs.ts');
      const impostor = await issueCert(await createCA('evil'), {
        commonName: 'alice',
        organizations: ['dev'],
        usage: 'client',
      });
      const doc = parse(readFileSync(rewrittenPath, 'utf8')) as {
        users: { name: string; user: Record<string, string> }[];
        'current-context': string;
      };
      doc.users = [
        {
          name: 'alice',
          user: {
            'client-certificate-data': Buffer.from(impostor.certPem).toString('base64'),
            'client-key-data': Buffer.from(impostor.keyPem).toString('base64'),
          },
        },
      ];
      doc['current-context'] = 'alice';
      const evil = join(mkdtempSync(join(tmpdir(), 'kt-evil-')), 'config');
      writeFileSync(evil, stringify(doc), { mode: 0o600 });
      const mark = cluster.fake.requests.length;
      const r = await kubectl(['get', 'pods'], { kubeconfig: evil });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('error: You must be logged in to the server');
      expect(cluster.fake.requests.slice(mark)).toEqual([]);
    } finally {
      start.kill('SIGTERM');
      await new Promise((r) => start.on('close', r));
    }
  });
});

describe('help and version', () => {
  const env = (): NodeJS.ProcessEnv => kubetrailEnv(freshHome());
  const VERSION = (
    JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  ).version;
  const flags = (help: string): string[] =>
    [...help.matchAll(/^ {2}(-[-\w, ]+?)(?: <[^>]+>)?(?: {2,}|$)/gm)].map((m) => (m[1] ?? '').trim());

  it("`kubetrail help`, `--help` and `-h` print the help (exit 0) and run nothing; `help <subcommand>` is that one's", async () => {
    for (const args of [['help'], ['--help'], ['-h']]) {
      const r = await runKubetrail(args, { env: env() });
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout.toString()).toMatch(/^Usage: kubetrail \[flags\] -- <command\.\.\.>/);
      expect(r.stdout.toString()).toMatch(/^Commands:\n {2}start /m);
      expect(r.stdout.toString()).toMatch(/^Examples:\n {2}kubetrail -- kubectl get pods /m);
      expect(r.stderr).toBe('');
    }
    const stop = await runKubetrail(['help', 'stop'], { env: env() });
    expect(stop.code).toBe(0);
    expect(stop.stdout.toString()).toMatch(/^Usage: kubetrail stop \[options\]/);
  });

  it('`kubetrail version`, `--version` and `-V` print the version', async () => {
    for (const args of [['version'], ['--version'], ['-V']]) {
      const r = await runKubetrail(args, { env: env() });
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout.toString()).toBe(`${VERSION}\n`);
    }
  });

  it('each subcommand lists the flags it reads, and only those, with examples', async () => {
    const expected: Record<string, string[]> = {
      '': [
        '--config',
        '--kubeconfig',
        '--context',
        '--listen',
        '--allow-non-loopback',
        '--state-dir',
        '--otlp-endpoint',
        '--jaeger-url',
        '--quiet',
        '--linger',
        '--reuse-upstream',
        '--session-idle-ms',
        '-V, --version',
        '-h, --help',
      ],
      start: [
        '--config',
        '--kubeconfig',
        '--context',
        '--listen',
        '--allow-non-loopback',
        '--state-dir',
        '--otlp-endpoint',
        '--jaeger-url',
        '--quiet',
        '--reuse-upstream',
        '--session-idle-ms',
        '-h, --help',
      ],
      kubeconfig: [
        '--config',
        '--kubeconfig',
        '--context',
        '--listen',
        '--allow-non-loopback',
        '--state-dir',
        '-h, --help',
      ],
      stop: ['--config', '--state-dir', '-h, --help'],
      doctor: [
        '--config',
        '--kubeconfig',
        '--context',
        '--listen',
        '--allow-non-loopback',
        '--state-dir',
        '--otlp-endpoint',
        '--jaeger-url',
        '-h, --help',
      ],
    };
    for (const [cmd, want] of Object.entries(expected)) {
      const r = await runKubetrail([...(cmd ? [cmd] : []), '--help'], { env: env() });
      expect(r.code, cmd).toBe(0);
      const help = r.stdout.toString();
      const options = help.slice(help.indexOf('Options:\n'), help.search(/^(Commands|Examples):$/m));
      expect(flags(options), cmd).toEqual(want);
      expect(help, cmd).toMatch(/^Examples:\n {2}(kubetrail|KUBECONFIG)/m);
    }
    const r = await runKubetrail(['stop', '--otlp-endpoint', 'http://x'], { env: env() });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("kubetrail: unknown option '--otlp-endpoint'\n");
  });

  it("`kubectl trail --help` is the plugin's own help (kubetrail's settings as environment variables), not kubectl's", async () => {
    const r = await runProcess(process.execPath, [KUBECTL_TRAIL_BIN, '--help'], { env: env() });
    expect(r.code).toBe(0);
    const help = r.stdout.toString();
    expect(help).toMatch(/^kubectl trail \d+\.\d+\.\d+: run kubectl through kubetrail/);
    for (const v of [
      'KUBETRAIL_JAEGER_URL',
      'KUBETRAIL_LISTEN',
      'KUBETRAIL_STATE_DIR',
      'KUBETRAIL_LINGER',
      'KUBETRAIL_KUBECTL',
      'OTEL_EXPORTER_OTLP_ENDPOINT',
    ])
      expect(help).toMatch(new RegExp(`^ {2}${v} +\\S`, 'm'));
    expect(help).not.toContain('kubectl controls the Kubernetes cluster manager');
  });
});

describe('bad input: one line naming the file or flag, exit 2', () => {
  it.each([
    ['an unknown flag', ['--bogus', '--', 'true'], /^kubetrail: unknown option '--bogus'$/],
    [
      'a kubeconfig that does not exist',
      ['--kubeconfig', '/nonexistent/kc', '--', 'true'],
      /^kubetrail: kubeconfig \/nonexistent\/kc: no such file$/,
    ],
    [
      'a non-loopback --listen',
      ['--kubeconfig', 'KC', '--listen', '0.0.0.0:1', '--', 'true'],
      /^kubetrail: --listen "0\.0\.0\.0:1" is not a loopback address: .*--allow-non-loopback if you mean it$/,
    ],
    [
      'a --context that does not exist: the line lists those that do',
      ['--kubeconfig', 'KC', '--context', 'nope', '--', 'true'],
      /^kubetrail: kubeconfig .*: context "nope" does not exist; its contexts: alice, tina$/,
    ],
    [
      'a command not on PATH',
      ['--kubeconfig', 'KC', '--linger', '0', '--', 'kubectl-missing'],
      /^kubetrail: cannot run kubectl-missing: not found on PATH; give its full path \(kubectl trail: set KUBETRAIL_KUBECTL to its path\)$/,
    ],
    [
      'a state dir that cannot be made (a background kubetrail at a fixed port)',
      ['--kubeconfig', 'KC', '--state-dir', '/dev/null/kubetrail', '--listen', 'PORT', '--', 'true'],
      /^kubetrail: state dir \/dev\/null\/kubetrail: ENOTDIR: not a directory, (mkdir|stat) .* \(pass --state-dir DIR or set KUBETRAIL_STATE_DIR to a directory you can write\) \(KT_ERR_STATE_DIR\)$/,
    ],
    ['no command', ['--kubeconfig', 'KC'], /^kubetrail: no command given: kubetrail \[flags\] -- kubectl get pods$/],
  ])('%s', async (_name, args, message) => {
    const port = `127.0.0.1:${await unusedPort()}`;
    const r = await runKubetrail(
      args.map((a) => (a === 'KC' ? cluster.kubeconfig : a === 'PORT' ? port : a)),
      { env: kubetrailEnv(freshHome()) },
    );
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr.trimEnd()).toMatch(message);
  });

  it('a malformed kubeconfig names the file and line', async () => {
    const bad = join(cluster.dir, 'bad.yaml');
    writeFileSync(bad, 'apiVersion: v1\nclusters:\n  - name: x\n    cluster: {server: "https://a\n');
    const r = await runKubetrail(['--kubeconfig', bad, '--', 'true'], { env: kubetrailEnv(freshHome()) });
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd()).toMatch(new RegExp(`^kubetrail: kubeconfig ${bad}:\\d+: `));
  });

  it('a config file with an unknown key names the file, line and key, and writes nothing', async () => {
    const cfg = join(cluster.dir, 'kubetrail.yaml');
    writeFileSync(cfg, 'quiet: true\nlisten-on: 1\n');
    const home = freshHome();
    const r = await runKubetrail(['--config', cfg, '--kubeconfig', cluster.kubeconfig, '--', 'true'], {
      env: kubetrailEnv(home),
    });
    expect(r.code).toBe(2);
    expect(r.stderr.trimEnd()).toMatch(
      new RegExp(`^kubetrail: config ${cfg}:2: "listen-on" is not a kubetrail option`),
    );
    expect(readdirSync(home)).toEqual([]);
  });
});
