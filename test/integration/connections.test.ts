/**
 * Fidelity of the transport (issue #13): through kubetrail, the apiserver sees the connections kubectl
 * would have opened itself — as many, in the same protocol — and every command pays its own connect and
 * TLS. A counting TCP relay sits in front of the stand-in apiserver (h2 + http/1.1, as kube-apiserver);
 * the same kubectl runs straight at the relay and through kubetrail, and the relay's counts are compared.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadKubeconfig } from '../../src/kubeconfig/load.ts';
import { buildRoutes, rewriteKubeconfig } from '../../src/kubeconfig/rewrite.ts';
import { writeKubeconfig } from '../../src/kubeconfig/write.ts';
import { ensureLocalPki, type LocalPki } from '../../src/pki/local-ca.ts';
import type { StageObserver, UpstreamConnected } from '../../src/proxy/events.ts';
import { startProxy, type RunningProxy } from '../../src/proxy/server.ts';
import { startCountingRelay, type CountingRelay } from '../helpers/counting-relay.ts';
import { expectLifecycle, recordLifecycle } from '../helpers/lifecycle.ts';
import { makePod, startFakeApiserver, type FakeApiserver } from '../helpers/fake-apiserver.ts';
import { kubectl, KUBECTL_DIR, startKubectl, type KubectlOptions } from '../helpers/kubectl.ts';

const VERSIONS = ['1.30', '1.33'] as const;

let dir: string;
let fake: FakeApiserver;
let relay: CountingRelay;
let pki: LocalPki;
let direct: string;
let proxy: RunningProxy;
let through: string;
let shared: RunningProxy;
let throughShared: string;
/** Upstream events by kubectl session (one kubectl run). */
const connected = new Map<string, UpstreamConnected[]>();
/** Every stage event of both proxies, checked against docs/lifecycle.md after each test and once they have closed. */
const lifecycle = recordLifecycle();

function observer(): StageObserver {
  const sessionOf = new Map<string, string>();
  return lifecycle.observer({
    onRequestStart: (s) => {
      sessionOf.set(s.id, s.kubectlSession ?? 'none');
      return undefined;
    },
    onUpstreamConnected: (id, c) => {
      const session = sessionOf.get(id) ?? 'none';
      connected.set(session, [...(connected.get(session) ?? []), c]);
    },
    onResponseStart: () => undefined,
    onRequestEnd: () => undefined,
  });
}

/** A kubeconfig in `d` whose one context (`fake`, user alice in system:masters) reaches `fake` through `relay`. */
async function kubeconfigThrough(fake: FakeApiserver, relay: CountingRelay, d: string): Promise<string> {
  const alice = await fake.issueUser('alice', ['system:masters']);
  writeFileSync(join(d, 'ca.crt'), fake.serverCaPem);
  writeFileSync(join(d, 'alice.crt'), alice.certPem);
  writeFileSync(join(d, 'alice.key'), alice.keyPem);
  const file = join(d, 'kubeconfig');
  writeFileSync(
    file,
    `clusters:\n- name: fake\n  cluster: {server: "https://127.0.0.1:${relay.port}", certificate-authority: ca.crt}\n` +
      `users:\n- name: alice\n  user: {client-certificate: alice.crt, client-key: alice.key}\n` +
      `contexts:\n- name: fake\n  context: {cluster: fake, user: alice, namespace: default}\ncurrent-context: fake\n`,
  );
  return file;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kubetrail-conns-'));
  fake = await startFakeApiserver();
  fake.create(makePod('nowhere', { namespace: 'default', phase: 'Running', nodeName: '' }));
  relay = await startCountingRelay(fake.port);
  direct = await kubeconfigThrough(fake, relay, dir);
  const loaded = loadKubeconfig({ explicitPath: direct, env: {} });
  pki = await ensureLocalPki(join(dir, 'state'));
  proxy = await startProxy({ routes: buildRoutes(loaded), pki, host: '127.0.0.1', port: 0, observer: observer() });
  through = join(dir, 'through.yaml');
  writeKubeconfig(through, rewriteKubeconfig(loaded, { listenUrl: proxy.url, caPem: pki.caPem }));
  shared = await startProxy({
    routes: buildRoutes(loaded),
    pki,
    host: '127.0.0.1',
    port: 0,
    observer: observer(),
    reuseUpstream: true,
  });
  throughShared = join(dir, 'through-shared.yaml');
  writeKubeconfig(throughShared, rewriteKubeconfig(loaded, { listenUrl: shared.url, caPem: pki.caPem }));
});

