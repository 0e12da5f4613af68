/**
 * `kubetrail doctor`: what stands between you and a trace of `kubectl get pods`, checked one by one, each
 * finding `ok`, `warn` or `fail` with what to do about it. Exit code 0 when nothing failed, else 1.
 *
 * - the kubetrail config (flags, environment, config file) resolves;
 * - the kubeconfig loads with kubectl's rules and kubetrail accepts it;
 * - for each context (or the one --context names): its cluster and credential type, then `GET /version`
 *   directly (TLS verified against the kubeconfig's CA, the user's credential) and through an in-process
 *   kubetrail on 127.0.0.1:0 using the route of the rewritten kubeconfig, and whether the two agree;
 * - the OTLP endpoint accepts an empty export, and the Jaeger UI answers;
 * - the state dir is 0700 and its files 0600;
 * - the --listen address is free, or held by a kubetrail.
 *
 * Read-only: the in-process kubetrail uses a temporary state dir (removed afterwards), never the real one.
 * Never prints a credential: tokens, keys and passwords are only ever described by kind.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { resolveConfig, parseListen, type RawValues } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { describeError } from '../errors.ts';
import { dataOrFile, loadKubeconfig, type Entry, type LoadedKubeconfig, type NamedEntry } from '../kubeconfig/load.ts';
import { buildRoutes, rewriteKubeconfig } from '../kubeconfig/rewrite.ts';
import { certFingerprint, type ClientIdentity, type ClusterRoute, type Routes } from '../proxy/routing.ts';
import { ensureLocalPki } from '../pki/local-ca.ts';
import { startProxy, type RunningProxy } from '../proxy/server.ts';
import { UpstreamPool } from '../proxy/upstream.ts';
import { redactUrl, redactUserinfo, splitUserinfo } from '../redact.ts';
import { VERSION } from '../version.ts';
import { outLine } from './output.ts';

export type Level = 'ok' | 'warn' | 'fail';

export interface Finding {
  level: Level;
  /** What was checked: `config`, `kubeconfig`, `context alice`, `otlp`, `jaeger`, `state dir`, `listen`. */
  subject: string;
  message: string;
  /** What to do; present on every warn and fail. */
  fix?: string;
}

const REQUEST_TIMEOUT_MS = 5000;
const OTLP_TIMEOUT_MS = 3000;

/** One HTTP answer, or why there was none. */
type Probe =
  | { kind: 'answer'; status: number; ms: number; body: string; headers: IncomingMessage['headers'] }
  | { kind: 'error'; code: string; message: string; ms: number; tls: boolean };

const TLS_CODE = /CERT|SELF_SIGNED|ALTNAME|HOSTNAME|ISSUER|VERIFY|SIGNATURE|SSL|TLS/;

function get(options: RequestOptions, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Probe> {
  const t0 = performance.now();
  const ms = (): number => Math.round((performance.now() - t0) * 10) / 10;
  return new Promise((resolve) => {
    let settled = false;
    const done = (p: Probe): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(p);
    };
    const req = httpsRequest({ method: 'GET', ...options }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= 64 * 1024) chunks.push(c);
      });
      res.on('end', () => done({ kind: 'answer', status: res.statusCode ?? 0, ms: ms(), body: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', (err) => done(failure(err)));
    });
    const failure = (err: unknown): Probe => {
      const e = err as NodeJS.ErrnoException;
      const code = e.code ?? 'ERROR';
      // Node appends advice about --use-system-ca to TLS errors; it is not ours to give.
      return { kind: 'error', code, message: describeError(err).replace(/; if the root CA is installed locally.*$/, ''), ms: ms(), tls: TLS_CODE.test(code) };
    };
    const timer = setTimeout(() => {
      done({ kind: 'error', code: 'TIMEOUT', message: `no answer within ${timeoutMs / 1000}s`, ms: ms(), tls: false });
      req.destroy();
    }, timeoutMs);
    req.on('error', (err) => done(failure(err)));
    req.end();
  });
}

