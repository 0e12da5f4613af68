/**
 * `kubetrail show <trace-id | last>` (#12 item 4): the last command's span tree with no Jaeger to ask (the
 * local store in the state dir), and with one (its API v3, here a stand-in that answers from what the
 * OTLP receiver got, plus an apiserver span as the real one adds; test/e2e has the real Jaeger).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freshHome, kubetrailEnv } from '../helpers/compare.ts';
import { makePod } from '../helpers/fake-apiserver.ts';
import { withFakeCluster } from '../helpers/fake-cluster.ts';
import { kubectlPath } from '../helpers/kubectl.ts';
import { runKubetrail } from '../helpers/run-kubetrail.ts';

const cluster = withFakeCluster({
  prefix: 'kt-show-',
  apiserver: { tokens: { 'tina-secret-token-0123456789': { user: 'tina' } } },
  kubeconfig: { users: [{ name: 'tina', token: 'tina-secret-token-0123456789' }] },
  seed: (fake) => void fake.create(makePod('web-0', { ageSeconds: 60 })),
  otlp: true,
});
const REFUSED = 'http://127.0.0.1:9';

async function wrappedGetPods(home: string, otlp: string): Promise<string> {
  const r = await runKubetrail(
    [
      '--kubeconfig',
      cluster.kubeconfig,
      '--listen',
      '127.0.0.1:0',
      '--otlp-endpoint',
      otlp,
      '--jaeger-url',
      REFUSED,
      '--',
      kubectlPath('1.33'),
      '--context',
      'tina',
      'get',
      'pods',
      '-o',
      'name',
    ],
    { env: kubetrailEnv(home) },
  );
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout.toString()).toBe('pod/web-0\n');
  return r.stderr;
}

describe('kubetrail show', () => {
  it('without a reachable Jaeger (and with the collector down), `show last` prints the last command’s tree from the state dir', async () => {
    const home = freshHome();
    const stderr = await wrappedGetPods(home, `${REFUSED}/v1/traces`);
    expect(stderr).toMatch(/^trace not sent: /m);
    const r = await runKubetrail(['show', 'last', '--jaeger-url', REFUSED], { env: kubetrailEnv(home) });
    expect(r.code, r.stderr).toBe(0);
    const tree = r.stdout.toString().trimEnd().split('\n');
    expect(tree[0]).toMatch(/^kubectl get \[kubetrail\] \d+(\.\d)?m?s$/);
    expect(tree).toContainEqual(expect.stringMatching(/^ {2}list pods \[kubetrail\] \S+ 200$/));
    expect(tree).toContainEqual(expect.stringMatching(/^ {4}upstream \[kubetrail\] \S+ 200$/));
    expect(tree).toContainEqual(expect.stringMatching(/^ {4}auth \[kubetrail\] /));
    const traceId =
      /^kubetrail: trace ([0-9a-f]{32}) from the local store \(kubetrail's spans only; Jaeger at http:\/\/127\.0\.0\.1:9 cannot be reached \(.+\)\)$/m.exec(
        r.stderr,
      )?.[1];
    expect(traceId, r.stderr).toBeDefined();

    // --json: the trace as OTLP JSON, the same trace; by id too.
    const j = await runKubetrail(['show', String(traceId), '--json', '--jaeger-url', REFUSED], {
      env: kubetrailEnv(home),
    });
    expect(j.code, j.stderr).toBe(0);
    const otlp = JSON.parse(j.stdout.toString()) as {
      resourceSpans: { scopeSpans: { spans: { traceId: string; name: string }[] }[] }[];
    };
    const spans = otlp.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans));
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([traceId]));
    expect(spans.map((s) => s.name)).toContain('list pods');

    // Private, and never the token.
    const dir = join(home, 'kubetrail-state', 'traces');
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    for (const f of readdirSync(dir)) {
      expect(statSync(join(dir, f)).mode & 0o777, f).toBe(0o600);
      expect(readFileSync(join(dir, f), 'utf8')).not.toContain('tina-secret-token');
    }
  });

  it('with a reachable Jaeger, prints the whole trace from its API, the apiserver’s spans under kubetrail’s', async () => {
    const home = freshHome();
    const stderr = await wrappedGetPods(home, cluster.receiver.url);
    const traceId = /^trace: \S+\/trace\/([0-9a-f]{32})$/m.exec(stderr)?.[1] ?? '';
    await expect
      .poll(() => cluster.receiver.spans.some((s) => s.traceId === traceId && s.parentSpanId === undefined), {
        timeout: 5000,
      })
      .toBe(true);
    const jaeger = await standInJaeger(traceId);
    try {
      const r = await runKubetrail(['show', 'last', '--jaeger-url', jaeger.url], { env: kubetrailEnv(home) });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe(`kubetrail: trace ${traceId} from Jaeger at ${jaeger.url}\n`);
      const tree = r.stdout.toString().trimEnd().split('\n');
      const upstream = tree.findIndex(
        (l) => /^ {4}upstream \[kubetrail\]/.test(l) && tree[tree.indexOf(l) + 1]?.includes('[apiserver]'),
      );
      expect(upstream, tree.join('\n')).toBeGreaterThan(0);
      expect(tree[upstream + 1]).toMatch(/^ {6}GET \/api\/v1\/namespaces\/default\/pods \[apiserver\] /);
      // An unknown id: Jaeger does not have it, nor the store.
      const missing = await runKubetrail(['show', '0'.repeat(31) + '1', '--jaeger-url', jaeger.url], {
        env: kubetrailEnv(home),
      });
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(
        /^kubetrail: show 0{31}1: not found: Jaeger at \S+ does not have it, and \S+ does not keep it\n$/,
      );
    } finally {
      await new Promise((res) => jaeger.server.close(res));
    }
  });

  it('says what is wrong with a bad id, or with nothing kept yet', async () => {
    const home = freshHome();
    const bad = await runKubetrail(['show', 'xyz', '--jaeger-url', REFUSED], { env: kubetrailEnv(home) });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe('kubetrail: show xyz: not a trace id (32 hex digits) or "last"\n');
    const none = await runKubetrail(['show', 'last', '--jaeger-url', REFUSED], { env: kubetrailEnv(home) });
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(
      /^kubetrail: show last: no trace kept in \S+ yet; run a command through kubetrail first\n$/,
    );
  });
});

/**
 * Jaeger's GET /api/v3/traces/<id>: OTLP JSON under `result`, from what the receiver got, plus the span
 * the apiserver adds under kubetrail's upstream span of `list pods`, with its ids in base64 as Jaeger's are.
 */
