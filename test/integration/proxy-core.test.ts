/**
 * The forwarding path, driven by plain HTTPS clients against an upstream we control: what arrives upstream
 * and what comes back must be exactly what was sent, and identities must never be lent.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest, createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { connect as http2Connect } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadKubeconfig } from '../../src/kubeconfig/load.ts';
import { buildRoutes } from '../../src/kubeconfig/rewrite.ts';
import { SNI_SUFFIX, taggedServerName, type Routes } from '../../src/proxy/routing.ts';
import { createCA, issueCert, type KeyPairPem } from '../../src/pki/certs.ts';
import { ensureLocalPki, type LocalPki } from '../../src/pki/local-ca.ts';
import type { RequestEnd, RequestProgress, RequestStart, StageObserver } from '../../src/proxy/events.ts';
import { startProxy, type RunningProxy } from '../../src/proxy/server.ts';
import { expectLifecycle, recordLifecycle, type LifecycleEvent } from '../helpers/lifecycle.ts';

interface Seen {
  method: string;
  url: string;
  rawHeaders: string[];
  body: Buffer;
  clientCN: string | undefined;
  remotePort: number;
}

let dir: string;
let upstreamCa: KeyPairPem;
let alice: KeyPairPem;
let bob: KeyPairPem;
let impostor: KeyPairPem;
let upstream: Server;
let upstreamPort: number;
let wrongCaUpstream: Server;
let wrongCaPort: number;
let pki: LocalPki;
let routes: Routes;
/** The route id kubetrail gave the test kubeconfig's cluster of this name. */
function routeId(name: string): string {
  const route = [...routes.clusters.values()].find((r) => r.name === name);
  if (!route) throw new Error(`no cluster ${name}`);
  return route.id;
}
let proxy: RunningProxy;
/** The same routes with --reuse-upstream. */
let sharedProxy: RunningProxy;
const seen: Seen[] = [];
const ended: RequestEnd[] = [];
const started: RequestStart[] = [];
const progressed: { id: string; ev: RequestProgress }[] = [];
/** Every stage event of `proxy`, checked against docs/lifecycle.md after each test and once it has closed. */
const lifecycle = recordLifecycle();
let handler: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void = (_req, res) => res.end('ok');
let upgradeHandler: (req: IncomingMessage, socket: Socket) => void = (_req, socket) => socket.destroy();

