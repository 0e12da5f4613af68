/**
 * `kubetrail doctor` as a user runs it (the real CLI), against a working setup and a broken one: every
 * finding names what it saw, the broken ones say what to do, the exit code says whether anything failed,
 * and no credential is ever printed.
 */
import { chmodSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { freshHome, kubetrailEnv } from '../helpers/compare.ts';
import { withFakeCluster } from '../helpers/fake-cluster.ts';
import { runKubetrail, type RunResult } from '../helpers/run-kubetrail.ts';
import { refusedPort, unusedPort } from '../helpers/ports.ts';
import { TRIM_ADDON } from '../../src/proxy/reclaim.ts';

const cluster = withFakeCluster({
  prefix: 'kt-doctor-',
  apiserver: { tokens: { 'tina-secret-token': { user: 'tina' } } },
  kubeconfig: {
    users: [
      { name: 'alice', cert: { groups: ['dev'] } },
      { name: 'tina', token: 'tina-secret-token' },
    ],
  },
  otlp: true,
});
let jaeger: HttpServer;
let jaegerUrl: string;

beforeAll(async () => {
  jaeger = createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>Jaeger UI</title>');
  });
  await new Promise<void>((r) => jaeger.listen(0, '127.0.0.1', r));
  jaegerUrl = `http://127.0.0.1:${(jaeger.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((r) => jaeger.close(r));
});

/**
 * The memory check's lines: which depends on whether `npm ci` built native/build/trim.node in this checkout
 * (native/build.sh: only where a C compiler is; .ci/run requires it).
 */
function memoryLines(): unknown[] {
  if (existsSync(TRIM_ADDON))
    return [
      "ok    memory: glibc's malloc: after a flood of connections kubetrail gives the memory back (malloc_trim)",
      'doctor: all checks passed',
    ];
  return [
    expect.stringMatching(/^warn {2}memory: glibc's malloc: after a flood of connections RSS stays near its peak/),
    expect.stringMatching(/^ {6}fix: .*npm rebuild kubetrail/),
    'doctor: 0 failed, 1 warning(s)',
  ];
}

function doctor(args: string[], home: string): Promise<RunResult> {
  return runKubetrail(['doctor', ...args], { env: kubetrailEnv(home), timeoutMs: 40_000 });
}

/** Every file and directory under `root` with its mode: doctor must leave the state dir as it found it. */
function snapshot(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = statSync(p);
      out.push(`${p} ${(st.mode & 0o777).toString(8)} ${st.size} ${st.mtimeMs}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out;
}

