/**
 * The transparency promise, with the real kubectl: the same command direct and through kubetrail prints
 * the same bytes and exits with the same code. Against the in-repo stand-in apiserver (real TLS, port 0).
 */
import { describe, expect, it } from 'vitest';
import { compare, proxied, startProxied, type CompareOptions } from '../helpers/compare.ts';
import { makeConfigMap, makePod } from '../helpers/fake-apiserver.ts';
import { withFakeCluster } from '../helpers/fake-cluster.ts';
import { kubectl, startKubectl, type KubectlVersion } from '../helpers/kubectl.ts';
import { httpVersionOf, PROTOCOLS, protocolEnv, withoutH2Notice } from '../helpers/protocols.ts';

const TOKEN = 'tina-token-3f9a1c';

const cluster = withFakeCluster({
  prefix: 'kt-kubectl-',
  apiserver: {
    tokens: { [TOKEN]: { user: 'tina', groups: ['dev'] }, 'tom-token-77': { user: 'tom', groups: [] } },
    // mallory and tom may only read the non-resource paths (discovery, /version), as with no RBAC bindings.
    authorize: (user, attrs) => !['mallory', 'tom'].includes(user.name) || !attrs.isResourceRequest,
    logFollow: { intervalMs: 20, count: 5 },
  },
  kubeconfig: {
    users: [
      { name: 'alice', cert: { groups: ['dev'] } },
      { name: 'tina', token: TOKEN },
      { name: 'mallory', cert: {} },
      { name: 'tom', token: 'tom-token-77' },
      { name: 'nobody', token: 'wrong-token' },
    ],
  },
  seed: (fake) => {
    for (let i = 0; i < 3; i++) fake.create(makePod(`web-${i}`, { ageSeconds: 86_400 * 3, restarts: i }));
    fake.create(makePod('pending-0', { phase: 'Pending', ageSeconds: 86_400 * 3 }));
    fake.create(makeConfigMap('settings', { mode: 'fast', level: '3' }));
    for (let i = 0; i < 600; i++)
      fake.create(makePod(`batch-${String(i).padStart(3, '0')}`, { namespace: 'big', ageSeconds: 86_400 * 5 }));
    fake.setLogs('default', 'web-0', ['line one', 'line two', 'line three']);
  },
  otlp: true,
});

function optsFor(version: KubectlVersion = '1.33', extra: Partial<CompareOptions> = {}): CompareOptions {
  return { kubeconfig: cluster.kubeconfig, version, otlpEndpoint: cluster.receiver.url, ...extra };
}

/** klog's line header (`E1124 08:30:46.743330   23489 `) differs run to run by nature: time and pid. */
function klogless(stderr: string): string {
  return stderr.replace(/^([EWIF])\d{4} \d\d:\d\d:\d\d\.\d{6}\s+\d+ /gm, '$1 ');
}

/** HTTP versions the stand-in saw for requests that were not upgrades (exec and friends are HTTP/1.1 always):
 * every comparison checks that both sides spoke the protocol of its run. */
const versionsSince = (mark: number): Set<string> =>
  new Set(
    cluster.fake.requests
      .slice(mark)
      .filter((r) => !r.upgrade)
      .map((r) => r.httpVersion),
  );

async function expectSame(args: string[], o: CompareOptions): Promise<void> {
  const mark = cluster.fake.requests.length;
  const { direct, proxied: via } = await compare(args, o);
  // Both sides spoke the protocol this run is about: the parametrisation is real, and kubetrail mirrored it.
  expect(versionsSince(mark), `HTTP versions the apiserver saw for kubectl ${args.join(' ')}`).toEqual(
    new Set([httpVersionOf(o.env?.DISABLE_HTTP2 ? 'http/1.1' : 'h2')]),
  );
  expect(via.stdout.toString(), `stdout of kubectl ${args.join(' ')}`).toBe(direct.stdout.toString());
  expect(via.stdout.equals(direct.stdout)).toBe(true);
  expect(klogless(via.stderr), `stderr of kubectl ${args.join(' ')}`).toBe(klogless(direct.stderr));
  expect(via.code, `exit code of kubectl ${args.join(' ')}`).toBe(direct.code);
}

