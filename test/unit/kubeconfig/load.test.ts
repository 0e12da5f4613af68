import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadKubeconfig } from '../../../src/kubeconfig/load.ts';
import { buildRoutes, rewriteKubeconfig, routeId } from '../../../src/kubeconfig/rewrite.ts';
import { parseServerName, routeAddress, taggedServerName } from '../../../src/proxy/routing.ts';
import { writeKubeconfig } from '../../../src/kubeconfig/write.ts';
import { createCA, issueCert } from '../../../src/pki/certs.ts';
import { isKtError } from '../../../src/errors.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kt-kc-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const p = join(dir, name);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, text);
  return p;
}

const A = `
apiVersion: v1
kind: Config
current-context: ctx-a
clusters:
- name: c1
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: ca.pem}
users:
- name: u1
  user: {token: tok-a, exec: {command: ./plug.sh, apiVersion: client.authentication.k8s.io/v1}}
contexts:
- name: ctx-a
  context: {cluster: c1, user: u1}
`;
const B = `
clusters:
- name: c1
  cluster: {server: "https://10.0.0.1:6443"}
- name: c2
  cluster: {server: "https://example.com:443/some/prefix"}
users:
- name: u2
  user: {tokenFile: tok.txt}
contexts:
- name: ctx-b
  context: {cluster: c2, user: u2, namespace: kube-system}
current-context: ctx-b
`;

describe('loadKubeconfig', () => {
  it('merges KUBECONFIG like kubectl: the first file to define a name wins the whole entry', () => {
    const a = file('a/config', A);
    const b = file('b/config', B);
    const kc = loadKubeconfig({ env: { KUBECONFIG: `${a}:${join(dir, 'missing')}:${b}:${a}` } });
    expect(kc.files).toEqual([a, b]);
    expect(kc.clusters.get('c1')?.body.server).toBe('https://127.0.0.1:6443');
    expect([...kc.clusters.keys()]).toEqual(['c1', 'c2']);
    expect(kc.currentContext).toBe('ctx-a');
    // relative paths resolve against the file that defined the entry
    expect(kc.clusters.get('c1')?.body['certificate-authority']).toBe(join(dir, 'a', 'ca.pem'));
    expect(kc.users.get('u2')?.body.tokenFile).toBe(join(dir, 'b', 'tok.txt'));
    expect((kc.users.get('u1')?.body.exec as { command: string }).command).toBe(join(dir, 'a', 'plug.sh'));
  });

  it('takes current-context from the first file that sets it', () => {
    const noCtx = file('x', 'clusters: []\n');
    const b = file('b/config', B);
    expect(loadKubeconfig({ env: { KUBECONFIG: `${noCtx}:${b}` } }).currentContext).toBe('ctx-b');
  });

  it('--kubeconfig loads only that file and it must exist', () => {
    const a = file('a/config', A);
    file('b/config', B);
    expect([
      ...loadKubeconfig({ explicitPath: a, env: { KUBECONFIG: join(dir, 'b/config') } }).clusters.keys(),
    ]).toEqual(['c1']);
    expect(() => loadKubeconfig({ explicitPath: join(dir, 'nope'), env: {} })).toThrow(
      /kubeconfig .*nope: no such file/,
    );
  });

  it('falls back to ~/.kube/config', () => {
    file('home/.kube/config', A);
    expect(loadKubeconfig({ env: { HOME: join(dir, 'home') } }).files).toEqual([join(dir, 'home/.kube/config')]);
  });

  it('names the file and line of a YAML error', () => {
    const bad = file('bad', 'clusters:\n- name: x\n  cluster: {server: "https://a\n');
    try {
      loadKubeconfig({ explicitPath: bad, env: {} });
      expect.unreachable();
    } catch (err) {
      expect(isKtError(err, 'KT_ERR_KUBECONFIG_INVALID')).toBe(true);
      expect((err as Error).message).toMatch(new RegExp(`^kubeconfig ${bad}:\\d+: `));
      expect((err as Error).message).not.toContain('\n');
    }
  });

  it('rejects an entry without a name, naming the list and index', () => {
    const bad = file('bad', 'users:\n- user: {token: x}\n');
    expect(() => loadKubeconfig({ explicitPath: bad, env: {} })).toThrow(`kubeconfig ${bad}: users[0] has no name`);
  });
});

