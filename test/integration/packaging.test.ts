/**
 * How kubetrail is packaged, checked on a machine without a container engine:
 *
 * - the kubectl plugin: the real `kubectl` finds `kubectl-trail` on PATH (`kubectl plugin list`), and
 *   `kubectl trail get pods` prints what `kubectl get pods` prints;
 * - the Dockerfile, replayed: its COPY and RUN steps run in clean temporary roots (one per stage, absolute
 *   paths mapped into them) on the build context its .dockerignore leaves, with the same Node major as its
 *   base image; the runtime tree holds no devDependency; the image's ENTRYPOINT + CMD, ENV and USER (as uid
 *   1000 when the test runs as root) serve a flattened kubeconfig mounted as /kubeconfig; the documented
 *   host-kubeconfig command (docker-compose.yml) gives the host's kubectl a working route through it, with
 *   docker-compose.yml's OTLP wiring; `kubetrail doctor` runs inside it; its HEALTHCHECK passes; SIGTERM
 *   (docker stop) ends it cleanly.
 *
 * What this cannot check without a container engine (see docs/docker.md): that the base images exist and
 * pull, Docker's own COPY semantics (we copy with cpSync), network namespaces and port publishing, named
 * volume initialisation, and the Jaeger image's flags.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { freshHome } from '../helpers/compare.ts';
import { makePod } from '../helpers/fake-apiserver.ts';
import { withFakeCluster } from '../helpers/fake-cluster.ts';
import { kubectl, kubectlAvailable, kubectlPath } from '../helpers/kubectl.ts';
import { NODE_FLAGS } from '../../src/cli/node-flags.ts';
import { runProcess } from '../helpers/run-kubetrail.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const KUBETRAIL_SRC = join(REPO, 'src', 'bin', 'kubetrail.ts');
const KUBECTL_TRAIL_LAUNCHER = join(REPO, 'bin', 'kubectl-trail');

const cluster = withFakeCluster({
  prefix: 'kt-pkg-kube-',
  apiserver: { tokens: { 'tina-token': { user: 'tina' } } },
  kubeconfig: {
    users: [
      { name: 'alice', cert: { groups: ['dev'] } },
      { name: 'tina', token: 'tina-token' },
    ],
  },
  seed: (fake) => {
    fake.create(makePod('web-0', { ageSeconds: 86_400 }));
    fake.create(makePod('web-1', { ageSeconds: 3_600 }));
  },
  otlp: true,
});
let work: string;
/** A self-contained kubeconfig (certificates inline), as `kubectl config view --raw --flatten` writes it. */
let flat: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'kt-pkg-'));
  chmodSync(work, 0o755);
  // The docs tell Docker users to mount a flattened kubeconfig: make it the way they will.
  const view = await runProcess(kubectlPath('1.33'), ['config', 'view', '--raw', '--flatten'], {
    env: { PATH: process.env.PATH ?? '', HOME: freshHome(), KUBECONFIG: cluster.kubeconfig },
  });
  expect(view.code, view.stderr).toBe(0);
  flat = join(work, 'flat.kubeconfig');
  writeFileSync(flat, view.stdout, { mode: 0o600 });
  expect(view.stdout.toString()).toContain('client-certificate-data:');
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A dir to put first on PATH: `node` (this Node 24), `kubectl` (the real 1.33) and `kubectl-trail` → `target`. */
function pluginPath(target: string): string {
  const bin = mkdtempSync(join(work, 'path-'));
  chmodSync(bin, 0o755);
  symlinkSync(process.execPath, join(bin, 'node'));
  symlinkSync(kubectlPath('1.33'), join(bin, 'kubectl'));
  symlinkSync(target, join(bin, 'kubectl-trail'));
  return bin;
}

async function pluginRun(bin: string): Promise<{
  direct: string;
  plugin: Awaited<ReturnType<typeof runProcess>>;
  list: Awaited<ReturnType<typeof runProcess>>;
}> {
  const home = freshHome();
  const env: NodeJS.ProcessEnv = {
    PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    HOME: home,
    KUBECONFIG: flat,
    // kubetrail's own options reach the plugin through the environment (every argument is kubectl's).
    KUBETRAIL_STATE_DIR: join(home, 'state'),
    KUBETRAIL_LISTEN: '127.0.0.1:0',
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: cluster.receiver.url,
    NO_COLOR: '1',
  };
  const list = await runProcess(join(bin, 'kubectl'), ['plugin', 'list'], { env });
  const plugin = await runProcess(join(bin, 'kubectl'), ['trail', 'get', 'pods'], { env, timeoutMs: 40_000 });
  const direct = await kubectl(['get', 'pods'], { kubeconfig: flat });
  expect(direct.code, direct.stderr).toBe(0);
  return { direct: direct.stdout.toString(), plugin, list };
}

