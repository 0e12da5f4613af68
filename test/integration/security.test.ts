/**
 * Security (issue #6): no identity for a client that did not prove it, no shared upstream connections, the
 * listener on loopback, private files created private, and no secret in any span, log line or terminal
 * output. Real kubectl through a real `kubetrail start` (a child process) against the stand-in apiserver.
 */
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { handles, startKubetrailProcess, type KubetrailProcess } from '../../scripts/soak.ts';
import { createCA, issueCert, type KeyPairPem } from '../../src/pki/certs.ts';
import { freshHome, kubetrailEnv } from '../helpers/compare.ts';
import { PROTOCOLS, protocolEnv } from '../helpers/protocols.ts';
import { makeConfigMap, makePod, startFakeApiserver, type FakeApiserver } from '../helpers/fake-apiserver.ts';
import { kubectl, kubectlPath, startKubectl } from '../helpers/kubectl.ts';
import { startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp-receiver.ts';
import { refusedPort, unusedPort } from '../helpers/ports.ts';
import { KUBETRAIL_BIN, runKubetrail, runProcess } from '../helpers/run-kubetrail.ts';

// Recognisable values: if any of them shows up in a span, a log line or kubetrail's output, it leaked.
const TOKEN = 'kt-SECRET-token-7f3a9c21e4';
const FILE_TOKEN = 'kt-SECRET-filetoken-52bd0e';
const PLUGIN_TOKEN = 'kt-SECRET-plugintoken-c0ffee';
const PLUGIN_ARG = 'kt-SECRET-plugin-arg-51d0';
const PLUGIN_ENV_VALUE = 'kt-SECRET-plugin-env-7e3a';
const PLUGIN_STDERR = 'kt-SECRET-plugin-stderr-c4f2';
const WRONG_TOKEN = 'kt-SECRET-wrongtoken-d15ea5e';
const PASSWORD = 'kt-SECRET-password-8e1f';
const CONFIGMAP_VALUE = 'kt-SECRET-configmap-value-41aa';
const SECRET_VALUE = 'kt-SECRET-secret-object-value-9b9b';
const CREATED_VALUE = 'kt-SECRET-created-value-77cd';
const LOG_LINE = 'kt-SECRET-log-line-db-password-1234';
const STDIN_VALUE = 'kt-SECRET-exec-stdin-3e3e';
const WATCH_VALUE = 'kt-SECRET-watched-value-5c5c';
const b64 = (s: string): string => Buffer.from(s).toString('base64');

let dir: string;
let fake: FakeApiserver;
let receiver: OtlpReceiver;
let vault: Server;
let vaultCa: KeyPairPem;
let alice: KeyPairPem;
let kubeconfig: string;
let kt: KubetrailProcess;
let stateDir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kt-sec-'));
  receiver = await startOtlpReceiver('ok');
  fake = await startFakeApiserver({
    tokens: {
      [TOKEN]: { user: 'tina', groups: ['dev'] },
      [FILE_TOKEN]: { user: 'fiona' },
      [PLUGIN_TOKEN]: { user: 'pete' },
    },
    basicAuth: { bob: { password: PASSWORD } },
    authorize: (user, attrs) => user.name !== 'mallory' || !attrs.isResourceRequest,
  });
  alice = await fake.issueUser('alice', ['dev']);
  const mallory = await fake.issueUser('mallory');
  fake.create(makePod('web-0'));
  fake.setLogs('default', 'web-0', ['starting', LOG_LINE, 'ready']);
  fake.create(makeConfigMap('db', { password: CONFIGMAP_VALUE }));

  // The stand-in serves no Secrets: a small upstream serves one Secret object (and a watch of it).
  vaultCa = await createCA('kubetrail security test CA');
  const serving = await issueCert(vaultCa, { commonName: 'vault', ipAddresses: ['127.0.0.1'], usage: 'server' });
  const secret = {
    kind: 'Secret',
    apiVersion: 'v1',
    metadata: { name: 'db', namespace: 'default', resourceVersion: '7' },
    type: 'Opaque',
    data: { password: b64(SECRET_VALUE) },
    stringData: { plain: SECRET_VALUE },
  };
  vault = createHttpsServer({ key: serving.keyPem, cert: serving.certPem }, (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'application/json', 'audit-id': 'vault-1' });
    if ((req.url ?? '').includes('watch=true')) res.end(`${JSON.stringify({ type: 'ADDED', object: secret })}\n`);
    else if ((req.url ?? '').endsWith('/secrets'))
      res.end(
        JSON.stringify({ kind: 'SecretList', apiVersion: 'v1', metadata: { resourceVersion: '7' }, items: [secret] }),
      );
    else res.end(JSON.stringify(secret));
  });
  await new Promise<void>((r) => vault.listen(0, '127.0.0.1', r));
  writeFileSync(join(dir, 'vault-ca.crt'), vaultCa.certPem);

  const plugin = join(dir, 'credential-plugin.sh');
  // Its argument, environment and stderr are the user's: kubetrail's credential shim times it, and must
  // export none of them.
  writeFileSync(
    plugin,
    `#!/bin/sh\necho "${PLUGIN_STDERR} $1 $PLUGIN_ENV" >&2\necho '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"${PLUGIN_TOKEN}"}}'\n`,
    { mode: 0o755 },
  );
  const base = await fake.writeKubeconfig(dir, {
    users: [
      { name: 'alice', cert: alice },
      { name: 'tina', token: TOKEN },
      { name: 'fiona', token: FILE_TOKEN, tokenFile: true },
      { name: 'bob', username: 'bob', password: PASSWORD },
      { name: 'mallory', cert: mallory },
      { name: 'wrong', token: WRONG_TOKEN },
    ],
    fileName: 'base.yaml',
  });
  const doc = parse(readFileSync(base, 'utf8')) as { clusters: unknown[]; users: unknown[]; contexts: unknown[] };
  doc.users.push({
    name: 'pete',
    user: {
      exec: {
        command: plugin,
        args: [PLUGIN_ARG],
        env: [{ name: 'PLUGIN_ENV', value: PLUGIN_ENV_VALUE }],
        apiVersion: 'client.authentication.k8s.io/v1',
        interactiveMode: 'Never',
      },
    },
  });
  doc.contexts.push({ name: 'pete', context: { cluster: 'fake', user: 'pete' } });
  doc.clusters.push({
    name: 'vault',
    cluster: {
      server: `https://127.0.0.1:${(vault.address() as AddressInfo).port}`,
      'certificate-authority': join(dir, 'vault-ca.crt'),
    },
  });
  doc.contexts.push({ name: 'vault', context: { cluster: 'vault', user: 'tina' } });
  kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, stringify(doc), { mode: 0o600 });

  const home = freshHome();
  stateDir = join(home, 'kubetrail-state');
  // Not --quiet: the request log is one of the outputs scanned for secrets.
  kt = await startKubetrailProcess({
    kubeconfig,
    home,
    args: ['--otlp-endpoint', receiver.url, '--session-idle-ms', '300'],
  });
});

