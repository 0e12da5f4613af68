/**
 * Turn a loaded kubeconfig into (a) the routes kubetrail serves and (b) a kubeconfig whose every cluster
 * points at kubetrail. Names of clusters, users and contexts are kept, so `--context X` means the same
 * thing before and after; users are copied as they are (exec plugins still run inside kubectl).
 * How the proxy reads a route back (SNI, path prefix, command tag) lives in proxy/routing.ts.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { statSync } from 'node:fs';
import { KtError } from '../errors.ts';
import {
  certFingerprint,
  ROUTE_PREFIX,
  routeHost,
  taggedServerName,
  uniqueRouteAddresses,
  usesRouteAddresses,
  type ClientIdentity,
  type ClusterRoute,
  type Routes,
} from '../proxy/routing.ts';
import { shimExec, type ShimMode } from './credential-shim.ts';
import { dataOrFile, type Entry, type LoadedKubeconfig } from './load.ts';

/**
 * A cluster's route id: its name, slugged, and a hash of its name and server URL. The server is in it so
 * that a kubeconfig rewritten for one configuration can never be routed to another configuration's
 * cluster of the same name (`kubernetes`, `default`...) by a kubetrail serving that one: its credentials
 * would go to the wrong apiserver. A request with a stale route gets KT_ERR_NO_ROUTE instead.
 */
export function routeId(clusterName: string, server: unknown): string {
  const slug = clusterName
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 40);
  const hash = createHash('sha256')
    .update(`${clusterName}\0${typeof server === 'string' ? server : ''}`)
    .digest('hex')
    .slice(0, 8);
  return slug ? `${slug}-${hash}` : hash;
}

function str(body: Entry, field: string): string | undefined {
  const v = body[field];
  return typeof v === 'string' && v !== '' ? v : undefined;
}

export function buildRoutes(kc: LoadedKubeconfig): Routes {
  const clusters = new Map<string, ClusterRoute>();
  for (const { name, body, origin } of kc.clusters.values()) {
    const where = `${origin} cluster "${name}"`;
    const server = str(body, 'server');
    if (!server) throw new KtError('KT_ERR_KUBECONFIG_INVALID', `kubeconfig ${where}: no server`);
    let url: URL;
    try {
      url = new URL(server);
    } catch {
      throw new KtError('KT_ERR_KUBECONFIG_INVALID', `kubeconfig ${where}: server "${server}" is not a URL`);
    }
    if (url.protocol !== 'https:') {
      throw new KtError(
        'KT_ERR_KUBECONFIG_INVALID',
        `kubeconfig ${where}: server "${server}" is not https (kubetrail proxies TLS apiservers only)`,
      );
    }
    const insecure = body['insecure-skip-tls-verify'] === true;
    const caPem = dataOrFile(body, 'certificate-authority', where);
    const proxyUrl = str(body, 'proxy-url');
    if (proxyUrl && !/^https?:\/\//.test(proxyUrl)) {
      throw new KtError(
        'KT_ERR_KUBECONFIG_INVALID',
        `kubeconfig ${where}: proxy-url "${proxyUrl}" is not supported (kubetrail supports http and https proxies)`,
      );
    }
    const route: ClusterRoute = {
      id: routeId(name, body.server),
      name,
      server: url,
      caPem,
      insecureSkipTlsVerify: insecure,
      tlsServerName: str(body, 'tls-server-name'),
      proxyUrl,
    };
    clusters.set(route.id, route);
  }

  markAnonymousUsers(kc, clusters);

  const identities = new Map<string, ClientIdentity>();
  const onDisk: CertFiles[] = [];
  for (const { name, body, origin } of kc.users.values()) {
    const where = `${origin} user "${name}"`;
    const files = certFiles(body);
    const stamp = files.length > 0 ? filesStamp(files) : '';
    const identity = readIdentity(name, body, where);
    if (!identity) continue;
    if (!identities.has(identity.fingerprint)) identities.set(identity.fingerprint, identity);
    if (files.length > 0) onDisk.push({ name, body, where, files, stamp });
  }
  const routes: Routes = { clusters, identities };
  if (onDisk.length > 0) routes.refreshIdentities = () => refreshIdentities(onDisk, identities);
  return routes;
}