describe('kubetrail doctor', () => {
  it("a Jaeger that does not answer: the fix says how to point trace links at one (the local stack's env sets it)", async () => {
    const closed = await unusedPort();
    const r = await doctor(
      [
        '--kubeconfig',
        cluster.kubeconfig,
        '--otlp-endpoint',
        cluster.receiver.url,
        '--jaeger-url',
        `http://127.0.0.1:${closed}`,
        '--context',
        'alice',
      ],
      freshHome(),
    );
    expect(r.stdout.toString()).toMatch(
      new RegExp(
        `^warn  jaeger: trace links point at http://127\\.0\\.0\\.1:${closed}, which does not answer \\(ECONNREFUSED\\)\\n {6}fix: set --jaeger-url \\(or KUBETRAIL_JAEGER_URL\\) to your Jaeger \\(the local stack's: \`eval "\\$\\(npm run -s stack -- env\\)"\` sets it\\), or start one: \`docker compose up -d jaeger\`$`,
        'm',
      ),
    );
  });

  it('a working kubeconfig: every check ok, exit 0, credentials presented both ways and never printed', async () => {
    const home = freshHome();
    const stateDir = join(home, 'kubetrail-state');
    expect(
      (await runKubetrail(['kubeconfig', '--kubeconfig', cluster.kubeconfig], { env: kubetrailEnv(home) })).code,
    ).toBe(0);
    const before = snapshot(stateDir);
    const listenPort = await unusedPort();
    const mark = cluster.fake.requests.length;

    const r = await doctor(
      [
        '--kubeconfig',
        cluster.kubeconfig,
        '--otlp-endpoint',
        cluster.receiver.url,
        '--jaeger-url',
        jaegerUrl,
        '--listen',
        `127.0.0.1:${listenPort}`,
      ],
      home,
    );
    const out = r.stdout.toString();
    expect(r.stderr).toBe('');
    expect(r.code, out).toBe(0);
    const lines = out.trimEnd().split('\n');
    expect(lines[0]).toBe('kubetrail doctor 0.1.0');
    expect(lines.slice(1)).toEqual([
      `ok    state dir: ${stateDir} is 0700, its files 0600`,
      `ok    kubeconfig: ${cluster.kubeconfig}: 2 context(s), 1 cluster(s), 2 user(s); current-context "alice"`,
      `ok    context alice: cluster "fake" ${cluster.fake.url}, user "alice": client certificate (CN=alice, O=dev)`,
      expect.stringMatching(/^ok {4}context alice: direct: GET \/version 200 v1\.33\.1 in [\d.]+ms \(TLS verified\)$/),
      expect.stringMatching(/^ok {4}context alice: through kubetrail: GET \/version 200 in [\d.]+ms, as direct$/),
      `ok    context tina: cluster "fake" ${cluster.fake.url}, user "tina": bearer token (inline)`,
      expect.stringMatching(/^ok {4}context tina: direct: GET \/version 200 v1\.33\.1 in [\d.]+ms \(TLS verified\)$/),
      expect.stringMatching(/^ok {4}context tina: through kubetrail: GET \/version 200 in [\d.]+ms, as direct$/),
      expect.stringMatching(
        new RegExp(`^ok {4}otlp: ${cluster.receiver.url} accepted an empty OTLP/HTTP export \\(200\\) in \\d+ms$`),
      ),
      `ok    jaeger: trace links point at ${jaegerUrl}/trace/<id>; it answers 200`,
      `ok    listen: 127.0.0.1:${listenPort} is free`,
      ...memoryLines(),
    ]);

    // The apiserver saw each user twice, direct and through kubetrail, each time with the user's own
    // credential: kubetrail matched alice's certificate and presented her key pair upstream.
    const seen = cluster.fake.requests
      .slice(mark)
      .filter((q) => q.path === '/version')
      .map((q) => q.user);
    expect(seen.sort()).toEqual(['alice', 'alice', 'tina', 'tina']);
    expect(cluster.receiver.raw).toContain('{"resourceSpans":[]}');
    expect(out).not.toContain('tina-secret-token');
    expect(out).not.toContain('PRIVATE KEY');
    // Read-only: the real state dir is as it was (the in-process kubetrail used a throwaway CA).
    expect(snapshot(stateDir)).toEqual(before);
  });

  it('a broken setup: each problem found, with what to do; exit 1; no secret printed', async () => {
    const home = freshHome();
    const stateDir = join(home, 'kubetrail-state');
    expect(
      (await runKubetrail(['kubeconfig', '--kubeconfig', cluster.kubeconfig], { env: kubetrailEnv(home) })).code,
    ).toBe(0);
    // State dir too open, and one rewritten kubeconfig (it holds credentials) readable by everyone.
    chmodSync(stateDir, 0o755);
    const written = join(stateDir, 'kubeconfigs', readdirSync(join(stateDir, 'kubeconfigs'))[0] ?? '');
    chmodSync(written, 0o644);

    // One kubeconfig, one problem per context, next to a context that works.
    const base = parse(readFileSync(cluster.kubeconfig, 'utf8')) as {
      clusters: { name: string; cluster: Record<string, unknown> }[];
      users: { name: string; user: Record<string, unknown> }[];
    };
    const good = base.clusters[0]?.cluster ?? {};
    const otherCa = join(cluster.dir, 'other-ca.crt');
    writeFileSync(otherCa, cluster.fake.ca.certPem); // the client CA: it did not sign the serving certificate
    const down = await refusedPort();
    const broken = join(cluster.dir, 'broken.kubeconfig');
    writeFileSync(
      broken,
      stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          { name: 'good', cluster: good },
          { name: 'wrong-ca', cluster: { ...good, 'certificate-authority': otherCa } },
          { name: 'down', cluster: { ...good, server: `https://127.0.0.1:${down}` } },
          { name: 'plain', cluster: { server: `http://127.0.0.1:${cluster.fake.port}` } },
        ],
        users: [...base.users, { name: 'bad-token', user: { token: 'expired-secret-token' } }],
        contexts: [
          { name: 'alice', context: { cluster: 'good', user: 'alice' } },
          { name: 'wrongca', context: { cluster: 'wrong-ca', user: 'alice' } },
          { name: 'down', context: { cluster: 'down', user: 'tina' } },
          { name: 'badtoken', context: { cluster: 'good', user: 'bad-token' } },
          { name: 'ghost', context: { cluster: 'nowhere', user: 'alice' } },
          { name: 'plain', context: { cluster: 'plain', user: 'alice' } },
        ],
        'current-context': 'alice',
      }),
      { mode: 0o600 },
    );
    const closedOtlp = await refusedPort();
    // Something that is not kubetrail holds the listen port.
    const squatter: Server = createServer((s) => s.destroy());
    await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r));
    const squatted = (squatter.address() as AddressInfo).port;
    let r: RunResult;
    try {
      r = await doctor(
        [
          '--kubeconfig',
          broken,
          '--otlp-endpoint',
          `http://127.0.0.1:${closedOtlp}/v1/traces`,
          '--jaeger-url',
          jaegerUrl,
          '--listen',
          `127.0.0.1:${squatted}`,
        ],
        home,
      );
    } finally {
      await new Promise((res) => squatter.close(res));
    }
    const out = r.stdout.toString();
    expect(r.code, out).toBe(1);
    const has = (re: RegExp): void => expect(out, re.source).toMatch(re);
    const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

    has(
      new RegExp(
        `^warn  state dir: ${esc(stateDir)} is 0755: others may list it .*\\n {6}fix: chmod 700 ${esc(stateDir)} `,
        'm',
      ),
    );
    has(
      new RegExp(
        `^fail  state dir: readable by others: ${esc(written)} \\(0644\\)\\n {6}fix: chmod -R go-rwx ${esc(stateDir)}`,
        'm',
      ),
    );
    has(
      new RegExp(
        `^fail  kubeconfig: kubetrail refuses it: kubeconfig ${esc(broken)} cluster "plain": server "http://127\\.0\\.0\\.1:\\d+" is not https`,
        'm',
      ),
    );

    // The working context next to the broken ones still passes.
    has(/^ok {4}context alice: direct: GET \/version 200 v1\.33\.1 in [\d.]+ms \(TLS verified\)$/m);
    has(/^ok {4}context alice: through kubetrail: GET \/version 200 in [\d.]+ms, as direct$/m);

    // Wrong CA: a TLS failure, said as such, both ways.
    has(
      new RegExp(
        `^fail  context wrongca: direct: TLS verification of ${esc(cluster.fake.url)} failed: (UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT|UNABLE_TO_GET_ISSUER_CERT_LOCALLY) \\(.+\\)\\n {6}fix: the apiserver's certificate does not verify against cluster "wrong-ca"'s certificate-authority; .*kubectl --context wrongca get --raw /version`,
        'm',
      ),
    );
    has(
      /^fail {2}context wrongca: through kubetrail: GET \/version 502 KT_ERR_UPSTREAM_TLS in [\d.]+ms, the same answer as direct\n {6}fix: kubetrail passes the problem on unchanged/m,
    );

    // Unreachable server.
    has(
      new RegExp(
        `^fail  context down: direct: cannot reach https://127\\.0\\.0\\.1:${down}: connection refused\\n {6}fix: is the cluster running, and is cluster "down"'s server URL right\\?`,
        'm',
      ),
    );
    has(
      /^fail {2}context down: through kubetrail: GET \/version 502 KT_ERR_UPSTREAM in [\d.]+ms, the same answer as direct$/m,
    );

    // A credential the apiserver rejects.
    has(
      /^fail {2}context badtoken: direct: GET \/version 401 in [\d.]+ms \(TLS verified\): the apiserver rejected the bearer token \(inline\)\n {6}fix: the credential is expired or wrong/m,
    );
    has(/^fail {2}context badtoken: through kubetrail: GET \/version 401 in [\d.]+ms, the same answer as direct$/m);

    // A context naming a cluster nobody defines; a cluster kubetrail cannot proxy.
    has(
      /^fail {2}context ghost: names cluster "nowhere", which no kubeconfig file defines\n {6}fix: fix the context in /m,
    );
    has(
      /^fail {2}context plain: kubetrail cannot use it: kubeconfig .* cluster "plain": server "http:\/\/127\.0\.0\.1:\d+" is not https/m,
    );

    // No collector; a port held by something else.
    has(
      new RegExp(
        `^fail  otlp: http://127\\.0\\.0\\.1:${closedOtlp}/v1/traces: nothing listens there \\(connection refused\\)\\n {6}fix: start one: \`docker compose up -d jaeger\``,
        'm',
      ),
    );
    has(
      new RegExp(
        `^warn  listen: 127\\.0\\.0\\.1:${squatted} is in use by another program: .*KT_ERR_LISTEN\\n {6}fix: stop that program, or pass --listen 127\\.0\\.0\\.1:PORT`,
        'm',
      ),
    );

    // Every warn and fail says what to do.
    const lines = out.trimEnd().split('\n');
    lines.forEach((line, i) => {
      if (/^(warn|fail) /.test(line)) expect(lines[i + 1], line).toMatch(/^ {6}fix: \S/);
    });
    expect(lines.at(-1)).toMatch(/^doctor: 1[0-9] failed, 2 warning\(s\)$/);
    expect(out).not.toContain('expired-secret-token');
    expect(out).not.toContain('tina-secret-token');
    expect(out).not.toContain('PRIVATE KEY');
  });

  it('a malformed kubeconfig: the one-line error with file and line, and the other checks still run', async () => {
    const bad = join(cluster.dir, 'malformed.kubeconfig');
    writeFileSync(bad, 'apiVersion: v1\nclusters:\n  - name: x\n    cluster: {server: https://a\n', { mode: 0o600 });
    const r = await doctor(
      [
        '--kubeconfig',
        bad,
        '--otlp-endpoint',
        cluster.receiver.url,
        '--jaeger-url',
        jaegerUrl,
        '--listen',
        `127.0.0.1:${await unusedPort()}`,
      ],
      freshHome(),
    );
    const out = r.stdout.toString();
    expect(r.code, out).toBe(1);
    expect(out).toMatch(
      new RegExp(
        `^fail  kubeconfig: kubeconfig ${bad.replace(/[.]/g, '\\.')}:\\d+: .+\\n {6}fix: fix the file named \\(kubectl reads it the same way`,
        'm',
      ),
    );
    expect(out).toMatch(/^ok {4}otlp: /m);
    expect(out).not.toMatch(/^\S+ +context /m);
  });

  it('--context checks that context only, and names the ones that exist when it does not', async () => {
    const home = freshHome();
    const args = [
      '--kubeconfig',
      cluster.kubeconfig,
      '--otlp-endpoint',
      cluster.receiver.url,
      '--jaeger-url',
      jaegerUrl,
      '--listen',
      `127.0.0.1:${await unusedPort()}`,
    ];
    const one = await doctor([...args, '--context', 'tina'], home);
    expect(one.code, one.stdout.toString()).toBe(0);
    expect(one.stdout.toString().match(/^ok {4}context (\w+):/gm)).toEqual([
      'ok    context tina:',
      'ok    context tina:',
      'ok    context tina:',
    ]);
    const none = await doctor([...args, '--context', 'nope'], home);
    expect(none.code).toBe(1);
    expect(none.stdout.toString()).toContain(
      'fail  kubeconfig: --context "nope" does not exist (contexts: alice, tina)\n      fix: pass one of those names\n',
    );
  });
});
