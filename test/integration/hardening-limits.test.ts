/**
 * Hardening (issue #15 item 8), the bounds one by one, with short limits so that each is seen to act: a
 * connection that never finishes TLS, one that never sends a request, an idle keep-alive connection and an
 * idle HTTP/2 connection are closed; a quiet watch (HTTP/1.1 and HTTP/2) and an exec tunnel, idle far
 * longer than those limits, are not; at the connection cap new connections are closed, open ones kept,
 * and one line says so. Real TLS with per-run certificates, the stand-in apiserver, an in-process proxy.
 * The flood with its RSS figures is hardening-flood.test.ts.
 */
import { connect as h2Connect } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadKubeconfig } from '../../src/kubeconfig/load.ts';
import { buildRoutes } from '../../src/kubeconfig/rewrite.ts';
import { ensureLocalPki } from '../../src/pki/local-ca.ts';
import { SNI_SUFFIX, type Routes } from '../../src/proxy/routing.ts';
import { startProxy, type ConnectionLimits, type RunningProxy } from '../../src/proxy/server.ts';
import { makePod } from '../helpers/fake-apiserver.ts';
import { withFakeCluster } from '../helpers/fake-cluster.ts';

const TOKEN = 'kt-limits-token';
const LIMITS: ConnectionLimits = { maxConnections: 8, handshakeMs: 400, firstRequestMs: 600, idleMs: 800 };
/** Longer than every limit above, with room for a loaded machine. */
const LONGER = 2500;

const cluster = withFakeCluster({
  prefix: 'kt-limits-',
  apiserver: { tokens: { [TOKEN]: { user: 'limits' } } },
  kubeconfig: { users: [{ name: 'u', token: TOKEN }] },
  seed: (fake) => void fake.create(makePod('web-0')),
});
let routes: Routes;
let proxy: RunningProxy;
let caPem: string;
const notices: string[] = [];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  routes = buildRoutes(loadKubeconfig({ explicitPath: cluster.kubeconfig, env: {} }));
  const pki = await ensureLocalPki(join(cluster.dir, 'state'));
  caPem = pki.caPem;
  proxy = await startProxy({
    routes,
    pki,
    host: '127.0.0.1',
    port: 0,
    limits: LIMITS,
    onNotice: (l) => notices.push(l),
  });
});

afterAll(async () => {
  await proxy.close();
});

function routeId(): string {
  const id = [...routes.clusters.keys()][0];
  if (id === undefined) throw new Error('no route');
  return id;
}

function tls(alpn: string[] = ['http/1.1']): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect(
      { host: '127.0.0.1', port: proxy.port, ca: caPem, servername: `${routeId()}${SNI_SUFFIX}`, ALPNProtocols: alpn },
      () => resolve(s),
    );
    s.once('error', reject);
  });
}

function raw(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(proxy.port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves with how long the socket stayed open (kubetrail closed it), or undefined when it was still open after `ms`. */
function closedWithin(s: Socket, ms: number): Promise<number | undefined> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    if (s.closed) return resolve(0);
    const timer = setTimeout(() => resolve(undefined), ms);
    s.on('error', () => undefined);
    s.once('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - t0);
    });
  });
}

function head(path: string, extra = ''): string {
  return `GET /c/${routeId()}${path} HTTP/1.1\r\nHost: kubetrail\r\nAuthorization: Bearer ${TOKEN}\r\n${extra}\r\n`;
}

/** Whether `ok` came true within `ms` (polled). */
async function until(ok: () => boolean | Promise<boolean>, ms = LONGER): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

