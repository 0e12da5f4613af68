/**
 * Watches over HTTP/2 upstream with --reuse-upstream (shared connections; by default each kubectl connection
 * has its own, in its own protocol: test/integration/connections.test.ts): kubectl talks HTTP/1.1 to
 * kubetrail, kubetrail sends each watch as a stream on one HTTP/2 connection per (cluster, identity), as
 * client-go does when it talks to the apiserver directly. Driven by plain HTTPS clients against an h2 upstream we control: what a watcher receives must be
 * what the upstream sent, identities must never share a connection, and one stream's failure must never
 * touch another's.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import {
  connect as http2Connect,
  constants as h2c,
  createSecureServer,
  type Http2SecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
  type Settings,
} from 'node:http2';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { loadKubeconfig } from '../../src/kubeconfig/load.ts';
import { buildRoutes } from '../../src/kubeconfig/rewrite.ts';
import { SNI_SUFFIX, type Routes } from '../../src/proxy/routing.ts';
import { createCA, issueCert, type KeyPairPem } from '../../src/pki/certs.ts';
import { ensureLocalPki, type LocalPki } from '../../src/pki/local-ca.ts';
import type { RequestEnd, UpstreamConnected } from '../../src/proxy/events.ts';
import { startProxy, type RunningProxy } from '../../src/proxy/server.ts';
import { expectLifecycle, recordLifecycle } from '../helpers/lifecycle.ts';

interface UpstreamStream {
  url: string;
  httpVersion: string;
  session: number;
  cn: string | undefined;
  authorization: string | undefined;
  rawHeaders: string[];
  res: Http2ServerResponse;
  closed: Promise<number>;
}

let dir: string;
let alice: KeyPairPem;
let bob: KeyPairPem;
let upstream: Http2SecureServer;
let pki: LocalPki;
let routes: Routes;
let proxy: RunningProxy;
const sessions = new Map<Http2Session, number>();
const streams: UpstreamStream[] = [];
const refused = new Set<string>();
const connected: (UpstreamConnected & { id: string })[] = [];
const ended: RequestEnd[] = [];
/** Every stage event of `proxy`, checked against docs/lifecycle.md after each test and once it has closed. */
const lifecycle = recordLifecycle();

function routeId(name: string): string {
  const route = [...routes.clusters.values()].find((r) => r.name === name);
  if (!route) throw new Error(`no cluster ${name}`);
  return route.id;
}

async function startUpstream(settings: { maxConcurrentStreams?: number; maxHeaderListSize?: number }): Promise<number> {
  const ca = await createCA('upstream CA');
  const serving = await issueCert(ca, { commonName: 'apiserver', ipAddresses: ['127.0.0.1'], usage: 'server' });
  alice = await issueCert(ca, { commonName: 'alice', usage: 'client' });
  bob = await issueCert(ca, { commonName: 'bob', usage: 'client' });
  writeFileSync(join(dir, 'ca.pem'), ca.certPem);
  for (const [name, kp] of [
    ['alice', alice],
    ['bob', bob],
  ] as const) {
    writeFileSync(join(dir, `${name}.crt`), kp.certPem);
    writeFileSync(join(dir, `${name}.key`), kp.keyPem);
  }
  upstream = createSecureServer({
    key: serving.keyPem,
    cert: serving.certPem,
    ca: [ca.certPem],
    requestCert: true,
    rejectUnauthorized: false,
    allowHTTP1: true,
    settings,
    maxSessionMemory: 256,
  });
  // The HTTP/1.1 side reads its head limit from the server object: 1 MiB, as the apiserver.
  Object.assign(upstream, { maxHeaderSize: 1 << 20 });
  upstream.on('session', (s: Http2Session) => sessions.set(s, sessions.size));
  upstream.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) => {
    const socket = (req.httpVersion === '2.0' ? req.stream.session?.socket : req.socket) as TLSSocket;
    const peer = socket.getPeerX509Certificate();
    const entry: UpstreamStream = {
      url: req.url,
      httpVersion: req.httpVersion,
      session: req.httpVersion === '2.0' && req.stream.session ? (sessions.get(req.stream.session) ?? -1) : -1,
      cn: peer ? /CN=([^\n]+)/.exec(peer.subject)?.[1] : undefined,
      authorization: req.headers.authorization,
      rawHeaders: req.rawHeaders,
      res,
      closed: new Promise((resolve) =>
        req.httpVersion === '2.0'
          ? req.stream.once('close', () => resolve(req.stream.rstCode ?? 0))
          : res.once('close', () => resolve(0)),
      ),
    };
    streams.push(entry);
    if (req.url.includes('refuse=') && !refused.has(req.url)) {
      refused.add(req.url);
      req.stream.close(h2c.NGHTTP2_REFUSED_STREAM);
      return;
    }
    if (req.url.includes('watch=')) {
      res.writeHead(200, { 'content-type': 'application/json', 'audit-id': `a-${streams.length}` });
      res.write(event(`first-${streams.length}`));
    } else {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}');
    }
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  return (upstream.address() as AddressInfo).port;
}