/** The credential a kubeconfig user holds, described without its secret, and how to present it. */
interface Credential {
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

function credentialOf(user: NamedEntry, routes: Routes): Credential {
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

/** The Kubernetes Status reason kubetrail put in its own answer (`KT_ERR_*`), if it is one. */
function ktReason(p: Probe): string | undefined {
  if (p.kind !== 'answer' || p.headers['x-kubetrail-error'] !== 'true') return undefined;
  try {
    const s = JSON.parse(p.body) as { details?: { causes?: { reason?: string }[] } };
    return s.details?.causes?.[0]?.reason;
  } catch {
    return undefined;
  }
}

function gitVersion(p: Probe): string | undefined {
  if (p.kind !== 'answer' || p.status !== 200) return undefined;
  try {
    const v = (JSON.parse(p.body) as { gitVersion?: unknown }).gitVersion;
    return typeof v === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

function sameOutcome(direct: Probe, through: Probe): boolean {
  if (direct.kind === 'answer') return through.kind === 'answer' && through.status === direct.status && ktReason(through) === undefined;
  // kubetrail answers a failure to reach the apiserver with a 502 Status naming it.
  return ktReason(through) === (direct.tls ? 'KT_ERR_UPSTREAM_TLS' : 'KT_ERR_UPSTREAM');
}

interface ContextPlan {
  context: NamedEntry;
  cluster: NamedEntry | undefined;
  user: NamedEntry | undefined;
  /** This context's own kubeconfig (its cluster and user only): what kubetrail would route and rewrite. */
  sub: LoadedKubeconfig | undefined;
  routes: Routes | undefined;
  /** kubetrail refuses this context's cluster or user. */
  refused: string | undefined;
}

function planContext(kc: LoadedKubeconfig, context: NamedEntry): ContextPlan {
  const clusterName = typeof context.body.cluster === 'string' ? context.body.cluster : undefined;
  const userName = typeof context.body.user === 'string' ? context.body.user : undefined;
  const cluster = clusterName === undefined ? undefined : kc.clusters.get(clusterName);
  const user = userName === undefined ? undefined : kc.users.get(userName);
  const plan: ContextPlan = { context, cluster, user, sub: undefined, routes: undefined, refused: undefined };
  if (!cluster) return plan;
  const sub: LoadedKubeconfig = {
    ...kc,
    clusters: new Map([[cluster.name, cluster]]),
    users: new Map<string, NamedEntry>(user ? [[user.name, user]] : []),
    contexts: new Map([[context.name, context]]),
    currentContext: context.name,
  };
  try {
    plan.routes = buildRoutes(sub);
    plan.sub = sub;
  } catch (err) {
    plan.refused = describeError(err);
  }
  return plan;
}

function describeDirect(direct: Probe, route: ClusterRoute, cred: Credential, ctx: string): Omit<Finding, 'subject'> {
  const cluster = `cluster "${route.name}"`;
  const same = `\`kubectl --context ${ctx} get --raw /version\` fails the same way without kubetrail`;
  if (direct.kind === 'error') {
    if (direct.tls) {
      return {
        level: 'fail',
        message: `direct: TLS verification of ${route.server.origin} failed: ${direct.code} (${direct.message})`,
        fix: `the apiserver's certificate does not verify against ${cluster}'s ${route.caPem ? 'certificate-authority' : 'system roots (the kubeconfig names no CA)'}${route.tlsServerName ? ` for tls-server-name ${route.tlsServerName}` : ''}; get the cluster's current CA from whatever wrote this kubeconfig (${same})`,
      };
    }
    const why: Record<string, string> = {
      ECONNREFUSED: 'connection refused',
      ENOTFOUND: 'host not found',
      EAI_AGAIN: 'host name lookup failed',
      EHOSTUNREACH: 'host unreachable',
      ENETUNREACH: 'network unreachable',
      ECONNRESET: 'connection reset',
      TIMEOUT: `no answer within ${REQUEST_TIMEOUT_MS / 1000}s`,
    };
    return {
      level: 'fail',
      message: `direct: cannot reach ${route.server.origin}${route.proxyUrl ? ` via proxy-url ${new URL(route.proxyUrl).origin}` : ''}: ${why[direct.code] ?? `${direct.code} (${direct.message})`}`,
      fix: `is the cluster running, and is ${cluster}'s server URL right? (VPN, firewall, a stopped kind/minikube?) ${same}`,
    };
  }
  const version = gitVersion(direct);
  const base = `direct: GET /version ${direct.status}${version ? ` ${version}` : ''} in ${direct.ms}ms (TLS ${route.insecureSkipTlsVerify ? 'NOT verified: insecure-skip-tls-verify' : 'verified'})`;
  if (direct.status === 200) return { level: 'ok', message: base };
  if (direct.status === 401) {
    if (!cred.presentable || cred.description.startsWith('no credential')) {
      return { level: 'ok', message: `${base}: reachable; /version needs a credential doctor does not present (${cred.description}), kubectl will` };
    }
    return {
      level: 'fail',
      message: `${base}: the apiserver rejected the ${cred.description}`,
      fix: `the credential is expired or wrong: refresh it with whatever issued it (${same})`,
    };
  }
  if (direct.status === 403) {
    return {
      level: 'warn',
      message: `${base}: authenticated, but not allowed to read /version`,
      fix: 'reachability and TLS are fine; what kubectl may do depends on your RBAC roles (`kubectl auth can-i --list`)',
    };
  }
  return {
    level: direct.status >= 500 ? 'fail' : 'warn',
    message: base,
    fix: `the apiserver answered ${direct.status} to GET /version; check the server URL of ${cluster} (a path prefix? a load balancer in front?)`,
  };
}

async function checkContext(plan: ContextPlan, proxy: RunningProxy | undefined, caPem: string | undefined): Promise<Finding[]> {
  const subject = `context ${plan.context.name}`;
  const out: Finding[] = [];
  const add = (f: Omit<Finding, 'subject'>): void => {
    out.push({ subject, ...f });
  };
  if (!plan.cluster) {
    add({
      level: 'fail',
      message: `names cluster ${JSON.stringify(plan.context.body.cluster ?? '')}, which no kubeconfig file defines`,
      fix: `fix the context in ${plan.context.origin} (\`kubectl config get-clusters\` lists the clusters)`,
    });
    return out;
  }
  if (!plan.user && plan.context.body.user !== undefined) {
    add({
      level: 'warn',
      message: `names user ${JSON.stringify(plan.context.body.user)}, which no kubeconfig file defines: requests go without a credential`,
      fix: `fix the context in ${plan.context.origin} (\`kubectl config view\` lists the users)`,
    });
  }
  if (plan.refused !== undefined || !plan.routes || !plan.sub) {
    add({ level: 'fail', message: `kubetrail cannot use it: ${plan.refused ?? 'unknown reason'}`, fix: 'fix the file or field named; kubectl reads the same fields' });
    return out;
  }
  const route = [...plan.routes.clusters.values()][0];
  if (!route) return out;
  let cred: Credential;
  try {
    cred = plan.user ? credentialOf(plan.user, plan.routes) : { description: 'no user (anonymous)', presentable: true, identity: undefined, authorization: undefined };
  } catch (err) {
    add({ level: 'fail', message: `user "${plan.user?.name ?? ''}": ${describeError(err)}`, fix: 'fix the file or field named; kubectl reads the same fields' });
    return out;
  }
  add({
    level: route.insecureSkipTlsVerify ? 'warn' : 'ok',
    message: `cluster "${route.name}" ${route.server.href.replace(/\/$/, '')}${route.proxyUrl ? ` via proxy-url ${new URL(route.proxyUrl).origin}` : ''}, user ${plan.user ? `"${plan.user.name}"` : '(none)'}: ${cred.description}`,
    ...(route.insecureSkipTlsVerify
      ? { fix: `cluster "${route.name}" says insecure-skip-tls-verify: kubetrail skips verification too and marks every span kubetrail.insecure_skip_tls_verify=true; add the cluster's CA instead` }
      : {}),
  });
  if (!cred.presentable) {
    add({ level: 'ok', message: `doctor does not run ${cred.description} (kubectl does, and kubetrail forwards what it sends): the checks below are anonymous and show reachability and TLS` });
  }

  // Around kubetrail: the apiserver itself, with the kubeconfig's CA, SNI, proxy-url and credential.
  const pool = new UpstreamPool();
  const headers: OutgoingHttpHeaders = { accept: 'application/json', 'user-agent': `kubetrail-doctor/${VERSION}` };
  if (cred.authorization && cred.presentable) headers.authorization = cred.authorization;
  const base = route.server.pathname.replace(/\/+$/, '');
  let direct: Probe;
  try {
    direct = await get({
      agent: pool.agentFor(route, cred.presentable ? cred.identity : undefined, false),
      host: route.server.hostname.replace(/^\[|\]$/g, ''),
      port: Number(route.server.port || 443),
      path: `${base}/version`,
      headers: { ...headers, host: route.server.host },
    });
  } finally {
    pool.destroy();
  }
  add(describeDirect(direct, route, cred, plan.context.name));

  // Through kubetrail: the route and CA of the kubeconfig kubetrail writes, as kubectl would use them.
  if (!proxy || caPem === undefined) return out;
  const rewritten = rewriteKubeconfig(plan.sub, { listenUrl: proxy.url, caPem });
  const entry = (rewritten.clusters as { cluster: Entry }[])[0]?.cluster ?? {};
  const server = new URL(String(entry.server));
  const through = await get({
    agent: false,
    host: server.hostname.replace(/^\[|\]$/g, ''),
    port: Number(server.port),
    // A route address's URL carries the apiserver's own path, if any ('/' for none); the prefix form /c/<route>.
    path: `${server.pathname.replace(/\/+$/, '')}/version`,
    ca: Buffer.from(String(entry['certificate-authority-data']), 'base64'),
    servername: String(entry['tls-server-name']),
    ...(cred.presentable && cred.identity ? { cert: cred.identity.certPem, key: cred.identity.keyPem } : {}),
    headers,
  });
  const reason = ktReason(through);
  const what =
    through.kind === 'error'
      ? `${through.code} (${through.message})`
      : `GET /version ${through.status}${reason ? ` ${reason}` : ''} in ${through.ms}ms`;
  if (sameOutcome(direct, through)) {
    const directLevel = out[out.length - 1]?.level ?? 'ok';
    if (directLevel === 'ok') {
      add({ level: 'ok', message: `through kubetrail: ${what}, as direct` });
    } else {
      add({ level: directLevel, message: `through kubetrail: ${what}, the same answer as direct`, fix: 'kubetrail passes the problem on unchanged: fix the direct check above' });
    }
  } else {
    add({
      level: 'fail',
      message: `through kubetrail: ${what}, but direct: ${direct.kind === 'answer' ? direct.status : direct.code}`,
      fix: 'kubetrail answers differently from the apiserver: that is a kubetrail problem; please report it with this output',
    });
  }
  return out;
}

function checkStateDir(dir: string): Finding[] {
  const subject = 'state dir';
  let st;
  try {
    st = statSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return [{ level: 'ok', subject, message: `${dir} does not exist yet: kubetrail creates it (0700) on its first run` }];
    }
    return [{ level: 'fail', subject, message: `${dir}: ${describeError(err)}`, fix: 'make it readable by you, or pass --state-dir DIR' }];
  }
  if (!st.isDirectory()) return [{ level: 'fail', subject, message: `${dir} is not a directory`, fix: 'remove it, or pass --state-dir DIR' }];
  const out: Finding[] = [];
  const mode = (m: number): string => (m & 0o777).toString(8).padStart(4, '0');
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    out.push({ level: 'fail', subject, message: `${dir} belongs to uid ${st.uid}, not to you (uid ${uid})`, fix: `use your own: pass --state-dir DIR (or chown -R ${uid} ${dir})` });
  }
  if ((st.mode & 0o077) !== 0) {
    out.push({
      level: 'warn',
      subject,
      message: `${dir} is ${mode(st.mode)}: others may list it (it holds kubetrail's CA key and kubeconfigs with your credentials)`,
      fix: `chmod 700 ${dir} (kubetrail also tightens it to 0700 on its next run)`,
    });
  }
  const open: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const s = statSync(p);
      if (s.isDirectory()) {
        if ((s.mode & 0o077) !== 0) open.push(`${p} (${mode(s.mode)})`);
        walk(p);
      } else if ((s.mode & 0o077) !== 0) {
        open.push(`${p} (${mode(s.mode)})`);
      }
    }
  };
  try {
    walk(dir);
  } catch (err) {
    out.push({ level: 'fail', subject, message: `cannot read ${dir}: ${describeError(err)}`, fix: 'make it readable by you, or pass --state-dir DIR' });
  }
  if (open.length > 0) {
    out.push({
      level: 'fail',
      subject,
      message: `readable by others: ${open.join(', ')}`,
      fix: `chmod -R go-rwx ${dir}; if others could read ca.pem, delete ${join(dir, 'ca.pem')} and ${join(dir, 'server.pem')} so kubetrail makes a new CA`,
    });
  }
  try {
    const ca = readFileSync(join(dir, 'ca.pem'), 'utf8');
    const cert = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(ca)?.[0];
    if (!cert || !/-----BEGIN PRIVATE KEY-----/.test(ca)) throw new Error('not a certificate and key');
    const x = new X509Certificate(cert);
    if (Date.parse(x.validTo) < Date.now()) throw new Error(`expired ${x.validTo}`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      out.push({ level: 'fail', subject, message: `${join(dir, 'ca.pem')}: ${describeError(err)}`, fix: `delete ${join(dir, 'ca.pem')} and ${join(dir, 'server.pem')}: kubetrail makes a new CA (then re-run \`kubetrail kubeconfig\`)` });
    }
  }
  if (!out.some((f) => f.level !== 'ok')) out.push({ level: 'ok', subject, message: `${dir} is 0700, its files 0600` });
  return out;
}