afterAll(async () => {
  await proxy?.close();
  await shared?.close();
  await relay?.close();
  await fake?.close();
  rmSync(dir, { recursive: true, force: true });
  // close() resolved once every request on the proxies had published its end: none may be missing or come later.
  expectLifecycle(lifecycle.events);
});

afterEach(() => lifecycle.expectSettled());

interface Seen {
  code: number;
  /** The protocol of each connection the apiserver saw, in order. */
  protocols: string[];
}

/** Run one kubectl and report the connections the relay saw for it, once they have all closed. */
async function observe(run: () => Promise<number>): Promise<Seen> {
  await expect.poll(() => relay.open(), { timeout: 10_000 }).toBe(0);
  const before = relay.connections.length;
  const code = await run();
  // kubectl has exited: every connection it opened closes, upstream as well as to kubetrail.
  await expect.poll(() => relay.open(), { timeout: 10_000 }).toBe(0);
  return { code, protocols: relay.connections.slice(before).map((c) => c.protocol) };
}

function opts(version: string, kubeconfig: string, home: string): KubectlOptions {
  return { kubeconfig, home, timeoutMs: 30_000, env: {}, version: version as KubectlOptions['version'] };
}

async function once(version: string, kubeconfig: string, home: string, args: string[]): Promise<number> {
  return (await kubectl(args, opts(version, kubeconfig, home))).code;
}

async function watchOnce(version: string, kubeconfig: string, home: string): Promise<number> {
  const k = startKubectl(['get', 'pods', '-w'], opts(version, kubeconfig, home));
  await k.waitForStdout(/nowhere/, 20_000);
  k.kill('SIGINT');
  return (await k.result).code;
}

describe.each(VERSIONS)('kubectl %s: the apiserver sees the connections kubectl would open', (version) => {
  const kubectlBin = join(KUBECTL_DIR, `kubectl.${version}`);
  const homes = { direct: '', through: '' };

  beforeAll(() => {
    homes.direct = mkdtempSync(join(dir, `home-direct-${version}-`));
    homes.through = mkdtempSync(join(dir, `home-through-${version}-`));
    expect(kubectlBin).toMatch(/kubectl\.1\.\d+$/);
  });

  const cases: [string, (kc: string, home: string) => Promise<number>][] = [
    ['cold discovery + get pods', (kc, home) => once(version, kc, home, ['get', 'pods'])],
    ['warm get pods', (kc, home) => once(version, kc, home, ['get', 'pods'])],
    ['get pods -w', (kc, home) => watchOnce(version, kc, home)],
    [
      'exec on an unscheduled pod (WebSocket, then SPDY)',
      (kc, home) => once(version, kc, home, ['exec', 'nowhere', '--', 'true']),
    ],
    [
      'port-forward on an unscheduled pod',
      (kc, home) => once(version, kc, home, ['port-forward', 'pod/nowhere', '0:80']),
    ],
  ];
  for (const [name, run] of cases) {
    it(name, async () => {
      const d = await observe(() => run(direct, homes.direct));
      const t = await observe(() => run(through, homes.through));
      expect(t.code).toBe(d.code);
      expect(d.protocols.length).toBeGreaterThan(0);
      expect(t.protocols).toEqual(d.protocols);
    });
  }
});

