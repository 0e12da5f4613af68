/**
 * The whole command: the root span is kubectl's life, exec credential plugins are timed by the shim in the
 * rewritten kubeconfig, and client-side throttling is inferred from the request times. Real kubectl, the
 * real kubetrail CLI, spans over real OTLP/HTTP.
 */
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshHome, kubetrailEnv } from '../helpers/compare.ts';
import { makePod, startFakeApiserver, type FakeApiserver } from '../helpers/fake-apiserver.ts';
import { kubectlPath } from '../helpers/kubectl.ts';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.ts';
import { runKubetrail, type RunResult } from '../helpers/run-kubetrail.ts';

const PLUGIN_TOKEN = 'plugin-SECRET-token-4e1d9a';
const PLUGIN_ARG = 'plugin-SECRET-arg-77c2';

let fake: FakeApiserver;
let receiver: OtlpReceiver;
let dir: string;
let kubeconfig: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kt-whole-'));
  receiver = await startOtlpReceiver();
  fake = await startFakeApiserver({ tokens: { [PLUGIN_TOKEN]: { user: 'pat', groups: ['dev'] } } });
  const alice = await fake.issueUser('alice', ['dev']);
  // An exec credential plugin that takes 300 ms, as gke-gcloud-auth-plugin and friends do (and more).
  const plugin = join(dir, 'slow-auth-plugin');
  writeFileSync(
    plugin,
    `#!/bin/sh\nt0=$(date +%s%N)\n[ "$1" = "${PLUGIN_ARG}" ] || exit 3\nsleep 0.3\necho "$t0 $(date +%s%N)" >> "$0.ran"\nprintf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "$PLUGIN_TOKEN_VALUE"\n`,
  );
  chmodSync(plugin, 0o700);
  kubeconfig = await fake.writeKubeconfig(dir, {
    users: [
      { name: 'alice', cert: alice },
      { name: 'pat', exec: { command: plugin, args: [PLUGIN_ARG], env: [{ name: 'PLUGIN_TOKEN_VALUE', value: PLUGIN_TOKEN }] } },
    ],
  });
  for (let i = 0; i < 30; i++) fake.create(makePod(`p${i}`));
});

afterAll(async () => {
  await fake.close();
  await receiver.close();
  rmSync(dir, { recursive: true, force: true });
});

async function traced(argv: string[], env: Record<string, string> = {}): Promise<RunResult & { traceId: string }> {
  const r = await runKubetrail(['--kubeconfig', kubeconfig, '--listen', '127.0.0.1:0', '--otlp-endpoint', receiver.url, '--', ...argv], {
    env: kubetrailEnv(freshHome(), env),
    timeoutMs: 60_000,
  });
  return { ...r, traceId: /\/trace\/([0-9a-f]{32})/.exec(r.stderr)?.[1] ?? '' };
}

async function spansOf(traceId: string): Promise<ReceivedSpan[]> {
  await expect.poll(() => receiver.spans.filter((s) => s.traceId === traceId && s.parentSpanId === undefined).length, { timeout: 10_000 }).toBe(1);
  return receiver.spans.filter((s) => s.traceId === traceId);
}

const ms = (ns: bigint): number => Number(ns) / 1e6;