async function checkOtlp(config: Config, env: NodeJS.ProcessEnv): Promise<Finding> {
  const subject = 'otlp';
  const url = config.otlpEndpoint;
  // Sent with its userinfo (the exporter does too), never printed with it.
  const shown = redactUrl(url);
  if (/^true$/i.test(env.OTEL_SDK_DISABLED ?? '')) {
    return { level: 'warn', subject, message: 'export is off (OTEL_SDK_DISABLED=true): no traces reach Jaeger; the terminal waterfall still works', fix: 'unset OTEL_SDK_DISABLED to export' };
  }
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  // The exporter sends these (collector credentials): so must the check. Never printed.
  for (const pair of (env.OTEL_EXPORTER_OTLP_TRACES_HEADERS || env.OTEL_EXPORTER_OTLP_HEADERS || '').split(',')) {
    const eq = pair.indexOf('=');
    if (eq > 0) headers[decodeURIComponent(pair.slice(0, eq).trim())] = decodeURIComponent(pair.slice(eq + 1).trim());
  }
  const start = performance.now();
  const noCollector = 'start one: `docker compose up -d jaeger` (the compose file in this repo) or `npm run stack -- up` then `eval "$(npm run -s stack -- env)"`, or point --otlp-endpoint / OTEL_EXPORTER_OTLP_ENDPOINT at yours; kubectl works without it, but no trace reaches Jaeger';
  try {
    // node:http(s), as the exporter sends: fetch() would refuse a collector on one of the ports browsers
    // block (6000, 6665-6669, ...) that the exporter reaches.
    const res = await postOnce(url, headers, '{"resourceSpans":[]}', OTLP_TIMEOUT_MS);
    const ms = Math.round(performance.now() - start);
    if (res.ok) return { level: 'ok', subject, message: `${shown} accepted an empty OTLP/HTTP export (${res.status}) in ${ms}ms` };
    return {
      level: 'fail',
      subject,
      message: `${shown} answered ${res.status} to an OTLP/HTTP export`,
      fix:
        res.status === 404 || res.status === 405
          ? 'not an OTLP/HTTP traces endpoint: --otlp-endpoint takes the full URL (http://HOST:4318/v1/traces); OTEL_EXPORTER_OTLP_ENDPOINT takes the base (http://HOST:4318)'
          : res.status === 401 || res.status === 403
            ? 'the collector wants credentials: set OTEL_EXPORTER_OTLP_HEADERS (e.g. authorization=Bearer%20...)'
            : 'check the collector\'s logs',
    };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const code = e.name === 'TimeoutError' ? `no answer within ${OTLP_TIMEOUT_MS / 1000}s` : e.code === 'ECONNREFUSED' ? 'nothing listens there (connection refused)' : (e.code ?? describeError(err));
    return { level: 'fail', subject, message: `${shown}: ${code}`, fix: noCollector };
  }
}

