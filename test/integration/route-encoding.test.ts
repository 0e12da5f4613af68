/**
 * How the rewritten kubeconfig names a cluster (#19 item 2): on Linux with the default 127.0.0.1 listener,
 * a loopback address per route on kubetrail's port and no path of kubetrail's own in the server URL (the
 * route is in SNI). With the real kubectl: `kubectl proxy` prints what it prints direct, in wrap and in
 * start mode (a `/c/<route>` path made it warn `Your kube context contains a server path`), and each
 * cluster keeps a discovery cache of its own. The addresses route nothing by themselves, and share the
 * listener's connection cap.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { freshHome, kubetrailArgv, kubetrailEnv, proxied, type CompareOptions } from '../helpers/compare.ts';
import { makeConfigMap, startFakeApiserver, type FakeApiserver } from '../helpers/fake-apiserver.ts';
import { KUBECTL_DIR, startKubectl, type KubectlVersion } from '../helpers/kubectl.ts';
import { startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp-receiver.ts';
import { unusedPort } from '../helpers/ports.ts';
import { KUBETRAIL_BIN } from '../helpers/run-kubetrail.ts';
import { expectLifecycle, recordLifecycle } from '../helpers/lifecycle.ts';
import { loadKubeconfig } from '../../src/kubeconfig/load.ts';
import { buildRoutes } from '../../src/kubeconfig/rewrite.ts';
import { ensureLocalPki } from '../../src/pki/local-ca.ts';
import { routeAddress, routeHost } from '../../src/proxy/routing.ts';
import { startProxy, type RunningProxy } from '../../src/proxy/server.ts';

const VERSIONS = ['1.30', '1.33'] as const;
type Version = (typeof VERSIONS)[number];
/** The helpers' kubectl path is `kubectl.<version>` (1.30 is installed beside 1.32 and 1.33). */
const asKubectl = (v: Version): KubectlVersion => v as KubectlVersion;

let fake: FakeApiserver;
let other: FakeApiserver;
let receiver: OtlpReceiver;
let dir: string;
let kubeconfig: string;
let twoClusters: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kt-routes-'));
  receiver = await startOtlpReceiver();
  const tokens = { 'tina-token': { user: 'tina', groups: ['dev'] } };
  fake = await startFakeApiserver({ tokens });
  // Another cluster, without CronJobs: served the first one's discovery, kubectl would print another error.
  other = await startFakeApiserver({ version: '1.32', tokens });
  fake.create(makeConfigMap('settings', { mode: 'fast' }));
  kubeconfig = await fake.writeKubeconfig(join(dir, 'one'), { users: [{ name: 'tina', token: 'tina-token' }] });
  const a = await fake.writeKubeconfig(join(dir, 'a'), {
    clusterName: 'east',
    inlineCa: true,
    users: [{ name: 'tina', token: 'tina-token' }],
    contexts: [{ name: 'east', user: 'tina' }],
  });
  const b = await other.writeKubeconfig(join(dir, 'b'), {
    clusterName: 'west',
    inlineCa: true,
    users: [{ name: 'tina-w', token: 'tina-token' }],
    contexts: [{ name: 'west', user: 'tina-w' }],
  });
  const [ka, kb] = [a, b].map((f) => parse(readFileSync(f, 'utf8')) as Record<string, unknown[]>);
  for (const k of ['clusters', 'users', 'contexts']) ka![k] = [...(ka![k] ?? []), ...(kb![k] ?? [])];
  twoClusters = join(dir, 'two.yaml');
  writeFileSync(twoClusters, stringify(ka), { mode: 0o600 });
});

afterAll(async () => {
  await fake.close();
  await other.close();
  await receiver.close();
  rmSync(dir, { recursive: true, force: true });
});

/** klog's line header (time, pid) differs run to run by nature. */
function klogless(stderr: string): string {
  return stderr.replace(/^([EWIF])\d{4} \d\d:\d\d:\d\d\.\d{6}\s+\d+ /gm, '$1 ');
}

interface ProxyRun {
  stdout: string;
  stderr: string;
  code: number;
  body: unknown;
}

/**
 * Run a `kubectl proxy --port=<port>` (started by `spawnIt` in a process group of its own), read one object
 * through it, then Ctrl-C it as a terminal would: SIGINT to the whole group.
 */
