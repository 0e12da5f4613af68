/**
 * Who is asking and may they: authentication as the apiserver's union of authenticators (a client
 * certificate verified against the client CA, user = CN and groups = O; a bearer token from `tokens`; basic
 * credentials from `basicAuth`, if given; else anonymous, unless `anonymous: false`), `Impersonate-*`
 * headers, and authorization by the `authorize` policy (default `defaultAuthorize`), with the 401 and 403
 * Status bodies worded as the apiserver's.
 */
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { RequestInfo } from './request-info.ts';
import { headerOf } from './rest.ts';
import type { AuthorizeFn, FakeApiserverOptions, RequestAttributes, UserInfo } from './types.ts';
import { ApiError, errors, status } from './wire.ts';

const PUBLIC_INFO = /^\/(version|healthz|livez|readyz)(\/.*)?$/;

/** Anyone authenticated may do anything; anonymous users may read /version and the health endpoints. */
export const defaultAuthorize: AuthorizeFn = (user, attrs) => {
  if (user.groups.includes('system:masters')) return true;
  if (user.groups.includes('system:authenticated')) return true;
  return !attrs.isResourceRequest && attrs.verb === 'get' && PUBLIC_INFO.test(attrs.path);
};

/** The 401 every failed authentication gets (no details, no reason beyond the word). */
export function unauthorized(): ApiError {
  return new ApiError(status(401, 'Unauthorized', 'Unauthorized'));
}

/** `forbiddenMessage` + `NewForbidden` from the apiserver, with its HTML sanitizer. */
function forbidden(user: UserInfo, a: RequestAttributes, reason: string | undefined): ApiError {
  const sanitize = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  let msg: string;
  if (!a.isResourceRequest) msg = `User "${user.name}" cannot ${a.verb} path "${a.path}"`;
  else {
    const res = a.subresource !== '' ? `${a.resource}/${a.subresource}` : a.resource;
    msg =
      a.namespace !== ''
        ? `User "${user.name}" cannot ${a.verb} resource "${res}" in API group "${a.apiGroup}" in the namespace "${a.namespace}"`
        : `User "${user.name}" cannot ${a.verb} resource "${res}" in API group "${a.apiGroup}" at the cluster scope`;
  }
  msg = sanitize(msg);
  const err = reason !== undefined && reason !== '' ? `${msg}: ${reason}` : msg;
  const gr = a.isResourceRequest ? (a.apiGroup !== '' ? `${a.resource}.${a.apiGroup}` : a.resource) : '';
  const message =
    gr === ''
      ? `forbidden: ${err}`
      : a.name === ''
        ? `${gr} is forbidden: ${err}`
        : `${gr} "${a.name}" is forbidden: ${err}`;
  const details = a.isResourceRequest ? { name: a.name, group: a.apiGroup, kind: a.resource } : {};
  return new ApiError(status(403, 'Forbidden', message, details));
}

/** The authorizer's attributes of a request. */
export function attrsOf(info: RequestInfo): RequestAttributes {
  return {
    verb: info.verb,
    isResourceRequest: info.isResourceRequest,
    path: info.path,
    apiGroup: info.apiGroup,
    apiVersion: info.apiVersion,
    resource: info.resource,
    subresource: info.subresource,
    namespace: info.namespace,
    name: info.name,
  };
}

/** The TLS connection a request came on (h2: its session's socket). */
export function tlsSocketOf(req: IncomingMessage | Http2ServerRequest): TLSSocket {
  if ('stream' in req) {
    const sock = req.stream.session?.socket;
    if (sock) return sock as TLSSocket;
  }
  return req.socket as TLSSocket;
}

