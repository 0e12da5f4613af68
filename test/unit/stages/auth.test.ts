import { describe, expect, it } from 'vitest';
import type { Attributes } from '../../../src/stages/attributes.ts';
import { authAttributes, authorizationScheme, type AuthFacts } from '../../../src/stages/auth.ts';

const b64url = (s: string): string => Buffer.from(s, 'utf8').toString('base64url');
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

function jwt(
  payload: object,
  header: object = { alg: 'RS256', kid: 'key-1' },
  signature = 'c2lnbmF0dXJlLXNlY3JldC14eXo',
): string {
  return `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}.${signature}`;
}

const SA_SUB = 'system:serviceaccount:kube-system:deployer';
/** A bound service-account token with claims that must not leak. */
const SA_TOKEN = jwt({
  aud: ['https://kubernetes.default.svc'],
  exp: 1900000000,
  iss: 'https://kubernetes.default.svc',
  'kubernetes.io': {
    namespace: 'kube-system',
    pod: { name: 'deployer-7d9f-abcde', uid: 'pod-uid-5f0b' },
    serviceaccount: { name: 'deployer', uid: 'sa-uid-91c2' },
  },
  sub: SA_SUB,
});

const facts = (f: Partial<AuthFacts>): AuthFacts => ({ clientCertForwarded: false, ...f });

/** Every string inside the attribute values, arrays flattened. */
const valuesOf = (attrs: Attributes): string[] =>
  Object.values(attrs).flatMap((v) => (Array.isArray(v) ? v : [String(v)]));

