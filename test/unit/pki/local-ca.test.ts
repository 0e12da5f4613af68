import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ensureLocalPki } from '../../../src/pki/local-ca.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kt-pki-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('ensureLocalPki', () => {
  it('creates the CA and serving certificate once (0600), then only reads them back', async () => {
    const first = await ensureLocalPki(dir);
    const caStat = statSync(join(dir, 'ca.pem'));
    const serverStat = statSync(join(dir, 'server.pem'));
    expect(caStat.mode & 0o777).toBe(0o600);
    expect(serverStat.mode & 0o777).toBe(0o600);
    const second = await ensureLocalPki(dir);
    expect(second).toEqual(first);
    expect(statSync(join(dir, 'server.pem')).mtimeMs).toBe(serverStat.mtimeMs);
  });

  it('serves loopback (IPv4 and IPv6), localhost and every route name, signed by the local CA', async () => {
    const pki = await ensureLocalPki(dir);
    const cert = new X509Certificate(pki.serverCertPem);
    expect(cert.checkIssued(new X509Certificate(pki.caPem))).toBe(true);
    expect(cert.checkIP('127.0.0.1')).toBeDefined();
    expect(cert.checkIP('::1')).toBeDefined();
    expect(cert.checkHost('localhost')).toBeDefined();
    expect(cert.checkHost('kind-kind-1a2b3c4d.kubetrail.localhost')).toBeDefined();
    expect(cert.checkHost('evil.example.com')).toBeUndefined();
  });

  it('re-issues the serving certificate for a new listen address, keeping the CA', async () => {
    const before = await ensureLocalPki(dir);
    const after = await ensureLocalPki(dir, ['192.0.2.10']);
    expect(after.caPem).toBe(before.caPem);
    expect(new X509Certificate(after.serverCertPem).checkIP('192.0.2.10')).toBeDefined();
  });

  it('writes PEM files other tools can read: certificate and key on their own lines, and the CA certificate alone', async () => {
    const pki = await ensureLocalPki(dir);
    expect(readFileSync(join(dir, 'ca.crt'), 'utf8')).toBe(pki.caPem);
    expect(pki.caPem).not.toContain('PRIVATE KEY');
    for (const f of ['ca.pem', 'server.pem']) {
      const text = readFileSync(join(dir, f), 'utf8');
      expect(text).toMatch(
        /-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\n[\s\S]+-----END PRIVATE KEY-----\n$/,
      );
    }
  });
});