function recordingObserver(): StageObserver {
  return {
    onRequestStart: (s) => void started.push(s),
    upstreamHeaders: () => ({ 'X-Added-By-Observer': 'yes' }),
    onUpstreamConnected: () => undefined,
    onResponseStart: () => undefined,
    onRequestEnd: (_id, e) => void ended.push(e),
    onProgress: (id, ev) => void progressed.push({ id, ev }),
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kt-core-'));
  upstreamCa = await createCA('upstream CA');
  const serving = await issueCert(upstreamCa, {
    commonName: 'apiserver',
    ipAddresses: ['127.0.0.1'],
    dnsNames: ['kubernetes.internal'],
    usage: 'server',
  });
  alice = await issueCert(upstreamCa, { commonName: 'alice', organizations: ['dev'], usage: 'client' });
  bob = await issueCert(upstreamCa, { commonName: 'bob', usage: 'client' });
  // Same subject as alice, different CA: must never be treated as alice.
  impostor = await issueCert(await createCA('evil CA'), {
    commonName: 'alice',
    organizations: ['dev'],
    usage: 'client',
  });

  upstream = createServer(
    { key: serving.keyPem, cert: serving.certPem, requestCert: true, rejectUnauthorized: false },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const peer = (req.socket as TLSSocket).getPeerX509Certificate();
        const body = Buffer.concat(chunks);
        seen.push({
          method: req.method ?? '',
          url: req.url ?? '',
          rawHeaders: req.rawHeaders,
          body,
          clientCN: peer ? /CN=([^\n]+)/.exec(peer.subject)?.[1] : undefined,
          remotePort: req.socket.remotePort ?? 0,
        });
        handler(req, res, body);
      });
    },
  );
  upstream.on('upgrade', (req: IncomingMessage, socket: Socket) => upgradeHandler(req, socket));
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamPort = (upstream.address() as AddressInfo).port;

  const otherCa = await createCA('some other CA');
  const otherServing = await issueCert(otherCa, { commonName: 'x', ipAddresses: ['127.0.0.1'], usage: 'server' });
  wrongCaUpstream = createServer({ key: otherServing.keyPem, cert: otherServing.certPem }, (_req, res) =>
    res.end('must never be reached'),
  );
  await new Promise<void>((r) => wrongCaUpstream.listen(0, '127.0.0.1', r));
  wrongCaPort = (wrongCaUpstream.address() as AddressInfo).port;

  writeFileSync(join(dir, 'ca.pem'), upstreamCa.certPem);
  writeFileSync(join(dir, 'alice.crt'), alice.certPem);
  writeFileSync(join(dir, 'alice.key'), alice.keyPem);
  writeFileSync(join(dir, 'bob.crt'), bob.certPem);
  writeFileSync(join(dir, 'bob.key'), bob.keyPem);
  writeFileSync(
    join(dir, 'kubeconfig'),
    `clusters:
- name: main
  cluster: {server: "https://127.0.0.1:${upstreamPort}", certificate-authority: ca.pem}
- name: prefixed
  cluster: {server: "https://127.0.0.1:${upstreamPort}/some/prefix", certificate-authority: ca.pem}
- name: by-name
  cluster: {server: "https://127.0.0.1:${upstreamPort}", certificate-authority: ca.pem, tls-server-name: kubernetes.internal}
- name: wrong-ca
  cluster: {server: "https://127.0.0.1:${wrongCaPort}", certificate-authority: ca.pem}
- name: refused
  cluster: {server: "https://127.0.0.1:1", certificate-authority: ca.pem}
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
    observer: lifecycle.observer(recordingObserver()),
  });
  sharedProxy = await startProxy({ routes, pki, host: '127.0.0.1', port: 0, reuseUpstream: true });
});

afterEach(() => lifecycle.expectSettled());

afterAll(async () => {
  await proxy.close();
  await sharedProxy.close();
  upstream.closeAllConnections();
  wrongCaUpstream.closeAllConnections();
  await new Promise((r) => upstream.close(r));
  await new Promise((r) => wrongCaUpstream.close(r));
  rmSync(dir, { recursive: true, force: true });
  // close() resolved once every request on the proxy had published its end: none may be missing or come later.
  expectLifecycle(lifecycle.events);
});

interface Reply {
  status: number;
  rawHeaders: string[];
  body: Buffer;
}

function send(
  cluster: string,
  path: string,
  opts: {
    method?: string;
    headers?: string[];
    body?: Buffer;
    cert?: KeyPairPem;
    servername?: string;
    agent?: false;
    via?: RunningProxy;
  } = {},
): Promise<Reply> {
  const target = opts.via ?? proxy;
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: target.port,
        method: opts.method ?? 'GET',
        path: cluster === '' ? path : `/c/${routeId(cluster)}${path}`,
        ca: pki.caPem,
        servername: opts.servername ?? `${routeId(cluster || 'main')}${SNI_SUFFIX}`,
        cert: opts.cert?.certPem,
        key: opts.cert?.keyPem,
        headers: ['Host', `127.0.0.1:${target.port}`, ...(opts.headers ?? [])] as unknown as Record<string, string>,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

function headerValues(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === name) out.push(raw[i + 1] ?? '');
  return out;
}

describe('forwarding', () => {
  it('forwards method, path, query, headers (duplicates kept) and body unchanged, and relays the answer byte for byte', async () => {
    const payload = randomBytes(300_000);
    handler = (_req, res, body) => {
      res.writeHead(201, 'Made It', [
        'Content-Type',
        'application/octet-stream',
        'Warning',
        '299 - "first"',
        'Warning',
        '299 - "second"',
        'Audit-Id',
        'abc',
      ]);
      res.end(Buffer.concat([body, Buffer.from('!')]));
    };
    const before = seen.length;
    const reply = await send('main', '/api/v1/namespaces/default/pods/nginx?dryRun=All&fieldManager=kubectl', {
      method: 'DELETE',
      headers: [
        'Authorization',
        'Bearer tok-123',
        'Impersonate-Group',
        'a',
        'Impersonate-Group',
        'b',
        'Kubectl-Command',
        'kubectl delete',
        'Content-Type',
        'application/json',
        'Content-Length',
        String(payload.length),
        'Connection',
        'keep-alive, X-Hop',
        'X-Hop',
        'drop-me',
      ],
      body: payload,
    });
    const got = seen[before];
    expect(got?.method).toBe('DELETE');
    expect(got?.url).toBe('/api/v1/namespaces/default/pods/nginx?dryRun=All&fieldManager=kubectl');
    expect(got?.body.equals(payload)).toBe(true);
    expect(headerValues(got?.rawHeaders ?? [], 'impersonate-group')).toEqual(['a', 'b']);
    expect(headerValues(got?.rawHeaders ?? [], 'authorization')).toEqual(['Bearer tok-123']);
    expect(headerValues(got?.rawHeaders ?? [], 'host')).toEqual([`127.0.0.1:${upstreamPort}`]);
    expect(headerValues(got?.rawHeaders ?? [], 'x-hop')).toEqual([]);
    expect(headerValues(got?.rawHeaders ?? [], 'x-added-by-observer')).toEqual(['yes']);
    expect(reply.status).toBe(201);
    expect(headerValues(reply.rawHeaders, 'warning')).toEqual(['299 - "first"', '299 - "second"']);
    expect(reply.body.equals(Buffer.concat([payload, Buffer.from('!')]))).toBe(true);
  });

  it("adds the server URL's path prefix for prefixed clusters", async () => {
    handler = (_req, res) => res.end('ok');
    const before = seen.length;
    await send('prefixed', '/api/v1/pods?limit=500');
    expect(seen[before]?.url).toBe('/some/prefix/api/v1/pods?limit=500');
  });

  it('routes a server-relative request (no /c/ prefix) by SNI, as kubectl get --raw sends it', async () => {
    handler = (_req, res) => res.end('{"gitVersion":"v1.33.0"}');
    const before = seen.length;
    const reply = await send('', '/version', { servername: `${routeId('main')}${SNI_SUFFIX}` });
    expect(reply.status).toBe(200);
    expect(seen[before]?.url).toBe('/version');
    const unknown = await send('', '/version', { servername: `nope${SNI_SUFFIX}` });
    expect(unknown.status).toBe(404);
    expect(JSON.parse(unknown.body.toString()) as unknown).toMatchObject({
      kind: 'Status',
      code: 404,
      details: { causes: [{ reason: 'KT_ERR_NO_ROUTE' }] },
    });
  });

  it("publishes the command tag a wrapped command's kubeconfig puts in SNI, and routes by the tagged name", async () => {
    handler = (_req, res) => res.end('ok');
    const tagged = taggedServerName(routeId('main'), 'k7q2m9x1a0');
    const before = started.length;
    expect((await send('main', '/api/v1/pods', { servername: tagged })).status).toBe(200);
    expect((await send('', '/version', { servername: tagged })).status).toBe(200);
    expect((await send('main', '/api/v1/pods')).status).toBe(200);
    expect(started.slice(before).map((s) => s.commandTag)).toEqual(['k7q2m9x1a0', 'k7q2m9x1a0', undefined]);
  });

  it('streams: a chunk reaches the client before the apiserver finishes the response', async () => {
    let finish: () => void = () => undefined;
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"type":"ADDED"}\n');
      finish = () => res.end('{"type":"DELETED"}\n');
    };
    const first = await new Promise<string>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: proxy.port,
          path: `/c/${routeId('main')}/api/v1/pods?watch=true`,
          ca: pki.caPem,
          servername: 'localhost',
          agent: false,
        },
        (res) => {
          res.once('data', (c: Buffer) => {
            resolve(c.toString());
            res.resume();
            finish();
          });
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(first).toBe('{"type":"ADDED"}\n');
  });

  it('publishes live progress of a long watch at most once a second, with the events so far', async () => {
    const event = (i: number): string =>
      `{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p${i}","resourceVersion":"${i}"}}}\n`;
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      let i = 0;
      const timer = setInterval(() => {
        res.write(event(++i));
        if (i === 12) {
          clearInterval(timer);
          res.end();
        }
      }, 250);
    };
    const before = started.length;
    const endsBefore = ended.length;
    const bytes = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: proxy.port,
          path: `/c/${routeId('main')}/api/v1/pods?watch=true`,
          ca: pki.caPem,
          servername: 'localhost',
          agent: false,
        },
        (res) => {
          let n = 0;
          res.on('data', (c: Buffer) => (n += c.length));
          res.on('end', () => resolve(n));
        },
      );
      req.on('error', reject);
      req.end();
    });
    await expect.poll(() => ended.length).toBeGreaterThan(endsBefore);
    const id = started[before]?.id;
    const mine = progressed.filter((p) => p.id === id).map((p) => p.ev);
    // 12 events over ~3 s: two or three progress reports, never more than one a second.
    expect(mine.length).toBeGreaterThanOrEqual(2);
    expect(mine.length).toBeLessThanOrEqual(3);
    for (let i = 1; i < mine.length; i++) {
      expect(mine[i]!.t - mine[i - 1]!.t).toBeGreaterThanOrEqual(1000);
      expect(mine[i]!.watchEvents).toBeGreaterThan(mine[i - 1]!.watchEvents);
      expect(mine[i]!.bytesDown).toBeGreaterThan(mine[i - 1]!.bytesDown);
    }
    expect(mine.at(-1)!.watchEvents).toBeLessThan(12);
    expect(mine.at(-1)!.bytesDown).toBeLessThan(bytes);
    expect(ended.at(-1)?.decode?.watch?.events).toBe(12);
  });

  it('closes the upstream request when the client goes away mid-stream', async () => {
    let upstreamClosed: Promise<void> = Promise.resolve();
    handler = (req, res) => {
      upstreamClosed = new Promise((resolve) => res.on('close', () => resolve()));
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"type":"ADDED"}\n');
      void req;
    };
    const endsBefore = ended.length;
    await new Promise<void>((resolve, reject) => {
      const req = httpsRequest(
        {
          host: '127.0.0.1',
          port: proxy.port,
          path: `/c/${routeId('main')}/api/v1/pods?watch=true`,
          ca: pki.caPem,
          servername: 'localhost',
          agent: false,
        },
        (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        },
      );
      req.on('error', () => undefined);
      req.on('close', () => resolve());
      void reject;
      req.end();
    });
    await upstreamClosed;
    await expect.poll(() => ended.slice(endsBefore).map((e) => e.outcome)).toContain('client_abort');
  });
});

