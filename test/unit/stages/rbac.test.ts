import { describe, expect, it } from 'vitest';
import type { Attributes } from '../../../src/stages/attributes.ts';
import {
  RBAC_MESSAGE_MAX,
  parseForbiddenMessage,
  rbacOutcome,
  rbacOutcomeAttributes,
  type RbacFacts,
} from '../../../src/stages/rbac.ts';

/** The stage as the span sees it: the answer's facts in, the rbac span's attributes out. */
const rbacAttributes = (facts: RbacFacts): Attributes => rbacOutcomeAttributes(rbacOutcome(facts));

/** A Status body as the apiserver writes it. */
function status(code: number, reason: string, message: string, details?: object): string {
  return JSON.stringify({
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    details,
    code,
  });
}

const LIST_PODS_DENIED =
  'pods is forbidden: User "system:serviceaccount:default:viewer" cannot list resource "pods" in API group "" in the namespace "default"';
const EXEC_DENIED =
  'pods "web-0" is forbidden: User "alice" cannot create resource "pods/exec" in API group "" in the namespace "prod"';
const CLUSTER_DENIED =
  'nodes is forbidden: User "bob" cannot list resource "nodes" in API group "" at the cluster scope';
const GROUPED_DENIED =
  'deployments.apps "web" is forbidden: User "alice" cannot get resource "deployments/scale" in API group "apps" in the namespace "prod"';
const RBAC_TAIL_DENIED =
  'secrets is forbidden: User "carol" cannot list resource "secrets" in API group "" in the namespace "kube-system": ' +
  'RBAC: clusterrole.rbac.authorization.k8s.io "secret-reader" not found';
const MULTI_TAIL_DENIED =
  'configmaps is forbidden: User "dave" cannot watch resource "configmaps" in API group "" at the cluster scope: ' +
  'RBAC: [clusterrole.rbac.authorization.k8s.io "a" not found, role.rbac.authorization.k8s.io "b" not found]\nno relationship found';
const PATH_DENIED = 'forbidden: User "system:anonymous" cannot get path "/metrics"';
const IMPERSONATE_DENIED =
  'users "admin" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope';

describe('rbacAttributes: decision', () => {
  it.each([
    [200, 'allowed'],
    [201, 'allowed'],
    [101, 'allowed'], // upgrade accepted
    [304, 'allowed'], // conditional discovery
    [401, 'unauthenticated'],
    [404, 'allowed'], // a handler answered: authorization passed
    [405, 'allowed'],
    [406, 'allowed'],
    [409, 'allowed'],
    [410, 'allowed'],
    [412, 'allowed'],
    [415, 'allowed'],
    [422, 'allowed'],
    [400, 'not_applicable'], // may precede authorization (bad timeout parameter)
    [413, 'not_applicable'],
    [429, 'not_applicable'], // APF / max-in-flight: before authorization
    [500, 'not_applicable'], // authorizer errors and panics
    [503, 'not_applicable'], // shutdown
    [504, 'not_applicable'],
    [0, 'not_applicable'],
    [99, 'not_applicable'],
    [600, 'not_applicable'],
    [Number.NaN, 'not_applicable'],
    [200.5, 'not_applicable'],
  ])('%s without a body → %s', (statusCode, decision) => {
    expect(rbacAttributes({ statusCode })['rbac.decision']).toBe(decision);
  });

  it('403 from an authorizer → denied', () => {
    expect(
      rbacAttributes({ statusCode: 403, statusBody: status(403, 'Forbidden', LIST_PODS_DENIED) })['rbac.decision'],
    ).toBe('denied');
  });

  it.each([
    ['no body', undefined],
    ['a non-JSON body', 'Forbidden\n'],
    ['a truncated Status', status(403, 'Forbidden', LIST_PODS_DENIED).slice(0, 60)],
    ['a Status without message', JSON.stringify({ kind: 'Status', reason: 'Forbidden', code: 403 })],
    ['a Status with another reason', status(403, 'Unknown', 'something went sideways')],
  ])('403 with %s → denied (what a 403 means unless the body says otherwise)', (_, statusBody) => {
    expect(rbacAttributes({ statusCode: 403, statusBody })['rbac.decision']).toBe('denied');
  });

  it.each([
    [
      'PodSecurity admission',
      'pods "web" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false',
    ],
    [
      'a resource quota',
      'pods "web" is forbidden: exceeded quota: compute, requested: cpu=2, used: cpu=9, limited: cpu=10',
    ],
    [
      'a terminating namespace',
      'pods "web" is forbidden: unable to create new content in namespace gone because it is being terminated',
    ],
  ])('403 Forbidden from %s, after authorization → allowed', (_, message) => {
    const attrs = rbacAttributes({ statusCode: 403, statusBody: status(403, 'Forbidden', message) });
    expect(attrs).toEqual({ 'rbac.decision': 'allowed', 'rbac.reason': 'Forbidden', 'rbac.message': message });
  });

  it('429 with a Status body comes from a handler (eviction blocked by a PDB) → allowed', () => {
    const body = status(429, 'TooManyRequests', "Cannot evict pod as it would violate the pod's disruption budget.", {
      retryAfterSeconds: 5,
    });
    expect(rbacAttributes({ statusCode: 429, statusBody: body })['rbac.decision']).toBe('allowed');
  });

  it('429 with the APF text body → not_applicable', () => {
    const attrs = rbacAttributes({
      statusCode: 429,
      statusBody: 'Too many requests, please try again later.\n',
      retryAfter: '1',
    });
    expect(attrs).toEqual({ 'rbac.decision': 'not_applicable', 'kube.retry_after': 1 });
  });
});

