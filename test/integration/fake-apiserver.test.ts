/**
 * The stand-in apiserver against the real kubectl 1.32 and 1.33 (no proxy in between): each test asserts
 * what a user sees, plus the wire facts the stand-in is meant to reproduce. Every test has its own server
 * (port 0, fresh certificates) and temp dir, so the suite runs concurrently.
 */
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, test, type TestContext } from 'vitest';
import {
  defaultAuthorize,
  makePod,
  startFakeApiserver,
  type FakeApiserver,
  type FakeApiserverOptions,
} from '../helpers/fake-apiserver.ts';
import {
  kubectl,
  kubectlAvailable,
  startKubectl,
  type KubectlOptions,
  type KubectlVersion,
} from '../helpers/kubectl.ts';

const TOKEN = 'tina-token-0123456789';
const MALLORY_TOKEN = 'mallory-token-0123456789';
const VERSIONS: KubectlVersion[] = ['1.32', '1.33'];

interface Env {
  fake: FakeApiserver;
  dir: string;
  kubeconfig: string;
  run: (args: string[], extra?: Partial<KubectlOptions>) => ReturnType<typeof kubectl>;
  start: (args: string[], extra?: Partial<KubectlOptions>) => ReturnType<typeof startKubectl>;
}

/** A fresh server and kubeconfig: context `alice` (client certificate, the default), `tina` (token),
 * `mallory` (token, denied resource requests), `wrong` (a token the server does not know). */
async function setup(t: TestContext, version: KubectlVersion, opts: FakeApiserverOptions = {}): Promise<Env> {
  const fake = await startFakeApiserver({
    tokens: { [TOKEN]: { user: 'tina', groups: ['qa'] }, [MALLORY_TOKEN]: { user: 'mallory' } },
    // The default policy, except that mallory may touch no resources but SelfSubjectAccessReviews (as
    // with RBAC's bootstrap roles system:discovery and system:basic-user).
    authorize: (user, a) =>
      defaultAuthorize(user, a) === true &&
      !(user.name === 'mallory' && a.isResourceRequest && a.apiGroup !== 'authorization.k8s.io'),
    objects: [makePod('nginx-1'), makePod('nginx-2', { restarts: 2 }), makePod('pending-1', { phase: 'Pending' })],
    ...opts,
  });
  t.onTestFinished(() => fake.close());
  const dir = await mkdtemp(join(tmpdir(), 'kt-fake-apiserver-'));
  t.onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const alice = await fake.issueUser('alice', ['devs', 'ops']);
  const kubeconfig = await fake.writeKubeconfig(dir, {
    users: [
      { name: 'alice', cert: alice },
      { name: 'tina', token: TOKEN },
      { name: 'mallory', token: MALLORY_TOKEN },
      { name: 'wrong', token: 'not-a-known-token' },
    ],
  });
  return {
    fake,
    dir,
    kubeconfig,
    run: (args, extra = {}) => kubectl(args, { kubeconfig, version, ...extra }),
    start: (args, extra = {}) => {
      const k = startKubectl(args, { kubeconfig, version, ...extra });
      t.onTestFinished(async () => {
        k.kill('SIGKILL');
        await k.result;
      });
      return k;
    },
  };
}

const lines = (b: Buffer | string): string[] => b.toString().trimEnd().split('\n');
const header = (h: [string, string][] | undefined, name: string): string | undefined =>
  h?.find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1];

const haveKubectl = VERSIONS.every((v) => kubectlAvailable(v));

