/**
 * The stand-in apiserver's request chain, piece by piece and without a listener: which fault a request
 * takes (faults.ts), who a credential makes the caller and how a denial is worded (auth.ts), and which APF
 * flow schema classifies it (apf.ts). The integration suite drives the same code through kubectl.
 */
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { apfFor, newApfTable } from '../../helpers/fake-apiserver/apf.ts';
import { createAuth, defaultAuthorize } from '../../helpers/fake-apiserver/auth.ts';
import { faultAnswer, Faults } from '../../helpers/fake-apiserver/faults.ts';
import { requestInfo } from '../../helpers/fake-apiserver/request-info.ts';
import type { RequestAttributes, UserInfo } from '../../helpers/fake-apiserver/types.ts';
import { ApiError } from '../../helpers/fake-apiserver/wire.ts';

/** A request as `authenticate` and `impersonate` read it: headers, and a TLS socket without a client cert. */
function req(headers: [string, string][] = []): IncomingMessage {
  const flat: Record<string, string> = {};
  for (const [k, v] of headers) flat[k.toLowerCase()] = v;
  return {
    headers: flat,
    rawHeaders: headers.flat(),
    socket: { getPeerCertificate: () => ({}), authorized: false },
  } as unknown as IncomingMessage;
}

const attrs = (a: Partial<RequestAttributes>): RequestAttributes => ({
  verb: 'get',
  isResourceRequest: true,
  path: '',
  apiGroup: '',
  apiVersion: 'v1',
  resource: '',
  subresource: '',
  namespace: '',
  name: '',
  ...a,
});

const alice: UserInfo = { name: 'alice', groups: ['system:authenticated'] };

describe('faults', () => {
  it('a request takes the first fault matching its method and path; `times` wears a fault out', () => {
    const f = new Faults();
    f.set([
      { method: 'post', path: /configmaps/, status: 409, times: 2 },
      { path: /configmaps/, status: 503 },
    ]);
    expect(f.take('GET', '/api/v1/pods')).toBeUndefined();
    expect(f.take('POST', '/api/v1/namespaces/default/configmaps')?.status).toBe(409);
    expect(f.take('POST', '/api/v1/namespaces/default/configmaps')?.status).toBe(409);
    expect(f.take('POST', '/api/v1/namespaces/default/configmaps')?.status).toBe(503);
    f.set(null);
    expect(f.take('POST', '/api/v1/namespaces/default/configmaps')).toBeUndefined();
  });

  it('set() copies: the caller’s fault objects keep their `times`', () => {
    const fault = { status: 500, times: 1 };
    const f = new Faults();
    f.set(fault);
    f.take('GET', '/');
    expect(f.take('GET', '/')).toBeUndefined();
    expect(fault).toEqual({ status: 500, times: 1 });
  });

  it('a status fault answers a Status, APF’s 429 text, or the body it was given', () => {
    const timeout = faultAnswer({ status: 504 }, 'a1');
    expect(JSON.parse(timeout.body)).toMatchObject({ kind: 'Status', reason: 'Timeout', code: 504 });
    expect(timeout.headers).toContainEqual(['Content-Type', 'application/json']);
    expect(timeout.headers.map(([k]) => k)).toEqual([...timeout.headers.map(([k]) => k)].sort());

    const throttled = faultAnswer({ status: 429, retryAfter: 3 }, 'a2');
    expect(throttled.body).toBe('Too many requests, please try again later.\n');
    expect(throttled.headers).toContainEqual(['Retry-After', '3']);
    expect(throttled.headers).toContainEqual(['Content-Type', 'text/plain; charset=utf-8']);
    expect(throttled.headers).toContainEqual(['Audit-Id', 'a2']);

    const given = faultAnswer({ status: 502, body: 'upstream gone', headers: { 'X-Extra': '1' } }, 'a3');
    expect(given).toMatchObject({ code: 502, body: 'upstream gone' });
    expect(given.headers).toContainEqual(['X-Extra', '1']);
    expect(given.headers).toContainEqual(['Content-Type', 'text/plain; charset=utf-8']);
  });
});

