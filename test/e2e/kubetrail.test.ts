/**
 * Issue #3 acceptance: kubetrail against a real kube-apiserver (v1.33), real kubectl (1.33 and 1.32) and
 * a real Jaeger. Every case runs the same kubectl command directly and through kubetrail and expects the
 * user to see no difference (stdout byte for byte, exit code, kubectl's stderr); then it reads the trace
 * kubetrail printed a link to back from Jaeger and checks the telemetry contract
 * (/work/shared/design/architecture.md): one trace per command, a `kubectl <cmd>` root, a SERVER span
 * per HTTP request with auth/upstream/rbac/decode children, the Audit-ID join with the apiserver's spans,
 * and no credential anywhere.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  adminClient,
  allKubetrailTracesRaw,
  createConfigMap,
  createNamespace,
  createPods,
  describeComparison,
  errorLines,
  expectCommandTrace,
  expectSameOutcome,
  fallbackReasons,
  fetchTrace,
  Harness,
  kubetrailSpans,
  markRunning,
  maskAgeColumn,
  parentOf,
  searchTraces,
  serviceOf,
  stackSecrets,
  stageTags,
  tagsOf,
  type AdminClient,
  type CommandTrace,
  type Comparison,
  type JaegerTrace,
} from './helpers.ts';
import { freshHome, kubetrailEnv } from '../helpers/compare.ts';
import { runKubetrail } from '../helpers/run-kubetrail.ts';
import { startStack, type Stack } from './stack/stack.ts';

const NS = {
  /** Three pods and a configmap, never changed: reads print the same thing every time. */
  read: 'kt-read',
  /** Commands that create or delete run on the same names here (direct) and in `proxied`. */
  direct: 'kt-direct',
  proxied: 'kt-proxied',
  watch: 'kt-watch',
  /** Pods for exec/attach/logs/port-forward: `pending` (as the stack leaves every pod) and `running`. */
  stream: 'kt-stream',
  /** 600 pods: kubectl lists them in two pages (limit=500, then continue). */
  bulk: 'kt-bulk',
} as const;

const BULK = 600;

let stack: Stack;
let h: Harness;
let admin: AdminClient;

beforeAll(async () => {
  stack = await startStack();
  h = new Harness(stack);
  admin = adminClient(stack);
  for (const ns of Object.values(NS)) await createNamespace(admin, ns);
  await createPods(admin, NS.read, ['web-0', 'web-1', 'web-2']);
  await createConfigMap(admin, NS.read, 'settings', {
    'log.level': 'debug',
    'app.properties': 'color=blue\nsize=10\n',
    empty: '',
  });
  await createPods(admin, NS.watch, ['before']);
  await createPods(admin, NS.stream, ['pending', 'running']);
  await markRunning(admin, NS.stream, 'running');
  const started = performance.now();
  await createPods(
    admin,
    NS.bulk,
    Array.from({ length: BULK }, (_, i) => `bulk-${String(i).padStart(3, '0')}`),
  );
  console.log(`[e2e] created ${BULK} pods in ${Math.round(performance.now() - started)}ms`);
});

afterAll(async () => {
  admin?.close();
  if (h) {
    console.log('[e2e] wall time, direct vs through kubetrail (ms):');
    for (const t of h.timings)
      console.log(`  ${String(t.directMs).padStart(6)} ${String(t.proxiedMs).padStart(6)}  ${t.command}`);
  }
  h?.dispose();
  await stack?.stop();
});

/** The request spans' names, in order: what kubectl did, as kubetrail saw it. */
function names(t: CommandTrace): string[] {
  return t.requests.map((r) => r.span.operationName);
}

function request(t: CommandTrace, name: string, nth = 0): NonNullable<CommandTrace['requests'][number]> {
  const found = t.requests.filter((r) => r.span.operationName === name)[nth];
  expect(found, `no request span #${nth} named ${name}; spans: ${names(t).join(', ')}`).toBeDefined();
  return found as NonNullable<typeof found>;
}

/** How a response travelled: bytes on the wire and content encoding, for the log. */
function wire(r: CommandTrace['requests'][number]): string {
  const d = stageTags(r, 'decode');
  return `${JSON.stringify(d['decode.bytes'])} bytes (${JSON.stringify(d['decode.content_encoding'] ?? 'identity')}, ${JSON.stringify(d['decode.decoded_bytes'])} decoded)`;
}