describe.skipIf(!haveKubectl)('kubectl against the stand-in apiserver', () => {
  describe.concurrent.each(VERSIONS)('kubectl %s', (version) => {
    test('get pods prints the server-side Table, after aggregated discovery over h2', async (t) => {
      const { fake, run } = await setup(t, version);
      const r = await run(['get', 'pods']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const out = lines(r.stdout);
      expect(out[0]).toMatch(/^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE$/);
      expect(out.slice(1).map((l) => l.split(/\s+/).slice(0, 4))).toEqual([
        ['nginx-1', '1/1', 'Running', '0'],
        ['nginx-2', '1/1', 'Running', '2'],
        ['pending-1', '0/1', 'Pending', '0'],
      ]);
      expect(out[1]).toMatch(/\s(\d+s|\dm\d*s?)$/);
      expect(fake.requests.map((q) => `${q.method} ${q.url}`)).toEqual([
        'GET /api?timeout=32s',
        'GET /apis?timeout=32s',
        'GET /api/v1/namespaces/default/pods?limit=500',
      ]);
      const [disco, , list] = fake.requests;
      expect(disco?.headers.accept).toContain('as=APIGroupDiscoveryList');
      expect(header(disco?.responseHeaders, 'content-type')).toBe(
        'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList',
      );
      expect(list?.headers.accept).toContain('as=Table');
      expect(list).toMatchObject({
        httpVersion: '2.0',
        alpn: 'h2',
        sni: false,
        clientCertCN: 'alice',
        user: 'alice',
        status: 200,
      });
      expect(header(list?.responseHeaders, 'audit-id')).toMatch(/^[0-9a-f-]{36}$/);
      expect(header(list?.responseHeaders, 'x-kubernetes-pf-flowschema-uid')).toBe(
        fake.apf.globalDefault.flowSchemaUid,
      );
      expect(header(list?.responseHeaders, 'cache-control')).toBe('no-cache, private');
    });

    test('get pods -o json and -o yaml print the objects', async (t) => {
      const { run } = await setup(t, version);
      const j = await run(['get', 'pods', '-o', 'json']);
      expect(j.code).toBe(0);
      const list = JSON.parse(j.stdout.toString()) as {
        kind: string;
        items: { metadata: { name: string; uid: string } }[];
      };
      expect(list.kind).toBe('List');
      expect(list.items.map((i) => i.metadata.name)).toEqual(['nginx-1', 'nginx-2', 'pending-1']);
      expect(list.items[0]?.metadata.uid).toMatch(/^[0-9a-f-]{36}$/);
      const y = await run(['get', 'pod', 'nginx-1', '-o', 'yaml']);
      expect(y.code).toBe(0);
      expect(y.stdout.toString()).toMatch(/^apiVersion: v1\nkind: Pod\nmetadata:\n/);
      expect(y.stdout.toString()).toContain('  nodeName: fake-node\n');
    });

    test('a token user is allowed and its Authorization header arrives', async (t) => {
      const { fake, run } = await setup(t, version);
      const r = await run(['--context', 'tina', 'get', 'pod', 'nginx-1']);
      expect(r.code).toBe(0);
      expect(lines(r.stdout)[1]).toMatch(/^nginx-1\s+1\/1\s+Running\s+0\s+/);
      const get = fake.requests.find((q) => q.path === '/api/v1/namespaces/default/pods/nginx-1');
      expect(get).toMatchObject({ user: 'tina', status: 200 });
      expect(get?.clientCertCN).toBeUndefined();
      expect(get?.headers.authorization).toBe(`Bearer ${TOKEN}`);
    });

    test('a forbidden user gets the apiserver 403 line and exit 1', async (t) => {
      const { fake, run } = await setup(t, version);
      const r = await run(['--context', 'mallory', 'get', 'pods']);
      expect(r.code).toBe(1);
      expect(r.stdout.toString()).toBe('');
      expect(r.stderr).toBe(
        'Error from server (Forbidden): pods is forbidden: User "mallory" cannot list resource "pods" in API group "" in the namespace "default"\n',
      );
      const denied = fake.requests.find((q) => q.status === 403);
      expect(header(denied?.responseHeaders, 'x-content-type-options')).toBe('nosniff');
      expect(header(denied?.responseHeaders, 'content-type')).toBe('application/json');
      // The same policy answers SelfSubjectAccessReviews.
      const canI = await run(['--context', 'mallory', 'auth', 'can-i', 'list', 'pods']);
      expect(canI.stdout.toString()).toBe('no\n');
      expect(canI.code).toBe(1);
      expect((await run(['auth', 'can-i', 'list', 'pods'])).stdout.toString()).toBe('yes\n');
    });

    test('a wrong token: 401, worded by whether discovery is cached', async (t) => {
      const { fake, run } = await setup(t, version);
      // Cold cache: the 401 hits discovery, which reads the body as unstructured.
      const cold = await run(['--context', 'wrong', 'get', 'pods']);
      expect(cold.code).toBe(1);
      expect(lines(cold.stderr).at(-1)).toBe(
        'error: You must be logged in to the server (the server has asked for the client to provide credentials)',
      );
      const unauthorized = fake.requests.find((q) => q.status === 401);
      expect(unauthorized?.user).toBeUndefined();
      // Warm cache: the 401 Status of the list itself reaches kubectl.
      const home = await mkdtemp(join(tmpdir(), 'kt-fake-home-'));
      t.onTestFinished(() => rm(home, { recursive: true, force: true }));
      expect((await run(['get', 'pods'], { home })).code).toBe(0);
      const warm = await run(['--context', 'wrong', 'get', 'pods'], { home });
      expect(warm.code).toBe(1);
      expect(warm.stderr).toBe('error: You must be logged in to the server (Unauthorized)\n');
    });

    test('600 pods come in two pages of limit=500 (continue token, remainingItemCount, gzip)', async (t) => {
      const { fake, run } = await setup(t, version);
      for (let i = 0; i < 600; i++) fake.create(makePod(`pod-${String(i).padStart(3, '0')}`, { namespace: 'big' }));
      const r = await run(['get', 'pods', '-n', 'big']);
      expect(r.code).toBe(0);
      const out = lines(r.stdout);
      expect(out).toHaveLength(601);
      expect(out[1]).toMatch(/^pod-000\s/);
      expect(out[600]).toMatch(/^pod-599\s/);
      const lists = fake.requests.filter((q) => q.path === '/api/v1/namespaces/big/pods');
      expect(lists.map((q) => Object.keys(q.query))).toEqual([['limit'], ['continue', 'limit']]);
      const token = lists[1]?.query['continue']?.[0] ?? '';
      expect(JSON.parse(Buffer.from(token, 'base64url').toString())).toMatchObject({
        v: 'meta.k8s.io/v1',
        start: 'pod-499\u0000',
      });
      // -o json: full objects, large enough to be gzipped for a client that accepts it.
      fake.requests.length = 0;
      const j = await run(['get', 'pods', '-n', 'big', '-o', 'json']);
      expect((JSON.parse(j.stdout.toString()) as { items: unknown[] }).items).toHaveLength(600);
      const first = fake.requests.find((q) => q.query['limit'] !== undefined);
      expect(header(first?.responseHeaders, 'content-encoding')).toBe('gzip');
    });

    test('get pods -w shows a pod created during the watch and exits 0 when the server ends it', async (t) => {
      const { fake, start } = await setup(t, version);
      const k = start(['get', 'pods', '-w']);
      await k.waitForStdout(/^pending-1\s/m);
      fake.create(makePod('late-1', { ageSeconds: 0 }));
      await k.waitForStdout(/^late-1\s+1\/1\s+Running/m);
      expect(fake.endWatches()).toBe(1);
      const r = await k.result;
      expect(r.code).toBe(0);
      const watch = fake.requests.find((q) => q.query['watch'] !== undefined);
      expect(watch?.url).toMatch(/^\/api\/v1\/namespaces\/default\/pods\?resourceVersion=\d+&watch=true$/);
      expect(watch?.headers.accept).toContain('as=Table');
    });

    test('logs prints the stored lines; logs -f follows until the stream ends', async (t) => {
      const { fake, run } = await setup(t, version, { logFollow: { intervalMs: 20, count: 3 } });
      fake.setLogs('default', 'nginx-1', ['starting', 'ready']);
      const r = await run(['logs', 'nginx-1']);
      expect(r.code).toBe(0);
      expect(r.stdout.toString()).toBe('starting\nready\n');
      const f = await run(['logs', '-f', 'nginx-1']);
      expect(f.code).toBe(0);
      expect(f.stdout.toString()).toBe('starting\nready\nnginx-1 line 1\nnginx-1 line 2\nnginx-1 line 3\n');
      const follow = fake.requests.find((q) => q.query['follow'] !== undefined);
      expect(follow?.url).toBe('/api/v1/namespaces/default/pods/nginx-1/log?container=app&follow=true');
      expect(header(follow?.responseHeaders, 'content-type')).toBe('text/plain');
      expect(header(follow?.responseHeaders, 'x-kubernetes-pf-flowschema-uid')).toBeUndefined();
    });

    test('exec -- echo hi over WebSocket (v5.channel.k8s.io)', async (t) => {
      const { fake, run } = await setup(t, version);
      const r = await run(['exec', 'nginx-1', '--', 'echo', 'hi']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.toString()).toBe('hi\n');
      const up = fake.requests.filter((q) => q.upgrade);
      expect(up).toHaveLength(1);
      expect(up[0]).toMatchObject({ method: 'GET', httpVersion: '1.1', alpn: false, status: 101 });
      expect(up[0]?.headers['sec-websocket-protocol']).toBe('v5.channel.k8s.io');
      expect(up[0]?.url).toBe(
        '/api/v1/namespaces/default/pods/nginx-1/exec?command=echo&command=hi&container=app&stderr=true&stdout=true',
      );
    });

    test('exec: stdin, exit codes and runtime errors as kubectl reports them', async (t) => {
      const { run } = await setup(t, version);
      const cat = await run(['exec', '-i', 'nginx-1', '--', 'cat'], { stdin: 'typed line\n' });
      expect(cat.code).toBe(0);
      expect(cat.stdout.toString()).toBe('typed line\n');
      const three = await run(['exec', 'nginx-1', '--', 'sh', '-c', 'exit 3']);
      expect(three.code).toBe(3);
      expect(three.stderr).toBe('command terminated with exit code 3\n');
      const missing = await run(['exec', 'nginx-1', '--', 'no-such-binary']);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toMatch(
        /^error: Internal error occurred: .*exec: "no-such-binary": executable file not found in \$PATH: unknown\n$/,
      );
    });

    test('exec falls back to SPDY/3.1 when the server refuses the WebSocket', async (t) => {
      const { fake, run } = await setup(t, version, { websocket: false });
      const r = await run(['exec', '-i', 'nginx-1', '--', 'cat'], { stdin: 'over spdy\n' });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout.toString()).toBe('over spdy\n');
      const up = fake.requests.filter((q) => q.upgrade);
      expect(up.map((q) => `${q.method} ${q.status}`)).toEqual(['GET 403', 'POST 101']);
      expect(up[1]?.rawHeaders.filter((_, i, a) => a[i - 1]?.toLowerCase() === 'x-stream-protocol-version')).toEqual([
        'v5.channel.k8s.io',
        'v4.channel.k8s.io',
        'v3.channel.k8s.io',
        'v2.channel.k8s.io',
        'channel.k8s.io',
      ]);
      const code = await run(['exec', 'nginx-1', '--', 'false']);
      expect(code.code).toBe(1);
      expect(code.stderr).toBe('command terminated with exit code 1\n');
    });

    test('exec into an unscheduled pod gets the apiserver 400', async (t) => {
      const { run } = await setup(t, version);
      const r = await run(['exec', 'pending-1', '--', 'echo', 'hi']);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe('Error from server (BadRequest): pod pending-1 does not have a host assigned\n');
    });

    test('port-forward tunnels bytes (SPDY inside WebSocket, or plain SPDY after the fallback)', async (t) => {
      for (const websocket of [true, false]) {
        const { fake, start } = await setup(t, version, { websocket });
        const k = start(['port-forward', 'pod/nginx-1', ':8080']);
        const out = await k.waitForStdout(/Forwarding from 127\.0\.0\.1:\d+/);
        const port = Number(/127\.0\.0\.1:(\d+)/.exec(out)?.[1]);
        for (const msg of ['ping', 'pong']) {
          const echoed = await new Promise<string>((resolve, reject) => {
            const s = netConnect(port, '127.0.0.1', () => s.write(msg));
            s.on('data', (d) => {
              s.end();
              resolve(d.toString());
            });
            s.on('error', reject);
          });
          expect(echoed).toBe(msg);
        }
        k.kill('SIGTERM');
        await k.result;
        const up = fake.requests.filter((q) => q.upgrade).map((q) => `${q.method} ${q.status}`);
        expect(up).toEqual(websocket ? ['GET 101'] : ['GET 403', 'POST 101']);
      }
    });

    test('get --raw /version answers as the configured server version', async (t) => {
      const { run } = await setup(t, version, { version });
      const r = await run(['get', '--raw', '/version']);
      expect(r.code).toBe(0);
      const v = JSON.parse(r.stdout.toString()) as { major: string; minor: string; gitVersion: string };
      expect(v).toMatchObject({ major: '1', minor: version.slice(2) });
      expect(v.gitVersion).toMatch(new RegExp(`^v${version.replace('.', '\\.')}\\.\\d+$`));
    });

    test('apply -f creates, re-applies unchanged, and delete pod removes it', async (t) => {
      const { fake, dir, run } = await setup(t, version);
      const manifest = join(dir, 'web.yaml');
      await writeFile(
        manifest,
        'apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  containers:\n  - name: c\n    image: nginx:1.27\n',
      );
      const created = await run(['apply', '-f', manifest]);
      expect(created.stderr).toBe('');
      expect(created.stdout.toString()).toBe('pod/web created\n');
      expect(fake.get('pods', 'default', 'web')?.metadata.labels).toEqual({ app: 'web' });
      const again = await run(['apply', '-f', manifest]);
      expect(again.stdout.toString()).toBe('pod/web unchanged\n');
      const del = await run(['delete', 'pod', 'web']);
      expect(del.code).toBe(0);
      expect(del.stdout.toString()).toBe('pod "web" deleted\n');
      expect(fake.get('pods', 'default', 'web')).toBeUndefined();
      const deleteReq = fake.requests.find((q) => q.method === 'DELETE');
      expect(deleteReq?.body).toBe('{"propagationPolicy":"Background"}\n');
      expect(fake.requests.find((q) => q.method === 'POST')?.url).toBe(
        '/api/v1/namespaces/default/pods?fieldManager=kubectl-client-side-apply&fieldValidation=Strict',
      );
    });
  });

  describe.concurrent('server behaviour', () => {
    const version: KubectlVersion = '1.33';

    test('create configmap (a protobuf body) and get it back', async (t) => {
      const { fake, run } = await setup(t, version);
      const c = await run(['create', 'configmap', 'settings', '--from-literal=mode=fast']);
      expect(c.stdout.toString()).toBe('configmap/settings created\n');
      expect(fake.requests.find((q) => q.method === 'POST')?.headers['content-type']).toBe(
        'application/vnd.kubernetes.protobuf',
      );
      const g = await run(['get', 'configmap', 'settings', '-o', 'jsonpath={.data.mode}']);
      expect(g.stdout.toString()).toBe('fast');
    });

    test('429 with Retry-After is retried by kubectl; a delay is waited out; a hung answer hits --request-timeout', async (t) => {
      const { fake, run } = await setup(t, version);
      fake.setFault({ path: /\/pods\?/, status: 429, retryAfter: 1, times: 2 });
      const r = await run(['get', 'pods']);
      expect(r.code).toBe(0);
      expect(fake.requests.filter((q) => q.path.endsWith('/pods')).map((q) => q.status)).toEqual([429, 429, 200]);
      fake.setFault({ path: /\/pods\?/, delayHeadersMs: 400, times: 1 });
      const t0 = Date.now();
      expect((await run(['get', 'pods'])).code).toBe(0);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(400);
      fake.setFault({ path: /\/pods\?/, hangAfterHeaders: true });
      const hung = await run(['get', 'pods', '--request-timeout=1s']);
      expect(hung.code).toBe(1);
      expect(hung.stderr).toMatch(/Client\.Timeout|context deadline exceeded|timeout/i);
    });

    test('a reset mid-body and a dropped connection reach kubectl as errors', async (t) => {
      const { fake, run } = await setup(t, version);
      expect((await run(['get', 'pods'])).code).toBe(0);
      fake.setFault({ path: /\/pods\?/, resetAfterBytes: 100 });
      const reset = await run(['get', 'pods', '-o', 'json'], { timeoutMs: 15_000 });
      expect(reset.code).toBe(1);
      expect(reset.timedOut).toBe(false);
      fake.setFault({ path: /\/version/, dropConnection: true });
      const dropped = await run(['get', '--raw', '/version'], { timeoutMs: 15_000 });
      expect(dropped.code).toBe(1);
    });

    test('http2: false serves HTTP/1.1 only; tls-server-name sets SNI', async (t) => {
      const { fake, dir } = await setup(t, version, { http2: false, extraDnsNames: ['cluster-a.fake.local'] });
      const kubeconfig = await fake.writeKubeconfig(dir, {
        users: [{ name: 'tina', token: TOKEN }],
        tlsServerName: 'cluster-a.fake.local',
        fileName: 'sni.kubeconfig',
      });
      expect((await stat(kubeconfig)).mode & 0o777).toBe(0o600);
      const r = await kubectl(['get', 'pods'], { kubeconfig, version });
      expect(r.code).toBe(0);
      expect(
        fake.requests.every(
          (q) => q.httpVersion === '1.1' && q.alpn === 'http/1.1' && q.sni === 'cluster-a.fake.local',
        ),
      ).toBe(true);
    });

    test('close() ends open watches, follows and exec sessions promptly', async (t) => {
      const { fake, start } = await setup(t, version);
      const watch = start(['get', 'pods', '-w']);
      const follow = start(['logs', '-f', 'nginx-1']);
      const exec = start(['exec', 'nginx-1', '--', 'sleep', '600']);
      await watch.waitForStdout('nginx-1');
      const until = Date.now() + 10_000;
      while (
        fake.requests.filter((q) => q.query['follow'] !== undefined || (q.upgrade && q.status === 101)).length < 2 &&
        Date.now() < until
      ) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const t0 = Date.now();
      await fake.close();
      expect(Date.now() - t0).toBeLessThan(1000);
      const results = await Promise.all([watch.result, follow.result, exec.result]);
      expect(results.map((r) => r.timedOut)).toEqual([false, false, false]);
      expect(Date.now() - t0).toBeLessThan(10_000);
    });

    test('watch wire format: resume from a resourceVersion, Table rows, 410 once compacted', async (t) => {
      const { fake } = await setup(t, version, { http2: false });
      const events: { type: string; object: Record<string, unknown> }[] = [];
      const rv = fake.resourceVersion;
      fake.create(makePod('before-watch'));
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        const req = httpsRequest(
          `${fake.url}/api/v1/namespaces/default/pods?resourceVersion=${rv}&watch=true`,
          {
            ca: fake.serverCaPem,
            headers: { authorization: `Bearer ${TOKEN}`, accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' },
          },
          resolve,
        );
        req.on('error', reject);
        req.end();
      });
      t.onTestFinished(() => {
        res.destroy();
      });
      expect(res.statusCode).toBe(200);
      expect(res.headers['transfer-encoding']).toBe('chunked');
      expect(res.headers['content-type']).toBe('application/json');
      let buf = '';
      const next = (): Promise<void> =>
        new Promise((resolve) => {
          const onData = (d: Buffer): void => {
            buf += d.toString();
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              events.push(JSON.parse(buf.slice(0, nl)) as (typeof events)[number]);
              buf = buf.slice(nl + 1);
            }
            res.off('data', onData);
            resolve();
          };
          res.on('data', onData);
        });
      await next(); // the replayed ADDED for before-watch
      fake.create(makePod('during-watch'));
      while (events.length < 2) await next();
      expect(events.map((e) => e.type)).toEqual(['ADDED', 'ADDED']);
      expect(events[0]?.object).toMatchObject({ kind: 'Table', apiVersion: 'meta.k8s.io/v1' });
      expect((events[0]?.object['columnDefinitions'] as { name: string }[]).map((c) => c.name).slice(0, 5)).toEqual([
        'Name',
        'Ready',
        'Status',
        'Restarts',
        'Age',
      ]);
      expect(events[1]?.object['columnDefinitions']).toBeNull();
      expect((events[1]?.object['rows'] as { cells: unknown[] }[])[0]?.cells[0]).toBe('during-watch');
      res.destroy();
      fake.compact();
      const stale = await new Promise<string>((resolve, reject) => {
        const req = httpsRequest(
          `${fake.url}/api/v1/namespaces/default/pods?resourceVersion=${rv}&watch=true`,
          { ca: fake.serverCaPem, headers: { authorization: `Bearer ${TOKEN}` } },
          (r) => {
            let s = '';
            r.on('data', (d: Buffer) => (s += d.toString()));
            r.on('end', () => resolve(s));
          },
        );
        req.on('error', reject);
        req.end();
      });
      expect(JSON.parse(stale)).toMatchObject({
        type: 'ERROR',
        object: { kind: 'Status', reason: 'Expired', code: 410 },
      });
    });

    test('raw wire answers: 401 and 403 bodies, Audit-ID echo, discovery ETag and 304', async (t) => {
      const { fake } = await setup(t, version, { http2: false });
      const get = (path: string, headers: Record<string, string>) =>
        new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }>(
          (resolve, reject) => {
            const req = httpsRequest(`${fake.url}${path}`, { ca: fake.serverCaPem, headers }, (res) => {
              const chunks: Buffer[] = [];
              res.on('data', (c: Buffer) => chunks.push(c));
              res.on('end', () =>
                resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
              );
            });
            req.on('error', reject);
            req.end();
          },
        );
      const unauth = await get('/api/v1/namespaces/default/pods', {
        authorization: 'Bearer nope',
        'audit-id': 'my-audit-id',
      });
      expect(unauth.status).toBe(401);
      expect(unauth.body.toString()).toBe(
        '{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}\n',
      );
      expect(unauth.headers['audit-id']).toBe('my-audit-id');
      expect(unauth.headers['x-kubernetes-pf-flowschema-uid']).toBeUndefined();
      const denied = await get('/api/v1/namespaces/default/pods', { authorization: `Bearer ${MALLORY_TOKEN}` });
      expect(denied.status).toBe(403);
      expect(JSON.parse(denied.body.toString())).toEqual({
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message:
          'pods is forbidden: User "mallory" cannot list resource "pods" in API group "" in the namespace "default"',
        reason: 'Forbidden',
        details: { kind: 'pods' },
        code: 403,
      });
      expect(denied.headers['x-content-type-options']).toBe('nosniff');
      const anon = await get('/api/v1/namespaces/default/pods', {});
      expect(JSON.parse(anon.body.toString())).toMatchObject({
        message: expect.stringContaining('User "system:anonymous" cannot list'),
      });
      const accept = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json';
      const disco = await get('/apis', { authorization: `Bearer ${TOKEN}`, accept, 'accept-encoding': 'gzip' });
      expect(disco.headers['content-type']).toBe(
        'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList',
      );
      expect(disco.headers['content-encoding']).toBeUndefined();
      expect(disco.headers['vary']).toBe('Accept');
      const etag = String(disco.headers['etag']);
      const again = await get('/apis', { authorization: `Bearer ${TOKEN}`, accept, 'if-none-match': etag });
      expect(again.status).toBe(304);
      const doc = JSON.parse(disco.body.toString()) as { items: { metadata: { name: string } }[] };
      expect(doc.items.map((i) => i.metadata.name)).toEqual(['apps', 'authorization.k8s.io']);
      // gzip above 128 KiB, for clients that accept it.
      for (let i = 0; i < 200; i++) fake.create(makePod(`bulk-${i}`, { namespace: 'bulk' }));
      const big = await get('/api/v1/namespaces/bulk/pods', {
        authorization: `Bearer ${TOKEN}`,
        'accept-encoding': 'gzip',
      });
      expect(big.headers['content-encoding']).toBe('gzip');
      expect((JSON.parse(gunzipSync(big.body).toString()) as { items: unknown[] }).items).toHaveLength(200);
    });
  });
});
