/**
 * The withFakeCluster() fixture (test/helpers/fake-cluster.ts) itself: inside its scope a working stand-in
 * cluster (a kubeconfig whose users the apiserver knows, the seeded objects, a receiver); after it nothing
 * of it left (no directory, no listening socket of this process); read too early, a message that says so.
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { makePod } from '../helpers/fake-apiserver.ts';
import { withFakeCluster } from '../helpers/fake-cluster.ts';

/** Local ports this process listens on (TCP), read from /proc: what is still open, whoever opened it. */
function listeningPorts(): Set<number> {
  const inodes = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m?.[1]) inodes.add(m[1]);
    } catch {
      // closed while listing
    }
  }
  const ports = new Set<number>();
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/self/net/${table}`, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // State 0A: LISTEN.
      if (f[3] === '0A' && f[9] && inodes.has(f[9])) ports.add(parseInt(f[1]?.split(':')[1] ?? '0', 16));
    }
  }
  return ports;
}

/** GET `path` from the stand-in as the kubeconfig's token user would. */
function get(url: string, caPem: string, token: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { ca: caPem, headers: { authorization: `Bearer ${token}` } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('withFakeCluster', () => {
  const seen = { dir: '', apiserverPort: 0, receiverPort: 0 };

  describe('in its scope', () => {
    const cluster = withFakeCluster({
      prefix: 'kt-fixture-',
      apiserver: { tokens: { 'tina-token': { user: 'tina' } } },
      kubeconfig: {
        users: [
          { name: 'alice', cert: { groups: ['dev', 'ops'] } },
          { name: 'tina', token: 'tina-token' },
        ],
      },
      seed: (fake) => void fake.create(makePod('web-0')),
      otlp: true,
    });

    it('a private directory under the run’s TMPDIR, with a 0600 kubeconfig whose users the apiserver knows', async () => {
      seen.dir = cluster.dir;
      seen.apiserverPort = cluster.fake.port;
      seen.receiverPort = Number(new URL(cluster.receiver.url).port);
      expect(dirname(cluster.dir)).toBe(tmpdir());
      expect(basename(cluster.dir)).toMatch(/^kt-fixture-/);
      expect(statSync(cluster.dir).mode & 0o777).toBe(0o700);
      expect(cluster.kubeconfig).toBe(join(cluster.dir, 'kubeconfig'));
      expect(statSync(cluster.kubeconfig).mode & 0o777).toBe(0o600);

      const doc = parse(readFileSync(cluster.kubeconfig, 'utf8')) as {
        clusters: { cluster: { server: string } }[];
        users: { name: string; user: Record<string, string> }[];
        contexts: { name: string }[];
      };
      expect(doc.clusters.map((c) => c.cluster.server)).toEqual([cluster.fake.url]);
      expect(doc.users.map((u) => u.name)).toEqual(['alice', 'tina']);
      expect(doc.contexts.map((c) => c.name)).toEqual(['alice', 'tina']);
      expect(doc.users[1]?.user).toEqual({ token: 'tina-token' });
      // alice's certificate: issued by the stand-in's client CA for her name and groups, its files beside the kubeconfig.
      const alice = doc.users[0]?.user ?? {};
      expect(dirname(alice['client-certificate'] ?? '')).toBe(cluster.dir);
      expect(readFileSync(alice['client-certificate'] ?? '', 'utf8')).toBe(cluster.certs.alice?.certPem);
      const cert = new X509Certificate(cluster.certs.alice?.certPem ?? '');
      expect(cert.subject.split('\n').sort()).toEqual(['CN=alice', 'O=dev', 'O=ops']);
      expect(cert.checkIssued(new X509Certificate(cluster.fake.ca.certPem))).toBe(true);
      expect(Object.keys(cluster.certs)).toEqual(['alice']);

      // The seeded pod, served to the token user.
      const pods = await get(
        cluster.fake.url,
        cluster.fake.serverCaPem,
        'tina-token',
        '/api/v1/namespaces/default/pods',
      );
      expect(pods.status).toBe(200);
      expect(
        (JSON.parse(pods.body) as { items: { metadata: { name: string } }[] }).items.map((p) => p.metadata.name),
      ).toEqual(['web-0']);
      expect(cluster.receiver.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1\/traces$/);
      expect([...listeningPorts()]).toEqual(expect.arrayContaining([seen.apiserverPort, seen.receiverPort]));
    });
  });

  it('after its scope: the directory is removed, the apiserver and the receiver listen no more', () => {
    expect(seen.dir).not.toBe('');
    expect(existsSync(seen.dir)).toBe(false);
    const open = listeningPorts();
    expect(open.has(seen.apiserverPort)).toBe(false);
    expect(open.has(seen.receiverPort)).toBe(false);
  });

  describe('read before its beforeAll ran, or a receiver it was not asked for', () => {
    const cluster = withFakeCluster({ prefix: 'kt-fixture-early-', kubeconfig: { users: [] } });
    let early = '';
    try {
      void cluster.kubeconfig;
    } catch (err) {
      early = (err as Error).message;
    }

    it('says what went wrong', () => {
      expect(early).toBe(
        'withFakeCluster(kt-fixture-early-): kubeconfig read before its beforeAll ran (read it in a test or a hook)',
      );
      expect(() => cluster.receiver).toThrow('withFakeCluster(kt-fixture-early-): no receiver: pass otlp: true');
      expect(existsSync(cluster.kubeconfig)).toBe(true);
    });
  });
});
