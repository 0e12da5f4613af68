/**
 * An upgraded request's span carries the apiserver's audit ID. The apiserver answers an exec, attach or
 * port-forward with the kubelet's 101 (SPDY: relayed as the kubelet wrote it; WebSocket: the stream
 * translator's handshake), neither of which carries the Audit-Id header its other answers do. The audit
 * ID is still the Audit-ID the request carried (kube-apiserver's audit filter adopts it), so that is what
 * the span must name: the stand-in's 101s lack the header as the real apiserver's do (checked by hand
 * against kube-apiserver v1.33 with kwok: `kubectl exec -v=9`; test/e2e/nodes.test.ts checks it there).
 */
import { describe, expect, it } from 'vitest';
import { freshHome, kubetrailEnv } from '../helpers/compare.ts';
import { makePod } from '../helpers/fake-apiserver.ts';
import { withFakeCluster } from '../helpers/fake-cluster.ts';
import { kubectlPath } from '../helpers/kubectl.ts';
import type { ReceivedSpan } from '../helpers/otlp-receiver.ts';
import { runKubetrail } from '../helpers/run-kubetrail.ts';

const cluster = withFakeCluster({
  prefix: 'kt-upgrade-audit-',
  kubeconfig: { users: [{ name: 'alice', cert: {} }] },
  seed: (fake) => void fake.create(makePod('web-0', { ageSeconds: 60 })),
  otlp: true,
});

async function spansOf(traceId: string): Promise<ReceivedSpan[]> {
  await expect
    .poll(() => cluster.receiver.spans.some((s) => s.traceId === traceId && s.parentSpanId === undefined), {
      timeout: 10_000,
    })
    .toBe(true);
  return cluster.receiver.spans.filter((s) => s.traceId === traceId);
}

describe.each([
  ['WebSocket', {}],
  ['SPDY', { KUBECTL_REMOTE_COMMAND_WEBSOCKETS: 'false' }],
] as const)('exec over %s through kubetrail', (_protocol, env) => {
  it('the 101’s span has kube.audit_id: the Audit-ID the apiserver received, though its 101 carries none', async () => {
    const r = await runKubetrail(
      [
        '--kubeconfig',
        cluster.kubeconfig,
        '--listen',
        '127.0.0.1:0',
        '--otlp-endpoint',
        cluster.receiver.url,
        '--',
        kubectlPath('1.33'),
        '--context',
        'alice',
        'exec',
        'web-0',
        '--',
        'echo',
        'hi',
      ],
      { env: { ...kubetrailEnv(freshHome()), ...env }, timeoutMs: 40_000 },
    );
    expect(r.code, r.stderr).toBe(0);
    const traceId = /\/trace\/([0-9a-f]{32})/.exec(r.stderr)?.[1] ?? '';
    // This command's upgrade, as the apiserver received it: the audit ID it kept is the one sent.
    const upgraded = cluster.fake.requests.filter(
      (q) => q.path === '/api/v1/namespaces/default/pods/web-0/exec' && q.status === 101 && q.auditId === traceId,
    );
    expect(upgraded).toHaveLength(1);
    const sent = upgraded[0]?.auditId;

    const span = (await spansOf(traceId)).find(
      (s) => s.name.endsWith(' pods/exec') && s.attributes['http.response.status_code'] === 101,
    );
    expect(span?.name).toMatch(/ pods\/exec$/);
    expect(span?.attributes['kube.audit_id']).toBe(sent);
  });
});