/** The waits client-go logs at -v=3: `Waited for 196.5ms due to client-side throttling…` (≤1.30) or `"Waited before sending request" delay="196.5ms" reason="client-side throttling…"`. */
function throttleLogged(stderr: string): number {
  const unit: Record<string, number> = { s: 1000, ms: 1, µs: 0.001, us: 0.001 };
  let total = 0;
  for (const line of stderr.split('\n')) {
    if (!line.includes('client-side throttling')) continue;
    const m = /(?:Waited for |delay=")([\d.]+)(ms|s|µs|us)/.exec(line);
    if (m) total += Number(m[1]) * (unit[m[2] as string] ?? 0);
  }
  return total;
}
const rootOf = (spans: ReceivedSpan[]): ReceivedSpan => spans.find((s) => s.parentSpanId === undefined) as ReceivedSpan;
const requestSpans = (spans: ReceivedSpan[], root: ReceivedSpan): ReceivedSpan[] =>
  spans.filter((s) => s.parentSpanId === root.spanId && s.kind === 2).sort((a, b) => (a.startNs < b.startNs ? -1 : 1));

describe("the root span is kubectl's life", () => {
  it("lasts at least 90% of kubectl's own wall time, with `kubectl start` and `kubectl output` around the requests and the exit code", async () => {
    // kubectl's wall time measured apart from kubetrail: a shell notes the time around it.
    const marks = join(dir, 'marks');
    const script = `date +%s%N > ${marks}; ${kubectlPath('1.33')} --context alice get pods; rc=$?; date +%s%N >> ${marks}; exit $rc`;
    const r = await traced(['sh', '-c', script]);
    expect(r.code).toBe(0);
    const [t0, t1] = readFileSync(marks, 'utf8').trim().split('\n').map((l) => Number(BigInt(l) / 1000n) / 1000);
    const wall = (t1 as number) - (t0 as number);
    const spans = await spansOf(r.traceId);
    const root = rootOf(spans);
    const rootMs = ms(root.endNs - root.startNs);
    expect(rootMs).toBeGreaterThanOrEqual(0.9 * wall);
    expect(root.attributes['process.exit.code']).toBe(0);
    expect(root.attributes['kubectl.timed_from']).toBe('process_start');
    const kids = spans.filter((s) => s.parentSpanId === root.spanId);
    const start = kids.find((s) => s.name === 'kubectl start');
    const output = kids.find((s) => s.name === 'kubectl output');
    const reqs = requestSpans(spans, root);
    expect(start?.startNs).toBe(root.startNs);
    expect(start?.endNs).toBe(reqs[0]?.startNs);
    expect(output?.endNs).toBe(root.endNs);
    // The header gives the wall time and how it divides.
    expect(r.stderr).toMatch(/^time: requests \S+ · kubectl itself \S+$/m);
  });

  it('carries a non-zero exit code', async () => {
    const r = await traced([kubectlPath('1.33'), '--context', 'alice', 'get', 'pods', 'nosuchpod']);
    expect(r.code).toBe(1);
    const root = rootOf(await spansOf(r.traceId));
    expect(root.attributes['process.exit.code']).toBe(1);
    expect(r.stderr).toMatch(/^kubectl get · 3 requests · \S+ · exit 1$/m);
  });
});

describe('exec credential plugins, timed by the shim', () => {
  it('shows a 300 ms plugin as a `kubectl credential` span inside the root, before the first request, and exports nothing of its arguments or output', async () => {
    const ran = join(dir, 'slow-auth-plugin.ran');
    rmSync(ran, { force: true });
    const r = await traced([kubectlPath('1.33'), '--context', 'pat', 'get', 'pods', 'p1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toContain('p1');
    const spans = await spansOf(r.traceId);
    const root = rootOf(spans);
    const first = requestSpans(spans, root)[0] as ReceivedSpan;
    // kubectl may run the plugin more than once, concurrently (its discovery and REST clients): one span
    // per run the plugin itself logged, each holding that run.
    const runs = readFileSync(ran, 'utf8').trim().split('\n').map((l) => l.split(' ').map((t) => Number(BigInt(t) / 1000n) / 1000) as [number, number]).sort((x, y) => x[0] - y[0]);
    const cred = spans.filter((s) => s.name === 'kubectl credential').sort((x, y) => (x.startNs < y.startNs ? -1 : 1));
    expect(cred).toHaveLength(runs.length);
    for (const [i, c] of cred.entries()) {
      const [p0, p1] = runs[i] as [number, number];
      expect(c.parentSpanId).toBe(root.spanId);
      // 300 ms ±50 as the plugin itself measured it, plus its own process start (~1 ms idle; up to ~100 ms
      // on a loaded 2-core machine, hence the margin). /proc/uptime, the shim's clock under dash, steps 10 ms.
      expect(p1 - p0).toBeGreaterThanOrEqual(300);
      expect(ms(c.startNs)).toBeLessThanOrEqual(p0 + 20);
      expect(ms(c.endNs)).toBeGreaterThanOrEqual(p1 - 20);
      expect(ms(c.endNs - c.startNs)).toBeLessThanOrEqual(p1 - p0 + 150);
      expect(c.startNs >= root.startNs && c.endNs <= root.endNs).toBe(true);
      expect(c.endNs <= first.startNs).toBe(true);
      expect(c.attributes['auth.exec.command']).toBe('slow-auth-plugin');
      expect(c.attributes['auth.exec.exit_code']).toBe(0);
    }
    expect(r.stderr).toMatch(/^credential plugin: slow-auth-plugin \d+ms/m);
    const exported = JSON.stringify(spans.map((s) => [s.name, s.attributes, s.events]));
    for (const secret of [PLUGIN_TOKEN, PLUGIN_ARG, dir]) expect(exported).not.toContain(secret);
    expect(r.stderr).not.toContain(PLUGIN_TOKEN);
  });

  it("passes the plugin's exit code through: kubectl fails as it would without kubetrail, naming kubetrail's shim", async () => {
    // The plugin exits 3 when its argument is missing; here the argument is wrong.
    const bad = await fake.writeKubeconfig(join(dir, 'bad'), {
      users: [{ name: 'pat', exec: { command: join(dir, 'slow-auth-plugin'), args: ['wrong'] } }],
    });
    const r = await runKubetrail(['--kubeconfig', bad, '--listen', '127.0.0.1:0', '--otlp-endpoint', receiver.url, '--', kubectlPath('1.33'), 'get', 'pods'], {
      env: kubetrailEnv(freshHome()),
      timeoutMs: 60_000,
    });
    expect(r.code).toBe(1);
    // client-go names the executable it ran: the shim's copy named after the plugin, in kubetrail's state dir.
    expect(r.stderr).toMatch(/executable \S+\/bin\/[0-9a-f]{12}\/slow-auth-plugin failed with exit code 3$/m);
    expect(r.stderr).toMatch(/^credential plugin: slow-auth-plugin \S+ in \d+ runs, \d+ failed$/m);
  });
});

describe('client-side throttling, inferred', () => {
  it("30 single-object GETs wait ~3.9 s in kubectl's limiter (QPS 5, burst 10); a single get waits none", async () => {
    const names = Array.from({ length: 30 }, (_, i) => `p${i}`);
    // -v=3: client-go logs each wait over 50 ms ("Waited for 196.5ms due to client-side throttling"), the
    // truth to compare with. ~3.9 s on an idle machine; less when the first requests are slow (the bucket
    // refills meanwhile), which is why the comparison is with kubectl's own account.
    const r = await traced([kubectlPath('1.33'), '--context', 'alice', '-v=3', 'get', 'pod', ...names]);
    expect(r.code).toBe(0);
    const logged = throttleLogged(r.stderr);
    expect(logged, r.stderr.split('\n').filter((l) => /[Ww]aited/.test(l)).slice(0, 3).join('\n')).toBeGreaterThan(2000);
    const all = await spansOf(r.traceId);
    const root = rootOf(all);
    expect(all.filter((s) => s.name === 'client-side throttling' && s.parentSpanId === root.spanId).length).toBeGreaterThanOrEqual(15);
    const throttled = root.attributes['kubectl.throttled_ms'] as number;
    expect(throttled).toBeGreaterThanOrEqual(logged * 0.85);
    expect(throttled).toBeLessThanOrEqual(logged * 1.15);
    expect(r.stderr).toMatch(/^client-side throttling: \S+ \(kubectl's limiter: QPS 5, burst 10\)$/m);

    const one = await traced([kubectlPath('1.33'), '--context', 'alice', 'get', 'pod', 'p0']);
    expect(rootOf(await spansOf(one.traceId)).attributes['kubectl.throttled_ms']).toBe(0);
    expect(one.stderr).not.toContain('throttling');
  });
});

describe("the server's side", () => {
  it('groups 429s with Retry-After and kubectl\'s retries into one `apf rejected` finding; APF headers are on the request span', async () => {
    fake.setFault({ path: /\/namespaces\/default\/pods\?/, status: 429, retryAfter: 1, times: 2 });
    try {
      const r = await traced([kubectlPath('1.33'), '--context', 'alice', 'get', 'pods']);
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/^apf rejected: list pods 2× 429 \(Retry-After 1s\), then 200$/m);
      const spans = await spansOf(r.traceId);
      const lists = spans.filter((s) => s.name === 'list pods');
      expect(lists.map((s) => s.attributes['http.response.status_code'])).toEqual([429, 429, 200]);
      expect(lists[2]?.attributes['kube.apf.flow_schema_uid']).toEqual(expect.any(String));
    } finally {
      fake.setFault(null);
    }
  });
});

describe('pod phases', () => {
  it('counts what the server sent, per phase, summed over pages, on each decode span and the root', async () => {
    for (let i = 0; i < 520; i++) fake.create(makePod(`run-${i}`, { namespace: 'phases' }));
    for (let i = 0; i < 7; i++) fake.create(makePod(`wait-${i}`, { namespace: 'phases', phase: 'Pending' }));
    for (let i = 0; i < 3; i++) fake.create(makePod(`done-${i}`, { namespace: 'phases', phase: 'Succeeded' }));
    const r = await traced([kubectlPath('1.33'), '--context', 'alice', 'get', 'pods', '-n', 'phases']);
    expect(r.code).toBe(0);
    const spans = await spansOf(r.traceId);
    const root = rootOf(spans);
    expect(root.attributes).toMatchObject({ 'decode.pod_phase.running': 520, 'decode.pod_phase.pending': 7, 'decode.pod_phase.succeeded': 3 });
    const decodes = spans.filter((s) => s.name === 'decode' && s.attributes['decode.kind'] === 'Table');
    expect(decodes).toHaveLength(2);
    const sum = (k: string): number => decodes.reduce((n, s) => n + Number(s.attributes[k] ?? 0), 0);
    expect([sum('decode.pod_phase.running'), sum('decode.pod_phase.pending'), sum('decode.pod_phase.succeeded')]).toEqual([520, 7, 3]);
    expect(r.stderr).toMatch(/^530 pods: 520 Running, 7 Pending, 3 Succeeded$/m);
  });
});
