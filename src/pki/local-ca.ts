/**
 * kubetrail's local CA and the serving certificate kubectl sees. Generated once, kept in the private state
 * dir (key files 0600); the serving certificate is re-issued when it nears expiry or lacks a name.
 */
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { KtError } from '../errors.ts';
import { SNI_SUFFIX } from '../proxy/routing.ts';
import { readPrivateText, writePrivateFile } from '../fs/private.ts';
import type * as CertsModule from './certs.ts';
import type { KeyPairPem } from './certs.ts';

export interface LocalPki {
  caPem: string;
  serverCertPem: string;
  serverKeyPem: string;
}

const RENEW_BEFORE_S = 30 * 86_400;
const DEFAULT_NAMES = ['127.0.0.1', '::1', 'localhost', `*${SNI_SUFFIX}`];

function splitPair(text: string, file: string): KeyPairPem {
  const cert = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/.exec(text)?.[0];
  const key = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\n?/.exec(text)?.[0];
  if (!cert || !key)
    throw new KtError('KT_ERR_STATE_DIR', `${file}: not a certificate and key (delete it to regenerate)`);
  return { certPem: cert, keyPem: key };
}

/** Certificate then key, each on its own lines, so openssl and curl read the file too. */
function pemBundle(pair: KeyPairPem): string {
  return `${pair.certPem.trimEnd()}\n${pair.keyPem.trimEnd()}\n`;
}

/** The CA and serving key pairs are trusted: never read through a symlink or from another user's file. */
function readPair(file: string): KeyPairPem | undefined {
  const text = readPrivateText(file);
  return text === undefined ? undefined : splitPair(text, file);
}

function covers(certPem: string, names: string[]): boolean {
  const cert = new X509Certificate(certPem);
  return names.every((n) => {
    if (isIP(n) !== 0) return cert.checkIP(n) !== undefined;
    // A wildcard name is covered when a name it stands for is.
    return cert.checkHost(n.startsWith('*.') ? `probe${n.slice(1)}` : n, { wildcards: true }) !== undefined;
  });
}

/** Seconds left before the certificate expires (negative when expired). */
function secondsToExpiry(certPem: string, now = Date.now()): number {
  return (Date.parse(new X509Certificate(certPem).validTo) - now) / 1000;
}

/**
 * Certificate generation (@peculiar/x509, ~90 ms to import) is loaded only when something must be issued:
 * on every later run the CA and serving certificate are read from the state dir, and kubectl waits less.
 */
function certs(): Promise<typeof CertsModule> {
  return import('./certs.ts');
}

export async function ensureLocalPki(stateDir: string, extraNames: string[] = []): Promise<LocalPki> {
  const caFile = join(stateDir, 'ca.pem');
  let ca = readPair(caFile);
  if (!ca) {
    const fresh = await (await certs()).createCA('kubetrail local CA');
    writePrivateFile(caFile, pemBundle(fresh), { exclusive: true });
    ca = readPair(caFile);
    if (!ca) throw new KtError('KT_ERR_STATE_DIR', `${caFile}: vanished while being created`);
  }
  // The certificate alone, for tools that want to trust kubetrail (curl --cacert, Node's `ca`).
  const caCrt = join(stateDir, 'ca.crt');
  if (readPrivateText(caCrt) !== ca.certPem) writePrivateFile(caCrt, ca.certPem);
  const names = [...new Set([...DEFAULT_NAMES, ...extraNames])];
  const serverFile = join(stateDir, 'server.pem');
  let server = readPair(serverFile);
  const issuedByCa = server && new X509Certificate(server.certPem).checkIssued(new X509Certificate(ca.certPem));
  if (!server || !issuedByCa || secondsToExpiry(server.certPem) < RENEW_BEFORE_S || !covers(server.certPem, names)) {
    server = await (
      await certs()
    ).issueCert(ca, {
      commonName: 'kubetrail',
      dnsNames: names.filter((n) => isIP(n) === 0),
      ipAddresses: names.filter((n) => isIP(n) !== 0),
      usage: 'server',
    });
    writePrivateFile(serverFile, pemBundle(server));
    server = splitPair(pemBundle(server), serverFile);
  }
  return { caPem: ca.certPem, serverCertPem: server.certPem, serverKeyPem: server.keyPem };
}