describe('auth', () => {
  const auth = createAuth({
    tokens: { t0k3n: { user: 'bob', groups: ['devs'] } },
    basicAuth: { carol: { password: 'pa:ss' } },
  });

  it('bearer, basic and anonymous; a presented credential that fails is a 401, not anonymous', () => {
    expect(auth.authenticate(req([['Authorization', 'Bearer t0k3n']]))).toEqual({
      user: { name: 'bob', groups: ['devs', 'system:authenticated'] },
    });
    const basic = `Basic ${Buffer.from('carol:pa:ss').toString('base64')}`;
    expect(auth.authenticate(req([['Authorization', basic]]))).toEqual({
      user: { name: 'carol', groups: ['system:authenticated'] },
    });
    expect(auth.authenticate(req())).toEqual({
      user: { name: 'system:anonymous', groups: ['system:unauthenticated'] },
    });
    expect(auth.authenticate(req([['Authorization', 'Bearer wrong']]))).toBe('unauthorized');
    expect(createAuth({ anonymous: false }).authenticate(req())).toBe('unauthorized');
  });

  it('a denial is the apiserver’s 403 Status, sanitized, with the authorizer’s reason', () => {
    const deny = createAuth({ authorize: () => ({ allowed: false, reason: 'RBAC: no <binding>' }) });
    const err = deny.decide(
      alice,
      attrs({
        verb: 'get',
        resource: 'deployments',
        subresource: 'scale',
        apiGroup: 'apps',
        namespace: 'p',
        name: 'w',
      }),
    );
    expect(err?.status).toMatchObject({
      reason: 'Forbidden',
      code: 403,
      message:
        'deployments.apps "w" is forbidden: User "alice" cannot get resource "deployments/scale" in API group "apps" in the namespace "p": RBAC: no <binding>',
      details: { name: 'w', group: 'apps', kind: 'deployments' },
    });
    const path = createAuth({ authorize: () => false }).decide(
      alice,
      attrs({ isResourceRequest: false, path: '/x<y' }),
    );
    expect(path?.status.message).toBe('forbidden: User "alice" cannot get path "/x&lt;y"');
    expect(deny.decision(alice, attrs({}))).toEqual({ allowed: false, reason: 'RBAC: no <binding>' });
    expect(createAuth({}).decision(alice, attrs({}))).toEqual({ allowed: true });
  });

  it('impersonation needs `impersonate` on users and on each group; groups alone are a 400', () => {
    const asked: string[] = [];
    const policy = createAuth({
      authorize: (_u, a) => {
        asked.push(`${a.verb} ${a.resource}/${a.name}`);
        return a.name !== 'admins';
      },
    });
    const as = req([
      ['Impersonate-User', 'dave'],
      ['Impersonate-Group', 'devs'],
      ['Impersonate-Group', 'admins'],
    ]);
    const denied = policy.impersonate(as, alice);
    expect(denied).toBeInstanceOf(ApiError);
    expect((denied as ApiError).status.message).toBe(
      'groups "admins" is forbidden: User "alice" cannot impersonate resource "groups" in API group "" at the cluster scope',
    );
    expect(asked).toEqual(['impersonate users/dave', 'impersonate groups/devs', 'impersonate groups/admins']);
    expect(createAuth({}).impersonate(as, alice)).toEqual({
      name: 'dave',
      groups: ['devs', 'admins', 'system:authenticated'],
    });
    const groupsOnly = createAuth({}).impersonate(req([['Impersonate-Group', 'devs']]), alice) as ApiError;
    expect(groupsOnly.status).toMatchObject({
      code: 400,
      message: 'requested [{Group devs}] without impersonating a user',
    });
  });

  it('defaultAuthorize: authenticated users anything, anonymous only the public GETs', () => {
    const anon: UserInfo = { name: 'system:anonymous', groups: ['system:unauthenticated'] };
    expect(defaultAuthorize(alice, attrs({ verb: 'delete', resource: 'pods' }))).toBe(true);
    expect(defaultAuthorize(anon, attrs({ isResourceRequest: false, path: '/readyz/etcd' }))).toBe(true);
    expect(defaultAuthorize(anon, attrs({ isResourceRequest: false, path: '/apis' }))).toBe(false);
    expect(defaultAuthorize(anon, attrs({ verb: 'list', resource: 'pods' }))).toBe(false);
  });
});

describe('apf', () => {
  const apf = newApfTable();
  const info = (path: string): ReturnType<typeof requestInfo> =>
    requestInfo('GET', new URL(path, 'https://fake.invalid'));
  const masters: UserInfo = { name: 'root', groups: ['system:masters', 'system:authenticated'] };

  it('exempt for system:masters, probes for health checks, global-default else; none for long-running non-watch', () => {
    expect(apf.probes.priorityLevelUid).toBe(apf.exempt.priorityLevelUid);
    expect(apfFor(apf, masters, info('/api/v1/pods'))).toBe(apf.exempt);
    expect(apfFor(apf, alice, info('/livez'))).toBe(apf.probes);
    expect(apfFor(apf, alice, info('/api/v1/namespaces/d/pods'))).toBe(apf.globalDefault);
    expect(apfFor(apf, alice, info('/api/v1/namespaces/d/pods?watch=1'))).toBe(apf.globalDefault);
    expect(apfFor(apf, masters, info('/api/v1/namespaces/d/pods/p/log'))).toBeUndefined();
    expect(apfFor(apf, alice, info('/api/v1/namespaces/d/pods/p/exec'))).toBeUndefined();
  });
});