describe('authAttributes: method and identity', () => {
  it('reports a forwarded client certificate with CN as user and O as groups', () => {
    const attrs = authAttributes(
      facts({
        clientCert: { commonName: 'kubernetes-admin', organizations: ['system:masters', 'ops'] },
        clientCertForwarded: true,
      }),
    );
    expect(attrs).toEqual({
      'auth.method': 'client-certificate',
      'auth.user': 'kubernetes-admin',
      'auth.groups': ['system:masters', 'ops'],
    });
  });

  it('prefers the forwarded certificate over a bearer token, as the apiserver does (x509 first)', () => {
    const attrs = authAttributes(
      facts({
        authorization: `Bearer ${SA_TOKEN}`,
        clientCert: { commonName: 'alice', organizations: [] },
        clientCertForwarded: true,
      }),
    );
    expect(attrs).toEqual({ 'auth.method': 'client-certificate', 'auth.user': 'alice' });
  });

  it('ignores a certificate kubetrail does not forward', () => {
    expect(authAttributes(facts({ clientCert: { commonName: 'alice', organizations: ['dev'] } }))).toEqual({
      'auth.method': 'none',
    });
    expect(
      authAttributes(facts({ authorization: 'Bearer opaque-token', clientCert: { commonName: 'alice' } })),
    ).toEqual({
      'auth.method': 'bearer',
    });
  });

  it('reports a service-account JWT by its sub and nothing else', () => {
    expect(authAttributes(facts({ authorization: `Bearer ${SA_TOKEN}` }))).toEqual({
      'auth.method': 'bearer',
      'auth.user': SA_SUB,
    });
  });

  it('reads sub from any JWT (OIDC id_token), unverified', () => {
    const token = jwt({
      iss: 'https://issuer.example',
      sub: 'CgNib2ISBGxkYXA',
      email: 'bob@example.com',
      groups: ['admins'],
    });
    expect(authAttributes(facts({ authorization: `Bearer ${token}` }))).toEqual({
      'auth.method': 'bearer',
      'auth.user': 'CgNib2ISBGxkYXA',
    });
  });

  it('matches the Bearer scheme case-insensitively and takes the second space-separated field', () => {
    expect(authAttributes(facts({ authorization: `bEaReR ${SA_TOKEN}` }))['auth.user']).toBe(SA_SUB);
    expect(authAttributes(facts({ authorization: `  Bearer ${SA_TOKEN} trailing  ` }))['auth.user']).toBe(SA_SUB);
  });

  it.each([
    ['an opaque token', 'Bearer 0123456789abcdef.static-token'],
    ['two segments', `Bearer ${b64url('{"alg":"none"}')}.${b64url('{"sub":"x"}')}`],
    ['four segments', `Bearer ${SA_TOKEN}.extra`],
    ['a payload that is not JSON', `Bearer ${b64url('{"alg":"RS256"}')}.${b64url('sub=x')}.sig`],
    ['a payload that is a JSON array', `Bearer ${b64url('{"alg":"RS256"}')}.${b64url('["x"]')}.sig`],
    ['a numeric sub', `Bearer ${jwt({ sub: 42 })}`],
    ['an empty sub', `Bearer ${jwt({ sub: '' })}`],
    ['an overlong sub', `Bearer ${jwt({ sub: 'x'.repeat(513) })}`],
    ['a header without alg', `Bearer ${jwt({ sub: 'x' }, { typ: 'JWT' })}`],
    ['standard-base64 characters', `Bearer ${b64url('{"alg":"RS256"}')}.${b64('{"sub":"a~~~~"}')}.sig`], // …fn5+fiJ9
    ['base64 padding', `Bearer ${b64url('{"alg":"RS256"}')}.${b64('{"sub":"~~~"}')}.sig`], // …ifQ==
    ['a signature outside base64url', `Bearer ${jwt({ sub: 'x' }, undefined, 'sig+/=')}`],
    [
      'invalid UTF-8',
      `Bearer ${b64url('{"alg":"RS256"}')}.${Buffer.from([0x7b, 0xff, 0x7d]).toString('base64url')}.sig`,
    ],
    ['an impossible base64url length', `Bearer ${b64url('{"alg":"RS256"}')}.abcde.sig`],
  ])('a bearer token with %s names no user', (_, authorization) => {
    expect(authAttributes(facts({ authorization }))).toEqual({ 'auth.method': 'bearer' });
  });

  it('does not decode oversized tokens', () => {
    const token = jwt({ sub: 'big', pad: 'x'.repeat(70 * 1024) });
    expect(authAttributes(facts({ authorization: `Bearer ${token}` }))).toEqual({ 'auth.method': 'bearer' });
  });

  it('reports Basic credentials by username only', () => {
    expect(authAttributes(facts({ authorization: `Basic ${b64('admin:s3cr3t:with:colons')}` }))).toEqual({
      'auth.method': 'basic',
      'auth.user': 'admin',
    });
    expect(authAttributes(facts({ authorization: `basic ${b64('ünï:pw')}` }))['auth.user']).toBe('ünï');
  });

  it.each([
    ['no colon', `Basic ${b64('justauser')}`],
    ['an empty user', `Basic ${b64(':pw')}`],
    ['unpadded base64', `Basic ${b64('ab:c').replace(/=+$/, '')}`],
    ['base64url characters', 'Basic ab-_'],
    ['a second field', `Basic ${b64('a:b')} extra`],
  ])('Basic with %s names no user', (_, authorization) => {
    expect(authAttributes(facts({ authorization }))).toEqual({ 'auth.method': 'basic' });
  });

  it.each([
    ['no header', undefined],
    ['an empty header', ''],
    ['a bare scheme', 'Bearer'],
    ['a double space before the token (the apiserver ignores it)', 'Bearer  tok'],
    ['a tab instead of a space', 'Bearer\ttok'],
    ['another scheme', 'Negotiate YIIFyw'],
    ['a token without scheme', 'eyJhbGciOiJSUzI1NiJ9.e30.sig'],
    ['Basic without credentials', 'Basic '],
  ])('%s → none', (_, authorization) => {
    expect(authAttributes(facts({ authorization }))).toEqual({ 'auth.method': 'none' });
  });

  it('reports impersonation headers, dropping empty groups', () => {
    const attrs = authAttributes(
      facts({
        authorization: `Bearer ${SA_TOKEN}`,
        impersonateUser: 'jane',
        impersonateGroups: ['developers', '', 'system:authenticated'],
        impersonateUid: '1234-uid',
      }),
    );
    expect(attrs).toEqual({
      'auth.method': 'bearer',
      'auth.user': SA_SUB,
      'auth.impersonate.user': 'jane',
      'auth.impersonate.groups': ['developers', 'system:authenticated'],
      'auth.impersonate.uid': '1234-uid',
    });
  });

  it('omits empty impersonation values', () => {
    expect(authAttributes(facts({ impersonateUser: '', impersonateGroups: [], impersonateUid: '' }))).toEqual({
      'auth.method': 'none',
    });
    expect(
      authAttributes(facts({ clientCert: { commonName: '', organizations: [''] }, clientCertForwarded: true })),
    ).toEqual({
      'auth.method': 'client-certificate',
    });
  });

  it('does not alias the caller’s arrays', () => {
    const groups = ['a'];
    const attrs = authAttributes(facts({ impersonateGroups: groups }));
    groups.push('b');
    expect(attrs['auth.impersonate.groups']).toEqual(['a']);
  });
});