/** One POST, its status read and its body drained; rejects with the socket's error or a TimeoutError. */
function postOnce(url: string, headers: Record<string, string>, body: string, timeoutMs: number): Promise<{ ok: boolean; status: number }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const send = u.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(u, { method: 'POST', headers: { ...headers, 'content-length': Buffer.byteLength(body) }, agent: false }, (res) => {
      const status = res.statusCode ?? 0;
      res.resume();
      res.on('end', () => resolve({ ok: status >= 200 && status < 300, status }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('timeout'), { name: 'TimeoutError' })));
    req.on('error', reject);
    req.end(body);
  });
}

async function checkJaeger(config: Config): Promise<Finding> {
  const subject = 'jaeger';
  // Printed without its userinfo; fetch() refuses a URL with credentials, so they go as a header.
  const url = redactUrl(config.jaegerUrl);
  try {
    const target = splitUserinfo(config.jaegerUrl);
    const res = await fetch(target.url, { signal: AbortSignal.timeout(OTLP_TIMEOUT_MS), headers: target.authorization ? { authorization: target.authorization } : {} });
    const page = await res.text();
    if (res.ok && page.includes('not the Jaeger UI')) {
      return {
        level: 'warn',
        subject,
        message: `${url} is a Jaeger built without its UI (the local stack's, built from Go modules): trace links open a placeholder page`,
        fix: `read a trace with its query API: curl ${url.replace(/\/$/, '')}/api/traces/<id>; or use a Jaeger with the UI (\`docker compose up -d jaeger\`)`,
      };
    }
    if (res.ok) return { level: 'ok', subject, message: `trace links point at ${url.replace(/\/$/, '')}/trace/<id>; it answers ${res.status}` };
    return { level: 'warn', subject, message: `trace links point at ${url}, which answers ${res.status}`, fix: 'set --jaeger-url (or KUBETRAIL_JAEGER_URL) to your Jaeger (the local stack\'s: `eval "$(npm run -s stack -- env)"` sets it)' };
  } catch (err) {
    const e = err as Error & { cause?: NodeJS.ErrnoException };
    return {
      level: 'warn',
      subject,
      message: `trace links point at ${url}, which does not answer (${e.cause?.code ?? (e.name === 'TypeError' ? redactUserinfo(e.message) : e.name)})`,
      fix: 'set --jaeger-url (or KUBETRAIL_JAEGER_URL) to your Jaeger (the local stack\'s: `eval "$(npm run -s stack -- env)"` sets it), or start one: `docker compose up -d jaeger`',
    };
  }
}