describe.skipIf(!kubectlAvailable('1.33'))('kubectl plugin', () => {
  it('`kubectl trail get pods` through the real plugin mechanism prints what `kubectl get pods` prints', async () => {
    // What `npm install` puts on PATH is bin/kubectl-trail (bash: the launcher, then the Node CLI); here
    // with the Node CLI run from the source.
    const shim = join(mkdtempSync(join(work, 'shim-')), 'kubectl-trail');
    writeFileSync(shim, `#!/bin/sh\nKUBETRAIL_ENTRY='${KUBETRAIL_SRC}' exec '${KUBECTL_TRAIL_LAUNCHER}' "$@"\n`, {
      mode: 0o755,
    });
    const bin = pluginPath(shim);
    const { direct, plugin, list } = await pluginRun(bin);
    expect(list.stdout.toString()).toContain(join(bin, 'kubectl-trail'));
    expect(plugin.code, plugin.stderr).toBe(0);
    expect(direct).toMatch(/^NAME +READY +STATUS +RESTARTS +AGE\nweb-0 .*\nweb-1 .*\n$/);
    expect(plugin.stdout.toString()).toBe(direct);
    // ...and it is kubetrail: the waterfall and the trace link on stderr.
    expect(plugin.stderr).toMatch(/^kubectl get · \d+ requests · /m);
    expect(plugin.stderr).toMatch(/^ {2}list pods +200 /m);
    expect(plugin.stderr).toMatch(/^trace: http:\/\/localhost:16686\/trace\/[0-9a-f]{32}$/m);
  });
});

// ---------------------------------------------------------------------------------------------------
// The Dockerfile, replayed.

interface Instruction {
  op: string;
  rest: string;
}

interface Stage {
  name: string | undefined;
  from: string;
  steps: Instruction[];
}

/** Instructions with `\` continuations joined and comments dropped; stages split at FROM. */
function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const lines: string[] = [];
  let acc = '';
  for (const raw of text.split('\n')) {
    if (/^\s*#/.test(raw) && acc === '') continue;
    if (/^\s*#/.test(raw)) continue;
    const line = raw.replace(/\s+$/, '');
    if (line.endsWith('\\')) {
      acc += `${line.slice(0, -1)} `;
      continue;
    }
    acc += line;
    if (acc.trim() !== '') lines.push(acc.trim());
    acc = '';
  }
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of lines) {
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`cannot parse Dockerfile line: ${line}`);
    const op = (m[1] ?? '').toUpperCase();
    const rest = m[2] ?? '';
    if (op === 'ARG' && stages.length === 0) {
      const [k, v] = rest.split('=');
      args[k ?? ''] = v ?? '';
    } else if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      stages.push({
        from: (f?.[1] ?? '').replace(/\$\{(\w+)\}/g, (_, n: string) => args[n] ?? ''),
        name: f?.[2],
        steps: [],
      });
    } else {
      const stage = stages.at(-1);
      if (!stage) throw new Error(`${op} before FROM`);
      stage.steps.push({ op, rest });
    }
  }
  return { args, stages };
}

function jsonArgs(rest: string): string[] {
  const v = JSON.parse(rest) as unknown;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string'))
    throw new Error(`expected a JSON array of strings: ${rest}`);
  return v;
}