async function traced(c: Comparison, command: string): Promise<CommandTrace> {
  return expectCommandTrace(stack.jaegerUrl, c.proxied.traceId, { command, requests: c.proxied.requests });
}

describe('kubectl through kubetrail prints exactly what kubectl prints without it', () => {
  it.each([
    { context: 'alice', kubectl: '1.33', method: 'client-certificate' },
    { context: 'tina', kubectl: '1.32', method: 'bearer' },
  ] as const)('get pods as $context ($method, kubectl $kubectl)', async ({ context, kubectl, method }) => {
    const c = await h.compare(['get', 'pods', '-n', NS.read], { context, kubectl });
    expectSameOutcome(c, { stdout: maskAgeColumn });
    expect(c.direct.code).toBe(0);
    expect(c.direct.stdout.toString()).toMatch(/^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\nweb-0\s+0\/1\s+Pending\s/);

    const t = await traced(c, 'kubectl get');
    // A cold cache: discovery, then the list.
    expect(names(t)).toEqual(['GET /api', 'GET /apis', 'list pods']);
    const list = request(t, 'list pods');
    expect(list.tags).toMatchObject({
      'kube.verb': 'list',
      'kube.resource': 'pods',
      'k8s.namespace.name': NS.read,
      'http.response.status_code': 200,
    });
    expect(stageTags(list, 'decode')).toMatchObject({ 'decode.kind': 'Table', 'decode.items': 3 });
    expect(stageTags(list, 'rbac')).toMatchObject({ 'rbac.decision': 'allowed' });
    expect(stageTags(list, 'auth')).toMatchObject({
      'auth.method': method,
      ...(method === 'client-certificate' ? { 'auth.user': context } : {}),
    });
  });

  it.each(['json', 'yaml'])('get configmap -o %s prints the same object', async (format) => {
    const c = await h.compare(['get', 'configmap', 'settings', '-n', NS.read, '-o', format], { context: 'alice' });
    // Both runs read the same stored object: uid, resourceVersion and timestamps are equal, nothing to mask.
    expectSameOutcome(c);
    expect(c.direct.stdout.toString()).toContain('app.properties');
    const t = await traced(c, 'kubectl get');
    expect(stageTags(request(t, 'get configmaps'), 'decode')).toMatchObject({ 'decode.kind': 'ConfigMap' });
  });

  it.each([
    { context: 'mallory', kubectl: '1.33' },
    { context: 'tom', kubectl: '1.32' },
  ] as const)(
    'forbids $context (no rights) with the same Forbidden error and exit 1 (kubectl $kubectl)',
    async ({ context, kubectl }) => {
      const c = await h.compare(['get', 'pods'], { context, kubectl });
      expectSameOutcome(c);
      expect(c.direct.code).toBe(1);
      expect(c.direct.stdout.length).toBe(0);
      expect(c.direct.stderr).toBe(
        `Error from server (Forbidden): pods is forbidden: User "${context}" cannot list resource "pods" in API group "" in the namespace "default"\n`,
      );

      const t = await traced(c, 'kubectl get');
      const list = request(t, 'list pods');
      expect(list.tags['http.response.status_code']).toBe(403);
      expect(stageTags(list, 'rbac')).toMatchObject({
        'rbac.decision': 'denied',
        'rbac.user': context,
        'rbac.verb': 'list',
        'rbac.resource': 'pods',
        'rbac.reason': 'Forbidden',
      });
    },
  );

  it('create configmap', async () => {
    const c = await h.compare(['create', 'configmap', 'made', '--from-literal=k=v'], {
      context: 'alice',
      namespaces: [NS.direct, NS.proxied],
    });
    expectSameOutcome(c);
    expect(c.direct.stdout.toString()).toBe('configmap/made created\n');
    const t = await traced(c, 'kubectl create configmap');
    expect(request(t, 'create configmaps').tags).toMatchObject({
      'http.response.status_code': 201,
      'http.request.method': 'POST',
    });
  });

  it('apply -f - (a pod manifest on stdin)', async () => {
    const manifest =
      'apiVersion: v1\nkind: Pod\nmetadata:\n  name: applied\nspec:\n  containers:\n  - name: main\n    image: registry.k8s.io/pause:3.10\n';
    const c = await h.compare(['apply', '-f', '-'], {
      context: 'tina',
      input: manifest,
      namespaces: [NS.direct, NS.proxied],
    });
    expectSameOutcome(c);
    expect(c.direct.stdout.toString()).toBe('pod/applied created\n');
    const t = await traced(c, 'kubectl apply');
    // Client-side apply: look the pod up (404), then create it (201); the request body went through.
    expect(request(t, 'get pods').tags['http.response.status_code']).toBe(404);
    expect(request(t, 'create pods').tags['http.response.status_code']).toBe(201);
  });

  it.each(['pod', 'configmap'])('delete %s', async (kind) => {
    const name = `doomed-${kind}`;
    for (const ns of [NS.direct, NS.proxied]) {
      if (kind === 'pod') await createPods(admin, ns, [name]);
      else await createConfigMap(admin, ns, name, { k: 'v' });
    }
    const c = await h.compare(['delete', kind, name], { context: 'alice', namespaces: [NS.direct, NS.proxied] });
    expectSameOutcome(c);
    expect(c.direct.stdout.toString()).toBe(`${kind} "${name}" deleted\n`);
    const t = await traced(c, 'kubectl delete');
    // kubectl sends DELETE with a JSON body ({"propagationPolicy":"Background"}); kubetrail forwards it.
    const del = request(t, `delete ${kind}s`);
    expect(del.tags['http.response.status_code']).toBe(200);
    expect(del.tags['kubetrail.bytes_up']).toBeGreaterThan(0);
  });

  it('get pods -w shows the pod created while it watches', async () => {
    const args = ['get', 'pods', '-n', NS.watch, '-w', '--request-timeout=5s'];
    const direct = h.spawnDirect(args, { context: 'alice' });
    const proxied = h.spawnProxied(args, { context: 'alice' });
    // Both have listed before the new pod exists. Each watch starts at its list's resourceVersion, so
    // both must print the pod's ADDED event. --request-timeout=5s ends each watch after 5 s, exit 0.
    await Promise.all([direct.waitForStdout(/^before\s/m, 15_000), proxied.waitForStdout(/^before\s/m, 15_000)]);
    await createPods(admin, NS.watch, ['during']);
    await proxied.waitForStdout(/^during\s+0\/1\s+Pending\s/m, 10_000);
    const c: Comparison = {
      command: `kubectl.1.33 --context alice ${args.join(' ')}`,
      direct: await direct.result,
      proxied: await proxied.result,
    };
    h.timings.push({ command: c.command, directMs: Math.round(c.direct.ms), proxiedMs: Math.round(c.proxied.ms) });
    expectSameOutcome(c, { stdout: maskAgeColumn });
    expect(c.proxied.stdout.toString()).toMatch(/^NAME\s.*\nbefore\s.*\nduring\s+0\/1\s+Pending\s/);

    const t = await traced(c, 'kubectl get');
    expect(names(t)).toEqual(['GET /api', 'GET /apis', 'list pods', 'watch pods']);
    const watch = request(t, 'watch pods');
    expect(watch.tags['url.query']).toMatch(/(^|&)watch=true(&|$)/);
    expect(stageTags(watch, 'decode')).toMatchObject({ 'decode.watch.added': 1 });
    // kubectl speaks HTTP/2 to kubetrail, and kubetrail mirrors its connection upstream (#13): the list and
    // the watch both went to the apiserver as HTTP/2 streams, as they do direct (test/e2e/connections.test.ts).
    expect(stageTags(watch, 'upstream')).toMatchObject({ 'network.protocol.version': '2' });
    expect(stageTags(request(t, 'list pods'), 'upstream')).toMatchObject({ 'network.protocol.version': '2' });
  });

  it('get --raw /version (a server-relative path, routed by SNI)', async () => {
    const c = await h.compare(['get', '--raw', '/version'], { context: 'alice' });
    expectSameOutcome(c);
    expect(JSON.parse(c.proxied.stdout.toString())).toMatchObject({ gitVersion: stack.apiserverVersion });
    const t = await traced(c, 'kubectl get');
    expect(names(t)).toEqual(['GET /version']);
  });

  it('logs of a pod without a node: the apiserver answers 204, kubectl prints nothing and exits 0', async () => {
    const c = await h.compare(['logs', 'pending', '-n', NS.stream], { context: 'alice' });
    expectSameOutcome(c);
    expect(c.direct.code).toBe(0);
    expect(c.direct.stdout.length).toBe(0);
    const t = await traced(c, 'kubectl logs');
    expect(request(t, 'get pods/log').tags['http.response.status_code']).toBe(204);
  });
});

