/**
 * Hardening (issue #15 item 7): a client certificate re-issued while a kubetrail runs. kubectl reads its
 * certificate and key files on every start, so the next command presents the new certificate: kubetrail
 * must present the matching key pair upstream, not answer "You must be logged in". Real kubectl, real TLS,
 * certificates made per run by the stand-in apiserver's client CA.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKubetrailProcess, type KubetrailProcess } from '../../scripts/soak.ts';
import { issueCert, type KeyPairPem } from '../../src/pki/certs.ts';
import { freshHome } from '../helpers/compare.ts';
import { makePod } from '../helpers/fake-apiserver.ts';
import { withFakeCluster } from '../helpers/fake-cluster.ts';
import { kubectl } from '../helpers/kubectl.ts';

describe('a client certificate rotated while kubetrail runs (item 7)', () => {
  const cluster = withFakeCluster({
    prefix: 'kt-rotate-',
    kubeconfig: { users: [{ name: 'alice', cert: {} }] },
    seed: (fake) => void fake.create(makePod('web-0')),
  });
  let kt: KubetrailProcess | undefined;
  const certFile = (): string => join(cluster.dir, 'alice.crt');
  const keyFile = (): string => join(cluster.dir, 'alice.key');

  beforeAll(async () => {
    kt = await startKubetrailProcess({ kubeconfig: cluster.kubeconfig, home: freshHome(), args: ['--quiet'] });
  });
  afterAll(async () => {
    await kt?.stop();
  });

  /** `kubectl get pods` through the running kubetrail, and which certificate the apiserver saw. */
  async function getPods(): Promise<{ code: number; stderr: string; cns: (string | undefined)[] }> {
    if (!kt) throw new Error('no kubetrail');
    const mark = cluster.fake.requests.length;
    const r = await kubectl(['get', 'pods', '-o', 'name'], {
      kubeconfig: kt.kubeconfig,
      home: freshHome(),
      timeoutMs: 30_000,
    });
    return { code: r.code, stderr: r.stderr, cns: cluster.fake.requests.slice(mark).map((q) => q.clientCertCN) };
  }

  function install(pair: KeyPairPem, how: 'in place' | 'renamed'): void {
    for (const [file, pem] of [
      [keyFile(), pair.keyPem],
      [certFile(), pair.certPem],
    ] as const) {
      if (how === 'in place') writeFileSync(file, pem, { mode: 0o600 });
      else {
        writeFileSync(`${file}.new`, pem, { mode: 0o600 });
        renameSync(`${file}.new`, file);
      }
    }
  }

  it('re-issued for the same key (written in place), then for a new key (renamed into place): kubectl keeps working', async () => {
    const before = await getPods();
    expect(before.code, before.stderr).toBe(0);
    expect(before.cns).toContain('alice');

    const sameKey = await issueCert(cluster.fake.ca, {
      commonName: 'alice',
      usage: 'client',
      keyPem: readFileSync(keyFile(), 'utf8'),
    });
    install(sameKey, 'in place');
    const afterSameKey = await getPods();
    expect(afterSameKey.stderr).not.toMatch(/logged in|KT_ERR_CLIENT_CERT/);
    expect(afterSameKey.code, afterSameKey.stderr).toBe(0);
    expect(
      afterSameKey.cns.every((cn) => cn === 'alice'),
      JSON.stringify(afterSameKey.cns),
    ).toBe(true);

    install(await cluster.fake.issueUser('alice'), 'renamed');
    const afterNewKey = await getPods();
    expect(afterNewKey.code, afterNewKey.stderr).toBe(0);
    expect(
      afterNewKey.cns.every((cn) => cn === 'alice'),
      JSON.stringify(afterNewKey.cns),
    ).toBe(true);
  }, 120_000);
});