/** `KEY=value KEY2=value2` (the Dockerfile's ENV form). */
function envPairs(rest: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of rest.matchAll(/(\w+)=("[^"]*"|\S+)/g)) out[m[1] ?? ''] = (m[2] ?? '').replace(/^"|"$/g, '');
  return out;
}

/** .dockerignore as Docker reads it (the subset we use: names, `*`, `**`, no `!` exceptions). */
function dockerignore(text: string): (path: string) => boolean {
  const res = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((p) => {
      if (p.startsWith('!')) throw new Error('.dockerignore exceptions (!) are not replayed here; extend the test');
      const body = p
        .replace(/^\/+|\/+$/g, '')
        .split('/')
        .map((seg) =>
          seg === '**'
            ? '.*'
            : seg
                .replace(/[.+^${}()|[\]\\]/g, '\\$&')
                .replace(/\*/g, '[^/]*')
                .replace(/\?/g, '[^/]'),
        )
        .join('/');
      return new RegExp(`^${body}(/|$)`);
    });
  return (path) => res.some((re) => re.test(path));
}

/** Absolute paths the replay maps into a stage's root; anything else absolute in a RUN is an error. */
const MAPPED = ['/app', '/state', '/usr/local/bin', '/kubeconfig'];

function mapRun(cmd: string, root: string): string {
  const marked = cmd.replace(
    /(^|[\s'"=:])(\/(?:app|state|usr\/local\/bin|kubeconfig))(?=[\s/'"]|$)/g,
    (_, pre: string, p: string) => `${pre}\0${p}`,
  );
  if (/(^|[\s'"=:])\/[a-z]/i.test(marked))
    throw new Error(`RUN uses an absolute path the replay does not map (${MAPPED.join(', ')}): ${cmd}`);
  return marked.replaceAll('\0', root);
}

/** Run as the container's user (uid/gid), as `docker exec` does; stdout kept as bytes. */
function runAs(
  cmd: string,
  args: string[],
  opts: { env: NodeJS.ProcessEnv; cwd: string; uid?: number; gid?: number },
): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: opts.env,
      cwd: opts.cwd,
      uid: opts.uid,
      gid: opts.gid,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

describe.skipIf(!kubectlAvailable('1.33'))('the Dockerfile, replayed without a container engine', () => {
  const dockerfile = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
  const compose = parse(readFileSync(join(REPO, 'docker-compose.yml'), 'utf8')) as {
    services: Record<
      string,
      {
        build?: unknown;
        image?: string;
        command?: string[];
        environment?: Record<string, string>;
        ports?: string[];
        volumes?: string[];
        user?: string;
      }
    >;
  };
  const { stages } = parseDockerfile(dockerfile);
  const runtime = stages.at(-1) as Stage;
  const final = (op: string): string | undefined => runtime.steps.filter((s) => s.op === op).at(-1)?.rest;
  const roots = new Map<string, string>();
  let appDir = '';
  let buildLog = '';

  beforeAll(async () => {
    // The build context: what git knows of (tracked, or new and not ignored), minus .dockerignore.
    const ls = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
      cwd: REPO,
      encoding: 'utf8',
    });
    expect(ls.status, ls.stderr).toBe(0);
    const ignored = dockerignore(readFileSync(join(REPO, '.dockerignore'), 'utf8'));
    const context = join(work, 'context');
    for (const f of ls.stdout.split('\0')) {
      if (f === '' || ignored(f) || !existsSync(join(REPO, f))) continue;
      mkdirSync(dirname(join(context, f)), { recursive: true });
      cpSync(join(REPO, f), join(context, f), { verbatimSymlinks: true });
    }
    const nodeBin = mkdtempSync(join(work, 'node-'));
    chmodSync(nodeBin, 0o755);
    symlinkSync(process.execPath, join(nodeBin, 'node'));

    for (const [i, stage] of stages.entries()) {
      const root = join(work, `stage-${i}`);
      mkdirSync(join(root, 'usr', 'local', 'bin'), { recursive: true });
      chmodSync(root, 0o755);
      roots.set(stage.name ?? String(i), root);
      let workdir = '/';
      const env: Record<string, string> = {};
      for (const step of stage.steps) {
        const at = (p: string): string => (p.startsWith('/') ? join(root, p) : join(root, workdir, p));
        if (step.op === 'WORKDIR') {
          workdir = step.rest;
          mkdirSync(at('.'), { recursive: true });
        } else if (step.op === 'ENV') {
          Object.assign(env, envPairs(step.rest));
        } else if (step.op === 'COPY') {
          const words = step.rest.split(/\s+/);
          const from = words[0]?.startsWith('--from=') ? words.shift()?.slice('--from='.length) : undefined;
          if (words.some((w) => w.startsWith('--'))) throw new Error(`COPY flag not replayed: ${step.rest}`);
          const dest = words.pop() ?? '';
          for (const src of words) {
            const source = from !== undefined ? join(roots.get(from) ?? '(no such stage)', src) : join(context, src);
            if (!existsSync(source))
              throw new Error(
                `COPY ${src}: not in the ${from ? `stage ${from}` : 'build context (see .dockerignore)'}`,
              );
            const target =
              dest.endsWith('/') || words.length > 1 ? join(at(dest), src.split('/').pop() ?? '') : at(dest);
            mkdirSync(dirname(target), { recursive: true });
            cpSync(source, target, { recursive: true, verbatimSymlinks: true });
          }
        } else if (step.op === 'RUN') {
          const cmd = mapRun(step.rest, root);
          const r = await runProcess('sh', ['-c', cmd], {
            cwd: at('.'),
            timeoutMs: 300_000,
            env: {
              ...process.env,
              ...env,
              PATH: `${nodeBin}:${join(root, 'usr', 'local', 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}`,
              // The npm cache here is warm; Docker's is not, which changes time, not the result.
              npm_config_prefer_offline: 'true',
              npm_config_update_notifier: 'false',
            },
          });
          buildLog += `$ ${step.rest}\n${r.stdout.toString()}${r.stderr}\n`;
          if (r.code !== 0) throw new Error(`RUN ${step.rest} failed (${r.code}):\n${r.stderr}`);
        }
      }
      if (stage === runtime) appDir = join(root, workdir);
    }
  }, 600_000);

  it('is multi-stage on Node 24 (the Node this replay runs), and runs as a non-root user', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) expect(s.from).toMatch(/^node:24[-.\w]*$/);
    expect(process.versions.node.split('.')[0]).toBe('24');
    const user = final('USER');
    expect(user).toBeDefined();
    expect(['root', '0', '0:0']).not.toContain(user);
    // The non-root user runs the proxy from here on: no RUN after USER that would need root.
    const userAt = runtime.steps.findIndex((s) => s.op === 'USER');
    expect(runtime.steps.slice(userAt).filter((s) => s.op === 'RUN')).toEqual([]);
  });

  it('leaves no devDependency, no source and no test in the runtime tree', () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    for (const dev of Object.keys(pkg.devDependencies))
      expect(existsSync(join(appDir, 'node_modules', dev)), dev).toBe(false);
    for (const bin of ['tsc', 'vitest', 'eslint', 'node'])
      expect(existsSync(join(appDir, 'node_modules', '.bin', bin)), bin).toBe(false);
    for (const dep of Object.keys(pkg.dependencies))
      expect(existsSync(join(appDir, 'node_modules', dep, 'package.json')), dep).toBe(true);
    expect(existsSync(join(appDir, 'src'))).toBe(false);
    expect(existsSync(join(appDir, 'test'))).toBe(false);
    expect(statSync(join(appDir, 'dist', 'bin', 'kubetrail.js')).mode & 0o111).toBe(0o111);
    expect(statSync(join(appDir, 'dist', 'bin', 'kubectl-trail.js')).mode & 0o111).toBe(0o111);
    expect(buildLog).not.toMatch(/npm (ERR|error)/);
  });

  it('the image serves a mounted kubeconfig; the host kubeconfig from the docs routes a real kubectl through it', async () => {
    // The image's command, as the compose file runs it, with its environment and its user.
    const entrypoint = jsonArgs(final('ENTRYPOINT') ?? '[]');
    const cmd = jsonArgs(final('CMD') ?? '[]');
    expect(entrypoint).toEqual(['node', ...NODE_FLAGS, '/app/dist/bin/kubetrail.js']);
    // The bin's shebang stays portable (`env -S` is not everywhere); the flags are the image's business.
    expect(readFileSync(join(REPO, 'src', 'bin', 'kubetrail.ts'), 'utf8').split('\n')[0]).toBe('#!/usr/bin/env node');
    expect(cmd).toEqual(['start', '--listen', '0.0.0.0:17443', '--allow-non-loopback']);
    expect(final('EXPOSE')).toBe('17443');
    const svc = compose.services.kubetrail;
    expect(svc?.build).toBe('.');
    expect(svc?.command).toBeUndefined(); // the image's default
    expect(svc?.ports).toEqual(['127.0.0.1:17443:17443']);
    expect(svc?.volumes).toContain('${KUBETRAIL_KUBECONFIG:-~/.kube/config}:/kubeconfig:ro');
    expect(svc?.volumes?.some((v) => v.endsWith(':/state'))).toBe(true);
    expect(compose.services.jaeger?.ports?.every((p) => p.startsWith('127.0.0.1:'))).toBe(true);

    const root = roots.get(runtime.name ?? String(stages.length - 1)) ?? '';
    const imageEnv = Object.assign(
      {},
      ...runtime.steps.filter((s) => s.op === 'ENV').map((s) => envPairs(s.rest)),
    ) as Record<string, string>;
    const container = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({
      PATH: `${dirname(process.execPath)}:${join(root, 'usr', 'local', 'bin')}:/usr/bin:/bin`,
      HOME: '/home/node',
      ...Object.fromEntries(
        Object.entries(imageEnv).map(([k, v]) => [k, MAPPED.some((m) => v.startsWith(m)) ? join(root, v) : v]),
      ),
      // compose wires OTLP to the jaeger service; here the receiver stands in for it.
      ...Object.fromEntries(
        Object.entries(svc?.environment ?? {}).map(([k, v]) => [
          k,
          v.replace('http://jaeger:4318', cluster.receiver.url.replace(/\/v1\/traces$/, '')),
        ]),
      ),
      ...extra,
    });
    expect(svc?.environment?.OTEL_EXPORTER_OTLP_ENDPOINT).toBe('http://jaeger:4318');

    // The mount: the user's own kubeconfig, 0600, owned by the container's user (uid 1000).
    const mounted = join(root, 'kubeconfig');
    cpSync(flat, mounted);
    chmodSync(mounted, 0o600);
    const asUser = process.getuid?.() === 0 ? { uid: 1000, gid: 1000 } : {};
    if (asUser.uid !== undefined) chownSync(mounted, 1000, 1000);

    // 0.0.0.0:17443 is the container's own network; here it stands for 127.0.0.1:<free port>.
    // ENTRYPOINT is node, its flags, then the script (a path in the image).
    const script = entrypoint.findIndex((a, i) => i > 0 && !a.startsWith('-'));
    const args = [
      ...entrypoint.slice(1, script),
      join(root, entrypoint[script] ?? ''),
      ...cmd.map((a) => (a === '0.0.0.0:17443' ? '127.0.0.1:0' : a)),
    ];
    const server: ChildProcess = spawn(process.execPath, args, {
      cwd: appDir,
      env: container(),
      stdio: ['ignore', 'pipe', 'pipe'],
      ...asUser,
    });
    let out = '';
    let err = '';
    server.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    server.stderr?.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number>((resolve) => server.on('close', (code) => resolve(code ?? 128)));
    try {
      await expect
        .poll(() => err, { timeout: 20_000 })
        .toMatch(/listening on https:\/\/127\.0\.0\.1:\d+ for 1 cluster/);
      const port = Number(/listening on https:\/\/127\.0\.0\.1:(\d+)/.exec(err)?.[1]);
      expect(out).toMatch(new RegExp(`^export KUBECONFIG=${root}/state/kubetrail/kubeconfigs/[0-9a-f]+\\.yaml$`, 'm'));
      expect(statSync(join(root, 'state', 'kubetrail')).mode & 0o777).toBe(0o700);
      if (asUser.uid !== undefined) expect(statSync(join(root, 'state', 'kubetrail')).uid).toBe(1000);
      // The image's kubetrail gives a flood's memory back: the build stage built malloc_trim's addon and the
      // proxy loaded it (src/proxy/reclaim.ts).
      expect(readFileSync(`/proc/${server.pid}/maps`, 'utf8')).toContain(join(appDir, 'native', 'build', 'trim.node'));

      // The host's kubeconfig, written by the command docker-compose.yml documents (`docker compose exec`:
      // same container, user and environment), for the published port.
      const composeText = readFileSync(join(REPO, 'docker-compose.yml'), 'utf8');
      const script = /docker compose exec -T kubetrail sh -c '([^']+)' > kubetrail\.kubeconfig/.exec(composeText)?.[1];
      expect(script).toBe('cat "$(kubetrail kubeconfig --listen 127.0.0.1:17443)"');
      const exec = await runAs('sh', ['-c', (script ?? '').replace('127.0.0.1:17443', `127.0.0.1:${port}`)], {
        env: container(),
        cwd: appDir,
        ...asUser,
      });
      expect(exec.code, exec.stderr).toBe(0);
      const hostKubeconfig = join(work, 'kubetrail.kubeconfig');
      writeFileSync(hostKubeconfig, exec.stdout, { mode: 0o600 });
      const rewritten = parse(exec.stdout.toString()) as { clusters: { cluster: { server: string } }[] };
      expect(rewritten.clusters[0]?.cluster.server).toMatch(new RegExp(`^https://127\\.0\\.0\\.1:${port}/c/`));

      const direct = await kubectl(['get', 'pods'], { kubeconfig: flat });
      const mark = cluster.fake.requests.length;
      const viaImage = await kubectl(['get', 'pods'], { kubeconfig: hostKubeconfig });
      expect(viaImage.code, viaImage.stderr).toBe(0);
      expect(viaImage.stdout.toString()).toBe(direct.stdout.toString());
      expect(cluster.fake.requests.slice(mark).map((r) => r.user)).toContain('alice');

      // `start` logs one line per request, then the command's Jaeger link (compose's KUBETRAIL_JAEGER_URL).
      await expect
        .poll(() => out, { timeout: 10_000 })
        .toMatch(/^\S+ 200 .*\/api\/v1\/namespaces\/default\/pods\b.* \[fake\]$/m);
      await expect
        .poll(() => out, { timeout: 10_000 })
        .toMatch(
          /^trace: http:\/\/localhost:16686\/trace\/([0-9a-f]{32}) kubectl get \(\d+ requests?, \d+(\.\d)?m?s\)$/m,
        );
      const traceId = /trace: http:\/\/localhost:16686\/trace\/([0-9a-f]{32})/.exec(out)?.[1];

      // `docker compose exec kubetrail kubetrail doctor` (docs/docker.md): the built doctor, from inside.
      const doctor = await runAs('sh', ['-c', `kubetrail doctor --listen 127.0.0.1:${port}`], {
        env: container(),
        cwd: appDir,
        ...asUser,
      });
      const report = doctor.stdout.toString();
      expect(doctor.code, report).toBe(0);
      expect(report).toMatch(/^ok {4}context alice: through kubetrail: GET \/version 200 in [\d.]+ms, as direct$/m);
      expect(report).toMatch(new RegExp(`^ok {4}state dir: ${root}/state/kubetrail is 0700, its files 0600$`, 'm'));
      expect(report).toMatch(
        new RegExp(`^ok {4}listen: 127\\.0\\.0\\.1:${port}: a kubetrail \\(pid \\d+\\) listens there`, 'm'),
      );
      expect(report).toMatch(/^ok {4}otlp: /m);

      // HEALTHCHECK, as Docker runs it inside the container.
      const hc = /CMD\s+(\[.*\])$/.exec(final('HEALTHCHECK') ?? '')?.[1];
      const health = jsonArgs(hc ?? '[]');
      expect(health[0]).toBe('node');
      const healthy = await runAs(
        process.execPath,
        health.slice(1).map((a) => a.replace('port:17443', `port:${port}`)),
        { env: container(), cwd: appDir, ...asUser },
      );
      expect(healthy.code, healthy.stderr).toBe(0);

      // docker stop: SIGTERM; spans flushed to the collector on the way out.
      server.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(cluster.receiver.spans.some((s) => s.traceId === traceId && s.name === 'kubectl get')).toBe(true);
      expect(err).not.toMatch(/error|cannot export/i);
    } finally {
      server.kill('SIGKILL');
    }
  });

  it('the packaged kubectl-trail bin works as a kubectl plugin', async () => {
    const bin = pluginPath(join(appDir, 'dist', 'bin', 'kubectl-trail.js'));
    const { direct, plugin, list } = await pluginRun(bin);
    expect(list.stdout.toString()).toContain(join(bin, 'kubectl-trail'));
    expect(plugin.code, plugin.stderr).toBe(0);
    expect(plugin.stdout.toString()).toBe(direct);
    expect(plugin.stderr).toMatch(/^trace: /m);
  });
});
