/**
 * A large answer's decoding runs after its relay (src/proxy/tap.ts: on the decode worker, or in slices),
 * so it can still be running when kubectl has read the body and closed its connection. Wrap mode ends the
 * command's trace as soon as the proxy's close() resolves: close() must wait for that decoding, or the
 * request's end (and its item count) is missing from the trace (docs/lifecycle.md, the close() invariant).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { makePod, startFakeApiserver, type FakeApiserver } from '../helpers/fake-apiserver.ts';
import { expectLifecycle, recordLifecycle } from '../helpers/lifecycle.ts';
import { loadKubeconfig } from '../../src/kubeconfig/load.ts';
import { buildRoutes } from '../../src/kubeconfig/rewrite.ts';
import { ensureLocalPki } from '../../src/pki/local-ca.ts';
import type { RequestEnd } from '../../src/proxy/events.ts';
import { routeHost } from '../../src/proxy/routing.ts';
import { startProxy } from '../../src/proxy/server.ts';

const PODS = 3000;
let fake: FakeApiserver;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kt-settle-'));
  fake = await startFakeApiserver({ tokens: { 'tina-token': { user: 'tina', groups: ['system:masters'] } } });
  for (let i = 0; i < PODS; i++) fake.create(makePod(`web-${i}`, { ageSeconds: 60 }));
});

afterAll(async () => {
  await fake.close();
  rmSync(dir, { recursive: true, force: true });
});

it("close() resolves only once a large answer's end, decoded, is published", async () => {
  const kubeconfig = await fake.writeKubeconfig(dir, { users: [{ name: 'tina', token: 'tina-token' }] });
  const routes = buildRoutes(loadKubeconfig({ explicitPath: kubeconfig, env: {} }));
  const id = [...routes.clusters.keys()][0] ?? '';
  const pki = await ensureLocalPki(join(dir, 'pki'));
  const ends: RequestEnd[] = [];
  const lifecycle = recordLifecycle();
  const proxy = await startProxy({
    routes,
    pki,
    host: '127.0.0.1',
    port: 0,
    observer: lifecycle.observer({
      onRequestStart: () => undefined,
      onUpstreamConnected: () => undefined,
      onResponseStart: () => undefined,
      onRequestEnd: (_id, ev) => void ends.push(ev),
    }),
  });
  // The whole list (identity: several MB, far above what is decoded inline at the end), read to its last
  // byte, then the connection closed at once, as kubectl does when it exits.
  const bytes = await new Promise<number>((resolve, reject) => {
    const s = tlsConnect(
      { host: '127.0.0.1', port: proxy.port, ca: pki.caPem, servername: routeHost(id), ALPNProtocols: ['http/1.1'] },
      () =>
        s.write(
          'GET /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tina-token\r\nConnection: close\r\n\r\n',
        ),
    );
    let n = 0;
    s.on('data', (c: Buffer) => (n += c.length));
    s.on('end', () => {
      s.destroy();
      resolve(n);
    });
    s.on('error', reject);
  });
  expect(bytes).toBeGreaterThan(1024 * 1024);
  await proxy.close();
  expect(ends).toHaveLength(1);
  expect(ends[0]).toMatchObject({ outcome: 'complete', decode: { kind: 'PodList', items: PODS } });
  expectLifecycle(lifecycle.events);
});
