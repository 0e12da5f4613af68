/**
 * The bench load generator's client (bench/lib/client.ts): over h2 it must open connections as client-go
 * does (every request a stream of one connection; one more only past the server's stream limit), since
 * kubetrail mirrors each of them upstream, and workload 4's figure depends on it.
 */
import { createSecureServer, type Http2SecureServer, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createClient } from '../../../bench/lib/client.ts';
import type { Target } from '../../../bench/lib/target.ts';
import { createCA, issueCert } from '../../../src/pki/certs.ts';

let server: Http2SecureServer | undefined;

afterEach(async () => {
  const s = server;
  server = undefined;
  if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
});

/** An h2 server that answers every stream's head at once and holds its body open (a watch) until `end`. */
async function watchServer(
  maxConcurrentStreams: number,
): Promise<{ target: Target; streams: ServerHttp2Stream[]; sessions: () => number }> {
  const ca = await createCA('bench client test CA');
  const cert = await issueCert(ca, {
    commonName: 'localhost',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
  });
  const streams: ServerHttp2Stream[] = [];
  let sessions = 0;
  const s = createSecureServer({ key: cert.keyPem, cert: cert.certPem, settings: { maxConcurrentStreams } });
  s.on('session', (session) => {
    sessions++;
    session.on('error', () => undefined);
  });
  s.on('stream', (st) => {
    st.on('error', () => undefined);
    st.respond({ ':status': 200 });
    st.write('{}\n');
    streams.push(st);
  });
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  server = s;
  const target: Target = {
    name: 'test',
    scheme: 'https',
    host: '127.0.0.1',
    port: (s.address() as AddressInfo).port,
    prefix: '',
    servername: 'localhost',
    ca: ca.certPem,
    h2: true,
  };
  return { target, streams, sessions: () => sessions };
}

async function openWatches(
  target: Target,
  n: number,
): Promise<{ statuses: number[]; conns: Record<string, number>; close: () => void }> {
  const client = createClient(target, 'h2', Infinity);
  const statuses = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<number>((resolve, reject) => {
          const p = client.request('/watch', { accept: 'application/json' }, (status) => resolve(status));
          p.done.catch(reject);
        }),
    ),
  );
  return { statuses, conns: client.connections(), close: () => client.close() };
}

describe('the load generator over h2', () => {
  it('sends 300 concurrent watches as streams of one connection when the server allows them', async () => {
    const srv = await watchServer(1000);
    const w = await openWatches(srv.target, 300);
    try {
      expect(w.statuses.every((s) => s === 200)).toBe(true);
      expect(w.conns).toEqual({ h2: 1 });
      expect(srv.sessions()).toBe(1);
      expect(srv.streams).toHaveLength(300);
    } finally {
      w.close();
    }
  });

  it('opens one more connection per server stream limit, as client-go does, instead of queueing', async () => {
    const srv = await watchServer(100);
    const w = await openWatches(srv.target, 250);
    try {
      expect(w.statuses.every((s) => s === 200)).toBe(true);
      expect(w.conns).toEqual({ h2: 3 });
      expect(srv.streams).toHaveLength(250);
    } finally {
      w.close();
    }
  });
});