describe('exec, attach and port-forward: the apiserver’s refusal reaches kubectl unchanged', () => {
  const HOSTLESS = (pod: string): string => `pod ${pod} does not have a host assigned`;

  // exec/attach: kubectl 1.31+ tries a WebSocket GET first; a non-101 answer makes it fall back to a SPDY POST.
  describe.each([
    {
      cmd: 'exec',
      pod: 'pending',
      args: ['exec', 'pending', '-n', NS.stream, '--', 'true'],
      env: 'KUBECTL_REMOTE_COMMAND_WEBSOCKETS',
    },
    {
      cmd: 'attach',
      pod: 'running',
      args: ['attach', 'running', '-n', NS.stream],
      env: 'KUBECTL_REMOTE_COMMAND_WEBSOCKETS',
    },
    {
      cmd: 'port-forward',
      pod: 'running',
      args: ['port-forward', 'running', '-n', NS.stream, ':80'],
      env: 'KUBECTL_PORT_FORWARD_WEBSOCKETS',
    },
  ])('kubectl $cmd', ({ cmd, pod, args, env }) => {
    const sub = cmd === 'port-forward' ? 'portforward' : cmd;
    const expectedError =
      cmd === 'port-forward'
        ? `error: error upgrading connection: ${HOSTLESS(pod)}`
        : `Error from server (BadRequest): ${HOSTLESS(pod)}`;

    it.each(['1.33', '1.32'] as const)('over WebSocket, then the SPDY fallback (kubectl %s)', async (kubectl) => {
      const c = await h.compare(args, { context: 'alice', kubectl });
      expectSameOutcome(c);
      expect(c.direct.code).toBe(1);
      expect(errorLines(c.direct.stderr)).toEqual([expectedError]);

      const t = await traced(c, `kubectl ${cmd}`);
      // Both attempts went through kubetrail, each on its own upgrade connection, and got the 400.
      const ws = request(t, `get pods/${sub}`);
      const spdy = request(t, `create pods/${sub}`);
      expect(names(t).slice(-2)).toEqual([`get pods/${sub}`, `create pods/${sub}`]);
      for (const r of [ws, spdy])
        expect(r.tags).toMatchObject({ 'http.response.status_code': 400, 'kubetrail.upgrade': true });
      expect(ws.tags['http.request.method']).toBe('GET');
      expect(spdy.tags['http.request.method']).toBe('POST');
    });

    it(`the WebSocket refusal's Status body reaches kubectl (its fallback reason, at -v=6)`, async () => {
      const c = await h.compare(['-v=6', ...args], { context: 'alice' });
      const msg = describeComparison(c);
      expect(c.proxied.code, msg).toBe(c.direct.code);
      expect(c.proxied.stdout.toString(), msg).toBe(c.direct.stdout.toString());
      expect(errorLines(c.proxied.kubectlStderr), msg).toEqual(errorLines(c.direct.stderr));
      // kubectl read the reason out of the 400's body: only an unchanged Status gives the same text.
      const reasons = fallbackReasons(c.direct.stderr);
      expect(reasons.length, msg).toBe(1);
      expect(reasons[0], msg).toContain(`unable to upgrade streaming request: ${HOSTLESS(pod)}`);
      expect(fallbackReasons(c.proxied.kubectlStderr), msg).toEqual(reasons);
    });

    it(`over SPDY only (${env}=false)`, async () => {
      const c = await h.compare(args, { context: 'alice', env: { [env]: 'false' } });
      expectSameOutcome(c);
      expect(c.direct.code).toBe(1);
      expect(errorLines(c.direct.stderr)).toEqual([expectedError]);
      const t = await traced(c, `kubectl ${cmd}`);
      expect(names(t).filter((n) => n.endsWith(`/${sub}`))).toEqual([`create pods/${sub}`]);
      expect(request(t, `create pods/${sub}`).tags['http.response.status_code']).toBe(400);
    });
  });
});

