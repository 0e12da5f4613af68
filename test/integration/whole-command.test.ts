/**
 * The whole command: the root span is kubectl's life, exec credential plugins are timed by the shim in the
 * rewritten kubeconfig, and client-side throttling is inferred from the request times. Real kubectl, the
 * real kubetrail CLI, spans over real OTLP/HTTP.
 */
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freshHome, kubetrailEnv } from '../helpers/compare.ts';
import { makePod } from '../helpers/fake-apiserver.ts';
import { withFakeCluster } from '../helpers/fake-cluster.ts';
import { KUBECTL_DIR, kubectl, kubectlPath } from '../helpers/kubectl.ts';
import type { ReceivedSpan } from '../helpers/otlp-receiver.ts';
import { unusedPort } from '../helpers/ports.ts';
import { runKubetrail, type RunResult } from '../helpers/run-kubetrail.ts';

const PLUGIN_TOKEN = 'plugin-SECRET-token-4e1d9a';
const PLUGIN_ARG = 'plugin-SECRET-arg-77c2';

const cluster = withFakeCluster({
  prefix: 'kt-whole-',
  apiserver: { tokens: { [PLUGIN_TOKEN]: { user: 'pat', groups: ['dev'] } } },
  kubeconfig: {
    users: [
      { name: 'alice', cert: { groups: ['dev'] } },
      {
        name: 'pat',
        exec: {
          command: 'slow-auth-plugin',
          args: [PLUGIN_ARG],
          env: [{ name: 'PLUGIN_TOKEN_VALUE', value: PLUGIN_TOKEN }],
        },
      },
    ],
  },
  seed: (fake, dir) => {
    // An exec credential plugin that takes 300 ms, as gke-gcloud-auth-plugin and friends do (and more).
    const plugin = join(dir, 'slow-auth-plugin');
    writeFileSync(
      plugin,
      `#!/bin/sh\n[ "$1" = "${PLUGIN_ARG}" ] || exit 3\nsleep 0.3\necho ran >> "$0.ran"\nprintf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "$PLUGIN_TOKEN_VALUE"\n`,
    );
    chmodSync(plugin, 0o700);
    for (let i = 0; i < 30; i++) fake.create(makePod(`p${i}`));
  },
  otlp: true,
});
/** PATH with the plugin's directory on it: the kubeconfig names the plugin by its bare name, as gcloud and aws write it. */
const pluginPath = (): string => `${cluster.dir}:${process.env.PATH ?? '/usr/bin:/bin'}`;

async function traced(argv: string[], env: Record<string, string> = {}): Promise<RunResult & { traceId: string }> {
  const r = await runKubetrail(
    [
      '--kubeconfig',
      cluster.kubeconfig,
      '--listen',
      '127.0.0.1:0',
      '--otlp-endpoint',
      cluster.receiver.url,
      '--',
      ...argv,
    ],
    {
      env: kubetrailEnv(freshHome(), { PATH: pluginPath(), ...env }),
      timeoutMs: 60_000,
    },
  );
  return { ...r, traceId: /\/trace\/([0-9a-f]{32})/.exec(r.stderr)?.[1] ?? '' };
}

async function spansOf(traceId: string): Promise<ReceivedSpan[]> {
  await expect
    .poll(() => cluster.receiver.spans.filter((s) => s.traceId === traceId && s.parentSpanId === undefined).length, {
      timeout: 10_000,
    })
    .toBe(1);
  return cluster.receiver.spans.filter((s) => s.traceId === traceId);
}