describe('rbacAttributes: Status fields', () => {
  it('401: reason and message from the Status', () => {
    const body = status(401, 'Unauthorized', 'Unauthorized');
    expect(rbacAttributes({ statusCode: 401, statusBody: body })).toEqual({
      'rbac.decision': 'unauthenticated',
      'rbac.reason': 'Unauthorized',
      'rbac.message': 'Unauthorized',
    });
  });

  it('403 from an authorizer: everything the message names', () => {
    const body = status(403, 'Forbidden', LIST_PODS_DENIED, { kind: 'pods' });
    expect(rbacAttributes({ statusCode: 403, statusBody: body })).toEqual({
      'rbac.decision': 'denied',
      'rbac.reason': 'Forbidden',
      'rbac.message': LIST_PODS_DENIED,
      'rbac.user': 'system:serviceaccount:default:viewer',
      'rbac.verb': 'list',
      'rbac.resource': 'pods',
      'rbac.namespace': 'default',
      'rbac.scope': 'namespace',
      'rbac.required': 'list pods -n default',
    });
  });

  it('emits no Status fields for other codes, even with a Status body', () => {
    const body = status(404, 'NotFound', 'pods "x" not found');
    expect(rbacAttributes({ statusCode: 404, statusBody: body })).toEqual({ 'rbac.decision': 'allowed' });
  });

  it('ignores JSON that is not a Status', () => {
    const body = JSON.stringify({ kind: 'Pod', reason: 'Forbidden', message: LIST_PODS_DENIED });
    expect(rbacAttributes({ statusCode: 403, statusBody: body })).toEqual({ 'rbac.decision': 'denied' });
  });

  it('ignores fields of the wrong type', () => {
    const body = JSON.stringify({ kind: 'Status', reason: 7, message: { text: 'x' } });
    expect(rbacAttributes({ statusCode: 401, statusBody: body })).toEqual({ 'rbac.decision': 'unauthenticated' });
  });

  it(`truncates rbac.message to ${RBAC_MESSAGE_MAX} characters, ending in an ellipsis`, () => {
    const message = `${LIST_PODS_DENIED}: ${'RBAC: x '.repeat(400)}`;
    const attrs = rbacAttributes({ statusCode: 403, statusBody: status(403, 'Forbidden', message) });
    const kept = attrs['rbac.message'] as string;
    expect(kept).toHaveLength(RBAC_MESSAGE_MAX);
    expect(kept.endsWith('…')).toBe(true);
    expect(message.startsWith(kept.slice(0, -1))).toBe(true);
    expect(attrs['rbac.user']).toBe('system:serviceaccount:default:viewer'); // parsed from the full message
  });

  it('does not split a surrogate pair when truncating', () => {
    const message = `${'a'.repeat(RBAC_MESSAGE_MAX - 2)}😀😀`;
    const kept = rbacAttributes({ statusCode: 401, statusBody: status(401, 'Unauthorized', message) })[
      'rbac.message'
    ] as string;
    expect(kept).toBe(`${'a'.repeat(RBAC_MESSAGE_MAX - 2)}…`);
  });

  it.each([
    ['empty', ''],
    ['binary', '\u0000\u0001k8s\u0000\u0012'],
    ['an HTML page', '<html><body>403 Forbidden</body></html>'],
    ['JSON null', 'null'],
    ['a JSON array', '[{"kind":"Status"}]'],
    ['a JSON string', '"Status"'],
    ['deeply nested JSON', `${'['.repeat(5000)}${']'.repeat(5000)}`],
    ['a prototype-polluting object', '{"__proto__":{"kind":"Status"},"constructor":{"prototype":{"kind":"Status"}}}'],
  ])('survives a %s body', (_, statusBody) => {
    for (const statusCode of [401, 403, 429, 500]) {
      expect(() => rbacAttributes({ statusCode, statusBody })).not.toThrow();
    }
    expect(rbacAttributes({ statusCode: 403, statusBody })).toEqual({ 'rbac.decision': 'denied' });
  });
});

