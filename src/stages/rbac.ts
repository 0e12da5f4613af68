/**
 * The `rbac` stage: what the response says about authorization. Pure: status code, the first
 * bytes of the body and Retry-After in; attributes out. Garbage, truncated or non-JSON bodies
 * only mean fewer attributes.
 *
 * `rbac.decision`. kube-apiserver's chain runs authentication (401) → impersonation → priority
 * and fairness (429) → authorization (403) → handler (k8s.io/apiserver pkg/server/config.go
 * DefaultBuildHandlerChain), so:
 * - < 400 (101 upgrades and 304 included): `allowed`;
 * - 401: `unauthenticated`;
 * - 403: `denied`, unless the body is a Status whose reason is Forbidden and whose message is
 *   not an authorizer's (`… forbidden: User "u" cannot …`): admission, quota and namespace
 *   termination also answer 403 Forbidden, after authorization allowed the request: `allowed`;
 * - 404, 405, 406, 409, 410, 412, 415, 422: only handlers, past authorization, answer these:
 *   `allowed`;
 * - 429: a Status body (eviction blocked by a disruption budget, storage re-initializing) comes
 *   from a handler: `allowed`. Priority and fairness and max-in-flight answer text/plain before
 *   authorization: `not_applicable`;
 * - anything else (400, other 4xx, 5xx): could come before authorization (bad `timeout`,
 *   shutdown, authorizer errors answer 500): `not_applicable`.
 */
import { setAttr, type Attributes } from './attributes.ts';

export type RbacDecision = 'allowed' | 'denied' | 'unauthenticated' | 'not_applicable';

export interface RbacFacts {
  statusCode: number;
  /** The first bytes of the response body, possibly truncated, possibly not JSON. */
  statusBody?: string | undefined;
  /** The Retry-After response header. */
  retryAfter?: string | undefined;
}

/** What an authorizer denial message names (responsewriters/errors.go forbiddenMessage). */
export interface ForbiddenMessage {
  user: string;
  verb: string;
  /** `<resource>[.<group>][/<subresource>]`: `pods/exec`, `deployments.apps/scale`. */
  resource?: string;
  /** Non-resource requests: the URL path. */
  path?: string;
  namespace?: string;
  /** Resource requests only. */
  scope?: 'namespace' | 'cluster';
}

/** Characters of `rbac.message` kept; longer messages end in an ellipsis. */
export const RBAC_MESSAGE_MAX = 1024;

const AFTER_AUTHORIZATION = new Set([404, 405, 406, 409, 410, 412, 415, 422]);

/** What the rbac stage concluded, as plain facts; rbacOutcomeAttributes() turns them into span attributes. */
export interface RbacOutcome {
  decision: RbacDecision;
  /** 401/403: the Status body's reason and message (the message cut at RBAC_MESSAGE_MAX). */
  reason?: string | undefined;
  message?: string | undefined;
  /** An authorizer's 403: whom it refused what, as its message says it. */
  denial?: ForbiddenMessage | undefined;
  /** An authorizer's 403: what would have allowed the request (`kubectl auth can-i` and RBAC's terms). */
  required?: RequiredAccess | undefined;
  /** 429/5xx: Retry-After in seconds, when it is delay-seconds. */
  retryAfterS?: number | undefined;
}

/** The rbac stage: what a response's status, body and Retry-After say about authorization. */
export function rbacOutcome(facts: RbacFacts): RbacOutcome {
  const code = facts.statusCode;
  const status = parseStatus(facts.statusBody);
  const out: RbacOutcome = { decision: decide(code, status) };
  if (code === 401 || code === 403) {
    out.reason = status?.reason;
    out.message = status?.message === undefined ? undefined : truncate(status.message);
  }
  const denial = code === 403 && status?.message !== undefined ? parseForbiddenMessage(status.message) : undefined;
  if (denial) {
    out.denial = denial;
    out.required = requiredAccess(status?.message ?? '', denial);
  }
  if (code === 429 || code >= 500) {
    const seconds = facts.retryAfter?.trim();
    if (seconds !== undefined && /^\d{1,9}$/.test(seconds)) out.retryAfterS = Number(seconds);
  }
  return out;
}