describe('identity', () => {
  it("presents alice's kubeconfig key pair upstream only to a client that presented alice's exact certificate", async () => {
    handler = (_req, res) => res.end('ok');
    const before = seen.length;
    const ok = await send('main', '/api/v1/pods', { cert: alice });
    expect(ok.status).toBe(200);
    expect(seen[before]?.clientCN).toBe('alice');
  });

  it('refuses a certificate kubectl does not hold (same subject, other CA) with a 401 Status, and forwards nothing', async () => {
    const before = seen.length;
    const reply = await send('main', '/api/v1/pods', { cert: impostor });
    expect(reply.status).toBe(401);
    const status = JSON.parse(reply.body.toString()) as {
      kind: string;
      message: string;
      details: { causes: { reason: string }[] };
    };
    expect(status.kind).toBe('Status');
    expect(status.message).toMatch(/client certificate \(CN=alice, O=dev\) is not one the kubeconfig holds a key for/);
    expect(status.details.causes[0]?.reason).toBe('KT_ERR_CLIENT_CERT');
    expect(seen.length).toBe(before);
    expect(started.at(-1)?.auth['auth.method']).not.toBe('client-certificate');
  });

  it('forwards an unknown certificate with a bearer token as the token alone, never with a kubeconfig certificate', async () => {
    const before = seen.length;
    const reply = await send('main', '/api/v1/pods', { cert: impostor, headers: ['Authorization', 'Bearer t0k'] });
    expect(reply.status).toBe(200);
    expect(seen[before]?.clientCN).toBeUndefined();
    expect(headerValues(seen[before]?.rawHeaders ?? [], 'authorization')).toEqual(['Bearer t0k']);
  });

  it.each([
    ['each kubectl connection its own (default)', false],
    ['--reuse-upstream', true],
  ])('never lets two users share an upstream connection: %s', async (_mode, reuse) => {
    handler = (_req, res) => res.end('ok');
    const before = seen.length;
    const via = reuse ? sharedProxy : proxy;
    for (let i = 0; i < 3; i++) {
      await send('main', '/api/v1/pods', { cert: alice, via });
      await send('main', '/api/v1/pods', { cert: bob, via });
      await send('main', '/api/v1/pods', { headers: ['Authorization', 'Bearer x'], via });
    }
    const byUser = new Map<string, Set<number>>();
    for (const s of seen.slice(before)) {
      const who = s.clientCN ?? 'anonymous';
      byUser.set(who, (byUser.get(who) ?? new Set()).add(s.remotePort));
    }
    expect([...byUser.keys()].sort()).toEqual(['alice', 'anonymous', 'bob']);
    const ports = [...byUser.values()];
    for (let i = 0; i < ports.length; i++) {
      for (let j = i + 1; j < ports.length; j++) {
        expect([...(ports[i] ?? [])].filter((p) => ports[j]?.has(p))).toEqual([]);
      }
    }
    // ...while with --reuse-upstream one user's requests reuse their pooled connection; by default each of
    // the three kubectl connections (send() opens one each) had an upstream connection of its own.
    expect(byUser.get('alice')?.size).toBe(reuse ? 1 : 3);
  });
});