describe(`a ${BULK}-pod list (two pages)`, () => {
  it('get pods prints the same 600 rows; the trace has both pages', async () => {
    const c = await h.compare(['get', 'pods', '-n', NS.bulk], { context: 'alice' });
    expectSameOutcome(c, { stdout: maskAgeColumn });
    expect(c.direct.stdout.toString().trimEnd().split('\n')).toHaveLength(BULK + 1);

    const t = await traced(c, 'kubectl get');
    expect(names(t)).toEqual(['GET /api', 'GET /apis', 'list pods', 'list pods']);
    const [first, second] = [request(t, 'list pods', 0), request(t, 'list pods', 1)];
    expect(first.tags['url.query']).toBe('limit=500');
    expect(second.tags['url.query']).toMatch(/^continue=.+&limit=500$/);
    expect(stageTags(first, 'decode')).toMatchObject({
      'decode.kind': 'Table',
      'decode.items': 500,
      'decode.continue': true,
    });
    expect(stageTags(second, 'decode')).toMatchObject({ 'decode.kind': 'Table', 'decode.items': 100 });
    expect(stageTags(second, 'decode')['decode.continue']).not.toBe(true);
    expect(tagsOf(t.root)).toMatchObject({ 'kubectl.items': BULK, 'kubectl.pages': 2 });
    console.log(`[e2e] ${BULK}-pod list as a Table: ${wire(first)} + ${wire(second)}`);
  });

  it('get pods -o yaml into a slow reader (| less): nothing is lost', async () => {
    // ~600 kB: more than a pipe or socket buffer holds while nobody reads. kubectl writes to the same
    // stdout kubetrail was given; its writes must block until the reader catches up, never fail.
    const c = await h.compare(['get', 'pods', '-n', NS.bulk, '-o', 'yaml'], { context: 'alice', slowReaderMs: 1500 });
    expectSameOutcome(c);
    expect(c.direct.stdout.length).toBeGreaterThan(256 * 1024);
  });

  it('get pods -o custom-columns (full PodList JSON, gzip-sized pages) is byte-identical', async () => {
    const c = await h.compare(
      [
        'get',
        'pods',
        '-n',
        NS.bulk,
        '-o',
        'custom-columns=NAME:.metadata.name,PHASE:.status.phase,IMAGE:.spec.containers[0].image',
      ],
      { context: 'alice' },
    );
    expectSameOutcome(c);
    expect(c.direct.stdout.toString().trimEnd().split('\n')).toHaveLength(BULK + 1);
    const t = await traced(c, 'kubectl get');
    const [first, second] = [request(t, 'list pods', 0), request(t, 'list pods', 1)];
    expect(stageTags(first, 'decode')).toMatchObject({
      'decode.kind': 'PodList',
      'decode.items': 500,
      'decode.continue': true,
    });
    expect(stageTags(second, 'decode')).toMatchObject({ 'decode.kind': 'PodList', 'decode.items': 100 });
    console.log(`[e2e] ${BULK}-pod list as a PodList: ${wire(first)} + ${wire(second)}`);
  });
});

