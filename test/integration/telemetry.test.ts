/**
 * The telemetry contract, end to end: real kubectl through the real kubetrail CLI, spans received over
 * real OTLP/HTTP on a port-0 receiver, and a collector that is down, hung or failing.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { freshHome, kubetrailEnv, startProxied } from '../helpers/compare.ts';
import { makeConfigMap, makePod } from '../helpers/fake-apiserver.ts';
import { withFakeCluster } from '../helpers/fake-cluster.ts';
import { kubectl, kubectlPath } from '../helpers/kubectl.ts';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.ts';
import { runKubetrail, type RunResult } from '../helpers/run-kubetrail.ts';

const TOKEN = 'tkn-SECRET-5b1f0c9e7d';
const BASIC_PASSWORD = 'pw-SECRET-83a1';
const SECRET_VALUE = 'c2VjcmV0LWJvZHktdmFsdWUtOTk='; // a value only a response body carries

const cluster = withFakeCluster({
  prefix: 'kt-tel-',
  apiserver: {
    tokens: { [TOKEN]: { user: 'tina', groups: ['dev'] } },
    basicAuth: { bob: { password: BASIC_PASSWORD } },
    authorize: (user, attrs) => user.name !== 'mallory' || !attrs.isResourceRequest,
  },
  kubeconfig: {
    users: [
      { name: 'alice', cert: { groups: ['dev', 'ops'] } },
      { name: 'tina', token: TOKEN },
      { name: 'mallory', cert: {} },
      { name: 'bob', username: 'bob', password: BASIC_PASSWORD },
    ],
  },
  seed: (fake) => {
    for (let i = 0; i < 600; i++)
      fake.create(makePod(`p-${String(i).padStart(3, '0')}`, { namespace: 'big', ageSeconds: 3600 }));
    fake.create(makePod('web-0', { ageSeconds: 3600 }));
    // The stand-in serves no Secrets; a ConfigMap's data is a response body all the same.
    fake.create(makeConfigMap('db', { password: SECRET_VALUE }));
  },
  otlp: true,
});
const terminal: string[] = [];

async function traced(
  args: string[],
  opts: { endpoint?: string; env?: Record<string, string>; home?: string } = {},
): Promise<RunResult & { traceId: string }> {
  const r = await runKubetrail(
    [
      '--kubeconfig',
      cluster.kubeconfig,
      '--listen',
      '127.0.0.1:0',
      '--otlp-endpoint',
      opts.endpoint ?? cluster.receiver.url,
      '--',
      kubectlPath('1.33'),
      ...args,
    ],
    { env: { ...kubetrailEnv(opts.home ?? freshHome()), ...opts.env }, timeoutMs: 40_000 },
  );
  terminal.push(r.stdout.toString(), r.stderr);
  return { ...r, traceId: /\/trace\/([0-9a-f]{32})/.exec(r.stderr)?.[1] ?? '' };
}

async function spansOf(traceId: string, minimum = 1): Promise<ReceivedSpan[]> {
  await expect
    .poll(() => cluster.receiver.spans.filter((s) => s.traceId === traceId).length, { timeout: 10_000 })
    .toBeGreaterThanOrEqual(minimum);
  // The batch may still be arriving: wait until two reads agree.
  let n = -1;
  for (;;) {
    const now = cluster.receiver.spans.filter((s) => s.traceId === traceId).length;
    if (now === n) break;
    n = now;
    await new Promise((r) => setTimeout(r, 150));
  }
  return cluster.receiver.spans.filter((s) => s.traceId === traceId);
}

const SERVER = 2;
const CLIENT = 3;

function children(spans: ReceivedSpan[], parent: ReceivedSpan): ReceivedSpan[] {
  return spans
    .filter((s) => s.parentSpanId === parent.spanId)
    .sort((a, b) => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0));
}

describe('one trace per kubectl command', () => {
  it('root span `kubectl get`, a SERVER span per request with the contract attributes, stage children in order and nested in time', async () => {
    const r = await traced(['--context', 'alice', 'get', 'pods']);
    expect(r.code).toBe(0);
    const spans = await spansOf(r.traceId, 10);
    expect(new Set(spans.map((s) => s.traceId)).size).toBe(1);
    const roots = spans.filter((s) => s.parentSpanId === undefined);
    expect(roots.map((s) => s.name)).toEqual(['kubectl get']);
    const root = roots[0] as ReceivedSpan;
    expect(root.attributes['kubectl.command']).toBe('kubectl get');
    expect(root.resource['service.name']).toBe('kubetrail');

    // The request spans; the root's other children time kubectl itself (whole-command.test.ts).
    const requests = children(spans, root).filter((s) => s.kind === SERVER);
    expect(requests.map((s) => s.name)).toEqual(['GET /api', 'GET /apis', 'list pods']);
    for (const req of requests) {
      expect(req.kind).toBe(SERVER);
      expect(req.startNs >= root.startNs && req.endNs <= root.endNs).toBe(true);
      const kids = children(spans, req);
      expect(kids.map((k) => k.name)).toEqual(['auth', 'upstream', 'rbac', 'decode']);
      for (const k of kids) {
        expect(k.startNs >= req.startNs && k.endNs <= req.endNs, `${k.name} inside ${req.name}`).toBe(true);
        expect(k.endNs > k.startNs, `${k.name} lasts longer than zero (Jaeger rewrites zero-length spans)`).toBe(true);
      }
      expect(kids[1]?.kind).toBe(CLIENT);
    }
    const list = requests[2] as ReceivedSpan;
    expect(list.attributes).toMatchObject({
      'http.request.method': 'GET',
      'url.path': '/api/v1/namespaces/default/pods',
      'url.query': 'limit=500',
      'http.response.status_code': 200,
      'server.address': '127.0.0.1',
      'server.port': cluster.fake.port,
      'k8s.namespace.name': 'default',
      'kube.verb': 'list',
      'kube.resource': 'pods',
      'kube.api_version': 'v1',
      'kube.discovery': false,
      'kubectl.command': 'kubectl get',
      'kube.audit_id': r.traceId,
      'kube.apf.flow_schema_uid': cluster.fake.apf.globalDefault.flowSchemaUid,
      'kube.apf.priority_level_uid': cluster.fake.apf.globalDefault.priorityLevelUid,
    });
    expect(list.attributes['kubectl.session']).toMatch(/^[0-9a-f-]{36}$/);
    expect(list.attributes['user_agent.original']).toMatch(/^kubectl\.1\.33\/v1\.33/);
    expect(requests[0]?.attributes['kube.discovery']).toBe(true);
    const [auth, upstream, rbac, decode] = children(spans, list);
    expect(auth?.attributes).toMatchObject({
      'auth.method': 'client-certificate',
      'auth.user': 'alice',
      'auth.groups': ['dev', 'ops'],
    });
    expect(upstream?.attributes['upstream.connection_reused']).toBe(true);
    expect(typeof upstream?.attributes['upstream.ttfb_ms']).toBe('number');
    expect(rbac?.attributes['rbac.decision']).toBe('allowed');
    expect(decode?.attributes).toMatchObject({ 'decode.kind': 'Table', 'decode.items': 1 });

    // The apiserver saw our trace context and Audit-ID.
    const seen = cluster.fake.requests.find(
      (q) => q.path === '/api/v1/namespaces/default/pods' && q.headers['audit-id'] === r.traceId,
    );
    expect(seen?.headers.traceparent).toMatch(new RegExp(`^00-${r.traceId}-${upstream?.spanId}-01$`));
  });

  it('a 600-pod list: pages are sibling spans with their own item counts; the root adds them up', async () => {
    const r = await traced(['--context', 'tina', 'get', 'pods', '-n', 'big', '-o', 'name']);
    expect(r.code).toBe(0);
    expect(r.stdout.toString().split('\n').filter(Boolean)).toHaveLength(600);
    const spans = await spansOf(r.traceId, 20);
    const pages = spans.filter((s) => s.name === 'list pods').sort((a, b) => (a.startNs < b.startNs ? -1 : 1));
    expect(pages).toHaveLength(2);
    const decodes = pages.map((p) => children(spans, p).find((c) => c.name === 'decode')?.attributes);
    expect(decodes.map((d) => d?.['decode.items'])).toEqual([500, 100]);
    expect(decodes.map((d) => d?.['decode.continue'])).toEqual([true, false]);
    expect(decodes[0]?.['decode.remaining_items']).toBe(100);
    expect(pages[1]?.attributes['url.query']).toBe('continue=REDACTED&limit=500');
    const root = spans.find((s) => s.parentSpanId === undefined);
    expect(root?.attributes).toMatchObject({ 'kubectl.items': 600, 'kubectl.pages': 2 });
    expect(r.stderr).toMatch(/600 items in 2 pages/);
    const auth = children(spans, pages[0] as ReceivedSpan)[0];
    expect(auth?.attributes).toMatchObject({ 'auth.method': 'bearer' });
  });

  it('counts what the command read: a single object is 1 object in any format, a NotFound nothing, a one-item list "1 item"', async () => {
    const rootOf = async (r: { traceId: string }): Promise<ReceivedSpan | undefined> =>
      (await spansOf(r.traceId, 3)).find((s) => s.parentSpanId === undefined);
    const head = (r: RunResult): string => r.stderr.split('\n').find((l) => l.startsWith('kubectl get ·')) ?? '';
    // kubectl asks for a Table (one row) by default, for the object itself with -o yaml: the same read.
    for (const format of [[], ['-o', 'yaml']]) {
      const one = await traced(['--context', 'tina', 'get', 'configmap', 'db', ...format]);
      expect(one.code).toBe(0);
      expect(head(one), `kubectl get configmap db ${format.join(' ')}`).toMatch(/ · 1 object$/);
      expect((await rootOf(one))?.attributes).toMatchObject({
        'kubectl.objects': 1,
        'kubectl.items': 0,
        'kubectl.pages': 0,
      });
    }
    // A NotFound read nothing; nor did kubectl's check that the namespace exists (a GET it sends after one).
    const mark = cluster.fake.requests.length;
    // (kubectl 1.33 checks a namespace other than `default`, and finds this one.)
    const none = await traced(['--context', 'tina', 'get', 'configmap', 'nope', '-n', 'kube-system']);
    expect(none.code).toBe(1);
    expect(cluster.fake.requests.slice(mark).map((q) => [q.path, q.status])).toContainEqual([
      '/api/v1/namespaces/kube-system',
      200,
    ]);
    expect(head(none)).not.toMatch(/object|item/);
    expect((await rootOf(none))?.attributes).toMatchObject({
      'kubectl.objects': 0,
      'kubectl.items': 0,
      'kubectl.pages': 0,
    });
    const list = await traced(['--context', 'tina', 'get', 'pods', '-n', 'default']);
    expect(head(list)).toMatch(/ · 1 item in 1 page$/);
    const named = await traced(['--context', 'tina', 'get', 'pod/web-0', 'configmap/db', '-o', 'name']);
    expect(head(named)).toMatch(/ · 2 objects$/);
  });

  it('a forbidden user: rbac.decision=denied with the parsed user, verb and resource', async () => {
    const r = await traced(['--context', 'mallory', 'get', 'pods']);
    expect(r.code).toBe(1);
    const spans = await spansOf(r.traceId, 10);
    const list = spans.find((s) => s.name === 'list pods') as ReceivedSpan;
    expect(list.attributes['http.response.status_code']).toBe(403);
    expect(list.status.code ?? 0).not.toBe(2); // a 403 is not a server error
    const rbac = children(spans, list).find((c) => c.name === 'rbac');
    expect(rbac?.attributes).toMatchObject({
      'rbac.decision': 'denied',
      'rbac.reason': 'Forbidden',
      'rbac.user': 'mallory',
      'rbac.verb': 'list',
      'rbac.resource': 'pods',
      'rbac.namespace': 'default',
      'rbac.scope': 'namespace',
    });
    expect(children(spans, list).find((c) => c.name === 'upstream')?.status.code).toBe(2);
    expect(r.stderr).toContain('rbac: denied for mallory: cannot list pods');
  });

  it('a 300 ms delay before the response headers shows in upstream.ttfb_ms and the span duration', async () => {
    const home = freshHome();
    await traced(['--context', 'alice', 'get', 'pods'], { home }); // warm the discovery cache
    cluster.fake.setFault({ path: /^\/api\/v1\/namespaces\/default\/pods/, delayHeadersMs: 300 });
    try {
      const r = await traced(['--context', 'alice', 'get', 'pods'], { home });
      const spans = await spansOf(r.traceId, 5);
      const list = spans.find((s) => s.name === 'list pods') as ReceivedSpan;
      const upstream = children(spans, list).find((c) => c.name === 'upstream') as ReceivedSpan;
      const ttfb = upstream.attributes['upstream.ttfb_ms'] as number;
      expect(ttfb).toBeGreaterThanOrEqual(300 - 20);
      expect(ttfb).toBeLessThanOrEqual(300 + 20);
      const durationMs = Number(list.endNs - list.startNs) / 1e6;
      expect(durationMs).toBeGreaterThanOrEqual(300);
      expect(durationMs).toBeLessThan(300 + 100);
    } finally {
      cluster.fake.setFault(null);
    }
  });

  it('a watch shows its event counts and one span event per watch event', async () => {
    const w = startProxied(['--context', 'alice', 'get', 'pods', '-w', '-o', 'name'], {
      kubeconfig: cluster.kubeconfig,
      otlpEndpoint: cluster.receiver.url,
      kubetrailArgs: [],
    });
    await w.waitFor(/pod\/web-0\n/);
    cluster.fake.create(makePod('watched-1', { ageSeconds: 1 }));
    cluster.fake.create(makePod('watched-2', { ageSeconds: 1 }));
    await w.waitFor(/pod\/watched-2\n/);
    cluster.fake.remove('pods', 'default', 'watched-1');
    await w.waitFor(/pod\/watched-1\n[\s\S]*pod\/watched-1\n/);
    cluster.fake.endWatches();
    expect((await w.done).code).toBe(0);
    const traceId = /\/trace\/([0-9a-f]{32})/.exec(w.stderr())?.[1] ?? '';
    const spans = await spansOf(traceId, 5);
    const watch = spans.find((s) => s.name === 'watch pods') as ReceivedSpan;
    const decode = children(spans, watch).find((c) => c.name === 'decode') as ReceivedSpan;
    expect(decode.attributes).toMatchObject({
      'decode.watch.events': 3,
      'decode.watch.added': 2,
      'decode.watch.deleted': 1,
      'decode.format': 'json-watch',
    });
    expect(
      decode.events.map((e) => [e.attributes['decode.watch.event.type'], e.attributes['decode.watch.event.name']]),
    ).toEqual([
      ['ADDED', 'watched-1'],
      ['ADDED', 'watched-2'],
      ['DELETED', 'watched-1'],
    ]);
    cluster.fake.remove('pods', 'default', 'watched-2');
  });
});

describe('upgrades', () => {
  it('exec refused by the apiserver: the upgrade span decodes its Status; a 101 tunnel is counted', async () => {
    cluster.fake.create(makePod('pending-0', { phase: 'Pending' }));
    const refused = await traced(['--context', 'alice', 'exec', 'pending-0', '--', 'true']);
    expect(refused.code).toBe(1);
    const spans = await spansOf(refused.traceId, 5);
    const exec = spans.find((s) => s.name === 'get pods/exec') as ReceivedSpan;
    expect(exec.attributes).toMatchObject({
      'kube.verb': 'get',
      'kube.subresource': 'exec',
      'kubetrail.upgrade': true,
      'http.response.status_code': 400,
    });
    expect(children(spans, exec).map((c) => c.name)).toEqual(['auth', 'upstream', 'rbac', 'decode']);
    expect(children(spans, exec).find((c) => c.name === 'decode')?.attributes).toMatchObject({
      'decode.kind': 'Status',
      'decode.status.code': 400,
    });

    const ok = await traced(['--context', 'alice', 'exec', 'web-0', '--', 'echo', 'hi']);
    expect(ok.stdout.toString()).toBe('hi\n');
    // The tunnel span ends last: wait for it and its decode child, not just for any five spans.
    await expect
      .poll(() => cluster.receiver.spans.some((s) => s.traceId === ok.traceId && s.name === 'get pods/exec'), {
        timeout: 10_000,
      })
      .toBe(true);
    const all = await spansOf(ok.traceId, 5);
    const tunnel = all.filter((s) => s.name === 'get pods/exec');
    const decode = children(all, tunnel[0] as ReceivedSpan).find((c) => c.name === 'decode');
    expect(tunnel[0]?.attributes['http.response.status_code']).toBe(101);
    expect(decode?.attributes['decode.format']).toBe('opaque');
    expect(decode?.attributes['decode.bytes']).toBeGreaterThan(0);
  });
});

describe('secrets never leave kubetrail', () => {
  it('no exported span, nor kubetrail output, carries a token, password, key or body', async () => {
    await traced(['--context', 'bob', 'get', 'pods']);
    await traced(['--context', 'tina', 'get', 'configmap', 'db', '-o', 'yaml']);
    const keyBody = cluster.certs.alice!.keyPem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
    const needles = [
      TOKEN,
      BASIC_PASSWORD,
      Buffer.from(`bob:${BASIC_PASSWORD}`).toString('base64'),
      SECRET_VALUE,
      keyBody.slice(0, 40),
      keyBody.slice(-40),
    ];
    await expect.poll(() => cluster.receiver.raw.join('').includes('"auth.user"'), { timeout: 10_000 }).toBe(true);
    const exported = cluster.receiver.raw.join('\n');
    // The proxied commands did carry them (so the scan can find them if they leaked)...
    expect(terminal.join('')).toContain(SECRET_VALUE);
    const kubetrailOutput = terminal.filter((_, i) => i % 2 === 1).join('\n');
    for (const n of needles) {
      expect(exported.includes(n), `exported spans contain ${n.slice(0, 8)}…`).toBe(false);
      expect(kubetrailOutput.includes(n), `kubetrail's stderr contains ${n.slice(0, 8)}…`).toBe(false);
    }
    expect(exported).toContain('"auth.method"');
  });
});

describe('telemetry never slows kubectl', () => {
  const EXIT_MARK = /KUBECTL_EXITED_AT=(\d+)/;

  async function timedRun(
    endpoint: string,
  ): Promise<{ stdout: string; code: number; afterExitMs: number; stderr: string }> {
    const script = `${kubectlPath('1.33')} --context alice get pods -o name; code=$?; echo "KUBECTL_EXITED_AT=$(date +%s%3N)" >&2; exit $code`;
    const r = await runKubetrail(
      [
        '--kubeconfig',
        cluster.kubeconfig,
        '--listen',
        '127.0.0.1:0',
        '--otlp-endpoint',
        endpoint,
        '--',
        'sh',
        '-c',
        script,
      ],
      { env: kubetrailEnv(freshHome()), timeoutMs: 30_000 },
    );
    const exitedAt = Number(EXIT_MARK.exec(r.stderr)?.[1]);
    return { stdout: r.stdout.toString(), code: r.code, afterExitMs: Date.now() - exitedAt, stderr: r.stderr };
  }

  it.each(['refused', 'hung', '500'] as const)(
    'a collector that is %s: same output and exit code, back within 3 s of kubectl, one warning',
    async (mode) => {
      const direct = await kubectl(['--context', 'alice', 'get', 'pods', '-o', 'name'], {
        kubeconfig: cluster.kubeconfig,
      });
      let endpoint = 'http://127.0.0.1:9/v1/traces';
      let bad: OtlpReceiver | undefined;
      if (mode !== 'refused') {
        bad = await startOtlpReceiver(mode === 'hung' ? 'hang' : '500');
        endpoint = bad.url;
      }
      try {
        const r = await timedRun(endpoint);
        expect(r.stdout).toBe(direct.stdout.toString());
        expect(r.code).toBe(direct.code);
        expect(r.afterExitMs).toBeLessThan(3000);
        // A refused collector is known at once: it must not cost the exporter's retry backoff (~1 s).
        if (mode === 'refused') expect(r.afterExitMs).toBeLessThan(700);
        expect(r.stderr.match(/cannot export traces/g) ?? []).toHaveLength(1);
      } finally {
        await bad?.close();
      }
    },
  );
});

describe('standard OTEL_* variables', () => {
  it('OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES name the resource', async () => {
    const r = await traced(['--context', 'alice', 'get', 'pods'], {
      env: {
        OTEL_SERVICE_NAME: 'kubetrail-laptop',
        OTEL_RESOURCE_ATTRIBUTES: 'team=platform,deployment.environment=dev',
      },
    });
    const spans = await spansOf(r.traceId, 3);
    expect(spans[0]?.resource).toMatchObject({
      'service.name': 'kubetrail-laptop',
      team: 'platform',
      'deployment.environment': 'dev',
    });
  });

  it('OTEL_SDK_DISABLED=true exports nothing; the waterfall still prints, saying why there is no link', async () => {
    const before = cluster.receiver.raw.length;
    const r = await traced(['--context', 'alice', 'get', 'pods'], { env: { OTEL_SDK_DISABLED: 'true' } });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^trace not sent: export disabled by OTEL_SDK_DISABLED$/m);
    expect(r.stderr).not.toMatch(/\/trace\/[0-9a-f]{32}/);
    await new Promise((res) => setTimeout(res, 700));
    expect(cluster.receiver.raw.length).toBe(before);
  });

  it('OTEL_TRACES_SAMPLER=always_off samples nothing and says so upstream (traceparent flags 00)', async () => {
    const before = cluster.receiver.raw.length;
    const mark = cluster.fake.requests.length;
    const r = await traced(['--context', 'alice', 'get', 'pods'], { env: { OTEL_TRACES_SAMPLER: 'always_off' } });
    expect(r.code).toBe(0);
    const sent = cluster.fake.requests.slice(mark).find((q) => q.path === '/api/v1/namespaces/default/pods');
    expect(sent?.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    await new Promise((res) => setTimeout(res, 700));
    expect(cluster.receiver.raw.length).toBe(before);
  });
});

describe('documentation', () => {
  it('every attribute kubetrail exported in this file is in the telemetry contract (docs/telemetry.md)', () => {
    const readme = readFileSync(new URL('../../docs/telemetry.md', import.meta.url), 'utf8');
    const keys = new Set<string>();
    for (const s of cluster.receiver.spans) {
      for (const k of Object.keys(s.attributes)) keys.add(k);
      for (const e of s.events) for (const k of Object.keys(e.attributes)) keys.add(k);
    }
    expect(keys.size).toBeGreaterThan(40);
    const missing = [...keys].filter(
      (k) =>
        !readme.includes(`\`${k}\``) &&
        !readme.includes(`\`${k.replace(/^decode\.watch\.event\./, '.')}\``) &&
        !readme.includes(`/\`${k.split('.').pop() ?? ''}\``),
    );
    expect(missing).toEqual([]);
  });
});
