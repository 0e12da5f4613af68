import { describe, expect, it } from 'vitest';
import { apfLines, rbacFix, rbacFixLines } from '../../../src/report/findings.ts';
import type { CommandSummary, RequestSummary } from '../../../src/telemetry/commands.ts';
import { parseForbiddenMessage, rbacOutcome, requiredAccess, type RbacOutcome } from '../../../src/stages/rbac.ts';
import { requestSummary } from '../../helpers/summaries.ts';

function fixFor(message: string): ReturnType<typeof rbacFix> & { required: ReturnType<typeof requiredAccess> } {
  const denial = parseForbiddenMessage(message);
  if (!denial) throw new Error('not a denial');
  const required = requiredAccess(message, denial);
  return { ...rbacFix(required), required };
}

describe('rbacFix: the commands that would allow a denied request', () => {
  it('a namespaced list: a Role and RoleBinding in that namespace, and can-i to check', () => {
    const f = fixFor(
      'pods is forbidden: User "mallory" cannot list resource "pods" in API group "" in the namespace "default"',
    );
    expect(f.allow).toEqual([
      'kubectl create role kubetrail-list-pods --verb=list --resource=pods -n default',
      'kubectl create rolebinding kubetrail-list-pods --role=kubetrail-list-pods --user=mallory -n default',
    ]);
    expect(f.check).toBe('kubectl auth can-i list pods -n default');
  });

  it('a named subresource in a group, for a service account', () => {
    const f = fixFor(
      'deployments.apps "web" is forbidden: User "system:serviceaccount:ci:deployer" cannot get resource "deployments/scale" in API group "apps" in the namespace "prod"',
    );
    expect(f.allow).toEqual([
      'kubectl create role kubetrail-get-deployments-apps-scale-web --verb=get --resource=deployments.apps/scale --resource-name=web -n prod',
      'kubectl create rolebinding kubetrail-get-deployments-apps-scale-web --role=kubetrail-get-deployments-apps-scale-web --serviceaccount=ci:deployer -n prod',
    ]);
    expect(f.check).toBe('kubectl auth can-i get deployments.apps/web --subresource=scale -n prod');
  });

  it('the cluster scope and a non-resource URL: a ClusterRole and ClusterRoleBinding', () => {
    const nodes = fixFor(
      'nodes is forbidden: User "bob" cannot list resource "nodes" in API group "" at the cluster scope',
    );
    expect(nodes.allow[0]).toBe('kubectl create clusterrole kubetrail-list-nodes --verb=list --resource=nodes');
    expect(nodes.allow[1]).toBe(
      'kubectl create clusterrolebinding kubetrail-list-nodes --clusterrole=kubetrail-list-nodes --user=bob',
    );
    expect(nodes.check).toBe('kubectl auth can-i list nodes -A');
    const path = fixFor('forbidden: User "bob" cannot get path "/metrics"');
    expect(path.allow[0]).toBe(
      'kubectl create clusterrole kubetrail-get-metrics --verb=get --non-resource-url=/metrics',
    );
    expect(path.check).toBe('kubectl auth can-i get /metrics');
  });

  it("names GKE's IAM permissions and quotes what the shell would split", () => {
    const f = fixFor(
      'pods is forbidden: User "Jo Doe" cannot list resource "pods" in API group "" in the namespace "default": requires one of ["container.pods.list"] permission(s).',
    );
    expect(f.required.iamPermissions).toEqual(['container.pods.list']);
    expect(f.allow[1]).toContain("--user='Jo Doe'");
  });
});

const req = (statusCode: number, retryAfter?: number, rbac?: RbacOutcome): RequestSummary =>
  requestSummary({
    path: '/api/v1/namespaces/default/pods',
    startedAt: 0,
    durationMs: 1,
    statusCode,
    bytes: 0,
    reads: undefined,
    rbac: rbac ?? { decision: 'not_applicable', ...(retryAfter === undefined ? {} : { retryAfterS: retryAfter }) },
  });
const cmd = (requests: RequestSummary[]): CommandSummary => ({
  traceId: 't',
  command: 'kubectl get',
  session: undefined,
  startedAt: 0,
  durationMs: 1,
  requests,
});

describe('apfLines: the server throttling kubectl retried, as one finding', () => {
  it('groups the 429s and the retry that got through', () => {
    expect(apfLines(cmd([req(429, 1), req(429, 1), req(200)]))).toEqual([
      'apf rejected: list pods 2× 429 (Retry-After 1s), then 200',
    ]);
  });

  it('says when kubectl gave up, and nothing without a 429', () => {
    expect(apfLines(cmd([req(429, 2)]))).toEqual([
      'apf rejected: list pods 1× 429 (Retry-After 2s), never let through',
    ]);
    expect(apfLines(cmd([req(200), req(403)]))).toEqual([]);
  });
});

describe('rbacFixLines: each distinct denial once, from what the rbac stage worked out', () => {
  it("a list kubectl retried: one fix, for the authorizer's denial only", () => {
    const message =
      'pods is forbidden: User "mallory" cannot list resource "pods" in API group "" in the namespace "default"';
    const body = JSON.stringify({ kind: 'Status', status: 'Failure', reason: 'Forbidden', message, code: 403 });
    const denied = rbacOutcome({ statusCode: 403, statusBody: body });
    // Admission answers 403 Forbidden too, after authorization allowed the request: nothing to fix in RBAC.
    const quota = rbacOutcome({
      statusCode: 403,
      statusBody: JSON.stringify({ kind: 'Status', reason: 'Forbidden', message: 'exceeded quota: q', code: 403 }),
    });
    expect(
      rbacFixLines(cmd([req(403, undefined, denied), req(403, undefined, denied), req(403, undefined, quota)])),
    ).toEqual([
      'rbac: mallory needs list pods -n default',
      '  kubectl create role kubetrail-list-pods --verb=list --resource=pods -n default',
      '  kubectl create rolebinding kubetrail-list-pods --role=kubetrail-list-pods --user=mallory -n default',
      '  check: kubectl auth can-i list pods -n default',
    ]);
  });
});