async function proxyRun(port: number, spawnIt: () => ChildProcess): Promise<ProxyRun> {
  const child = spawnIt();
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number>((resolve) =>
    child.on('close', (code, signal) => resolve(code ?? 128 + (signal === 'SIGINT' ? 2 : 0))),
  );
  try {
    await expect.poll(() => stdout, { timeout: 20_000 }).toContain('Starting to serve');
    const body: unknown = await (
      await fetch(`http://127.0.0.1:${port}/api/v1/namespaces/default/configmaps/settings`)
    ).json();
    process.kill(-(child.pid ?? 0), 'SIGINT');
    return { stdout, stderr, code: await exited, body };
  } finally {
    if (child.exitCode === null && child.signalCode === null) process.kill(-(child.pid ?? 0), 'SIGKILL');
  }
}

function directProxy(version: Version, port: number, home: string): ChildProcess {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, KUBECONFIG: kubeconfig };
  return spawn(join(KUBECTL_DIR, `kubectl.${version}`), ['proxy', `--port=${port}`], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
}

function expectSame(through: ProxyRun, direct: ProxyRun): void {
  expect(through.body).toEqual(direct.body);
  expect(through.stdout).toBe(direct.stdout);
  expect(klogless(through.stderr)).toBe(klogless(direct.stderr));
  expect(through.stderr).not.toMatch(/server path/);
  expect(through.code).toBe(direct.code);
}