/** A user's client certificate and key as the kubeconfig names them, read now; undefined without both. */
function readIdentity(name: string, body: Entry, where: string): ClientIdentity | undefined {
  const certPem = dataOrFile(body, 'client-certificate', where);
  const keyPem = dataOrFile(body, 'client-key', where);
  if (!certPem || !keyPem) return undefined;
  let der: Buffer;
  try {
    der = new X509Certificate(certPem).raw;
  } catch {
    throw new KtError('KT_ERR_KUBECONFIG_INVALID', `kubeconfig ${where}: client-certificate is not a PEM certificate`);
  }
  return { user: name, certPem, keyPem, fingerprint: certFingerprint(der) };
}

/** A user whose certificate or key is a file, and what those files were when last read. */
interface CertFiles {
  name: string;
  body: Entry;
  where: string;
  files: string[];
  stamp: string;
}

/** The files a user's client certificate and key are read from (not their `-data` fields). */
function certFiles(body: Entry): string[] {
  return ['client-certificate', 'client-key'].flatMap((field) => {
    const data = body[`${field}-data`];
    const file = body[field];
    return (typeof data !== 'string' || data === '') && typeof file === 'string' && file !== '' ? [file] : [];
  });
}

/** Which version of the files this is: inode, size and mtime (a rewrite or a rename-into-place changes it). */
function filesStamp(files: string[]): string {
  return files
    .map((f) => {
      try {
        const st = statSync(f, { bigint: true });
        return `${st.ino}:${st.size}:${st.mtimeNs}`;
      } catch {
        return 'missing';
      }
    })
    .join('|');
}

/**
 * A client certificate was presented that no identity matches: kubectl reads its certificate and key files
 * on every start, so they may have been re-issued (rotated) since kubetrail read them. Re-read the users'
 * files that changed (a few stat calls when none did) and add what they now hold. The identities read
 * before stay: a kubectl started earlier still presents the old certificate, and proved it holds its key.
 * A file caught half-written fails to parse and is read again at the next miss (its stamp moves on).
 */
function refreshIdentities(users: CertFiles[], identities: Map<string, ClientIdentity>): void {
  for (const u of users) {
    const stamp = filesStamp(u.files);
    if (stamp === u.stamp) continue;
    let identity: ClientIdentity | undefined;
    try {
      identity = readIdentity(u.name, u.body, u.where);
    } catch {
      continue;
    }
    // The stamp taken before the read: a write racing the read leaves it stale, so the next miss reads again.
    u.stamp = stamp;
    if (identity && !identities.has(identity.fingerprint)) identities.set(identity.fingerprint, identity);
  }
}

/** What a kubeconfig user authenticates with, if anything (kubectl sends nothing for a user without these). */
const CREDENTIAL_FIELDS = [
  'token',
  'tokenFile',
  'client-certificate',
  'client-certificate-data',
  'username',
  'password',
  'exec',
  'auth-provider',
];

/** ClusterRoute.anonymousUser: some context pairs the cluster with a user without credentials (or none). */
function markAnonymousUsers(kc: LoadedKubeconfig, clusters: Map<string, ClusterRoute>): void {
  const byName = new Map([...clusters.values()].map((r) => [r.name, r]));
  for (const { body } of kc.contexts.values()) {
    const route = typeof body.cluster === 'string' ? byName.get(body.cluster) : undefined;
    if (!route) continue;
    const user = typeof body.user === 'string' ? kc.users.get(body.user)?.body : undefined;
    if (!user || !CREDENTIAL_FIELDS.some((k) => user[k] !== undefined && user[k] !== '')) route.anonymousUser = true;
  }
}

