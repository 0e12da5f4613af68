/**
 * Findings explained, on the real stack: a 403 comes with the commands that would allow it, and running
 * them (as admin, directly) makes the same command get past authorization. mallory has no bindings, so
 * every request of hers is a real authorizer denial from kube-apiserver's RBAC.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminClient, createNamespace, createPods, Harness, type AdminClient, type ProxiedRun } from './helpers.ts';
import { startStack, type Stack } from './stack/stack.ts';

let stack: Stack;
let h: Harness;
let admin: AdminClient;

beforeAll(async () => {
  stack = await startStack();
  h = new Harness(stack);
  admin = adminClient(stack);
  for (const ns of ['kt-rbac-list', 'kt-rbac-log']) await createNamespace(admin, ns);
  await createPods(admin, 'kt-rbac-log', ['web']);
});

afterAll(async () => {
  admin?.close();
  h?.dispose();
  await stack?.stop();
});

/** The `kubectl create …` lines of a report's fix, as argv (no shell: they are plain words here). */
function fixCommands(run: ProxiedRun): string[][] {
  return run.report
    .map((l) => l.trim())
    .filter((l) => l.startsWith('kubectl create '))
    .map((l) => l.split(' ').slice(1));
}

/**
 * Run `args` as mallory through kubetrail; while it is denied, apply the fix the report prints (as admin)
 * and run it again. Returns every run; the last one got past authorization.
 */
async function untilAllowed(args: string[], rounds = 3): Promise<ProxiedRun[]> {
  const runs: ProxiedRun[] = [];
  for (let i = 0; i < rounds; i++) {
    const run = await h.proxied(args, { context: 'mallory' });
    runs.push(run);
    if (!/Forbidden/.test(run.kubectlStderr)) return runs;
    const fix = fixCommands(run);
    expect(fix.length, run.stderr).toBe(2);
    for (const argv of fix) {
      const applied = await h.direct(argv, { context: 'admin' });
      expect(applied.code, `${argv.join(' ')}\n${applied.stderr}`).toBe(0);
    }
  }
  throw new Error(`still denied after ${rounds} fixes:\n${runs.at(-1)?.stderr}`);
}

describe('a 403 comes with its fix', () => {
  it('list pods: a Role and RoleBinding that, applied, make the same command succeed', async () => {
    const runs = await untilAllowed(['get', 'pods', '-n', 'kt-rbac-list']);
    const first = runs[0] as ProxiedRun;
    expect(first.code).toBe(1);
    expect(first.report).toContain(
      '  kubectl create role kubetrail-list-pods --verb=list --resource=pods -n kt-rbac-list',
    );
    expect(first.report).toContain('  check: kubectl auth can-i list pods -n kt-rbac-list');
    expect(runs).toHaveLength(2);
    expect((runs[1] as ProxiedRun).code).toBe(0);
  });

  it('pods/log: the subresource is named in the rule (after get pods, which kubectl logs needs first)', async () => {
    const runs = await untilAllowed(['logs', 'web', '-n', 'kt-rbac-log']);
    const rules = runs.flatMap(fixCommands).map((a) => a.join(' '));
    expect(rules).toContain(
      'create role kubetrail-get-pods-log-web --verb=get --resource=pods/log --resource-name=web -n kt-rbac-log',
    );
    // Past authorization there is no kubelet to read from: the apiserver's own error, not a 403.
    expect((runs.at(-1) as ProxiedRun).kubectlStderr).not.toMatch(/Forbidden/);
  });

  it('a cluster-scoped resource: a ClusterRole and ClusterRoleBinding', async () => {
    const runs = await untilAllowed(['get', 'namespaces']);
    expect(runs[0]?.report).toContain(
      '  kubectl create clusterrole kubetrail-list-namespaces --verb=list --resource=namespaces',
    );
    expect(runs[0]?.report).toContain('  check: kubectl auth can-i list namespaces -A');
    expect(runs.at(-1)?.code).toBe(0);
  });

  it('a non-resource URL: --non-resource-url', async () => {
    const runs = await untilAllowed(['get', '--raw', '/metrics']);
    expect(runs[0]?.report).toContain(
      '  kubectl create clusterrole kubetrail-get-metrics --verb=get --non-resource-url=/metrics',
    );
    expect(runs.at(-1)?.code).toBe(0);
  });
});