describe('authAttributes never emits a secret', () => {
  const [jwtHeader = '', jwtPayload = '', jwtSignature = ''] = SA_TOKEN.split('.');
  const claimsThatMustNotLeak = [
    'kubernetes.default.svc',
    '1900000000',
    'deployer-7d9f-abcde',
    'pod-uid-5f0b',
    'sa-uid-91c2',
    'key-1',
    'RS256',
  ];

  it.each([
    ['a service-account JWT', `Bearer ${SA_TOKEN}`],
    ['a JWT with extra fields after it', `bearer ${SA_TOKEN} ${SA_TOKEN}`],
  ])('%s: no value contains the token, a segment of it or a claim other than sub', (_, authorization) => {
    const values = valuesOf(authAttributes(facts({ authorization, impersonateUser: 'jane' })));
    for (const v of values) {
      expect(v).not.toContain(SA_TOKEN);
      for (const secret of [jwtHeader, jwtPayload, jwtSignature, ...claimsThatMustNotLeak]) {
        expect(v).not.toContain(secret);
      }
      // no 8-character window of the signature or payload either
      for (const segment of [jwtPayload, jwtSignature]) {
        for (let i = 0; i + 8 <= segment.length; i++) expect(v).not.toContain(segment.slice(i, i + 8));
      }
    }
    expect(values).toContain(SA_SUB);
  });

  it('a Basic header: never the password or the encoded credentials', () => {
    const encoded = b64('admin:hunter2-password');
    const values = valuesOf(authAttributes(facts({ authorization: `Basic ${encoded}` })));
    expect(values.join('\n')).not.toMatch(/hunter2|password/);
    expect(values.join('\n')).not.toContain(encoded);
    expect(values).toEqual(['basic', 'admin']);
  });

  it('an opaque bearer token: only the method', () => {
    const values = valuesOf(authAttributes(facts({ authorization: 'Bearer secret-token-abc' })));
    expect(values).toEqual(['bearer']);
  });

  it('a malformed JWT whose payload is a bare string: no part of it', () => {
    const token = `${b64url('{"alg":"RS256"}')}.${b64url('"secret-claim"')}.sig`;
    expect(valuesOf(authAttributes(facts({ authorization: `Bearer ${token}` })))).toEqual(['bearer']);
  });
});

describe('authorizationScheme', () => {
  it.each([
    [undefined, 'none'],
    ['', 'none'],
    ['   ', 'none'],
    ['Bearer secret-token-abc', 'bearer'],
    ['BASIC YWRtaW46cHc=', 'basic'],
    ['Negotiate YIIFyw', 'negotiate'],
    ['Bearer', 'bearer'],
    ['secret-token-without-scheme', 'other'],
    ['mysecret othersecret', 'other'],
  ])('%j → %s', (header, scheme) => {
    expect(authorizationScheme(header)).toBe(scheme);
  });

  it('never returns any part of the credential', () => {
    for (const header of ['Bearer tok3n-value', 'tok3n-value', 'tok3n-value more', 'Basic dG9rM24=']) {
      expect(authorizationScheme(header)).not.toMatch(/tok3n|dG9r/);
    }
  });
});