describe.each((['1.32', '1.33'] as const).flatMap((v) => PROTOCOLS.map((p) => [v, p] as const)))(
  'kubectl %s over %s, direct vs through kubetrail',
  (version, protocol) => {
    const opts = (v: KubectlVersion, extra: Partial<CompareOptions> = {}): CompareOptions =>
      optsFor(v, { env: protocolEnv(protocol), ...extra });

    it('get pods (Table), as a certificate user and as a token user', async () => {
      await expectSame(['--context', 'alice', 'get', 'pods'], opts(version));
      await expectSame(['--context', 'tina', 'get', 'pods', '-o', 'wide'], opts(version));
    });

    it('-o json and -o yaml', async () => {
      await expectSame(['--context', 'alice', 'get', 'pods', '-o', 'json'], opts(version));
      await expectSame(['--context', 'tina', 'get', 'configmap', 'settings', '-o', 'yaml'], opts(version));
    });

    it('a forbidden user gets the same Forbidden line and exit code; a bad token the same Unauthorized', async () => {
      await expectSame(['--context', 'mallory', 'get', 'pods'], opts(version));
      await expectSame(['--context', 'tom', 'get', 'configmaps'], opts(version));
      await expectSame(['--context', 'nobody', 'get', 'pods'], opts(version));
    });

    it('a 600-pod list arrives in pages of 500 and prints the same', async () => {
      await expectSame(['--context', 'alice', 'get', 'pods', '-n', 'big'], opts(version));
      const pages = cluster.fake.requests.filter(
        (r) => r.path === '/api/v1/namespaces/big/pods' && r.query.limit?.[0] === '500',
      );
      expect(pages.some((r) => r.query.continue !== undefined)).toBe(true);
    });

    it('logs and logs -f', async () => {
      await expectSame(['--context', 'alice', 'logs', 'web-0'], opts(version));
      await expectSame(['--context', 'alice', 'logs', '-f', 'web-0'], opts(version));
    });

    it('get --raw /version (a server-relative request)', async () => {
      await expectSame(['--context', 'alice', 'get', '--raw', '/version'], opts(version));
    });

    it("exec over WebSocket, and the apiserver's own error for a pod without a node", async () => {
      await expectSame(['--context', 'alice', 'exec', 'web-1', '--', 'echo', 'hi'], opts(version));
      await expectSame(['--context', 'alice', 'exec', 'pending-0', '--', 'echo', 'hi'], opts(version));
    });
  },
);

describe.each(PROTOCOLS)('kubectl 1.33 over %s, mutations and streams', (protocol) => {
  const env = protocolEnv(protocol);
  const opts = (): CompareOptions => optsFor('1.33', { env });

  const expected = new Set([httpVersionOf(protocol)]);

  it('create, apply and delete print the same', async () => {
    const mark = cluster.fake.requests.length;
    for (const side of ['direct', 'proxied'] as const) {
      const name = `cm-${side}-${protocol === 'h2' ? 'h2' : 'h1'}`;
      const run = (args: string[], stdin?: string) =>
        side === 'direct'
          ? kubectl(args, { kubeconfig: cluster.kubeconfig, stdin, env, timeoutMs: 30_000 }).then((r) => ({
              out: r.stdout.toString() + withoutH2Notice(r.stderr),
              code: r.code,
            }))
          : proxied(args, { ...opts(), stdin }).then((r) => ({
              out: r.stdout.toString() + withoutH2Notice(r.stderr),
              code: r.code,
            }));
      // (`kubectl create configmap NAME` posts protobuf, which the stand-in does not speak; -f posts JSON.)
      const cm = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\ndata:\n  a: "1"\n`;
      expect(await run(['--context', 'alice', 'create', '-f', '-'], cm)).toEqual({
        out: `configmap/${name} created\n`,
        code: 0,
      });
      const manifest = `apiVersion: v1\nkind: Pod\nmetadata:\n  name: pod-${side}\nspec:\n  containers:\n  - name: app\n    image: nginx\n`;
      expect(await run(['--context', 'alice', 'apply', '-f', '-'], manifest)).toEqual({
        out: `pod/pod-${side} created\n`,
        code: 0,
      });
      expect(await run(['--context', 'alice', 'delete', 'pod', `pod-${side}`])).toEqual({
        out: `pod "pod-${side}" deleted\n`,
        code: 0,
      });
      expect(await run(['--context', 'alice', 'delete', 'configmap', name])).toEqual({
        out: `configmap "${name}" deleted\n`,
        code: 0,
      });
    }
    const deletes = cluster.fake.requests
      .slice(mark)
      .filter((r) => r.method === 'DELETE' && r.path.endsWith('/pods/pod-proxied'));
    expect(deletes.length).toBe(1);
    expect(versionsSince(mark)).toEqual(expected);
  });

  it('get pods -w shows a pod created during the watch, then exits 0 when the server ends the stream', async () => {
    const mark = cluster.fake.requests.length;
    const outputs: string[] = [];
    for (const side of ['direct', 'proxied'] as const) {
      const args = ['--context', 'alice', 'get', 'pods', '-w', '-o', 'name'];
      const p =
        side === 'direct'
          ? startKubectl(args, { kubeconfig: cluster.kubeconfig, env, timeoutMs: 30_000 })
          : startProxied(args, opts());
      const wait = (re: RegExp) =>
        'waitForStdout' in p ? p.waitForStdout(re, 15_000).then(() => undefined) : p.waitFor(re);
      await wait(/pod\/web-2\n/);
      cluster.fake.create(makePod(`watched-${side}`, { ageSeconds: 1 }));
      await wait(new RegExp(`pod/watched-${side}\\n`));
      cluster.fake.endWatches();
      const code = 'waitForStdout' in p ? (await p.result).code : (await p.done).code;
      expect(code).toBe(0);
      outputs.push(p.stdout().replace(`watched-${side}`, 'watched-X'));
      cluster.fake.remove('pods', 'default', `watched-${side}`);
    }
    expect(outputs[1]).toBe(outputs[0]);
    expect(versionsSince(mark)).toEqual(expected);
  });
});
