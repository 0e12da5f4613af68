/**
 * Installing kubetrail for real, as the README's "With a cluster of your own" says, away from the clone
 * (#12 item 11): `npm pack` in the clone, `npm install -g` of that tarball into an empty prefix, then the
 * installed `kubetrail` run from a directory that is not the repository, with nothing of the clone on PATH
 * (only this Node 24 as `node`, and the real kubectl). And the same installed bin on an older Node first on
 * PATH: one line saying what to do, exit 1, not a stack trace.
 *
 * The README's lines are read from it and run as written (`sh -c`); npm's own environment variables put the global prefix in
 * a temporary directory and prefer the cache `npm ci` has just filled, so no registry is needed when the
 * cache holds the dependencies (CI runs `npm ci` first).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshHome } from '../helpers/compare.ts';
import { makePod } from '../helpers/fake-apiserver.ts';
import { withFakeCluster } from '../helpers/fake-cluster.ts';
import { kubectl, kubectlAvailable, kubectlPath } from '../helpers/kubectl.ts';
import { canBuildNative } from '../helpers/native.ts';
import { nodeRecorder } from '../helpers/node-recorder.ts';
import { unusedPort } from '../helpers/ports.ts';
import { runProcess, type RunResult } from '../helpers/run-kubetrail.ts';
import { MIN_NODE_MAJOR } from '../../src/cli/node-version.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

/** The README's install block ("With a cluster of your own"), its commands as written, trailing comments off. */
function readmeInstallLines(): { pack: string; install: string; doctor: string; wrap: string } {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## With a cluster of your own'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  const lines = block
    .split('\n')
    .map((l) => l.replace(/\s{2,}#.*$/, '').trim())
    .filter(Boolean);
  expect(lines).toEqual([
    'npm pack',
    `npm install -g ./kubetrail-${VERSION}.tgz`,
    'kubetrail doctor',
    'kubetrail -- kubectl get pods',
  ]);
  const [pack = '', install = '', doctor = '', wrap = ''] = lines;
  return { pack, install, doctor, wrap };
}
const INSTALL_LINES = readmeInstallLines();

/** A Node older than kubetrail needs, if this machine has one (the system Node here is 20). */
function oldNode(): string | undefined {
  for (const p of ['/usr/bin/node', '/usr/local/bin/node', '/bin/node']) {
    if (!existsSync(p)) continue;
    const v = spawnSync(p, ['--version'], { encoding: 'utf8' });
    const major = Number(/^v(\d+)/.exec(v.stdout)?.[1]);
    if (Number.isFinite(major) && major < MIN_NODE_MAJOR) return p;
  }
  return undefined;
}

const cluster = withFakeCluster({
  prefix: 'kt-install-kube-',
  kubeconfig: { users: [{ name: 'alice', cert: { groups: ['dev'] } }] },
  seed: (fake) => void fake.create(makePod('web-0', { ageSeconds: 86_400 })),
  otlp: true,
});
let work: string;
let prefix: string;
let packed: RunResult;
let installed: RunResult;

/** One README line, as written, by `sh -c`; `exec` so that a timeout kills the command itself, not only sh. */
function sh(line: string, env: NodeJS.ProcessEnv, cwd: string, timeoutMs = 100_000): Promise<RunResult> {
  return runProcess('/bin/sh', ['-c', `exec ${line}`], { env, cwd, timeoutMs });
}

/** A PATH with the installed bins, this Node 24 as `node`, the real kubectl as `kubectl`, and the system's
 * basics (sh, tar): nothing from the clone's node_modules. */
function userPath(node: string): string {
  const bin = mkdtempSync(join(work, 'userbin-'));
  chmodSync(bin, 0o755);
  symlinkSync(node, join(bin, 'node'));
  symlinkSync(kubectlPath('1.33'), join(bin, 'kubectl'));
  return `${join(prefix, 'bin')}:${bin}:/usr/bin:/bin`;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'kt-install-'));
  chmodSync(work, 0o755);
  prefix = join(work, 'prefix');

  const npmEnv: NodeJS.ProcessEnv = {
    // npm and this Node 24 from the clone's toolchain, as after `npm ci`.
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: freshHome(),
    // The cache `npm ci` filled (test/helpers/global-tmp.ts pins it: HOME is a fresh one in tests).
    npm_config_cache: process.env.npm_config_cache,
    npm_config_prefix: prefix,
    npm_config_prefer_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
  };
  // `npm pack` runs in the clone, as the README says; npm's pack-destination setting puts the tarball in
  // `work` so the clone stays clean, and `npm install -g ./kubetrail-….tgz` runs from there.
  packed = await sh(INSTALL_LINES.pack, { ...npmEnv, npm_config_pack_destination: work }, REPO);
  installed = packed.code === 0 ? await sh(INSTALL_LINES.install, npmEnv, work) : packed;
}, 240_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.skipIf(!kubectlAvailable('1.33'))('npm pack, npm install -g, then kubetrail away from the clone', () => {
  it('the tarball holds the built CLI and no source, test or secret', () => {
    expect(packed.code, packed.stderr).toBe(0);
    const files = spawnSync('tar', ['tzf', join(work, `kubetrail-${VERSION}.tgz`)], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean);
    expect(files).toContain('package/dist/bin/kubetrail.js');
    expect(files).toContain('package/bin/kubetrail');
    expect(files).toContain('package/bin/kubectl-trail');
    expect(files).toContain('package/dist/bin/kubectl-trail.js');
    expect(files).toContain('package/LICENSE');
    // malloc_trim's addon travels as source, built where it is installed (package.json "install").
    expect(files).toContain('package/native/trim.c');
    expect(files).toContain('package/native/build.sh');
    expect(files.filter((f) => f.includes('native/build/'))).toEqual([]);
    expect(
      files.filter(
        (f) => /\.ts$|\/test\/|\.(pem|key|crt)$|\/(\.?kube)?config$|\.tgz$/i.test(f) && !f.endsWith('.d.ts'),
      ),
    ).toEqual([]);
  });

  it('installs into an empty prefix and puts kubetrail and kubectl-trail on PATH', () => {
    expect(installed.code, installed.stderr).toBe(0);
    expect(readdirSync(join(prefix, 'bin')).sort()).toEqual(['kubectl-trail', 'kubetrail']);
    // npm ran the package's install script, which built the addon with this machine's C compiler.
    if (canBuildNative())
      expect(existsSync(join(prefix, 'lib', 'node_modules', 'kubetrail', 'native', 'build', 'trim.node'))).toBe(true);
  });

  it('`kubetrail --version` and `kubetrail -- kubectl get pods` run from outside the repository', async () => {
    expect(installed.code).toBe(0);
    const home = freshHome();
    const cwd = mkdtempSync(join(work, 'elsewhere-'));
    const env: NodeJS.ProcessEnv = {
      PATH: userPath(process.execPath),
      HOME: home,
      KUBECONFIG: cluster.kubeconfig,
      KUBETRAIL_STATE_DIR: join(home, 'state'),
      KUBETRAIL_LISTEN: '127.0.0.1:0',
      KUBETRAIL_LINGER: '0',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: cluster.receiver.url,
      NO_COLOR: '1',
    };
    const version = await sh('kubetrail --version', env, cwd, 30_000);
    expect(version.code, version.stderr).toBe(0);
    expect(version.stdout.toString()).toContain(VERSION);

    const doctor = await sh(INSTALL_LINES.doctor, env, cwd, 60_000);
    expect(doctor.stdout.toString() + doctor.stderr).toMatch(/through kubetrail/i);
    expect(doctor.code, doctor.stdout.toString() + doctor.stderr).toBe(0);

    const direct = await kubectl(['get', 'pods'], { kubeconfig: cluster.kubeconfig });
    const wrapped = await sh(INSTALL_LINES.wrap, env, cwd, 60_000);
    expect(wrapped.code, wrapped.stderr).toBe(direct.code);
    expect(wrapped.stdout.toString()).toBe(direct.stdout.toString());
    expect(wrapped.stdout.toString()).toContain('web-0');
    expect(wrapped.stderr).toMatch(/kubectl get .*requests?/);
  });

  it('the installed launcher serves the next wrapped command with no Node process', async () => {
    expect(installed.code).toBe(0);
    const home = freshHome();
    const cwd = mkdtempSync(join(work, 'launched-'));
    // `node` on PATH records each run, then runs this Node.
    const node = nodeRecorder(mkdtempSync(join(work, 'recorded-')));
    const env: NodeJS.ProcessEnv = {
      PATH: `${node.bin}:${userPath(process.execPath)}`,
      HOME: home,
      KUBECONFIG: cluster.kubeconfig,
      KUBETRAIL_STATE_DIR: join(home, 'state'),
      KUBETRAIL_LISTEN: `127.0.0.1:${await unusedPort()}`,
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: cluster.receiver.url,
      NO_COLOR: '1',
    };
    const runs = node.runs;
    try {
      const first = await sh(INSTALL_LINES.wrap, env, cwd, 60_000);
      expect(first.code, first.stderr).toBe(0);
      expect(first.stderr).toMatch(/^kubetrail: started a background kubetrail on /m);
      expect(runs()).toBe(1);
      const next = await sh(INSTALL_LINES.wrap, env, cwd, 60_000);
      expect(next.code, next.stderr).toBe(0);
      expect(next.stdout.toString()).toBe(first.stdout.toString());
      expect(next.stderr).toMatch(/^kubectl get · \d+ requests? · /m);
      expect(runs()).toBe(1);
    } finally {
      await sh('kubetrail stop', env, cwd, 30_000);
    }
  });

  it.skipIf(oldNode() === undefined)(
    'on an older Node first on PATH it says what to do in one line and exits 1',
    async () => {
      expect(installed.code).toBe(0);
      const home = freshHome();
      const env: NodeJS.ProcessEnv = {
        PATH: userPath(oldNode() ?? ''),
        HOME: home,
        KUBECONFIG: cluster.kubeconfig,
        KUBETRAIL_STATE_DIR: join(home, 'state'),
      };
      const r = await sh(INSTALL_LINES.wrap, env, mkdtempSync(join(work, 'old-')), 30_000);
      expect(r.code).toBe(1);
      expect(r.stdout.toString()).toBe('');
      const lines = r.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        new RegExp(`^kubetrail: needs Node\\.js ${MIN_NODE_MAJOR} or later, but .* is Node \\d+`),
      );
    },
  );
});