describe('upstream failures', () => {
  it('answers a refused connection with a 502 Status naming the apiserver', async () => {
    const reply = await send('refused', '/api/v1/pods');
    expect(reply.status).toBe(502);
    const s = JSON.parse(reply.body.toString()) as {
      message: string;
      reason: string;
      details: { causes: { reason: string }[] };
    };
    expect(s.message).toMatch(
      /^kubetrail: cannot reach the kube-apiserver at https:\/\/127\.0\.0\.1:1 failed: ECONNREFUSED/,
    );
    expect(s.details.causes[0]?.reason).toBe('KT_ERR_UPSTREAM');
  });

  it('fails closed on an apiserver certificate from the wrong CA, and sends it nothing', async () => {
    const reply = await send('wrong-ca', '/api/v1/pods', { headers: ['Authorization', 'Bearer secret'] });
    expect(reply.status).toBe(502);
    const s = JSON.parse(reply.body.toString()) as { message: string; details: { causes: { reason: string }[] } };
    expect(s.details.causes[0]?.reason).toBe('KT_ERR_UPSTREAM_TLS');
    expect(s.message).toMatch(/TLS verification of the kube-apiserver/);
  });

  it('verifies the apiserver against tls-server-name when the kubeconfig sets one', async () => {
    handler = (_req, res) => res.end('ok');
    expect((await send('by-name', '/version')).status).toBe(200);
  });

  it('cuts the client connection when the apiserver resets mid-body, rather than ending it as a success', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"kind":"PodList","items":[');
      setTimeout(() => res.socket?.destroy(), 20);
    };
    await expect(send('main', '/api/v1/pods')).rejects.toThrow(/aborted|socket hang up|ECONNRESET/);
    handler = (_req, res) => res.end('ok');
    expect((await send('main', '/api/v1/pods')).status).toBe(200);
  });
});