/**
 * `rbac.decision`; on 401/403 `rbac.reason` and `rbac.message` from the Status body; on an
 * authorizer's 403 `rbac.user`, `rbac.verb`, `rbac.resource` or `rbac.path`, `rbac.namespace`,
 * `rbac.scope`, `rbac.required` and `rbac.iam_permissions`; on 429/5xx `kube.retry_after` (seconds).
 */
export function rbacOutcomeAttributes(o: RbacOutcome): Attributes {
  const attrs: Attributes = { 'rbac.decision': o.decision };
  setAttr(attrs, 'rbac.reason', o.reason);
  setAttr(attrs, 'rbac.message', o.message);
  if (o.denial) {
    setAttr(attrs, 'rbac.user', o.denial.user);
    setAttr(attrs, 'rbac.verb', o.denial.verb);
    setAttr(attrs, 'rbac.resource', o.denial.resource);
    setAttr(attrs, 'rbac.path', o.denial.path);
    setAttr(attrs, 'rbac.namespace', o.denial.namespace);
    setAttr(attrs, 'rbac.scope', o.denial.scope);
  }
  if (o.required) {
    attrs['rbac.required'] = canIArgs(o.required);
    setAttr(attrs, 'rbac.iam_permissions', o.required.iamPermissions);
  }
  setAttr(attrs, 'kube.retry_after', o.retryAfterS);
  return attrs;
}

function decide(code: number, status: Status | undefined): RbacDecision {
  if (!Number.isInteger(code) || code < 100 || code > 599) return 'not_applicable';
  if (code < 400) return 'allowed';
  if (code === 401) return 'unauthenticated';
  if (code === 403) {
    const notAuthorizer =
      status?.reason === 'Forbidden' && status.message !== undefined && !AUTHORIZER_DENIAL.test(status.message);
    return notAuthorizer ? 'allowed' : 'denied';
  }
  if (AFTER_AUTHORIZATION.has(code)) return 'allowed';
  if (code === 429 && status !== undefined) return 'allowed';
  return 'not_applicable';
}

interface Status {
  reason?: string | undefined;
  message?: string | undefined;
}

/** A `{"kind":"Status",…}` body's reason and message, or undefined. */
function parseStatus(body: string | undefined): Status | undefined {
  if (body === undefined || body === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const o = value as Record<string, unknown>;
  if (o.kind !== 'Status') return undefined;
  return {
    reason: typeof o.reason === 'string' ? o.reason : undefined,
    message: typeof o.message === 'string' ? o.message : undefined,
  };
}

/** A Go %q string: `"` … `"` with backslash escapes. */
const Q = String.raw`"((?:[^"\\]|\\.)*)"`;
/**
 * apierrors.NewForbidden wraps forbiddenMessage as `<res>[.<group>][ "<name>"] is forbidden: …`
 * or, for non-resource requests, `forbidden: …`; an authorizer reason may follow as `: <reason>`.
 */
const AUTHORIZER_DENIAL = /(?:^| is )forbidden: User "/;
const FORBIDDEN = new RegExp(
  String.raw`(?:^| is )forbidden: User ${Q} cannot (\S+) ` +
    String.raw`(?:resource ${Q} in API group ${Q} (?:in the namespace ${Q}|at the cluster scope)|path ${Q})`,
);

/**
 * Parses an authorizer denial:
 * `User "<u>" cannot <verb> resource "<res>[/<sub>]" in API group "<g>" in the namespace "<ns>"`,
 * `… at the cluster scope`, or `User "<u>" cannot <verb> path "<path>"`. undefined otherwise.
 */
export function parseForbiddenMessage(message: string): ForbiddenMessage | undefined {
  const m = FORBIDDEN.exec(message);
  if (!m) return undefined;
  const [, user = '', verb = '', resource, group = '', namespace, path] = m;
  if (path !== undefined) return { user: unquote(user), verb, path: unquote(path) };
  const [base = '', ...sub] = unquote(resource ?? '').split('/');
  const qualified = (group === '' ? base : `${base}.${unquote(group)}`) + sub.map((s) => `/${s}`).join('');
  return namespace === undefined
    ? { user: unquote(user), verb, resource: qualified, scope: 'cluster' }
    : { user: unquote(user), verb, resource: qualified, namespace: unquote(namespace), scope: 'namespace' };
}

/** What a denied request needed, in the parts an RBAC rule (and `kubectl auth can-i`) names. */
export interface RequiredAccess {
  user: string;
  verb: string;
  /** Resource requests. */
  resource?: string;
  /** API group, '' for core. */
  group?: string;
  subresource?: string;
  /** The object's name, when the message names one. */
  name?: string;
  /** Absent: cluster scope (a cluster-scoped resource, or all namespaces). */
  namespace?: string;
  /** Non-resource requests: the URL path. */
  path?: string;
  /** GKE's authorizer reason names IAM permissions: `requires one of ["container.pods.list"] permission(s)`. */
  iamPermissions?: string[];
}

/** `<res>[.<group>] "<name>" is forbidden: …`: the object's name. */
const NAMED = new RegExp(String.raw`^\S+ ${Q} is forbidden: `);
const IAM = /requires one of \[([^\]]*)\] permission/;