afterAll(async () => {
  await kt.stop();
  await fake.close();
  await receiver.close();
  vault.closeAllConnections();
  vault.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A copy of the rewritten kubeconfig whose `alice` holds another key pair (someone else's kubectl). */
function forged(pair: KeyPairPem, name: string): string {
  const doc = parse(readFileSync(kt.kubeconfig, 'utf8')) as {
    users: { name: string; user: Record<string, string> }[];
    'current-context': string;
  };
  doc.users = [
    { name: 'alice', user: { 'client-certificate-data': b64(pair.certPem), 'client-key-data': b64(pair.keyPem) } },
  ];
  doc['current-context'] = 'alice';
  const d = mkdtempSync(join(tmpdir(), `kt-${name}-`));
  const f = join(d, 'config');
  writeFileSync(f, stringify(doc), { mode: 0o600 });
  return f;
}

describe.each(PROTOCOLS)(
  'over %s, a client certificate kubectl does not hold gets no upstream identity',
  (protocol) => {
    const env = protocolEnv(protocol);
    it("one signed by kubetrail's own local CA with a kubeconfig user's subject: 401, nothing forwarded", async () => {
      const caFile = readFileSync(join(stateDir, 'ca.pem'), 'utf8');
      const localCa: KeyPairPem = {
        certPem: /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\s*/.exec(caFile)?.[0] ?? '',
        keyPem: /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----\s*/.exec(caFile)?.[0] ?? '',
      };
      const fakeAlice = await issueCert(localCa, { commonName: 'alice', organizations: ['dev'], usage: 'client' });
      const mark = fake.requests.length;
      const r = await kubectl(['get', 'pods'], { kubeconfig: forged(fakeAlice, 'localca'), env });
      if (process.env.KUBETRAIL_FAULT_REPORT === '1')
        console.log(`local-CA alice: ${r.code}: ${r.stderr.trim().split('\n').at(-1) ?? ''}`);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/You must be logged in to the server/);
      expect(fake.requests.slice(mark)).toEqual([]);

      // The same on an upgrade (exec), spoken raw.
      const route = kt.route('fake');
      const url = new URL(route.base);
      const head = await new Promise<string>((resolve, reject) => {
        const s = tlsConnect(
          {
            host: '127.0.0.1',
            port: Number(url.port),
            ca: route.caPem,
            servername: route.servername,
            cert: fakeAlice.certPem,
            key: fakeAlice.keyPem,
          },
          () =>
            s.write(
              `GET ${url.pathname.replace(/\/$/, '')}/api/v1/namespaces/default/pods/web-0/exec?command=id HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
            ),
        );
        let buf = '';
        s.on('data', (c: Buffer) => (buf += c.toString()));
        s.on('close', () => resolve(buf));
        s.on('error', reject);
      });
      expect(head).toMatch(/^HTTP\/1\.1 401 /);
      expect(head).toContain('KT_ERR_CLIENT_CERT');
      expect(fake.requests.slice(mark)).toEqual([]);
    });

    it("one the cluster's own CA issued for the same user, but not the kubeconfig's (another key): 401, nothing forwarded", async () => {
      const otherAlice = await issueCert(fake.ca, { commonName: 'alice', organizations: ['dev'], usage: 'client' });
      const mark = fake.requests.length;
      const r = await kubectl(['get', 'pods'], { kubeconfig: forged(otherAlice, 'samecA'), env });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/You must be logged in to the server/);
      expect(fake.requests.slice(mark)).toEqual([]);
    });
  },
);

describe.each(PROTOCOLS)(
  'over %s, two users on one cluster never share an upstream connection (real kubectl, interleaved)',
  (protocol) => {
    const env = protocolEnv(protocol);
    it('every request the apiserver saw with a bearer token came on a connection without a client certificate', async () => {
      const mark = fake.requests.length;
      const home = freshHome();
      const run = (ctx: string): Promise<number> =>
        kubectl(['--context', ctx, 'get', 'pods', '-o', 'name'], { kubeconfig: kt.kubeconfig, home, env }).then(
          (r) => r.code,
        );
      for (let round = 0; round < 4; round++) {
        const codes = await Promise.all([run('alice'), run('tina'), run('alice'), run('fiona'), run('bob')]);
        expect(codes).toEqual([0, 0, 0, 0, 0]);
      }
      const seen = fake.requests.slice(mark);
      expect(seen.length).toBeGreaterThan(20);
      for (const r of seen) {
        const authz = String(r.headers.authorization ?? '');
        if (authz !== '')
          expect(
            r.clientCertCN,
            `${r.method} ${r.url} carried ${authz.split(' ')[0] ?? ''} credentials on alice's connection`,
          ).toBeUndefined();
        else expect(r.clientCertCN).toBe('alice');
      }
      expect(new Set(seen.map((r) => r.user))).toEqual(new Set(['alice', 'tina', 'fiona', 'bob']));
    });
  },
);

describe('the listener', () => {
  it("binds loopback only: the listening sockets of `kubetrail start` are on 127.0.0.1 and its clusters' loopback addresses", () => {
    const hosts = (
      parse(readFileSync(kt.kubeconfig, 'utf8')) as { clusters: { cluster: { server: string } }[] }
    ).clusters.map((c) => new URL(c.cluster.server).hostname);
    const expected = ['127.0.0.1', ...hosts].map(
      (a) =>
        `${Buffer.from(a.split('.').map(Number).reverse()).toString('hex').toUpperCase()}:${kt.port.toString(16).toUpperCase().padStart(4, '0')}`,
    );
    for (const host of hosts) expect(host).toMatch(/^127\.\d+\.\d+\.\d+$/);
    const h = handles(kt.pid, kt.port);
    expect(h.listening).toBe(expected.length);
    const inodes = readdirSync(`/proc/${kt.pid}/fd`).flatMap((fd) => {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${kt.pid}/fd/${fd}`));
        return m?.[1] ? [m[1]] : [];
      } catch {
        return [];
      }
    });
    const listeners = readFileSync(`/proc/${kt.pid}/net/tcp`, 'utf8')
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .filter((f) => f[3] === '0A' && inodes.includes(f[9] ?? ''));
    // /proc shows IPv4 addresses little-endian: 127.0.0.1 is 0100007F.
    expect(listeners.map((f) => f[1]).sort()).toEqual(expected.sort());
  });

  it.each([
    ['start', ['start']],
    ['wrap', []],
    ['kubeconfig', ['kubeconfig']],
  ])(
    '%s: any other address needs --allow-non-loopback, and the refusal says what it would expose',
    async (_mode, cmd) => {
      for (const addr of ['0.0.0.0:17443', '[::]:17443', '192.0.2.10:17443']) {
        const home = freshHome();
        const r = await runKubetrail(
          [...cmd, '--kubeconfig', kubeconfig, '--listen', addr, ...(cmd.length === 0 ? ['--', 'true'] : [])],
          { env: kubetrailEnv(home) },
        );
        expect(r.code).toBe(2);
        expect(r.stderr.trimEnd()).toBe(
          `kubetrail: --listen "${addr}" is not a loopback address: anyone who can reach it can use kubetrail to reach your clusters and read its request log; add --allow-non-loopback if you mean it`,
        );
        expect(existsSync(join(home, 'kubetrail-state'))).toBe(false);
      }
    },
  );

  it('with --allow-non-loopback it listens, and says what that exposes', async () => {
    const r = await runKubetrail(
      ['--kubeconfig', kubeconfig, '--listen', '0.0.0.0:0', '--allow-non-loopback', '--quiet', '--', 'true'],
      { env: { ...kubetrailEnv(freshHome()), OTEL_SDK_DISABLED: 'true' } },
    );
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(
      'kubetrail: listening on https://0.0.0.0:0, beyond loopback: anyone who can reach it can use kubetrail to reach your clusters with the credentials they send, and read its request log',
    );
  });
});

describe('private files are created private (no window)', () => {
  /** Records every fs call that creates or changes a path, as the preload sees it. */
  const HOOK = `
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
const log = [];
const orig = { ...fs };
const wrap = (name, pick) => { const f = fs[name]; fs[name] = function (...a) { log.push({ fn: name, ...pick(...a) }); return f.apply(this, a); }; };
wrap('openSync', (p, flags, mode) => ({ path: String(p), flags: String(flags ?? 'r'), mode }));
wrap('mkdirSync', (p, o) => ({ path: String(p), mode: typeof o === 'object' ? o?.mode : o }));
wrap('writeFileSync', (p, _d, o) => ({ path: String(p), mode: typeof o === 'object' ? o?.mode : undefined }));
wrap('appendFileSync', (p) => ({ path: String(p) }));
wrap('copyFileSync', (_s, p) => ({ path: String(p) }));
wrap('chmodSync', (p, mode) => ({ path: String(p), mode }));
wrap('renameSync', (_s, p) => ({ path: String(p) }));
wrap('linkSync', (_s, p) => ({ path: String(p) }));
for (const name of ['writeFile', 'appendFile', 'open', 'mkdir', 'copyFile']) {
  const f = fs.promises[name];
  fs.promises[name] = function (p, ...a) { log.push({ fn: 'promises.' + name, path: String(p) }); return f.call(this, p, ...a); };
}
syncBuiltinESMExports();
process.on('exit', () => orig.writeFileSync(process.env.KT_FS_LOG, JSON.stringify(log)));
`;

  interface FsCall {
    fn: string;
    path: string;
    flags?: string;
    mode?: number;
  }

  async function traced(umask: string): Promise<{ state: string; calls: FsCall[] }> {
    const home = freshHome();
    const hook = join(home, 'fs-hook.mjs');
    writeFileSync(hook, HOOK);
    const logFile = join(home, 'fs-log.json');
    const env = { ...kubetrailEnv(home), KT_FS_LOG: logFile };
    const r = await runProcess(
      'sh',
      [
        '-c',
        `umask ${umask} && exec "$0" --import "$1" "$2" kubeconfig --kubeconfig "$3" --listen 127.0.0.1:0`,
        process.execPath,
        pathToFileURL(hook).href,
        KUBETRAIL_BIN,
        kubeconfig,
      ],
      { env },
    );
    expect(r.code, r.stderr).toBe(0);
    const state = join(home, 'kubetrail-state');
    const calls = (JSON.parse(readFileSync(logFile, 'utf8')) as FsCall[]).filter((c) => c.path.startsWith(state));
    return { state, calls };
  }

  it('with umask 000: state dir 0700, CA key, serving key and rewritten kubeconfig 0600', async () => {
    const { state } = await traced('000');
    const mode = (p: string): number => statSync(p).mode & 0o777;
    expect(mode(state)).toBe(0o700);
    expect(mode(join(state, 'kubeconfigs'))).toBe(0o700);
    expect(mode(join(state, 'ca.pem'))).toBe(0o600);
    expect(mode(join(state, 'server.pem'))).toBe(0o600);
    const written = readdirSync(join(state, 'kubeconfigs'));
    expect(written).toHaveLength(1);
    expect(mode(join(state, 'kubeconfigs', written[0] ?? ''))).toBe(0o600);
    expect(readdirSync(state).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('every file in the state dir is opened exclusively with mode 0600 and renamed into place; never chmod-ed afterwards', async () => {
    const { calls } = await traced('022');
    const opens = calls.filter((c) => c.fn === 'openSync' && c.flags !== 'r');
    expect(opens.length).toBeGreaterThanOrEqual(3); // ca.pem, server.pem, the kubeconfig
    // The one executable, an exec credential plugin's timing shim (bin/<hash>/<plugin>), is the owner's alone: 0700.
    for (const c of opens)
      expect({ path: c.path, flags: c.flags, mode: c.mode }).toEqual({
        path: c.path,
        flags: 'wx',
        mode: /\/bin\/[0-9a-f]{12}\/\.[0-9a-f]+\.tmp$/.test(c.path) ? 0o700 : 0o600,
      });
    for (const c of calls.filter((x) => x.fn === 'mkdirSync')) expect(c.mode).toBe(0o700);
    expect(calls.filter((c) => /writeFile|appendFile|copyFile|promises\./.test(c.fn))).toEqual([]);
    // chmod only ever tightens a directory that already existed.
    for (const c of calls.filter((x) => x.fn === 'chmodSync')) expect(statSync(c.path).isDirectory()).toBe(true);
  });

  const strace = ['/usr/bin/strace', '/bin/strace'].find((p) => existsSync(p));
  it.skipIf(strace === undefined)(
    'strace agrees: openat(O_CREAT|O_EXCL, 0600) and mkdir(0700) at the system call',
    async () => {
      const home = freshHome();
      const out = join(home, 'strace.txt');
      const r = await runProcess(
        strace ?? 'strace',
        [
          '-f',
          '-qq',
          '-e',
          'trace=openat,mkdir,mkdirat,chmod,fchmod,fchmodat',
          '-o',
          out,
          process.execPath,
          KUBETRAIL_BIN,
          'kubeconfig',
          '--kubeconfig',
          kubeconfig,
          '--listen',
          '127.0.0.1:0',
        ],
        { env: kubetrailEnv(home) },
      );
      expect(r.code, r.stderr).toBe(0);
      const state = join(home, 'kubetrail-state');
      const lines = readFileSync(out, 'utf8')
        .split('\n')
        .filter((l) => l.includes(state));
      const creates = lines.filter((l) => /openat\(.*O_CREAT/.test(l));
      expect(creates.length).toBeGreaterThanOrEqual(3);
      for (const l of creates)
        expect(l).toMatch(/\/bin\/[0-9a-f]{12}\//.test(l) ? /O_EXCL.*, 0700\)/ : /O_EXCL.*, 0600\)/);
      for (const l of lines.filter((x) => /mkdir(at)?\(/.test(x))) expect(l).toMatch(/, 0700\)/);
      expect(lines.filter((l) => /chmod/.test(l) && !l.endsWith('= 0') && !/ENOENT/.test(l))).toEqual([]);
    },
  );

  it('an existing state dir that others can read is tightened to 0700', async () => {
    const home = freshHome();
    const state = join(home, 'kubetrail-state');
    mkdirSync(state, { mode: 0o755 });
    chmodSync(state, 0o755);
    const r = await runKubetrail(['kubeconfig', '--kubeconfig', kubeconfig, '--listen', '127.0.0.1:0'], {
      env: kubetrailEnv(home),
    });
    expect(r.code).toBe(0);
    expect(statSync(state).mode & 0o777).toBe(0o700);
  });
});

describe.each(PROTOCOLS)('over %s, secrets never reach a span, a log line or kubetrail output', (protocol) => {
  const env = protocolEnv(protocol);
  it('a battery of commands carrying tokens, a password, keys and Secret values leaves none of them behind', async () => {
    // Each protocol's run starts from the same objects (the first run's watch changed db, and made 'made').
    fake.update(makeConfigMap('db', { password: CONFIGMAP_VALUE }));
    // (The stand-in serves configmaps, not secrets: `create secret` is answered 404 both runs.)
    if (fake.requests.some((r) => r.method === 'POST' && r.path === '/api/v1/namespaces/default/configmaps'))
      fake.remove('configmaps', 'default', 'made');
    const home = freshHome();
    const through = (args: string[], stdin?: string): Promise<string> =>
      kubectl(args, { kubeconfig: kt.kubeconfig, home, stdin, env }).then((r) => r.stdout.toString() + r.stderr);
    const kubectlOutput: string[] = [];
    // start mode: the request log is kubetrail's stdout.
    kubectlOutput.push(
      await through(['--context', 'tina', 'get', 'configmap', 'db', '-o', 'yaml']),
      await through(['--context', 'fiona', 'get', 'pods']),
      await through(['--context', 'bob', 'get', 'pods', '-A']),
      await through(['--context', 'pete', 'get', 'pods']),
      await through(['--context', 'wrong', 'get', 'pods']),
      await through(['--context', 'mallory', 'get', 'configmaps']),
      await through(['--context', 'alice', 'logs', 'web-0']),
      await through(['--context', 'alice', 'exec', '-i', 'web-0', '--', 'cat'], `${STDIN_VALUE}\n`),
      await through(['--context', 'tina', 'create', 'configmap', 'made', `--from-literal=k=${CREATED_VALUE}`]),
      await through([
        '--context',
        'tina',
        'create',
        'secret',
        'generic',
        'made',
        `--from-literal=password=${CREATED_VALUE}`,
      ]),
      await through(['--context', 'vault', 'get', '--raw', '/api/v1/namespaces/default/secrets/db']),
      await through(['--context', 'vault', 'get', '--raw', '/api/v1/namespaces/default/secrets']),
      await through(['--context', 'vault', 'get', '--raw', '/api/v1/namespaces/default/secrets?watch=true']),
      await through(['--context', 'tina', 'get', 'pods', '--as', 'system:admin', '--as-group', 'system:masters']),
    );
    // A watch that sees a changed value.
    const w = startKubectl(['--context', 'tina', 'get', 'configmaps', '-w', '-o', 'yaml'], {
      kubeconfig: kt.kubeconfig,
      home,
      env,
      timeoutMs: 20_000,
    });
    await w.waitForStdout(CONFIGMAP_VALUE);
    fake.update(makeConfigMap('db', { password: WATCH_VALUE }));
    await w.waitForStdout(WATCH_VALUE);
    w.kill('SIGINT');
    kubectlOutput.push((await w.result).stdout.toString());
    // wrap mode: the waterfall and links on kubetrail's stderr.
    const wrapped = await runKubetrail(
      [
        '--kubeconfig',
        kubeconfig,
        '--listen',
        '127.0.0.1:0',
        '--otlp-endpoint',
        receiver.url,
        '--',
        kubectlPath('1.33'),
        '--context',
        'bob',
        'get',
        'configmap',
        'db',
        '-o',
        'yaml',
      ],
      { env: kubetrailEnv(freshHome(), env), timeoutMs: 40_000 },
    );
    kubectlOutput.push(wrapped.stdout.toString());

    // Let the last commands' spans go out.
    await new Promise((r) => setTimeout(r, 1500));
    await expect.poll(() => receiver.raw.join('').includes('"auth.user"'), { timeout: 10_000 }).toBe(true);

    const keyBody = (pem: string): string[] => {
      const b = pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
      return [b.slice(0, 40), b.slice(-40)];
    };
    const caKey =
      /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/.exec(
        readFileSync(join(stateDir, 'ca.pem'), 'utf8'),
      )?.[0] ?? '';
    const needles: [string, string][] = [
      ['bearer token', TOKEN],
      ['tokenFile token', FILE_TOKEN],
      ['exec plugin token', PLUGIN_TOKEN],
      ['exec plugin argument', PLUGIN_ARG],
      ['exec plugin environment', PLUGIN_ENV_VALUE],
      ['exec plugin output', PLUGIN_STDERR],
      ['rejected token', WRONG_TOKEN],
      ['basic password', PASSWORD],
      ['basic credentials', b64(`bob:${PASSWORD}`)],
      ['ConfigMap value', CONFIGMAP_VALUE],
      ['Secret value', SECRET_VALUE],
      ['Secret value (base64)', b64(SECRET_VALUE)],
      ['request body value', CREATED_VALUE],
      ['request body value (base64)', b64(CREATED_VALUE)],
      ['log line', LOG_LINE],
      ['exec stdin', STDIN_VALUE],
      ['watched value', WATCH_VALUE],
      ...keyBody(alice.keyPem).map((k): [string, string] => ['client key', k]),
      ...keyBody(caKey).map((k): [string, string] => ['local CA key', k]),
    ];
    // The commands did carry them, so the scan would find a leak.
    const carried = kubectlOutput.join('\n');
    for (const v of [
      CONFIGMAP_VALUE,
      SECRET_VALUE,
      LOG_LINE,
      STDIN_VALUE,
      WATCH_VALUE,
      `${PLUGIN_STDERR} ${PLUGIN_ARG} ${PLUGIN_ENV_VALUE}`,
    ])
      expect(carried).toContain(v);
    // The plugin ran through kubetrail's shim, and its run was exported (by its base name only).
    expect(receiver.raw.join('\n')).toContain('credential-plugin.sh');
    const places: [string, string][] = [
      ['exported spans', receiver.raw.join('\n')],
      ['kubetrail start stdout (request log)', kt.stdout()],
      ['kubetrail start stderr', kt.stderr()],
      ['wrapped kubetrail stderr (waterfall)', wrapped.stderr],
    ];
    expect(kt.stdout()).toMatch(/ get pods\/log /);
    expect(wrapped.stderr).toMatch(/trace: http/);
    for (const [where, text] of places) {
      for (const [what, value] of needles) expect(text.includes(value), `${where} contains the ${what}`).toBe(false);
    }
    // Hashes are not a way around it either (a span carrying sha256(token) would be a leak too).
    const sha = (s: string): string => createHash('sha256').update(s).digest('hex');
    for (const [where, text] of places)
      for (const v of [TOKEN, PASSWORD]) expect(text.includes(sha(v)), `${where} contains a hash`).toBe(false);
  }, 120_000);
});

describe('URL userinfo is a credential: never printed (issue #15 item 4)', () => {
  const USERINFO_PASSWORD = 'kt-SECRET-url-password-6d6d';
  it('--otlp-endpoint and --jaeger-url with user:password: the wrap warning, the waterfall link, doctor and the background log show ***@', async () => {
    const otlp = `http://kt-user:${USERINFO_PASSWORD}@127.0.0.1:${await refusedPort()}/v1/traces`;
    const jaeger = `http://kt-user:${USERINFO_PASSWORD}@127.0.0.1:${await refusedPort()}/`;
    const flags = ['--kubeconfig', kubeconfig, '--otlp-endpoint', otlp, '--jaeger-url', jaeger];
    // In-process: the collector warning and the waterfall's trace link.
    const inProcess = await runKubetrail(
      [...flags, '--listen', '127.0.0.1:0', '--', kubectlPath('1.33'), '--context', 'tina', 'get', 'pods'],
      { env: kubetrailEnv(freshHome()), timeoutMs: 40_000 },
    );
    expect(inProcess.code, inProcess.stderr).toBe(0);
    expect(inProcess.stderr).toMatch(/cannot export traces to http:\/\/\*\*\*@127\.0\.0\.1:\d+\/v1\/traces/);
    // With a collector that accepts (its URL with userinfo too): the trace link.
    const working = `http://kt-user:${USERINFO_PASSWORD}@${receiver.url.slice('http://'.length)}`;
    const linked = await runKubetrail(
      [
        '--kubeconfig',
        kubeconfig,
        '--otlp-endpoint',
        working,
        '--jaeger-url',
        jaeger,
        '--listen',
        '127.0.0.1:0',
        '--',
        kubectlPath('1.33'),
        '--context',
        'tina',
        'get',
        'pods',
      ],
      { env: kubetrailEnv(freshHome()), timeoutMs: 40_000 },
    );
    expect(linked.code, linked.stderr).toBe(0);
    expect(linked.stderr).toMatch(/^trace: http:\/\/\*\*\*@127\.0\.0\.1:\d+\/trace\/[0-9a-f]{32}/m);
    // A background kubetrail: its log, and the warning relayed to the wrapped command.
    const home = freshHome();
    const env = kubetrailEnv(home);
    const port = await unusedPort();
    const bg = await runKubetrail(
      [...flags, '--listen', `127.0.0.1:${port}`, '--', kubectlPath('1.33'), '--context', 'tina', 'get', 'pods'],
      { env, timeoutMs: 40_000 },
    );
    expect(bg.code, bg.stderr).toBe(0);
    expect(bg.stderr).toMatch(/started a background kubetrail/);
    const stopped = await runKubetrail(['stop'], { env });
    expect(stopped.code, stopped.stderr).toBe(0);
    const logs = readdirSync(join(home, 'kubetrail-state', 'background')).filter((f) => f.endsWith('.log'));
    const bgLog = logs.map((f) => readFileSync(join(home, 'kubetrail-state', 'background', f), 'utf8')).join('');
    expect(bgLog).toMatch(/cannot export traces to http:\/\/\*\*\*@/);
    // doctor: both URLs, and the Jaeger check says why it failed (not a bare TypeError).
    const doctor = await runKubetrail(['doctor', ...flags], { env: kubetrailEnv(freshHome()), timeoutMs: 60_000 });
    expect(doctor.stdout.toString()).toMatch(
      /^fail {2}otlp: http:\/\/\*\*\*@127\.0\.0\.1:\d+\/v1\/traces: nothing listens there/m,
    );
    expect(doctor.stdout.toString()).toMatch(
      /^warn {2}jaeger: trace links point at http:\/\/\*\*\*@127\.0\.0\.1:\d+\/, which does not answer \(ECONNREFUSED\)/m,
    );
    const outputs: [string, string][] = [
      [
        'wrapped kubetrail stderr',
        inProcess.stderr + inProcess.stdout.toString() + linked.stderr + linked.stdout.toString(),
      ],
      ['wrapped command served by a background kubetrail', bg.stderr + bg.stdout.toString()],
      ['background log', bgLog],
      ['doctor', doctor.stdout.toString() + doctor.stderr],
    ];
    for (const [where, text] of outputs) {
      expect(text.includes(USERINFO_PASSWORD), `${where} shows the URL password`).toBe(false);
      expect(text.includes('kt-user'), `${where} shows the URL user`).toBe(false);
      expect(text, where).not.toMatch(/\(TypeError\)/);
    }
  }, 120_000);
});