describe('the apiserver’s own spans join kubetrail’s trace', () => {
  /** The apiserver's HTTP server spans (otelhttp) in a set of traces. */
  const apiserverServerSpans = (traces: JaegerTrace[]): { trace: JaegerTrace; span: JaegerTrace['spans'][number] }[] =>
    traces.flatMap((trace) =>
      trace.spans
        .filter((s) => serviceOf(trace, s) === 'apiserver' && tagsOf(s)['span.kind'] === 'server')
        .map((span) => ({ trace, span })),
    );

  // kubetrail sends Audit-ID = its trace id upstream. The apiserver (1.33) records the audit id as the
  // `audit-id` attribute of its SerializeObject spans (not yet on its HTTP server span: that is 1.34).
  const byAuditId = (auditId: string, ready: (ts: JaegerTrace[]) => boolean): Promise<JaegerTrace[]> =>
    searchTraces(
      stack.jaegerUrl,
      { service: 'apiserver', tags: JSON.stringify({ 'audit-id': auditId }), lookback: '1h', limit: '100' },
      ready,
    );

  it('for admin (system:masters) the apiserver spans are children of kubetrail’s upstream spans, in the same trace', async () => {
    const c = await h.compare(['get', 'pods', '-n', NS.read], { context: 'admin' });
    expectSameOutcome(c, { stdout: maskAgeColumn });
    const t = await traced(c, 'kubectl get');
    const traceId = c.proxied.traceId ?? '';
    const upstreamIds = new Set(t.requests.map((r) => r.children.get('upstream')?.spanID));

    const found = await byAuditId(traceId, (ts) => apiserverServerSpans(ts).length >= t.requests.length);
    expect(
      found.map((x) => x.traceID),
      'apiserver traces found by audit-id',
    ).toEqual([traceId]);
    const spans = apiserverServerSpans(found);
    expect(spans.length, 'one apiserver server span per request').toBe(t.requests.length);
    for (const { span } of spans) {
      expect(span.traceID).toBe(traceId);
      const parent = parentOf(span);
      expect(parent?.traceID).toBe(traceId);
      expect(
        upstreamIds.has(parent?.spanID),
        `${span.operationName}'s parent is one of kubetrail's upstream spans`,
      ).toBe(true);
    }
    // And reading kubetrail's trace shows them too.
    const whole = await fetchTrace(
      stack.jaegerUrl,
      traceId,
      (x) => apiserverServerSpans([x]).length >= t.requests.length,
    );
    expect(whole && apiserverServerSpans([whole]).length).toBe(t.requests.length);
    expect(whole && kubetrailSpans(whole).length).toBe(
      t.trace.spans.filter((s) => serviceOf(t.trace, s) === 'kubetrail').length,
    );

    // `kubetrail show` draws the same trace from Jaeger's API v3: the apiserver's spans (and etcd's) under
    // kubetrail's upstream spans (#12 item 4). A fresh state dir: nothing of it kept locally.
    const shown = await runKubetrail(['show', traceId, '--jaeger-url', stack.jaegerUrl], {
      env: kubetrailEnv(freshHome()),
    });
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stderr).toBe(`kubetrail: trace ${traceId} from Jaeger at ${stack.jaegerUrl}\n`);
    const tree = shown.stdout.toString().trimEnd().split('\n');
    expect(tree[0]).toMatch(/^kubectl get \[kubetrail\] /);
    const ups = tree.flatMap((l, i) => (/^ {4}upstream \[kubetrail\]/.test(l) ? [i] : []));
    expect(ups.length, shown.stdout.toString()).toBe(t.requests.length);
    for (const i of ups) expect(tree[i + 1], shown.stdout.toString()).toMatch(/^ {6}\S.* \[apiserver\] /);
  });

  it('for alice the apiserver starts its own traces, linked to kubetrail’s upstream spans and found by the audit id', async () => {
    const c = await h.compare(['get', 'pods', '-n', NS.read], { context: 'alice' });
    expectSameOutcome(c, { stdout: maskAgeColumn });
    const t = await traced(c, 'kubectl get');
    const traceId = c.proxied.traceId ?? '';
    const upstreamIds = new Set(t.requests.map((r) => r.children.get('upstream')?.spanID));

    const found = await byAuditId(traceId, (ts) => apiserverServerSpans(ts).length >= t.requests.length);
    const spans = apiserverServerSpans(found);
    expect(spans.length, 'one apiserver server span per request').toBe(t.requests.length);
    for (const { span } of spans) {
      expect(span.traceID).not.toBe(traceId);
      expect(parentOf(span), `${span.operationName} has no parent (a new root)`).toBeUndefined();
      const link = span.references.find((r) => r.refType === 'FOLLOWS_FROM');
      expect(link?.traceID).toBe(traceId);
      expect(upstreamIds.has(link?.spanID), `${span.operationName} links to one of kubetrail's upstream spans`).toBe(
        true,
      );
    }
  });
});