export function requiredAccess(message: string, d: ForbiddenMessage): RequiredAccess {
  const out: RequiredAccess = { user: d.user, verb: d.verb };
  if (d.path !== undefined) out.path = d.path;
  if (d.resource !== undefined) {
    // Resource plurals have no dots; groups do: `deployments.apps/scale`.
    const [qualified = '', ...sub] = d.resource.split('/');
    const dot = qualified.indexOf('.');
    out.resource = dot === -1 ? qualified : qualified.slice(0, dot);
    out.group = dot === -1 ? '' : qualified.slice(dot + 1);
    if (sub.length > 0) out.subresource = sub.join('/');
    const name = NAMED.exec(message)?.[1];
    if (name !== undefined) out.name = unquote(name);
    if (d.scope === 'namespace' && d.namespace !== undefined) out.namespace = d.namespace;
  }
  const iam = IAM.exec(message)?.[1];
  const perms =
    iam === undefined
      ? []
      : [...iam.matchAll(new RegExp(Q, 'g'))].map((p) => unquote(p[1] ?? '')).filter((p) => p !== '');
  if (perms.length > 0) out.iamPermissions = perms;
  return out;
}

/**
 * `rbac.required`: what the request needed, as `kubectl auth can-i` takes it, so it can be checked as it
 * is: `list pods -n default`, `get pods --subresource=log -n default`, `get pods/web -n default`, `list
 * nodes -A` (cluster scope: all namespaces, which is what a check at the cluster scope asks), `get /healthz`.
 */
export function canIArgs(r: RequiredAccess): string {
  if (r.path !== undefined) return `${r.verb} ${r.path}`;
  const type = r.group ? `${r.resource ?? ''}.${r.group}` : (r.resource ?? '');
  const target = r.name !== undefined ? `${type}/${r.name}` : type;
  const sub = r.subresource !== undefined ? ` --subresource=${r.subresource}` : '';
  return `${r.verb} ${target}${sub}${r.namespace !== undefined ? ` -n ${r.namespace}` : ' -A'}`;
}

const ENTITIES = new Map([
  ['amp', '&'],
  ['lt', '<'],
  ['gt', '>'],
]);
const ESCAPES = new Map([
  ['a', '\x07'],
  ['b', '\b'],
  ['f', '\f'],
  ['n', '\n'],
  ['r', '\r'],
  ['t', '\t'],
  ['v', '\v'],
]);

/** Reverses responsewriters' HTML sanitizer (`&`, `<`, `>`), then Go's %q escapes. */
function unquote(s: string): string {
  return s
    .replace(/&(amp|lt|gt);/g, (_, e: string) => ENTITIES.get(e) ?? '')
    .replace(/\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)/g, (_, e: string) => {
      if (e.length > 1) {
        const cp = parseInt(e.slice(1), 16);
        return cp <= 0x10ffff ? String.fromCodePoint(cp) : '\uFFFD';
      }
      return ESCAPES.get(e) ?? e;
    });
}

function truncate(message: string): string {
  if (message.length <= RBAC_MESSAGE_MAX) return message;
  let cut = message.slice(0, RBAC_MESSAGE_MAX - 1);
  if (/[\uD800-\uDBFF]$/.test(cut)) cut = cut.slice(0, -1);
  return `${cut}…`;
}