function subjectValues(v: string | string[] | undefined): string[] {
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

export interface AuthResult {
  user?: UserInfo;
  /** Set when a client certificate authenticated the request. */
  certCN?: string;
}

export interface Auth {
  /** The union of authenticators; `'unauthorized'` when a credential was presented and failed (or no
   * credential and anonymous is off). */
  authenticate: (req: IncomingMessage | Http2ServerRequest) => AuthResult | 'unauthorized';
  /** `Impersonate-*` headers: each impersonated identity must be authorized (`impersonate users/groups`). */
  impersonate: (req: IncomingMessage | Http2ServerRequest, user: UserInfo) => UserInfo | ApiError;
  /** The 403 for a denied request, or undefined when the policy allows it. */
  decide: (user: UserInfo, a: RequestAttributes) => ApiError | undefined;
  /** The policy's answer as a decision (what SelfSubjectAccessReview reports). */
  decision: (user: UserInfo, a: RequestAttributes) => { allowed: boolean; reason?: string };
}

export function createAuth(opts: Pick<FakeApiserverOptions, 'tokens' | 'basicAuth' | 'anonymous' | 'authorize'>): Auth {
  const authorize = opts.authorize ?? defaultAuthorize;
  const anonymousAllowed = opts.anonymous ?? true;

  const authenticate = (req: IncomingMessage | Http2ServerRequest): AuthResult | 'unauthorized' => {
    const sock = tlsSocketOf(req);
    let failed = false;
    const out: AuthResult = {};
    const cert = sock.getPeerCertificate();
    if (cert !== null && Object.keys(cert).length > 0) {
      if (sock.authorized) {
        const cn = subjectValues(cert.subject.CN)[0] ?? '';
        out.certCN = cn;
        out.user = { name: cn, groups: [...subjectValues(cert.subject.O), 'system:authenticated'] };
        return out;
      }
      failed = true;
    }
    const authz = headerOf(req, 'authorization');
    if (authz !== undefined) {
      const m = /^\s*(\S+)\s+(.*?)\s*$/.exec(authz);
      const scheme = m?.[1]?.toLowerCase();
      const cred = m?.[2] ?? '';
      if (scheme === 'bearer') {
        const t = opts.tokens?.[cred];
        if (t) {
          out.user = { name: t.user, groups: [...(t.groups ?? []), 'system:authenticated'] };
          return out;
        }
        failed = true;
      } else if (scheme === 'basic' && opts.basicAuth) {
        const [u, ...rest] = Buffer.from(cred, 'base64').toString('utf8').split(':');
        const entry = opts.basicAuth[u ?? ''];
        if (entry && entry.password === rest.join(':')) {
          out.user = { name: u ?? '', groups: [...(entry.groups ?? []), 'system:authenticated'] };
          return out;
        }
        failed = true;
      }
    }
    if (failed || !anonymousAllowed) return 'unauthorized';
    out.user = { name: 'system:anonymous', groups: ['system:unauthenticated'] };
    return out;
  };

  const decision = (user: UserInfo, a: RequestAttributes): { allowed: boolean; reason?: string } => {
    const d = authorize(user, a);
    return typeof d === 'boolean' ? { allowed: d } : d;
  };

  const decide = (user: UserInfo, a: RequestAttributes): ApiError | undefined => {
    const d = authorize(user, a);
    const allowed = typeof d === 'boolean' ? d : d.allowed;
    if (allowed) return undefined;
    return forbidden(user, a, typeof d === 'boolean' ? undefined : d.reason);
  };

  const impersonate = (req: IncomingMessage | Http2ServerRequest, user: UserInfo): UserInfo | ApiError => {
    const name = headerOf(req, 'impersonate-user');
    const groups: string[] = [];
    const raw = req.rawHeaders;
    for (let i = 0; i < raw.length; i += 2)
      if (raw[i]?.toLowerCase() === 'impersonate-group') groups.push(raw[i + 1] ?? '');
    if (name === undefined) {
      if (groups.length > 0)
        return errors.badRequest(
          'requested [' + groups.map((g) => `{Group ${g}}`).join(' ') + '] without impersonating a user',
        );
      return user;
    }
    const base = {
      verb: 'impersonate',
      isResourceRequest: true,
      path: '',
      apiGroup: '',
      apiVersion: '',
      subresource: '',
      namespace: '',
    };
    const denied = decide(user, { ...base, resource: 'users', name });
    if (denied) return denied;
    for (const g of groups) {
      const d = decide(user, { ...base, resource: 'groups', name: g });
      if (d) return d;
    }
    return { name, groups: [...groups, 'system:authenticated'] };
  };

  return { authenticate, impersonate, decide, decision };
}