const ms = (ns: bigint): number => Number(ns) / 1e6;
/** Figures for a person reading the run (KT_TEST_REPORT=1), not for the assertions. */
const report = (line: string): void =>
  void (process.env.KT_TEST_REPORT === '1' && process.stderr.write(`whole-command: ${line}\n`));

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
    const marks = join(cluster.dir, 'marks');
    const script = `date +%s%N > ${marks}; ${kubectlPath('1.33')} --context alice get pods; rc=$?; date +%s%N >> ${marks}; exit $rc`;
    const r = await traced(['sh', '-c', script]);
    expect(r.code).toBe(0);
    const [t0, t1] = readFileSync(marks, 'utf8')
      .trim()
      .split('\n')
      .map((l) => Number(BigInt(l) / 1000n) / 1000);
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
    const ran = join(cluster.dir, 'slow-auth-plugin.ran');
    rmSync(ran, { force: true });
    const r = await traced([kubectlPath('1.33'), '--context', 'pat', 'get', 'pods', 'p1']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toContain('p1');
    const spans = await spansOf(r.traceId);
    const root = rootOf(spans);
    const first = requestSpans(spans, root)[0] as ReceivedSpan;
    // kubectl may run the plugin more than once, concurrently (its discovery and REST clients): one span
    // per run the plugin itself logged.
    const runs = readFileSync(ran, 'utf8').trim().split('\n').length;
    const cred = spans.filter((s) => s.name === 'kubectl credential').sort((x, y) => (x.startNs < y.startNs ? -1 : 1));
    expect(cred).toHaveLength(runs);
    for (const c of cred) {
      expect(c.parentSpanId).toBe(root.spanId);
      // The figure: 300 ms ±50. The span is the plugin's run as the shim, its parent, saw it: the
      // plugin's own starts (sh, sleep) count, as they do for kubectl; the shim's clock under dash is
      // /proc/uptime (10 ms steps). bench/credential-shim.ts measures both (see docs/findings.md).
      const span = ms(c.endNs - c.startNs);
      report(`credential span ${span.toFixed(1)} ms`);
      expect(span).toBeGreaterThanOrEqual(250);
      expect(span).toBeLessThanOrEqual(350);
      expect(c.startNs >= root.startNs && c.endNs <= root.endNs).toBe(true);
      expect(c.endNs <= first.startNs).toBe(true);
      expect(c.attributes['auth.exec.command']).toBe('slow-auth-plugin');
      expect(c.attributes['auth.exec.exit_code']).toBe(0);
    }
    expect(r.stderr).toMatch(/^credential plugin: slow-auth-plugin \d+ms/m);
    const exported = JSON.stringify(spans.map((s) => [s.name, s.attributes, s.events]));
    for (const secret of [PLUGIN_TOKEN, PLUGIN_ARG, cluster.dir]) expect(exported).not.toContain(secret);
    expect(r.stderr).not.toContain(PLUGIN_TOKEN);
  });

  it.each([
    ['by its bare name, found on PATH', 'slow-auth-plugin'],
    ['by path', () => join(cluster.dir, 'slow-auth-plugin')],
  ] as const)(
    'a failing plugin named %s: kubectl prints what it prints without kubetrail and exits the same',
    async (_, command) => {
      // The plugin exits 3 when its argument is wrong. client-go names the command in its error
      // ("exec: executable slow-auth-plugin failed with exit code 3"): the shim must not show there.
      const cmd = typeof command === 'string' ? command : command();
      const bad = await cluster.fake.writeKubeconfig(join(cluster.dir, `bad-${cmd.includes('/') ? 'path' : 'name'}`), {
        users: [{ name: 'pat', exec: { command: cmd, args: ['wrong'] } }],
      });
      const direct = await kubectl(['get', 'pods'], { kubeconfig: bad, env: { PATH: pluginPath() } });
      const through = await runKubetrail(
        [
          '--kubeconfig',
          bad,
          '--listen',
          '127.0.0.1:0',
          '--otlp-endpoint',
          cluster.receiver.url,
          '--quiet',
          '--',
          kubectlPath('1.33'),
          'get',
          'pods',
        ],
        {
          env: kubetrailEnv(freshHome(), { PATH: pluginPath() }),
          timeoutMs: 60_000,
        },
      );
      expect(direct.code).toBe(1);
      expect(through.code).toBe(direct.code);
      expect(direct.stderr).toContain(`executable ${cmd} failed with exit code 3`);
      // Only what cannot be the same is set aside: klog's time and pid, and the server's address (kubetrail's).
      const same = (text: string): string =>
        text
          .replace(/^([EIW])\d{4} [\d:.]+\s+\d+ /gm, '$1 ')
          .replace(/https:\/\/[^/"\\]+(\/c\/[^/"\\]+)?\//g, 'https://<server>/');
      expect(same(through.stderr)).toBe(same(direct.stderr));
    },
  );

  it('still times a failing plugin named by its bare name; one given by path runs as it is, untimed', async () => {
    const failing = (command: string): Promise<string> =>
      cluster.fake.writeKubeconfig(join(cluster.dir, `failing-${command.includes('/') ? 'path' : 'name'}`), {
        users: [{ name: 'pat', exec: { command, args: ['wrong'] } }],
      });
    const byName = await runKubetrail(
      [
        '--kubeconfig',
        await failing('slow-auth-plugin'),
        '--listen',
        '127.0.0.1:0',
        '--otlp-endpoint',
        cluster.receiver.url,
        '--',
        kubectlPath('1.33'),
        'get',
        'pods',
      ],
      {
        env: kubetrailEnv(freshHome(), { PATH: pluginPath() }),
        timeoutMs: 60_000,
      },
    );
    expect(byName.code).toBe(1);
    expect(byName.stderr).toMatch(/^credential plugin: slow-auth-plugin \S+ in \d+ runs, \d+ failed$/m);
    const byPath = await runKubetrail(
      [
        '--kubeconfig',
        await failing(join(cluster.dir, 'slow-auth-plugin')),
        '--listen',
        '127.0.0.1:0',
        '--otlp-endpoint',
        cluster.receiver.url,
        '--',
        kubectlPath('1.33'),
        'get',
        'pods',
      ],
      {
        env: kubetrailEnv(freshHome(), { PATH: pluginPath() }),
        timeoutMs: 60_000,
      },
    );
    expect(byPath.code).toBe(1);
    expect(byPath.stderr).not.toContain('credential plugin:');
  });
});

