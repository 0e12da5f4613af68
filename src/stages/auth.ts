/**
 * The `auth` stage: which credential reaches the apiserver, and whom it names. Pure: header
 * values in, non-secret attributes out. The Authorization value is read to classify and to pull
 * out a name; it, the token and any password are never part of the output.
 */
import { setAttr, type Attributes } from './attributes.ts';

export type AuthMethod = 'client-certificate' | 'bearer' | 'basic' | 'none';

export interface ClientCertSubject {
  /** Subject CN: the apiserver's user name for this certificate. */
  commonName?: string | undefined;
  /** Subject O values: the apiserver's groups for this certificate. */
  organizations?: readonly string[] | undefined;
}

export interface AuthFacts {
  /** Raw Authorization header value. Read, never emitted. */
  authorization?: string | undefined;
  /** Subject of the client certificate kubectl presented to kubetrail. */
  clientCert?: ClientCertSubject | undefined;
  /** True when kubetrail presents that certificate (the kubeconfig's key pair) upstream. */
  clientCertForwarded: boolean;
  impersonateUser?: string | undefined;
  impersonateGroups?: readonly string[] | undefined;
  impersonateUid?: string | undefined;
}

/**
 * `auth.method`, `auth.user`, `auth.groups` and `auth.impersonate.{user,groups,uid}`.
 *
 * The method is the credential the apiserver will authenticate, in its own order
 * (pkg/kubeapiserver/authenticator/config.go: x509 before bearer tokens):
 * - a forwarded client certificate wins; user = CN, groups = O. A certificate kubectl presented
 *   but kubetrail does not forward never reaches the apiserver and is ignored here;
 * - `Bearer <token>` (scheme case-insensitive, token = second space-separated field, as
 *   k8s.io/apiserver's bearertoken authenticator reads it). If the token is a JWT, user = its
 *   `sub` claim, decoded without verification (service-account tokens:
 *   `system:serviceaccount:<ns>:<name>`); no other claim is read. Anything else: no user;
 * - `Basic <base64(user:password)>`: user = the part before the first ':'. The apiserver has not
 *   accepted Basic since 1.19, but it is what the client sent;
 * - anything else (no header, another scheme, an empty token): `none`.
 */
export function authAttributes(facts: AuthFacts): Attributes {
  const { method, user, groups } = identify(facts);
  const attrs: Attributes = { 'auth.method': method };
  setAttr(attrs, 'auth.user', user);
  setAttr(attrs, 'auth.groups', groups);
  setAttr(attrs, 'auth.impersonate.user', facts.impersonateUser);
  setAttr(
    attrs,
    'auth.impersonate.groups',
    facts.impersonateGroups?.filter((g) => g !== ''),
  );
  setAttr(attrs, 'auth.impersonate.uid', facts.impersonateUid);
  return attrs;
}

/** Schemes worth naming in a log line; any other first word might be a bare token. */
const KNOWN_SCHEMES = new Set([
  'basic',
  'bearer',
  'digest',
  'dpop',
  'hoba',
  'mutual',
  'negotiate',
  'ntlm',
  'oauth',
  'privatetoken',
  'scram-sha-1',
  'scram-sha-256',
  'vapid',
]);

/**
 * The scheme of an Authorization header, lower-cased, for logs: `bearer`, `basic`, … ; `none`
 * when there is no header; `other` for anything not a well-known scheme, so that a bare token
 * sent without a scheme is never echoed.
 */
export function authorizationScheme(header: string | undefined): string {
  const first = header?.trim().split(/\s+/)[0]?.toLowerCase() ?? '';
  if (first === '') return 'none';
  return KNOWN_SCHEMES.has(first) ? first : 'other';
}

interface Identity {
  method: AuthMethod;
  user?: string | undefined;
  groups?: string[] | undefined;
}

function identify(facts: AuthFacts): Identity {
  if (facts.clientCertForwarded) {
    const cert = facts.clientCert;
    return {
      method: 'client-certificate',
      user: cert?.commonName,
      groups: cert?.organizations?.filter((o) => o !== ''),
    };
  }
  const header = facts.authorization?.trim() ?? '';
  const [scheme = '', token = ''] = header.split(' ');
  switch (scheme.toLowerCase()) {
    case 'bearer':
      return token === '' ? { method: 'none' } : { method: 'bearer', user: jwtSubject(token) };
    case 'basic': {
      const credentials = header.slice('basic '.length);
      return credentials === '' ? { method: 'none' } : { method: 'basic', user: basicUser(credentials) };
    }
    default:
      return { method: 'none' };
  }
}

/** Larger tokens are not decoded at all. */
const MAX_TOKEN_LENGTH = 64 * 1024;
/** A longer `sub` is not a name worth a span attribute. */
const MAX_SUBJECT_LENGTH = 512;

/** The unverified `sub` of a JWS compact token, or undefined on any doubt. */
function jwtSubject(token: string): string | undefined {
  if (token.length > MAX_TOKEN_LENGTH) return undefined;
  const segments = token.split('.');
  if (segments.length !== 3) return undefined;
  const [header = '', payload = '', signature = ''] = segments;
  if (!/^[A-Za-z0-9_-]*$/.test(signature)) return undefined;
  const alg = jsonObject(base64Decode(header, true))?.alg;
  if (typeof alg !== 'string') return undefined;
  const sub = jsonObject(base64Decode(payload, true))?.sub;
  if (typeof sub !== 'string' || sub === '' || sub.length > MAX_SUBJECT_LENGTH) return undefined;
  return sub;
}

/** The user of `Basic` credentials (Go's Request.BasicAuth: strict standard base64, cut at ':'). */
function basicUser(credential: string): string | undefined {
  const decoded = base64Decode(credential, false);
  if (decoded === undefined) return undefined;
  const colon = decoded.indexOf(':');
  return colon === -1 ? undefined : decoded.slice(0, colon);
}

/**
 * Strict base64 (padded, standard alphabet) or base64url (unpadded) to UTF-8 text; undefined
 * unless the input is exactly that.
 */
function base64Decode(s: string, url: boolean): string | undefined {
  let std: string;
  if (url) {
    if (!/^[A-Za-z0-9_-]+$/.test(s) || s.length % 4 === 1) return undefined;
    std = s
      .replaceAll('-', '+')
      .replaceAll('_', '/')
      .padEnd(Math.ceil(s.length / 4) * 4, '=');
  } else {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) return undefined;
    std = s;
  }
  try {
    const binary = atob(std);
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}

function jsonObject(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