export interface RewriteOptions {
  /** https://host:port of the kubetrail listener as kubectl must reach it. */
  listenUrl: string;
  /** PEM of kubetrail's local CA. */
  caPem: string;
  /** Override current-context (kubetrail's own --context flag). */
  currentContext?: string | undefined;
  /** Tag every request made with this kubeconfig as one command's (wrap mode with a background kubetrail). */
  commandTag?: string | undefined;
  /**
   * Give each cluster its loopback address (routing.ts routeAddress) rather than a /c/<route> path; only
   * for a kubetrail that listens on them (startProxy does where usesRouteAddresses says, the default here).
   * `kubetrail kubeconfig` writes the path form: it may be for another kubetrail on that address, a
   * published Docker port reaching a container's 0.0.0.0 listener (docs/docker.md).
   */
  routeAddresses?: boolean | undefined;
  /** Run every exec credential plugin through kubetrail's timing shim (credential-shim.ts). */
  credentialShim?:
    { install: (command: string) => string | undefined; timingFile: string; mode?: ShimMode } | undefined;
}

/** The rewritten kubeconfig as a plain object, ready to be serialised. */
export function rewriteKubeconfig(kc: LoadedKubeconfig, opts: RewriteOptions): Entry {
  const base = opts.listenUrl.replace(/\/$/, '');
  const listen = new URL(opts.listenUrl);
  const caData = Buffer.from(opts.caPem).toString('base64');
  const ids = new Map([...kc.clusters.values()].map(({ name, body }) => [name, routeId(name, body.server)]));
  const addresses =
    (opts.routeAddresses ?? usesRouteAddresses(listen.hostname))
      ? uniqueRouteAddresses(ids.values())
      : new Map<string, string>();
  const clusters = [...kc.clusters.values()].map(({ name, body }) => {
    const cluster: Entry = { ...body };
    for (const k of ['certificate-authority', 'insecure-skip-tls-verify', 'proxy-url']) delete cluster[k];
    const id = ids.get(name) ?? routeId(name, body.server);
    const address = addresses.get(id);
    // A host:port per cluster and no path of kubetrail's: `kubectl proxy` warns about any server path,
    // and kubectl keys its discovery cache by the server URL (docs/decisions.md, "Routes"). The apiserver
    // URL's own path (a Rancher-style `/k8s/clusters/x`) is kept, so kubectl uses it as it would direct.
    cluster.server =
      address === undefined
        ? `${base}${ROUTE_PREFIX}${id}`
        : `https://${address}:${listen.port || '443'}${ownPath(body.server)}`;
    cluster['certificate-authority-data'] = caData;
    // A command tag goes in SNI only, so the server URL (and kubectl's caches) stay the same per cluster.
    cluster['tls-server-name'] = opts.commandTag === undefined ? routeHost(id) : taggedServerName(id, opts.commandTag);
    return { name, cluster };
  });
  const current = opts.currentContext ?? kc.currentContext;
  if (opts.currentContext !== undefined && !kc.contexts.has(opts.currentContext)) {
    throw new KtError(
      'KT_ERR_KUBECONFIG_INVALID',
      `kubeconfig ${kc.files.join(':')}: context "${opts.currentContext}" does not exist; ${kc.contexts.size === 0 ? 'it has no contexts' : `its contexts: ${[...kc.contexts.keys()].join(', ')}`}`,
    );
  }
  const out: Entry = {
    apiVersion: 'v1',
    kind: 'Config',
    clusters,
    users: [...kc.users.values()].map(({ name, body }) => ({ name, user: withShim(body, opts.credentialShim) })),
    contexts: [...kc.contexts.values()].map(({ name, body }) => ({ name, context: body })),
  };
  if (current !== undefined) out['current-context'] = current;
  if (kc.preferences !== undefined) out.preferences = kc.preferences;
  if (kc.extensions !== undefined) out.extensions = kc.extensions;
  return out;
}

/** The apiserver URL's own path, '' for none (`https://h:6443` and `https://h:6443/` alike). */
function ownPath(server: unknown): string {
  const path = typeof server === 'string' && URL.canParse(server) ? new URL(server).pathname : '/';
  return path === '/' ? '' : path;
}

function withShim(user: Entry, shim: RewriteOptions['credentialShim']): Entry {
  const exec = user.exec;
  if (!shim || !exec || typeof exec !== 'object' || Array.isArray(exec)) return user;
  return { ...user, exec: shimExec(exec as Entry, shim) };
}