/** Connections kubetrail's listener holds open. */
function openConnections(): Promise<number> {
  return new Promise((resolve, reject) => proxy.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
}

/** Everything the socket receives, as text. */
function received(s: Socket): () => string {
  let got = '';
  s.on('data', (c: Buffer) => (got += c.toString('latin1')));
  return () => got;
}

describe('what a connection can hold, and for how long (item 8)', () => {
  it('a connection that never finishes TLS is closed after the handshake limit', async () => {
    const s = await raw();
    const closed = await closedWithin(s, LONGER);
    expect(closed).toBeDefined();
    expect(closed).toBeGreaterThanOrEqual(LIMITS.handshakeMs - 50);
  });

  it('a TLS connection that never sends a request is closed (HTTP/1.1: a 408 as from the apiserver; HTTP/2: a GOAWAY)', async () => {
    const h1 = await tls();
    const got = received(h1);
    expect(await closedWithin(h1, LONGER)).toBeDefined();
    expect(got()).toMatch(/^HTTP\/1\.1 408 /);
    // A client that does not even read the GOAWAY (nor the FIN after it) is closed all the same: on
    // kubetrail's side, which is all that kubetrail can count.
    expect(await until(async () => (await openConnections()) === 0)).toBe(true);
    const h2 = await tls(['h2']);
    h2.on('error', () => undefined);
    expect(h2.alpnProtocol).toBe('h2');
    expect(await openConnections()).toBe(1);
    expect(await until(async () => (await openConnections()) === 0)).toBe(true);
    h2.destroy();
  });

  it('an idle keep-alive connection (HTTP/1.1) and an HTTP/2 connection with no stream are closed after the idle limit', async () => {
    const h1 = await tls();
    const got = received(h1);
    h1.write(head('/version'));
    expect(await until(() => /^HTTP\/1\.1 200 /.test(got())), got()).toBe(true);
    expect(await closedWithin(h1, LONGER)).toBeDefined();

    const session = h2Connect(`https://127.0.0.1:${proxy.port}`, {
      ca: caPem,
      servername: `${routeId()}${SNI_SUFFIX}`,
    });
    session.on('error', () => undefined);
    const status = await new Promise<number>((resolve, reject) => {
      const req = session.request({ ':path': `/c/${routeId()}/version`, authorization: `Bearer ${TOKEN}` });
      req.on('response', (h) => resolve(Number(h[':status'])));
      req.on('error', reject);
      req.resume();
      req.end();
    });
    expect(status).toBe(200);
    const gone = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), LONGER);
      session.once('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    expect(gone).toBe(true);
  });

  it('quiet watches (HTTP/1.1 and HTTP/2) and an exec tunnel outlive every limit, and still carry bytes', async () => {
    // HTTP/1.1 watch.
    const w1 = await tls();
    const got1 = received(w1);
    w1.write(head('/api/v1/namespaces/default/pods?watch=1'));
    // HTTP/2 watch.
    const session = h2Connect(`https://127.0.0.1:${proxy.port}`, {
      ca: caPem,
      servername: `${routeId()}${SNI_SUFFIX}`,
    });
    session.on('error', () => undefined);
    let got2 = '';
    const w2 = session.request({
      ':path': `/c/${routeId()}/api/v1/namespaces/default/pods?watch=1`,
      authorization: `Bearer ${TOKEN}`,
    });
    w2.on('data', (c: Buffer) => (got2 += c.toString()));
    w2.on('error', () => undefined);
    // An exec tunnel (WebSocket upgrade), idle once up.
    const ex = await tls();
    const gotEx = received(ex);
    ex.write(
      head(
        '/api/v1/namespaces/default/pods/web-0/exec?command=cat&stdin=true&stdout=true',
        'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n',
      ),
    );
    await sleep(LONGER);
    expect(gotEx()).toMatch(/^HTTP\/1\.1 101 /);
    expect(w1.closed || ex.closed || session.closed).toBe(false);
    expect(gotEx()).not.toContain('408');
    cluster.fake.create(makePod('web-late'));
    expect(await until(() => got1().includes('web-late') && got2.includes('web-late'))).toBe(true);
    w1.destroy();
    ex.destroy();
    session.destroy();
  });

  it('at the cap, new connections are closed and open ones kept; one line says so', async () => {
    notices.length = 0;
    const held: TLSSocket[] = [];
    for (let i = 0; i < LIMITS.maxConnections; i++) {
      const s = await tls();
      s.write(head('/api/v1/namespaces/default/pods?watch=1'));
      held.push(s);
    }
    const refused = await Promise.allSettled(Array.from({ length: 5 }, () => tls()));
    for (const r of refused) {
      if (r.status === 'fulfilled') expect(await closedWithin(r.value, 1000)).toBeDefined();
    }
    expect(held.every((s) => !s.closed)).toBe(true);
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatch(/^kubetrail: 8 connections open, its limit: new connections are closed until some end/);
    // Once one ends, a new connection is served again.
    held.pop()?.destroy();
    await sleep(100);
    const again = await tls();
    const got = received(again);
    again.write(head('/version'));
    expect(await until(() => /^HTTP\/1\.1 200 /.test(got())), got()).toBe(true);
    for (const s of [...held, again]) s.destroy();
  });
});