describe('exec credential plugins through a background kubetrail (wrap mode at a fixed port)', () => {
  it("times a plugin named by its bare name, and a failing one's stderr and exit code are kubectl's own", async () => {
    const home = freshHome();
    const port = await unusedPort();
    const env = kubetrailEnv(home, { PATH: pluginPath(), OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: cluster.receiver.url });
    const wrapped = (
      kc: string,
      args: string[],
      flags: string[] = [],
      more: Record<string, string> = {},
    ): Promise<RunResult> =>
      runKubetrail(
        ['--kubeconfig', kc, '--listen', `127.0.0.1:${port}`, ...flags, '--', kubectlPath('1.33'), ...args],
        { env: { ...env, ...more }, timeoutMs: 60_000 },
      );
    try {
      const ok = await wrapped(cluster.kubeconfig, ['--context', 'pat', 'get', 'pods', 'p1']);
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stderr).toMatch(/^kubetrail: started a background kubetrail/m);
      expect(ok.stderr).toMatch(/^credential plugin: slow-auth-plugin \d+ms/m);
      const bad = await cluster.fake.writeKubeconfig(join(cluster.dir, 'bad-background'), {
        users: [{ name: 'pat', exec: { command: 'slow-auth-plugin', args: ['wrong'] } }],
      });
      const direct = await kubectl(['get', 'pods'], { kubeconfig: bad, env: { PATH: pluginPath() } });
      // A discovery cache of its own, as direct has: the first command filled HOME's for this server URL.
      const through = await wrapped(bad, ['get', 'pods'], ['--quiet'], { KUBECACHEDIR: join(home, 'cache-for-bad') });
      expect(through.code).toBe(direct.code);
      const same = (text: string): string =>
        text
          .replace(/^([EIW])\d{4} [\d:.]+\s+\d+ /gm, '$1 ')
          .replace(/https:\/\/[^/"\\]+(\/c\/[^/"\\]+)?\//g, 'https://<server>/');
      expect(same(through.stderr)).toBe(same(direct.stderr));
      expect(direct.stderr).toContain('executable slow-auth-plugin failed with exit code 3');
    } finally {
      await runKubetrail(['stop'], { env });
    }
  });
});

/**
 * What client-go's token bucket (QPS 5, burst 10: rest.DefaultQPS/DefaultBurst, which kubectl keeps for
 * ordinary requests) makes sequential requests wait, given when each could have left: the request before
 * it had ended (its span's end, as kubetrail saw it). The bucket is full at the first request; the k-th
 * token (from 0) is there 200 ms × (k − 9) after it. Written apart from src/stages/throttle.ts, as the
 * test's own account of the bucket: with ~5 ms requests it gives the issue's ~3.9 s for 30 GETs.
 */
function bucketIdealMs(gets: readonly ReceivedSpan[]): number {
  const t0 = ms(gets[0]?.startNs ?? 0n);
  let total = 0;
  for (let k = 10; k < gets.length; k++) {
    const ready = ms((gets[k - 1] as ReceivedSpan).endNs);
    total += Math.max(0, t0 + 200 * (k - 9) - ready);
  }
  return total;
}