describe('rbacAttributes: kube.retry_after', () => {
  it.each([
    [429, '1', 1],
    [429, ' 30 ', 30],
    [503, '5', 5],
    [500, '0', 0],
    [429, 'Wed, 21 Oct 2015 07:28:00 GMT', undefined], // client-go ignores HTTP-dates; so do we
    [429, '-1', undefined],
    [429, '1.5', undefined],
    [429, '', undefined],
    [429, '99999999999', undefined],
    [429, undefined, undefined],
    [200, '5', undefined],
    [403, '5', undefined],
    [404, '5', undefined],
  ])('%s with Retry-After %j → %s', (statusCode, retryAfter, expected) => {
    expect(rbacAttributes({ statusCode, retryAfter })['kube.retry_after']).toBe(expected);
  });
});

describe('parseForbiddenMessage', () => {
  it.each([
    [
      LIST_PODS_DENIED,
      {
        user: 'system:serviceaccount:default:viewer',
        verb: 'list',
        resource: 'pods',
        namespace: 'default',
        scope: 'namespace',
      },
    ],
    [EXEC_DENIED, { user: 'alice', verb: 'create', resource: 'pods/exec', namespace: 'prod', scope: 'namespace' }],
    [CLUSTER_DENIED, { user: 'bob', verb: 'list', resource: 'nodes', scope: 'cluster' }],
    [
      GROUPED_DENIED,
      { user: 'alice', verb: 'get', resource: 'deployments.apps/scale', namespace: 'prod', scope: 'namespace' },
    ],
    [
      'deployments.apps is forbidden: User "alice" cannot list resource "deployments" in API group "apps" at the cluster scope',
      { user: 'alice', verb: 'list', resource: 'deployments.apps', scope: 'cluster' },
    ],
    [
      RBAC_TAIL_DENIED,
      { user: 'carol', verb: 'list', resource: 'secrets', namespace: 'kube-system', scope: 'namespace' },
    ],
    [MULTI_TAIL_DENIED, { user: 'dave', verb: 'watch', resource: 'configmaps', scope: 'cluster' }],
    [PATH_DENIED, { user: 'system:anonymous', verb: 'get', path: '/metrics' }],
    [`${PATH_DENIED}: no RBAC policy matched`, { user: 'system:anonymous', verb: 'get', path: '/metrics' }],
    [IMPERSONATE_DENIED, { user: 'alice', verb: 'impersonate', resource: 'users', scope: 'cluster' }],
    [
      'namespaces "prod" is forbidden: User "alice" cannot get resource "namespaces" in API group "" in the namespace "prod"',
      { user: 'alice', verb: 'get', resource: 'namespaces', namespace: 'prod', scope: 'namespace' },
    ],
    [
      // %q escapes and the responsewriters HTML sanitizer
      String.raw`pods is forbidden: User "we\"ird&amp;&lt;name&gt;\\\u00e9" cannot list resource "pods" in API group "" in the namespace "a&amp;b"`,
      { user: 'we"ird&<name>\\é', verb: 'list', resource: 'pods', namespace: 'a&b', scope: 'namespace' },
    ],
    [
      'pods is forbidden: User "" cannot list resource "pods" in API group "" at the cluster scope',
      { user: '', verb: 'list', resource: 'pods', scope: 'cluster' },
    ],
  ])('%s', (message, expected) => {
    expect(parseForbiddenMessage(message)).toEqual(expected);
  });

  it.each([
    'pods "web" is forbidden: violates PodSecurity "restricted:latest"',
    'Unauthorized',
    'User "alice" cannot list resource "pods"', // no forbidden prefix
    'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace', // truncated
    'pods is forbidden: User "alice', // truncated inside a quote
    '',
  ])('rejects %j', (message) => {
    expect(parseForbiddenMessage(message)).toBeUndefined();
  });

  it('an empty user renders no rbac.user attribute', () => {
    const message = 'pods is forbidden: User "" cannot list resource "pods" in API group "" at the cluster scope';
    const attrs = rbacAttributes({ statusCode: 403, statusBody: status(403, 'Forbidden', message) });
    expect(attrs).not.toHaveProperty('rbac.user');
    expect(attrs).toMatchObject({ 'rbac.decision': 'denied', 'rbac.verb': 'list', 'rbac.scope': 'cluster' });
  });

  it('a non-resource denial sets rbac.path and no scope or resource', () => {
    const attrs = rbacAttributes({ statusCode: 403, statusBody: status(403, 'Forbidden', PATH_DENIED) });
    expect(attrs).toEqual({
      'rbac.decision': 'denied',
      'rbac.reason': 'Forbidden',
      'rbac.message': PATH_DENIED,
      'rbac.user': 'system:anonymous',
      'rbac.verb': 'get',
      'rbac.path': '/metrics',
      'rbac.required': 'get /metrics',
    });
  });
});