async function standInJaeger(traceId: string): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    const id = /^\/api\/v3\/traces\/([0-9a-f]{32})$/.exec(req.url ?? '')?.[1];
    const payloads = cluster.receiver.raw.map(
      (b) =>
        JSON.parse(b) as {
          resourceSpans: {
            resource: unknown;
            scopeSpans: {
              spans: {
                traceId: string;
                spanId: string;
                parentSpanId?: string;
                name: string;
                startTimeUnixNano: string;
                endTimeUnixNano: string;
              }[];
            }[];
          }[];
        },
    );
    const resourceSpans = payloads
      .flatMap((p) => p.resourceSpans)
      .map((rs) => ({
        ...rs,
        scopeSpans: rs.scopeSpans.map((ss) => ({ ...ss, spans: ss.spans.filter((s) => s.traceId === id) })),
      }));
    const spans = resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans));
    if (id !== traceId || spans.length === 0) {
      res
        .writeHead(404, { 'content-type': 'application/json' })
        .end('{"error":{"httpCode":404,"message":"trace not found"}}');
      return;
    }
    const list = spans.find((s) => s.name === 'list pods');
    const upstream = spans.find((s) => s.name === 'upstream' && s.parentSpanId === list?.spanId);
    const b64 = (hex: string): string => Buffer.from(hex, 'hex').toString('base64');
    const apiserver = {
      resource: { attributes: [{ key: 'service.name', value: { stringValue: 'apiserver' } }] },
      scopeSpans: [
        {
          spans: [
            {
              traceId: b64(traceId),
              spanId: b64('00000000000000d4'),
              parentSpanId: b64(upstream?.spanId ?? ''),
              name: 'GET /api/v1/namespaces/default/pods',
              startTimeUnixNano: upstream?.startTimeUnixNano,
              endTimeUnixNano: upstream?.endTimeUnixNano,
            },
          ],
        },
      ],
    };
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ result: { resourceSpans: [...resourceSpans, apiserver] } }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}