describe('client-side throttling, inferred', () => {
  it.each(['1.30', '1.33'] as const)(
    "kubectl %s: 30 single-object GETs wait ~3.9 s in kubectl's limiter (QPS 5, burst 10); a single get waits none",
    async (version) => {
      const names = Array.from({ length: 30 }, (_, i) => `p${i}`);
      // -v=3: client-go logs each wait over 50 ms ("Waited for 196.5ms due to client-side throttling"):
      // kubectl's own account, one oracle. The other is the bucket itself over the requests' observed times.
      const r = await traced([
        join(KUBECTL_DIR, `kubectl.${version}`),
        '--context',
        'alice',
        '-v=3',
        'get',
        'pod',
        ...names,
      ]);
      expect(r.code).toBe(0);
      const logged = throttleLogged(r.stderr);
      expect(
        logged,
        r.stderr
          .split('\n')
          .filter((l) => /[Ww]aited/.test(l))
          .slice(0, 3)
          .join('\n'),
      ).toBeGreaterThan(2000);
      const all = await spansOf(r.traceId);
      const root = rootOf(all);
      const gets = requestSpans(all, root).filter((s) => s.name === 'get pods');
      expect(gets).toHaveLength(30);
      const ideal = bucketIdealMs(gets);
      expect(
        all.filter((s) => s.name === 'client-side throttling' && s.parentSpanId === root.spanId).length,
      ).toBeGreaterThanOrEqual(15);
      const throttled = root.attributes['kubectl.throttled_ms'] as number;
      report(
        `kubectl ${version}: throttled_ms ${throttled}, -v=3 waits ${logged.toFixed(1)} ms, bucket ${ideal.toFixed(1)} ms, mean GET ${(gets.reduce((n, s) => n + ms(s.endNs - s.startNs), 0) / gets.length).toFixed(1)} ms`,
      );
      expect(throttled).toBeGreaterThanOrEqual(logged * 0.85);
      expect(throttled).toBeLessThanOrEqual(logged * 1.15);
      expect(throttled).toBeGreaterThanOrEqual(ideal * 0.85);
      expect(throttled).toBeLessThanOrEqual(ideal * 1.15);
      expect(r.stderr).toMatch(/^client-side throttling: \S+ \(kubectl's limiter: QPS 5, burst 10\)$/m);

      const one = await traced([join(KUBECTL_DIR, `kubectl.${version}`), '--context', 'alice', 'get', 'pod', 'p0']);
      expect(rootOf(await spansOf(one.traceId)).attributes['kubectl.throttled_ms']).toBe(0);
      expect(one.stderr).not.toContain('throttling');
    },
  );
});

describe("the server's side", () => {
  it("groups 429s with Retry-After and kubectl's retries into one `apf rejected` finding; APF headers are on the request span", async () => {
    cluster.fake.setFault({ path: /\/namespaces\/default\/pods\?/, status: 429, retryAfter: 1, times: 2 });
    try {
      const r = await traced([kubectlPath('1.33'), '--context', 'alice', 'get', 'pods']);
      expect(r.code).toBe(0);
      expect(r.stderr).toMatch(/^apf rejected: list pods 2× 429 \(Retry-After 1s\), then 200$/m);
      const spans = await spansOf(r.traceId);
      const lists = spans.filter((s) => s.name === 'list pods');
      expect(lists.map((s) => s.attributes['http.response.status_code'])).toEqual([429, 429, 200]);
      expect(lists[2]?.attributes['kube.apf.flow_schema_uid']).toEqual(expect.any(String));
    } finally {
      cluster.fake.setFault(null);
    }
  });
});

describe('pod phases', () => {
  it('counts what the server sent, per phase, summed over pages, on each decode span and the root', async () => {
    for (let i = 0; i < 520; i++) cluster.fake.create(makePod(`run-${i}`, { namespace: 'phases' }));
    for (let i = 0; i < 7; i++) cluster.fake.create(makePod(`wait-${i}`, { namespace: 'phases', phase: 'Pending' }));
    for (let i = 0; i < 3; i++) cluster.fake.create(makePod(`done-${i}`, { namespace: 'phases', phase: 'Succeeded' }));
    const r = await traced([kubectlPath('1.33'), '--context', 'alice', 'get', 'pods', '-n', 'phases']);
    expect(r.code).toBe(0);
    const spans = await spansOf(r.traceId);
    const root = rootOf(spans);
    expect(root.attributes).toMatchObject({
      'decode.pod_phase.running': 520,
      'decode.pod_phase.pending': 7,
      'decode.pod_phase.succeeded': 3,
    });
    const decodes = spans.filter((s) => s.name === 'decode' && s.attributes['decode.kind'] === 'Table');
    expect(decodes).toHaveLength(2);
    const sum = (k: string): number => decodes.reduce((n, s) => n + Number(s.attributes[k] ?? 0), 0);
    expect([
      sum('decode.pod_phase.running'),
      sum('decode.pod_phase.pending'),
      sum('decode.pod_phase.succeeded'),
    ]).toEqual([520, 7, 3]);
    expect(r.stderr).toMatch(/^530 pods: 520 Running, 7 Pending, 3 Succeeded$/m);
  });
});