describe('upgrades', () => {
  function rawUpgrade(path: string, headers: string[]): Promise<{ head: string; socket: TLSSocket; rest: Buffer }> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: proxy.port, ca: pki.caPem, servername: 'localhost' }, () => {
        let req = `${headers[0]} ${path} HTTP/1.1\r\n`;
        for (let i = 1; i < headers.length; i += 2) req += `${headers[i]}: ${headers[i + 1]}\r\n`;
        socket.write(`${req}\r\n`);
      });
      let buf = Buffer.alloc(0);
      const onData = (c: Buffer): void => {
        buf = Buffer.concat([buf, c]);
        const end = buf.indexOf('\r\n\r\n');
        if (end !== -1) {
          socket.off('data', onData);
          resolve({ head: buf.subarray(0, end).toString(), socket, rest: buf.subarray(end + 4) });
        }
      };
      socket.on('data', onData);
      socket.on('error', reject);
    });
  }

  it('tunnels a 101 both ways', async () => {
    upgradeHandler = (_req, socket) => {
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n',
      );
      socket.on('data', (c: Buffer) => socket.write(Buffer.concat([Buffer.from('echo:'), c])));
    };
    const { head, socket } = await rawUpgrade(
      `/c/${routeId('main')}/api/v1/namespaces/default/pods/p/exec?command=ls`,
      [
        'GET',
        'Host',
        'x',
        'Connection',
        'Upgrade',
        'Upgrade',
        'websocket',
        'Sec-WebSocket-Protocol',
        'v5.channel.k8s.io',
      ],
    );
    expect(head).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(head).toContain('Sec-WebSocket-Protocol: v5.channel.k8s.io');
    const echoed = new Promise<string>((resolve) => socket.once('data', (c: Buffer) => resolve(c.toString())));
    socket.write('hello');
    expect(await echoed).toBe('echo:hello');
    socket.destroy();
  });

  it('relays a non-101 answer verbatim and closes, so kubectl can fall back', async () => {
    const body =
      '{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pod does not have a host assigned","code":400}';
    upgradeHandler = (_req, socket) => {
      socket.end(
        `HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nAudit-Id: 1\r\n\r\n${body}`,
      );
    };
    const { head, socket, rest } = await rawUpgrade(
      `/c/${routeId('main')}/api/v1/namespaces/default/pods/p/exec?command=ls`,
      [
        'POST',
        'Host',
        'x',
        'Connection',
        'Upgrade',
        'Upgrade',
        'SPDY/3.1',
        'X-Stream-Protocol-Version',
        'v4.channel.k8s.io',
      ],
    );
    expect(head).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(head).toContain(`Content-Length: ${body.length}`);
    let all = rest;
    await new Promise<void>((resolve) => {
      socket.on('data', (c: Buffer) => (all = Buffer.concat([all, c])));
      socket.on('close', () => resolve());
      socket.on('end', () => resolve());
    });
    expect(all.toString()).toBe(body);
  });

  it('checks the client certificate on upgrades too', async () => {
    let reached = false;
    upgradeHandler = (_req, socket) => {
      reached = true;
      socket.destroy();
    };
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: proxy.port,
      ca: pki.caPem,
      servername: 'localhost',
      cert: impostor.certPem,
      key: impostor.keyPem,
    });
    const head = await new Promise<string>((resolve) => {
      socket.once('secureConnect', () =>
        socket.write(
          `GET /c/${routeId('main')}/api/v1/namespaces/d/pods/p/exec HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`,
        ),
      );
      let buf = '';
      socket.on('data', (c: Buffer) => (buf += c.toString()));
      socket.on('close', () => resolve(buf));
    });
    expect(head).toMatch(/^HTTP\/1\.1 401 /);
    expect(head).toContain('KT_ERR_CLIENT_CERT');
    expect(reached).toBe(false);
    expect(new X509Certificate(impostor.certPem).subject).toContain('CN=alice');
  });
});