describe.each(VERSIONS)('kubectl %s proxy', (version) => {
  it('through `kubetrail --` prints exactly what direct prints (no server-path warning) and serves the same answer', async () => {
    const port = await unusedPort();
    const home = freshHome();
    try {
      const direct = await proxyRun(port, () => directProxy(version, port, home));
      // The same port, free again, so the line kubectl prints is the same.
      const opts: CompareOptions = { kubeconfig, version: asKubectl(version), otlpEndpoint: receiver.url };
      const through = await proxyRun(port, () =>
        spawn(process.execPath, [KUBETRAIL_BIN, ...kubetrailArgv(opts, ['proxy', `--port=${port}`])], {
          env: kubetrailEnv(freshHome()),
          stdio: ['ignore', 'pipe', 'pipe'],
          detached: true,
        }),
      );
      expectSame(through, direct);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('through `kubetrail start` prints exactly what direct prints', async () => {
    const port = await unusedPort();
    const home = freshHome();
    const start = spawn(
      process.execPath,
      [KUBETRAIL_BIN, 'start', '--kubeconfig', kubeconfig, '--listen', `127.0.0.1:${await unusedPort()}`, '--quiet'],
      {
        env: { ...kubetrailEnv(home), OTEL_SDK_DISABLED: 'true' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let exported = '';
    start.stdout.on('data', (c: Buffer) => (exported += c.toString()));
    try {
      await expect.poll(() => exported, { timeout: 15_000 }).toMatch(/^export KUBECONFIG=\S+\.yaml$/m);
      const through = /^export KUBECONFIG=(\S+)$/m.exec(exported)?.[1] ?? '';
      const direct = await proxyRun(port, () => directProxy(version, port, home));
      const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, KUBECONFIG: through };
      const proxiedRun = await proxyRun(port, () =>
        spawn(join(KUBECTL_DIR, `kubectl.${version}`), ['proxy', `--port=${port}`], {
          env,
          stdio: ['ignore', 'pipe', 'pipe'],
          detached: true,
        }),
      );
      expectSame(proxiedRun, direct);
    } finally {
      start.kill('SIGTERM');
      await new Promise((r) => start.on('close', r));
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe('two clusters through one kubetrail', () => {
  it('each keeps a discovery cache of its own, keyed by an address of its own, and answers as direct', async () => {
    const home = freshHome();
    // One port for the three runs, as a user's default port is, served in-process (--linger 0).
    const port = await unusedPort();
    try {
      for (const ctx of ['east', 'west', 'east']) {
        const r = await proxied(['--context', ctx, 'get', 'cm'], {
          kubeconfig: twoClusters,
          version: '1.33',
          otlpEndpoint: receiver.url,
          home,
          kubetrailArgs: ['--quiet', '--linger', '0', '--listen', `127.0.0.1:${port}`],
        });
        expect(r.code, r.stderr).toBe(0);
      }
      // The cluster without CronJobs says so as direct: its own discovery, not the other cluster's.
      const cj = await proxied(['--context', 'west', 'get', 'cj'], {
        kubeconfig: twoClusters,
        version: '1.33',
        otlpEndpoint: receiver.url,
        home,
        kubetrailArgs: ['--quiet', '--linger', '0', '--listen', `127.0.0.1:${port}`],
      });
      const direct = await startKubectl(['--context', 'west', 'get', 'cj'], {
        kubeconfig: twoClusters,
        version: '1.33',
      }).result;
      expect([cj.code, cj.stderr]).toEqual([direct.code, direct.stderr]);
      const dirs = readdirSync(join(home, '.kube', 'cache', 'discovery')).sort();
      const ids = [...buildRoutes(loadKubeconfig({ explicitPath: twoClusters, env: {} })).clusters.keys()];
      expect(dirs).toEqual(ids.map((id) => `${routeAddress(id)}_${port}`).sort());
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe("a route's address", () => {
  let proxy: RunningProxy;
  let caPem: string;
  let id: string;
  const notices: string[] = [];
  /** The proxy's stage events (it had no observer before), checked against docs/lifecycle.md. */
  const lifecycle = recordLifecycle();

  beforeAll(async () => {
    const routes = buildRoutes(loadKubeconfig({ explicitPath: kubeconfig, env: {} }));
    id = [...routes.clusters.keys()][0] ?? '';
    const pki = await ensureLocalPki(join(dir, 'pki'));
    caPem = pki.caPem;
    proxy = await startProxy({
      routes,
      pki,
      host: '127.0.0.1',
      port: 0,
      limits: { maxConnections: 4 },
      onNotice: (l) => notices.push(l),
      observer: lifecycle.observer(),
    });
  });
  afterAll(async () => {
    await proxy.close();
    // close() resolved once every request on the proxy had published its end: none may be missing or come later.
    expectLifecycle(lifecycle.events);
  });
  afterEach(() => lifecycle.expectSettled());

  const head = (host: string, servername: string): Promise<{ line: string; socket: TLSSocket }> =>
    new Promise((resolve, reject) => {
      const s = tlsConnect({ host, port: proxy.port, ca: caPem, servername, ALPNProtocols: ['http/1.1'] }, () =>
        s.write('GET /version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tina-token\r\n\r\n'),
      );
      let got = '';
      s.on('data', (c: Buffer) => {
        got += c.toString('latin1');
        if (got.includes('\r\n\r\n')) resolve({ line: got.split('\r\n', 1)[0] ?? '', socket: s });
      });
      s.on('error', reject);
    });

  it('routes nothing by itself: a caller must name the route in SNI, as on 127.0.0.1', async () => {
    const addr = routeAddress(id);
    const named = await head(addr, routeHost(id));
    expect(named.line).toBe('HTTP/1.1 200 OK');
    const unnamed = await head(addr, 'localhost');
    expect(unnamed.line).toBe('HTTP/1.1 404 Not Found');
    for (const s of [named.socket, unnamed.socket]) s.destroy();
    // Only the routes' addresses are listened on, nothing else under 127/8.
    await expect(
      new Promise((resolve, reject) => netConnect(proxy.port, '127.9.9.9').on('connect', resolve).on('error', reject)),
    ).rejects.toThrow(/ECONNREFUSED/);
  });

  it("shares the listener's connection cap: at 4 open in all, a fifth is closed on either address", async () => {
    notices.length = 0;
    const held = await Promise.all([
      head('127.0.0.1', routeHost(id)),
      head(routeAddress(id), routeHost(id)),
      head(routeAddress(id), routeHost(id)),
      head('127.0.0.1', routeHost(id)),
    ]);
    for (const host of [routeAddress(id), '127.0.0.1']) {
      await expect(head(host, routeHost(id))).rejects.toThrow();
    }
    expect(notices).toHaveLength(1);
    for (const h of held) h.socket.destroy();
    await expect
      .poll(
        async () =>
          await head(routeAddress(id), routeHost(id))
            .then((h) => (h.socket.destroy(), h.line))
            .catch(() => 'closed'),
        { timeout: 5_000 },
      )
      .toBe('HTTP/1.1 200 OK');
  });
});