describe('every command pays its own connect and TLS', () => {
  /** The upstream events of the last kubectl run through a proxy. */
  async function runAndConnections(kubeconfig: string, home: string): Promise<UpstreamConnected[]> {
    const before = new Set(connected.keys());
    expect(await once('1.33', kubeconfig, home, ['get', 'pods'])).toBe(0);
    const session = [...connected.keys()].find((k) => !before.has(k));
    return session === undefined ? [] : (connected.get(session) ?? []);
  }

  it('two commands in a row through one kubetrail: the second opens a new upstream connection with its TLS handshake', async () => {
    const home = mkdtempSync(join(dir, 'home-twice-'));
    await runAndConnections(through, home);
    const second = await runAndConnections(through, home);
    const fresh = second.filter((c) => !c.reused);
    expect(fresh).toHaveLength(1);
    expect(fresh[0]?.protocol).toBe('h2');
    expect(fresh[0]?.tlsEnd).toBeGreaterThan(fresh[0]?.connectEnd ?? Infinity);
  });

  it("with --reuse-upstream the second command rides the first one's connection (the opt-in)", async () => {
    const home = mkdtempSync(join(dir, 'home-shared-'));
    await runAndConnections(throughShared, home);
    const second = await runAndConnections(throughShared, home);
    expect(second.length).toBeGreaterThan(0);
    expect(second.filter((c) => !c.reused)).toEqual([]);
  });
});

describe('an apiserver that answers an h2 offer with http/1.1', () => {
  let h1fake: FakeApiserver;
  let h1relay: CountingRelay;
  let h1proxy: RunningProxy;
  let h1direct: string;
  let h1through: string;

  beforeAll(async () => {
    h1fake = await startFakeApiserver({ http2: false });
    h1relay = await startCountingRelay(h1fake.port);
    const d = mkdtempSync(join(dir, 'h1-'));
    h1direct = await kubeconfigThrough(h1fake, h1relay, d);
    const loaded = loadKubeconfig({ explicitPath: h1direct, env: {} });
    h1proxy = await startProxy({ routes: buildRoutes(loaded), pki, host: '127.0.0.1', port: 0 });
    h1through = join(d, 'through.yaml');
    writeKubeconfig(h1through, rewriteKubeconfig(loaded, { listenUrl: h1proxy.url, caPem: pki.caPem }));
  });

  afterAll(async () => {
    await h1proxy?.close();
    await h1relay?.close();
    await h1fake?.close();
  });

  it("kubectl's h2 connection to kubetrail keeps working; the connection kubetrail offered h2 on carries the HTTP/1.1 request", async () => {
    const homes = { direct: mkdtempSync(join(dir, 'h1home-')), through: mkdtempSync(join(dir, 'h1home-')) };
    const run = async (kc: string, home: string): Promise<{ code: number; stdout: string }> => {
      const r = await kubectl(['get', 'pods', '-o', 'name'], { kubeconfig: kc, home, timeoutMs: 30_000 });
      return { code: r.code, stdout: r.stdout.toString() };
    };
    // Cold (discovery), then warm: one request, one connection each way.
    for (const [kc, home] of [
      [h1direct, homes.direct],
      [h1through, homes.through],
    ] as const)
      expect((await run(kc, home)).code).toBe(0);
    await expect.poll(() => h1relay.open(), { timeout: 10_000 }).toBe(0);
    let before = h1relay.connections.length;
    const d = await run(h1direct, homes.direct);
    await expect.poll(() => h1relay.open(), { timeout: 10_000 }).toBe(0);
    const directConns = h1relay.connections.length - before;
    before = h1relay.connections.length;
    const t = await run(h1through, homes.through);
    await expect.poll(() => h1relay.open(), { timeout: 10_000 }).toBe(0);
    expect(t).toEqual(d);
    expect(directConns).toBe(1);
    // kubetrail offered h2 (as kubectl did), was answered http/1.1, and sent the request on that connection.
    expect(h1relay.connections.slice(before).map((c) => c.offered)).toEqual([['h2', 'http/1.1']]);
  });
});