describe('close()', () => {
  // Wrap mode closes the proxy when kubectl exits and then ends the command's trace: every request still
  // open must have published its end by the time close() resolves. A socket that is already being
  // destroyed (kubectl's FIN read, say) reports `closed` before its 'close' event, and the request's end
  // follows that event; kubectl 1.30's `cp` from a pod ends this way (seen in CI: the exec missing from
  // the waterfall).
  async function closing(): Promise<{
    via: RunningProxy;
    ends: RequestEnd[];
    accepted: TLSSocket[];
    events: LifecycleEvent[];
  }> {
    const ends: RequestEnd[] = [];
    const events = recordLifecycle();
    const via = await startProxy({
      routes,
      pki,
      host: '127.0.0.1',
      port: 0,
      observer: events.observer({
        onRequestStart: () => undefined,
        onUpstreamConnected: () => undefined,
        onResponseStart: () => undefined,
        onRequestEnd: (_id, e) => void ends.push(e),
      }),
    });
    const accepted: TLSSocket[] = [];
    via.server.on('secureConnection', (s: TLSSocket) => accepted.push(s));
    return { via, ends, accepted, events: events.events };
  }
  const watchPath = (): string => `/c/${routeId('main')}/api/v1/pods?watch=true`;
  const streamForever = (_req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"type":"ADDED"}\n');
  };

  it('waits for an upgraded tunnel whose socket is already closing to publish its end', async () => {
    const { via, ends, accepted, events } = await closing();
    upgradeHandler = (_req, socket) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
      socket.write('stdout');
      socket.on('error', () => undefined);
    };
    const client = tlsConnect({ host: '127.0.0.1', port: via.port, ca: pki.caPem, servername: 'localhost' });
    client.on('error', () => undefined);
    client.write(
      `GET /c/${routeId('main')}/api/v1/namespaces/default/pods/p/exec?command=ls HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`,
    );
    let got = '';
    await new Promise<void>((resolve) =>
      client.on('data', (c: Buffer) => {
        got += c.toString();
        if (got.endsWith('stdout')) resolve();
      }),
    );
    expect(accepted).toHaveLength(1);
    accepted[0]?.destroy();
    await via.close();
    expect(ends.map((e) => e.outcome)).toEqual(['complete']);
    expectLifecycle(events);
    client.destroy();
  });

  it('waits for an HTTP/1.1 watch whose socket is already closing to publish its end', async () => {
    const { via, ends, accepted, events } = await closing();
    handler = streamForever;
    const req = httpsRequest({
      host: '127.0.0.1',
      port: via.port,
      path: watchPath(),
      ca: pki.caPem,
      servername: 'localhost',
      agent: false,
    });
    req.on('error', () => undefined);
    await new Promise<void>((resolve) => req.on('response', (res) => res.once('data', () => resolve())).end());
    accepted[0]?.destroy();
    await via.close();
    expect(ends).toHaveLength(1);
    expectLifecycle(events);
  });

  it('waits for an HTTP/2 watch whose connection is already closing to publish its end', async () => {
    const { via, ends, accepted, events } = await closing();
    handler = streamForever;
    const session = http2Connect(`https://127.0.0.1:${via.port}`, { ca: pki.caPem, servername: 'localhost' });
    session.on('error', () => undefined);
    const stream = session.request({ ':path': watchPath() });
    stream.on('error', () => undefined);
    await new Promise<void>((resolve) => stream.once('data', () => resolve()));
    expect(accepted[0]?.alpnProtocol).toBe('h2');
    accepted[0]?.destroy();
    await via.close();
    expect(ends).toHaveLength(1);
    expectLifecycle(events);
    session.destroy();
  });
});
