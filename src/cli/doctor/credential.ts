/**
 * The credential a kubeconfig user holds, described without its secret (doctor never prints one), and
 * whether doctor can present it itself.
 */
import { X509Certificate } from 'node:crypto';
import { basename } from 'node:path';
import { dataOrFile, type Entry, type NamedEntry } from '../../kubeconfig/load.ts';
import { certFingerprint, type ClientIdentity, type Routes } from '../../proxy/routing.ts';

/** The credential a kubeconfig user holds, described without its secret, and how to present it. */
export interface Credential {
  /** e.g. `client certificate (CN=alice, O=dev)`, `bearer token (tokenFile /x/t)`, `exec plugin gke-gcloud-auth-plugin`. */
  description: string;
  /** Whether doctor can present it (exec plugins and auth-providers are run by kubectl only). */
  presentable: boolean;
  identity: ClientIdentity | undefined;
  authorization: string | undefined;
}

function subjectOf(certPem: Buffer): string {
  const parts: string[] = [];
  for (const line of new X509Certificate(certPem).subject.split('\n')) {
    if (line.startsWith('CN=') || line.startsWith('O=')) parts.push(line);
  }
  return parts.join(', ');
}

export function credentialOf(user: NamedEntry, routes: Routes): Credential {
  const body = user.body;
  const where = `${user.origin} user "${user.name}"`;
  const described: string[] = [];
  let identity: ClientIdentity | undefined;
  let authorization: string | undefined;
  let presentable = true;
  const certPem = dataOrFile(body, 'client-certificate', where);
  const keyPem = dataOrFile(body, 'client-key', where);
  if (certPem && keyPem) {
    identity = routes.identities.get(certFingerprint(new X509Certificate(certPem).raw));
    described.push(`client certificate (${subjectOf(certPem)})`);
  } else if (certPem || keyPem) {
    described.push(`client certificate without its ${certPem ? 'key' : 'certificate'} (ignored)`);
  }
  if (typeof body.token === 'string' && body.token !== '') {
    authorization = `Bearer ${body.token}`;
    described.push('bearer token (inline)');
  } else if (typeof body.tokenFile === 'string' && body.tokenFile !== '') {
    authorization = `Bearer ${(dataOrFile(body, 'tokenFile', where) ?? Buffer.alloc(0)).toString('utf8').trim()}`;
    described.push(`bearer token (tokenFile ${body.tokenFile})`);
  } else if (typeof body.username === 'string' && body.username !== '') {
    authorization = `Basic ${Buffer.from(`${body.username}:${typeof body.password === 'string' ? body.password : ''}`).toString('base64')}`;
    described.push(`basic auth (username ${body.username})`);
  }
  const exec = body.exec as Entry | undefined;
  if (exec && typeof exec === 'object') {
    presentable = authorization !== undefined || identity !== undefined;
    described.push(`exec plugin ${typeof exec.command === 'string' ? basename(exec.command) : '(no command)'}`);
  }
  const provider = body['auth-provider'] as Entry | undefined;
  if (provider && typeof provider === 'object') {
    presentable = authorization !== undefined || identity !== undefined;
    described.push(`auth-provider ${typeof provider.name === 'string' ? provider.name : '(unnamed)'}`);
  }
  if (described.length === 0) described.push('no credential (anonymous)');
  return { description: described.join(' + '), presentable, identity, authorization };
}