async function checkListen(config: Config): Promise<Finding> {
  const subject = 'listen';
  let listen;
  try {
    listen = parseListen(config.listen, config.allowNonLoopback);
  } catch (err) {
    return { level: 'fail', subject, message: describeError(err), fix: 'pass --listen 127.0.0.1:PORT' };
  }
  if (listen.port === 0) return { level: 'ok', subject, message: `${config.listen}: a new port each run (kubectl's discovery cache stays cold)` };
  const host = listen.host === '0.0.0.0' || listen.host === '::' ? '127.0.0.1' : listen.host;
  const open = await new Promise<boolean>((resolve) => {
    const s = netConnect({ host, port: listen.port });
    s.setTimeout(1000, () => {
      s.destroy();
      resolve(true);
    });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (!open) return { level: 'ok', subject, message: `${config.listen} is free` };
  // Who listens is told only to the state dir's control token (read here, never written).
  let pid: number | undefined;
  try {
    const [{ controlCall }, { statusBody }] = await Promise.all([import('../background/client.ts'), import('../background/protocol.ts')]);
    const body = statusBody(await controlCall(config.stateDir, host, listen.port, { op: 'status' }, 2000));
    pid = typeof body?.pid === 'number' ? body.pid : undefined;
  } catch {
    pid = undefined;
  }
  if (pid !== undefined) {
    return { level: 'ok', subject, message: `${config.listen}: a kubetrail (pid ${pid}) listens there; wrapped commands use it when it serves the same clusters` };
  }
  return {
    level: 'warn',
    subject,
    message: `${config.listen} is in use by another program: \`kubetrail -- kubectl ...\` would stop with KT_ERR_LISTEN`,
    fix: 'stop that program, or pass --listen 127.0.0.1:PORT (and keep that port: kubectl keys its caches by it)',
  };
}

export interface DoctorResult {
  findings: Finding[];
  code: number;
}

export async function doctor(flags: RawValues, env: NodeJS.ProcessEnv = process.env): Promise<DoctorResult> {
  const findings: Finding[] = [];
  let config: Config;
  try {
    config = resolveConfig(flags, env);
  } catch (err) {
    findings.push({ level: 'fail', subject: 'config', message: describeError(err), fix: 'fix the file or value named (config/kubetrail.yaml documents every key)' });
    return { findings, code: 1 };
  }
  if (config.config) findings.push({ level: 'ok', subject: 'config', message: `${config.config} loads` });

  // The state dir first, before anything could touch it.
  findings.push(...checkStateDir(config.stateDir));

  let kc: LoadedKubeconfig | undefined;
  try {
    kc = loadKubeconfig({ explicitPath: config.kubeconfig, env });
  } catch (err) {
    findings.push({ level: 'fail', subject: 'kubeconfig', message: describeError(err), fix: 'fix the file named (kubectl reads it the same way: `kubectl config view` shows the same problem), or pass --kubeconfig FILE' });
  }

  let plans: ContextPlan[] = [];
  if (kc) {
    const current = config.context ?? kc.currentContext;
    findings.push({
      level: 'ok',
      subject: 'kubeconfig',
      message: `${kc.files.join(':')}: ${kc.contexts.size} context(s), ${kc.clusters.size} cluster(s), ${kc.users.size} user(s); current-context ${current ? `"${current}"` : '(none)'}`,
    });
    try {
      buildRoutes(kc);
    } catch (err) {
      findings.push({ level: 'fail', subject: 'kubeconfig', message: `kubetrail refuses it: ${describeError(err)}`, fix: 'fix the entry named (the contexts below that do not use it are still checked)' });
    }
    if (config.context !== undefined && !kc.contexts.has(config.context)) {
      findings.push({ level: 'fail', subject: 'kubeconfig', message: `--context "${config.context}" does not exist (contexts: ${[...kc.contexts.keys()].join(', ') || 'none'})`, fix: 'pass one of those names' });
    } else if (kc.contexts.size === 0) {
      findings.push({ level: 'warn', subject: 'kubeconfig', message: 'defines no context: kubectl needs --server or a context', fix: 'add a context (`kubectl config set-context`)' });
    } else if (current === undefined || !kc.contexts.has(current)) {
      findings.push({ level: 'warn', subject: 'kubeconfig', message: `current-context ${current ? `"${current}" does not exist` : 'is not set'}: kubectl needs --context`, fix: '`kubectl config use-context NAME`, or pass --context NAME' });
    }
    const selected = config.context !== undefined ? [kc.contexts.get(config.context)].filter((c) => c !== undefined) : [...kc.contexts.values()];
    plans = selected.map((c) => planContext(kc, c));
  }

  // One in-process kubetrail for every usable context, with a throwaway CA.
  const routes: Routes = { clusters: new Map(), identities: new Map() };
  for (const p of plans) {
    for (const [k, v] of p.routes?.clusters ?? []) routes.clusters.set(k, v);
    for (const [k, v] of p.routes?.identities ?? []) routes.identities.set(k, v);
  }
  let proxy: RunningProxy | undefined;
  let caPem: string | undefined;
  const tmpState = mkdtempSync(join(tmpdir(), 'kubetrail-doctor-'));
  try {
    if (routes.clusters.size > 0) {
      try {
        const pki = await ensureLocalPki(tmpState);
        caPem = pki.caPem;
        proxy = await startProxy({ routes, pki, host: '127.0.0.1', port: 0 });
      } catch (err) {
        findings.push({ level: 'fail', subject: 'kubetrail', message: `cannot start an in-process kubetrail on 127.0.0.1: ${describeError(err)}`, fix: 'please report this with the output' });
      }
    }
    const contexts = async (): Promise<Finding[][]> => {
      // One at a time, so the latencies reported are not each other's.
      const out: Finding[][] = [];
      for (const p of plans) out.push(await checkContext(p, proxy, caPem));
      return out;
    };
    const [perContext, otlp, jaeger, listen] = await Promise.all([
      contexts(),
      checkOtlp(config, env),
      checkJaeger(config),
      checkListen(config),
    ]);
    for (const fs of perContext) findings.push(...fs);
    findings.push(otlp, jaeger, listen);
  } finally {
    await proxy?.close();
    rmSync(tmpState, { recursive: true, force: true });
  }
  return { findings, code: findings.some((f) => f.level === 'fail') ? 1 : 0 };
}

export function formatFindings(findings: Finding[]): string[] {
  const lines: string[] = [];
  for (const f of findings) {
    lines.push(`${f.level.padEnd(4)}  ${f.subject}: ${f.message}`);
    if (f.fix) lines.push(`      fix: ${f.fix}`);
  }
  const fails = findings.filter((f) => f.level === 'fail').length;
  const warns = findings.filter((f) => f.level === 'warn').length;
  lines.push(fails + warns === 0 ? 'doctor: all checks passed' : `doctor: ${fails} failed, ${warns} warning(s)`);
  return lines;
}

/** `kubetrail doctor`: print the findings on stdout; 0 when none failed, else 1. */
export async function runDoctor(flags: RawValues, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  outLine(`kubetrail doctor ${VERSION}`);
  const { findings, code } = await doctor(flags, env);
  // A last guard: no finding prints URL userinfo, whichever check quoted the URL.
  for (const line of formatFindings(findings)) outLine(redactUserinfo(line));
  return code;
}
