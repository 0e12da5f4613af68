/** Kubeconfig files for the stand-in apiserver: cert-file, token, token-file and basic users; 0600. */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { KubeconfigContext, KubeconfigSpec } from './types.ts';

async function privateFile(path: string, content: string): Promise<void> {
  await writeFile(path, content, { mode: 0o600 });
  await chmod(path, 0o600);
}

const safe = (s: string): string => s.replace(/[^A-Za-z0-9._-]/g, '_');

export async function writeKubeconfigFile(
  dir: string,
  server: { url: string; serverCaPem: string },
  spec: KubeconfigSpec,
): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const clusterName = spec.clusterName ?? 'fake';
  const cluster: Record<string, unknown> = { server: spec.server ?? server.url };
  if (spec.inlineCa) cluster['certificate-authority-data'] = Buffer.from(server.serverCaPem).toString('base64');
  else {
    const caFile = join(dir, `${safe(clusterName)}-ca.crt`);
    await privateFile(caFile, server.serverCaPem);
    cluster['certificate-authority'] = caFile;
  }
  if (spec.tlsServerName !== undefined) cluster['tls-server-name'] = spec.tlsServerName;
  if (spec.disableCompression) cluster['disable-compression'] = true;

  const users: Record<string, unknown>[] = [];
  for (const u of spec.users) {
    const user: Record<string, unknown> = {};
    if (u.cert) {
      const certFile = join(dir, `${safe(u.name)}.crt`);
      const keyFile = join(dir, `${safe(u.name)}.key`);
      await privateFile(certFile, u.cert.certPem);
      await privateFile(keyFile, u.cert.keyPem);
      user['client-certificate'] = certFile;
      user['client-key'] = keyFile;
    }
    if (u.token !== undefined) {
      if (u.tokenFile) {
        const tokenFile = join(dir, `${safe(u.name)}.token`);
        await privateFile(tokenFile, u.token);
        user['tokenFile'] = tokenFile;
      } else user['token'] = u.token;
    }
    if (u.username !== undefined) user['username'] = u.username;
    if (u.password !== undefined) user['password'] = u.password;
    if (u.exec) user['exec'] = { apiVersion: 'client.authentication.k8s.io/v1', interactiveMode: 'Never', ...u.exec };
    users.push({ name: u.name, user });
  }
  const ctxs: KubeconfigContext[] = spec.contexts ?? spec.users.map((u) => ({ name: u.name, user: u.name }));
  const contexts = ctxs.map((c) => {
    const context: Record<string, unknown> = { cluster: clusterName, user: c.user };
    if (c.namespace !== undefined) context['namespace'] = c.namespace;
    return { name: c.name, context };
  });
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: clusterName, cluster }],
    users,
    contexts,
    'current-context': spec.currentContext ?? contexts[0]?.name ?? '',
  };
  const file = join(dir, spec.fileName ?? 'kubeconfig');
  await privateFile(file, stringify(doc));
  return file;
}