function event(name: string): string {
  return `{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"${name}","resourceVersion":"7"}}}\n`;
}

interface Watcher {
  status: Promise<number>;
  received: () => string;
  /** Resolves 'end' for a complete response, 'cut' when the connection broke mid-body. */
  done: Promise<'end' | 'cut'>;
  close(): void;
}

function watch(
  user: 'alice' | 'bob' | 'token',
  path = '/api/v1/namespaces/default/pods?watch=true',
  opts: { paused?: boolean; headers?: string[] } = {},
): Watcher {
  const cert = user === 'alice' ? alice : user === 'bob' ? bob : undefined;
  let text = '';
  let settle: (v: 'end' | 'cut') => void = () => undefined;
  const done = new Promise<'end' | 'cut'>((r) => (settle = r));
  let status: (n: number) => void = () => undefined;
  const statusP = new Promise<number>((r) => (status = r));
  const req = httpsRequest(
    {
      host: '127.0.0.1',
      port: proxy.port,
      path: `/c/${routeId('h2')}${path}`,
      ca: pki.caPem,
      servername: `${routeId('h2')}${SNI_SUFFIX}`,
      cert: cert?.certPem,
      key: cert?.keyPem,
      headers: [
        'Host',
        `127.0.0.1:${proxy.port}`,
        ...(user === 'token' ? ['Authorization', 'Bearer t0ken'] : []),
        ...(opts.headers ?? []),
      ] as unknown as Record<string, string>,
      agent: false,
    },
    (res) => {
      status(res.statusCode ?? 0);
      if (opts.paused) {
        // Reads nothing more: like `kubectl get pods -w | less` left unscrolled.
        res.pause();
        res.on('error', () => settle('cut'));
        res.on('close', () => settle('cut'));
        return;
      }
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => settle('end'));
      res.on('aborted', () => settle('cut'));
      res.on('error', () => settle('cut'));
    },
  );
  req.on('error', () => {
    status(0);
    settle('cut');
  });
  req.end();
  return { status: statusP, received: () => text, done, close: () => req.destroy() };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kt-h2-'));
  // Go's HTTP/2 server (the apiserver's) accepts header lists of its MaxHeaderBytes, 1 MiB by default.
  const port = await startUpstream({ maxConcurrentStreams: 3, maxHeaderListSize: (1 << 20) + 4096 });
  writeFileSync(
    join(dir, 'kubeconfig'),
    `clusters:
- name: h2
  cluster: {server: "https://127.0.0.1:${port}", certificate-authority: ca.pem}
users:
- name: alice
  user: {client-certificate: alice.crt, client-key: alice.key}
- name: bob
  user: {client-certificate: bob.crt, client-key: bob.key}
`,
  );
  routes = buildRoutes(loadKubeconfig({ explicitPath: join(dir, 'kubeconfig'), env: {} }));
  pki = await ensureLocalPki(join(dir, 'state'));
  proxy = await startProxy({
    routes,
    pki,
    host: '127.0.0.1',
    port: 0,
    reuseUpstream: true,
    observer: lifecycle.observer({
      onRequestStart: () => undefined,
      onUpstreamConnected: (id, c) => void connected.push({ ...c, id }),
      onResponseStart: () => undefined,
      onRequestEnd: (_id, e) => void ended.push(e),
    }),
  });
});

