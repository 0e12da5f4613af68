/**
 * One kubeconfig context: its cluster and credential type, then `GET /version` directly (TLS verified
 * against the kubeconfig's CA, the user's credential) and through an in-process kubetrail using the route
 * of the rewritten kubeconfig, and whether the two agree.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import { describeError } from '../../errors.ts';
import type { Entry, LoadedKubeconfig, NamedEntry } from '../../kubeconfig/load.ts';
import { buildRoutes, rewriteKubeconfig } from '../../kubeconfig/rewrite.ts';
import type { ClusterRoute, Routes } from '../../proxy/routing.ts';
import type { RunningProxy } from '../../proxy/server.ts';
import { UpstreamPool } from '../../proxy/upstream.ts';
import { socketHost } from '../../net/host.ts';
import { VERSION } from '../../version.ts';
import { credentialOf, type Credential } from './credential.ts';
import type { Finding } from './format.ts';
import { probe, type Probe } from './probe.ts';

const REQUEST_TIMEOUT_MS = 5000;

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
  if (direct.kind === 'answer')
    return through.kind === 'answer' && through.status === direct.status && ktReason(through) === undefined;
  // kubetrail answers a failure to reach the apiserver with a 502 Status naming it.
  return ktReason(through) === (direct.tls ? 'KT_ERR_UPSTREAM_TLS' : 'KT_ERR_UPSTREAM');
}

export interface ContextPlan {
  context: NamedEntry;
  cluster: NamedEntry | undefined;
  user: NamedEntry | undefined;
  /** This context's own kubeconfig (its cluster and user only): what kubetrail would route and rewrite. */
  sub: LoadedKubeconfig | undefined;
  routes: Routes | undefined;
  /** kubetrail refuses this context's cluster or user. */
  refused: string | undefined;
}

export function planContext(kc: LoadedKubeconfig, context: NamedEntry): ContextPlan {
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
      return {
        level: 'ok',
        message: `${base}: reachable; /version needs a credential doctor does not present (${cred.description}), kubectl will`,
      };
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

export async function checkContext(
  plan: ContextPlan,
  proxy: RunningProxy | undefined,
  caPem: string | undefined,
): Promise<Finding[]> {
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
    add({
      level: 'fail',
      message: `kubetrail cannot use it: ${plan.refused ?? 'unknown reason'}`,
      fix: 'fix the file or field named; kubectl reads the same fields',
    });
    return out;
  }
  const route = [...plan.routes.clusters.values()][0];
  if (!route) return out;
  let cred: Credential;
  try {
    cred = plan.user
      ? credentialOf(plan.user, plan.routes)
      : { description: 'no user (anonymous)', presentable: true, identity: undefined, authorization: undefined };
  } catch (err) {
    add({
      level: 'fail',
      message: `user "${plan.user?.name ?? ''}": ${describeError(err)}`,
      fix: 'fix the file or field named; kubectl reads the same fields',
    });
    return out;
  }
  add({
    level: route.insecureSkipTlsVerify ? 'warn' : 'ok',
    message: `cluster "${route.name}" ${route.server.href.replace(/\/$/, '')}${route.proxyUrl ? ` via proxy-url ${new URL(route.proxyUrl).origin}` : ''}, user ${plan.user ? `"${plan.user.name}"` : '(none)'}: ${cred.description}`,
    ...(route.insecureSkipTlsVerify
      ? {
          fix: `cluster "${route.name}" says insecure-skip-tls-verify: kubetrail skips verification too and marks every span kubetrail.insecure_skip_tls_verify=true; add the cluster's CA instead`,
        }
      : {}),
  });
  if (!cred.presentable) {
    add({
      level: 'ok',
      message: `doctor does not run ${cred.description} (kubectl does, and kubetrail forwards what it sends): the checks below are anonymous and show reachability and TLS`,
    });
  }

  // Around kubetrail: the apiserver itself, with the kubeconfig's CA, SNI, proxy-url and credential.
  const pool = new UpstreamPool();
  const headers: OutgoingHttpHeaders = { accept: 'application/json', 'user-agent': `kubetrail-doctor/${VERSION}` };
  if (cred.authorization && cred.presentable) headers.authorization = cred.authorization;
  const base = route.server.pathname.replace(/\/+$/, '');
  let direct: Probe;
  try {
    direct = await probe(
      {
        agent: pool.agentFor(route, cred.presentable ? cred.identity : undefined, false),
        host: socketHost(route.server.hostname),
        port: Number(route.server.port || 443),
        path: `${base}/version`,
        headers: { ...headers, host: route.server.host },
      },
      { timeoutMs: REQUEST_TIMEOUT_MS },
    );
  } finally {
    pool.destroy();
  }
  add(describeDirect(direct, route, cred, plan.context.name));

  // Through kubetrail: the route and CA of the kubeconfig kubetrail writes, as kubectl would use them.
  if (!proxy || caPem === undefined) return out;
  const rewritten = rewriteKubeconfig(plan.sub, { listenUrl: proxy.url, caPem });
  const entry = (rewritten.clusters as { cluster: Entry }[])[0]?.cluster ?? {};
  const server = new URL(String(entry.server));
  const through = await probe(
    {
      agent: false,
      host: socketHost(server.hostname),
      port: Number(server.port),
      // A route address's URL carries the apiserver's own path, if any ('/' for none); the prefix form /c/<route>.
      path: `${server.pathname.replace(/\/+$/, '')}/version`,
      ca: Buffer.from(String(entry['certificate-authority-data']), 'base64'),
      servername: String(entry['tls-server-name']),
      ...(cred.presentable && cred.identity ? { cert: cred.identity.certPem, key: cred.identity.keyPem } : {}),
      headers,
    },
    { timeoutMs: REQUEST_TIMEOUT_MS },
  );
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
      add({
        level: directLevel,
        message: `through kubetrail: ${what}, the same answer as direct`,
        fix: 'kubetrail passes the problem on unchanged: fix the direct check above',
      });
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