describe('rewrite', () => {
  it('points every cluster at kubetrail, keeps names, users and contexts, and drops what would bypass it', async () => {
    const ca = await createCA('upstream');
    file('a/ca.pem', ca.certPem);
    const a = file(
      'a/config',
      A.replace('https://127.0.0.1:6443', 'https://127.0.0.1:6443').replace(
        '{server: "https://127.0.0.1:6443", certificate-authority: ca.pem}',
        '{server: "https://127.0.0.1:6443", certificate-authority: ca.pem, proxy-url: "http://127.0.0.1:3128", tls-server-name: api.internal}',
      ),
    );
    const b = file(
      'b/config',
      B.replace('{server: "https://10.0.0.1:6443"}', '{server: "https://10.0.0.1:6443"}').replace(
        '{server: "https://example.com:443/some/prefix"}',
        '{server: "https://example.com:443/some/prefix", insecure-skip-tls-verify: true}',
      ),
    );
    const kc = loadKubeconfig({ env: { KUBECONFIG: `${a}:${b}` } });
    const routes = buildRoutes(kc);
    const out = rewriteKubeconfig(kc, { listenUrl: 'https://127.0.0.1:17443', caPem: 'LOCALCA' });
    const clusters = out.clusters as { name: string; cluster: Record<string, unknown> }[];
    expect(clusters.map((c) => c.name)).toEqual(['c1', 'c2']);
    for (const c of clusters) {
      const id = [...routes.clusters.values()].find((r) => r.name === c.name)?.id ?? '';
      // An address per cluster on kubetrail's port (Linux, 127.0.0.1), no path of kubetrail's; the apiserver URL's own path kept.
      expect(c.cluster.server).toBe(`https://${routeAddress(id)}:17443${c.name === 'c2' ? '/some/prefix' : ''}`);
      expect(c.cluster['certificate-authority-data']).toBe(Buffer.from('LOCALCA').toString('base64'));
      expect(c.cluster['tls-server-name']).toBe(`${id}.kubetrail.localhost`);
      for (const k of ['certificate-authority', 'insecure-skip-tls-verify', 'proxy-url'])
        expect(c.cluster).not.toHaveProperty(k);
    }
    expect(out['current-context']).toBe('ctx-a');
    expect((out.users as { name: string }[]).map((u) => u.name)).toEqual(['u1', 'u2']);
    expect((out.contexts as { name: string; context: unknown }[]).find((c) => c.name === 'ctx-b')?.context).toEqual({
      cluster: 'c2',
      user: 'u2',
      namespace: 'kube-system',
    });

    // Where no loopback range is there to use (an IPv6 or non-loopback listener), a path prefix per cluster.
    const v6 = rewriteKubeconfig(kc, { listenUrl: 'https://[::1]:17443', caPem: 'LOCALCA' })
      .clusters as typeof clusters;
    for (const c of v6)
      expect(c.cluster.server).toBe(
        `https://[::1]:17443/c/${[...routes.clusters.values()].find((r) => r.name === c.name)?.id ?? ''}`,
      );

    const r1 = routes.clusters.get(routeId('c1', 'https://127.0.0.1:6443'));
    expect(r1?.server.href).toBe('https://127.0.0.1:6443/');
    expect(r1?.caPem?.toString()).toBe(ca.certPem);
    expect(r1?.tlsServerName).toBe('api.internal');
    expect(r1?.proxyUrl).toBe('http://127.0.0.1:3128');
    const r2 = routes.clusters.get(routeId('c2', 'https://example.com:443/some/prefix'));
    expect(r2?.insecureSkipTlsVerify).toBe(true);
    expect(r2?.server.pathname).toBe('/some/prefix');
  });

  it('gives clusters with awkward names distinct, URL-safe, stable route ids', () => {
    const names = [
      'arn:aws:eks:us-east-1:123456789012:cluster/prod',
      'gke_proj_europe-west1_prod',
      'kind-kind',
      'Kind Kind',
      '',
    ];
    const ids = names.map((n) => routeId(n, 'https://10.0.0.1:6443'));
    expect(new Set(ids).size).toBe(names.length);
    for (const id of ids) expect(id).toMatch(/^[a-z0-9-]+$/);
    expect(routeId('kind-kind', 'https://10.0.0.1:6443')).toBe(ids[2]);
    // Same name, another apiserver (another kubeconfig): another route, so a stale kubeconfig's requests
    // (and credentials) can never reach the other one.
    expect(routeId('kind-kind', 'https://10.0.0.2:6443')).not.toBe(ids[2]);
  });

  it("tags a wrapped command's kubeconfig in SNI only, within one DNS label, and parses the tag back", () => {
    const a = file(
      'k',
      'clusters:\n- name: "arn:aws:eks:us-east-1:123456789012:cluster/a-very-long-production-cluster-name"\n  cluster: {server: "https://10.0.0.1:6443"}\n',
    );
    const kc = loadKubeconfig({ explicitPath: a, env: {} });
    const plain = rewriteKubeconfig(kc, { listenUrl: 'https://127.0.0.1:17443', caPem: 'X' });
    const tagged = rewriteKubeconfig(kc, {
      listenUrl: 'https://127.0.0.1:17443',
      caPem: 'X',
      commandTag: 'abc123xyz9',
    });
    const [p0] = plain.clusters as { cluster: Record<string, string> }[];
    const [t0] = tagged.clusters as { cluster: Record<string, string> }[];
    expect(t0?.cluster.server).toBe(p0?.cluster.server);
    const sni = t0?.cluster['tls-server-name'] ?? '';
    expect(sni).not.toBe(p0?.cluster['tls-server-name']);
    expect(sni.split('.')[0]?.length).toBeLessThanOrEqual(63);
    const id = [...buildRoutes(kc).clusters.keys()][0];
    expect(parseServerName(sni)).toEqual({ routeId: id, tag: 'abc123xyz9' });
    expect(parseServerName(p0?.cluster['tls-server-name'])).toEqual({ routeId: id, tag: undefined });
    expect(parseServerName('localhost')).toBeUndefined();
    expect(() => taggedServerName(id ?? '', 'NOT-A-TAG')).toThrow(/invalid command tag/);
  });

  it('indexes client-certificate users by the exact certificate bytes', async () => {
    const ca = await createCA('u');
    const alice = await issueCert(ca, { commonName: 'alice', usage: 'client' });
    const a = file(
      'k',
      `users:\n- name: alice\n  user:\n    client-certificate-data: ${Buffer.from(alice.certPem).toString('base64')}\n    client-key-data: ${Buffer.from(alice.keyPem).toString('base64')}\n- name: tina\n  user: {token: t}\n`,
    );
    const routes = buildRoutes(loadKubeconfig({ explicitPath: a, env: {} }));
    expect([...routes.identities.values()].map((i) => i.user)).toEqual(['alice']);
  });

  it('refuses an http:// server and an unsupported proxy-url with the file and cluster named', () => {
    const a = file('k', 'clusters:\n- name: plain\n  cluster: {server: "http://127.0.0.1:8080"}\n');
    expect(() => buildRoutes(loadKubeconfig({ explicitPath: a, env: {} }))).toThrow(
      `kubeconfig ${a} cluster "plain": server "http://127.0.0.1:8080" is not https`,
    );
    const s = file(
      's',
      'clusters:\n- name: s\n  cluster: {server: "https://x", proxy-url: "socks5://127.0.0.1:1080"}\n',
    );
    expect(() => buildRoutes(loadKubeconfig({ explicitPath: s, env: {} }))).toThrow(
      /proxy-url "socks5:.*" is not supported/,
    );
  });

  it('names a missing certificate file', () => {
    const a = file('k', 'users:\n- name: u\n  user: {client-certificate: nope.crt, client-key: nope.key}\n');
    expect(() => buildRoutes(loadKubeconfig({ explicitPath: a, env: {} }))).toThrow(
      `kubeconfig ${a} user "u": client-certificate ${join(dir, 'nope.crt')}: cannot read (ENOENT)`,
    );
  });
});

describe('writeKubeconfig', () => {
  it('writes 0600 in a 0700 directory and replaces the file atomically', () => {
    const out = join(dir, 'state', 'kubeconfigs', 'x.yaml');
    writeKubeconfig(out, { kind: 'Config', clusters: [] });
    writeKubeconfig(out, { kind: 'Config', clusters: [{ name: 'a' }] });
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'state', 'kubeconfigs')).mode & 0o777).toBe(0o700);
    expect(parse(readFileSync(out, 'utf8'))).toEqual({ kind: 'Config', clusters: [{ name: 'a' }] });
  });
});