describe('secrets', () => {
  it('no token or client key reaches Jaeger or kubetrail’s stderr', async () => {
    const secrets = stackSecrets(stack);
    // tina's and tom's tokens; admin, alice and mallory's keys in three forms each.
    expect(secrets.map((s) => s.name).filter((n) => n.endsWith('token'))).toEqual(["tina's token", "tom's token"]);
    expect(secrets.length).toBe(2 + 3 * 3);
    const raw = await allKubetrailTracesRaw(stack.jaegerUrl);
    const traces = (JSON.parse(raw) as { data: JaegerTrace[] }).data;
    // Everything this file ran through kubetrail, tina's and tom's commands included.
    expect(traces.length).toBeGreaterThanOrEqual(h.kubetrailStderr.length);
    expect(h.kubetrailStderr.length).toBeGreaterThan(20);
    const stderr = h.kubetrailStderr.join('\n');
    for (const { name, value } of secrets) {
      expect(raw.includes(value), `${name} found in kubetrail's exported spans`).toBe(false);
      expect(stderr.includes(value), `${name} found in kubetrail's stderr`).toBe(false);
    }
    expect(raw).not.toMatch(/Bearer [A-Za-z0-9]/);
  });

  it('kubetrail reported no internal, telemetry or export error in any run', () => {
    const problems = h.kubetrailStderr.flatMap((s) => s.split('\n')).filter((l) => /^kubetrail: /.test(l));
    expect(problems).toEqual([]);
  });
});