afterAll(async () => {
  await proxy.close();
  for (const s of sessions.keys()) s.destroy();
  await new Promise((r) => upstream.close(r));
  rmSync(dir, { recursive: true, force: true });
  // close() resolved once every request on the proxy had published its end: none may be missing or come later.
  expectLifecycle(lifecycle.events);
});

let streamsBefore = 0;
beforeEach(() => {
  streamsBefore = streams.length;
});
const mine = (): UpstreamStream[] => streams.slice(streamsBefore);
afterEach(() => lifecycle.expectSettled());

describe('watches over HTTP/2 upstream', () => {
  it("shares one connection among one identity's watches, up to the apiserver's stream limit; each watcher gets its own events byte for byte", async () => {
    const ws = [watch('alice'), watch('alice'), watch('alice')];
    expect(await Promise.all(ws.map((w) => w.status))).toEqual([200, 200, 200]);
    await expect.poll(() => mine().length).toBe(3);
    const up = mine();
    expect(up.map((s) => s.httpVersion)).toEqual(['2.0', '2.0', '2.0']);
    expect(new Set(up.map((s) => s.session)).size).toBe(1);
    expect(up.map((s) => s.cn)).toEqual(['alice', 'alice', 'alice']);
    // Each upstream stream writes a second event: it reaches that stream's watcher and no other.
    up.forEach((s, i) => s.res.write(event(`second-${i}`)));
    for (const w of ws)
      await expect.poll(() => w.received()).toMatch(/^\{"type":"ADDED".*"first-\d+".*\n\{"type":"ADDED".*"second-\d"/s);
    const byWatcher = ws.map((w) => w.received());
    const bySecond = up.map((_, i) => byWatcher.filter((t) => t.includes(`"second-${i}"`)).length);
    expect(bySecond).toEqual([1, 1, 1]);

    // A fourth watch is over the limit of 3 the apiserver announced: a second connection.
    const fourth = watch('alice');
    expect(await fourth.status).toBe(200);
    await expect.poll(() => mine().length).toBe(4);
    expect(mine()[3]?.session).not.toBe(up[0]?.session);

    const publish = connected.slice(-4);
    expect(publish.every((c) => c.protocol === 'h2')).toBe(true);
    for (const w of [...ws, fourth]) w.close();
    await Promise.all(mine().map((s) => s.closed));
  });

  it("never lends alice's connection to bob or to a bearer-token request", async () => {
    const a = watch('alice');
    const b = watch('bob');
    const t = watch('token');
    expect(await Promise.all([a.status, b.status, t.status])).toEqual([200, 200, 200]);
    await expect.poll(() => mine().length).toBe(3);
    const byCn = new Map(mine().map((s) => [s.cn ?? `token:${s.authorization}`, s.session]));
    expect([...byCn.keys()].sort()).toEqual(['alice', 'bob', 'token:Bearer t0ken']);
    expect(new Set(byCn.values()).size).toBe(3);
    for (const w of [a, b, t]) w.close();
    await Promise.all(mine().map((s) => s.closed));
  });

  it('sends everything but watches over HTTP/1.1', async () => {
    const w = watch('alice', '/api/v1/namespaces/default/pods?limit=500');
    expect(await w.status).toBe(200);
    expect(await w.done).toBe('end');
    expect(mine()[0]?.httpVersion).toBe('1.1');
  });

  it('kubectl goes away: its stream is cancelled upstream at once; the connection and the other watches stay', async () => {
    const stay = watch('alice');
    const leave = watch('alice');
    await Promise.all([stay.status, leave.status]);
    await expect.poll(() => mine().length).toBe(2);
    const [upStay, upLeave] = mine() as [UpstreamStream, UpstreamStream];
    const t0 = performance.now();
    leave.close();
    // Which upstream stream belongs to `leave` is not known up front: the one that closes.
    const rst = await Promise.race([
      upStay.closed.then((c) => ({ c, s: upStay })),
      upLeave.closed.then((c) => ({ c, s: upLeave })),
    ]);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(rst.c).toBe(h2c.NGHTTP2_CANCEL);
    const other = rst.s === upStay ? upLeave : upStay;
    other.res.write(event('still-here'));
    await expect.poll(() => stay.received()).toContain('"still-here"');
    await expect.poll(() => ended.at(-1)?.outcome).toBe('client_abort');
    stay.close();
    await other.closed;
  });

  it("the apiserver resets one watch's stream: that watcher's connection is cut, never ended cleanly; the others keep flowing", async () => {
    const endedBefore = ended.length;
    const a = watch('alice');
    const b = watch('alice');
    await Promise.all([a.status, b.status]);
    await expect.poll(() => mine().length).toBe(2);
    const [first, second] = mine() as [UpstreamStream, UpstreamStream];
    await expect.poll(() => a.received().length > 0 && b.received().length > 0).toBe(true);
    const whoIsFirst = a.received().includes(`first-${streams.indexOf(first) + 1}"`) ? a : b;
    const other = whoIsFirst === a ? b : a;
    first.res.stream.close(h2c.NGHTTP2_INTERNAL_ERROR);
    expect(await whoIsFirst.done).toBe('cut');
    second.res.write(event('after-reset'));
    await expect.poll(() => other.received()).toContain('"after-reset"');
    await expect.poll(() => ended.slice(endedBefore).map((e) => e.outcome)).toContain('upstream_error');
    other.close();
    await second.closed;
  });

  it('a watcher that stops reading holds back only its own stream: the others on the connection keep flowing', async () => {
    const stalled = watch('alice', '/api/v1/namespaces/default/pods?watch=true', { paused: true });
    const live = watch('alice');
    await Promise.all([stalled.status, live.status]);
    await expect.poll(() => mine().length).toBe(2);
    const [first, second] = mine() as [UpstreamStream, UpstreamStream];
    await expect.poll(() => live.received().length).toBeGreaterThan(0);
    const upStalled = live.received().includes(`first-${streams.indexOf(first) + 1}"`) ? second : first;
    const upLive = upStalled === first ? second : first;
    // 32 MiB for the watcher that reads nothing: more than its stream window (4 MiB) and the socket buffers
    // between kubetrail and it together.
    const filler = event('x'.repeat(64 * 1024));
    for (let i = 0; i < 512; i++) upStalled.res.write(filler);
    // Flow control holds the rest at the apiserver: kubetrail stopped granting that stream credit, so it
    // buffers at most the stream's window for a watcher that reads nothing.
    await new Promise((r) => setTimeout(r, 300));
    expect(upStalled.res.stream.writableLength).toBeGreaterThan(16 << 20);
    for (let i = 0; i < 5; i++) upLive.res.write(event(`flowing-${i}`));
    await expect.poll(() => live.received(), { timeout: 3000 }).toContain('"flowing-4"');
    stalled.close();
    live.close();
    await Promise.all([first.closed, second.closed]);
  });

  it('a stream the apiserver refused (REFUSED_STREAM: never processed) is sent again on a new connection', async () => {
    const connectedBefore = connected.length;
    const w = watch('alice', '/api/v1/namespaces/default/pods?watch=true&refuse=1');
    expect(await w.status).toBe(200);
    await expect.poll(() => mine().length).toBe(2);
    const [refusedOn, servedOn] = mine().map((s) => s.session);
    expect(servedOn).not.toBe(refusedOn);
    await expect.poll(() => w.received()).toContain('"first-');
    // One `upstream` event for the request: the attempt that carried it, not the refused one.
    const events = connected.slice(connectedBefore);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ protocol: 'h2' });
    w.close();
    await mine()[1]?.closed;
  });

  it('a head HTTP/2 might not carry goes out on HTTP/1.1 as sent: a 170 kB selector, a repeated single-value header', async () => {
    const selector = `app in (${Array.from({ length: 20_000 }, (_, i) => `v${i}`).join(',')})`;
    const big = watch(
      'alice',
      `/api/v1/namespaces/default/pods?watch=true&labelSelector=${encodeURIComponent(selector)}`,
    );
    expect(await big.status).toBe(200);
    await expect.poll(() => mine().length).toBe(1);
    expect(mine()[0]?.httpVersion).toBe('1.1');
    expect(mine()[0]?.url.length).toBeGreaterThan(150_000);

    const twice = watch('alice', '/api/v1/namespaces/default/pods?watch=true', {
      headers: ['User-Agent', 'kubectl/a', 'User-Agent', 'kubectl/b'],
    });
    expect(await twice.status).toBe(200);
    await expect.poll(() => mine().length).toBe(2);
    const second = mine()[1]!;
    expect(second.httpVersion).toBe('1.1');
    const agents: string[] = [];
    for (let i = 0; i < second.rawHeaders.length; i += 2)
      if (second.rawHeaders[i]?.toLowerCase() === 'user-agent') agents.push(second.rawHeaders[i + 1] ?? '');
    expect(agents).toEqual(['kubectl/a', 'kubectl/b']);
    // The h2 connection was not retired for it: the next two watches share one.
    const third = watch('alice');
    const fourth = watch('alice');
    expect(await Promise.all([third.status, fourth.status])).toEqual([200, 200]);
    await expect.poll(() => mine().length).toBe(4);
    expect(mine()[2]?.httpVersion).toBe('2.0');
    expect(mine()[3]?.session).toBe(mine()[2]?.session);
    for (const w of [big, twice, third, fourth]) w.close();
    await Promise.all(mine().map((s) => s.closed));
  });

  it('the connection dies: its watches are cut; the next watch opens a new connection', async () => {
    const a = watch('alice');
    expect(await a.status).toBe(200);
    await expect.poll(() => mine().length).toBe(1);
    const dead = mine()[0]!.session;
    const session = [...sessions].find(([, n]) => n === dead)?.[0];
    session?.destroy();
    expect(await a.done).toBe('cut');
    const b = watch('alice');
    expect(await b.status).toBe(200);
    await expect.poll(() => mine().length).toBe(2);
    expect(mine()[1]?.session).not.toBe(dead);
    b.close();
    await mine()[1]?.closed;
  });
});

describe("kubectl's own HTTP/2 connection (default mode) gets the apiserver's stream limit", () => {
  it('advertises 100 (kube-apiserver’s default) until the apiserver answered, then the apiserver’s own (3 here)', async () => {
    const own = await startProxy({ routes, pki, host: '127.0.0.1', port: 0 });
    const client = http2Connect(`https://127.0.0.1:${own.port}`, {
      ca: pki.caPem,
      servername: `${routeId('h2')}${SNI_SUFFIX}`,
      cert: alice.certPem,
      key: alice.keyPem,
    });
    try {
      client.on('error', () => undefined);
      const [first] = (await once(client, 'remoteSettings')) as [Settings];
      expect(first.maxConcurrentStreams).toBe(100);
      const next = once(client, 'remoteSettings') as Promise<[Settings]>;
      const stream = client.request({ ':path': `/c/${routeId('h2')}/api/v1/namespaces/default/pods` });
      stream.resume();
      await once(stream, 'end');
      const [settings] = await next;
      expect(settings.maxConcurrentStreams).toBe(3);
      expect(client.remoteSettings.maxConcurrentStreams).toBe(3);
    } finally {
      client.destroy();
      await own.close();
    }
  });
});
