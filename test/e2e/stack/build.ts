/**
 * Builds the end-to-end stack's binaries (kube-apiserver, etcd, Jaeger) from the wrapper Go modules
 * in ./go/<component>, into a cache directory outside the clone. A binary is keyed by its module
 * version, the Go version and a hash of go.mod, go.sum and the build flags, so an unchanged key is
 * never built twice. GOMODCACHE and GOCACHE live in the same cache directory.
 *
 *   node test/e2e/stack/build.ts        # build whatever is missing, print the paths
 */
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export type ComponentName = 'etcd' | 'jaeger' | 'kube-apiserver';

interface Component {
  /** The module whose version the wrapper's go.mod pins. */
  module: string;
  /** The main package to build. */
  pkg: string;
  /** -X flags for the pinned version. */
  stamp?: (version: string) => string[];
}

const COMPONENTS: Record<ComponentName, Component> = {
  etcd: {
    module: 'go.etcd.io/etcd/server/v3',
    pkg: 'go.etcd.io/etcd/server/v3',
  },
  jaeger: {
    module: 'github.com/jaegertracing/jaeger',
    pkg: 'github.com/jaegertracing/jaeger/cmd/jaeger',
  },
  'kube-apiserver': {
    module: 'k8s.io/kubernetes',
    pkg: 'k8s.io/kubernetes/cmd/kube-apiserver',
    // Without these /version reports v0.0.0-master and kubectl warns about version skew.
    stamp: (v) => {
      const [, minor] = /^v1\.(\d+)\./.exec(v) ?? [];
      if (minor === undefined) throw new Error(`kube-apiserver: unexpected version ${v}`);
      const pkg = 'k8s.io/component-base/version';
      return [`-X ${pkg}.gitVersion=${v}`, `-X ${pkg}.gitMajor=1`, `-X ${pkg}.gitMinor=${minor}`];
    },
  },
};

export const COMPONENT_NAMES = Object.keys(COMPONENTS) as ComponentName[];

const MODULES_DIR = join(import.meta.dirname, 'go');
const GO = process.env.KUBETRAIL_GO ?? (existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : 'go');

export function stackCacheDir(): string {
  return process.env.KUBETRAIL_STACK_CACHE ?? join(homedir(), '.cache', 'kubetrail-stack');
}

export interface BuildOptions {
  cacheDir?: string;
  log?: (line: string) => void;
}

export type Binaries = Record<ComponentName, string>;

/** Returns the path of every component's binary, building those not in the cache yet (minutes each). */
export async function ensureBinaries(opts: BuildOptions = {}): Promise<Binaries> {
  const cacheDir = opts.cacheDir ?? stackCacheDir();
  const log = opts.log ?? ((line: string) => process.stderr.write(`[stack] ${line}\n`));
  const goVersion = goEnv('GOVERSION');
  const out: Partial<Binaries> = {};
  for (const name of COMPONENT_NAMES) out[name] = await ensureBinary(name, goVersion, cacheDir, log);
  return out as Binaries;
}

function goEnv(key: string): string {
  try {
    return execFileSync(GO, ['env', key], { encoding: 'utf8', env: { ...process.env, GOTOOLCHAIN: 'local' } }).trim();
  } catch (err) {
    throw new Error(`build: cannot run Go (${GO}; set KUBETRAIL_GO): ${(err as Error).message}`);
  }
}

async function ensureBinary(
  name: ComponentName,
  goVersion: string,
  cacheDir: string,
  log: (line: string) => void,
): Promise<string> {
  const c = COMPONENTS[name];
  const modDir = join(MODULES_DIR, name);
  const goMod = readFileSync(join(modDir, 'go.mod'), 'utf8');
  const version = new RegExp(`^\\s*(?:require\\s+)?${c.module.replaceAll('.', '\\.')}\\s+(v\\S+)`, 'm').exec(goMod)?.[1];
  if (version === undefined) throw new Error(`build: ${modDir}/go.mod does not require ${c.module}`);
  const args = ['build', '-trimpath', '-buildvcs=false', '-ldflags', ['-s', '-w', ...(c.stamp?.(version) ?? [])].join(' ')];
  const hash = createHash('sha256')
    .update(goMod)
    .update(readFileSync(join(modDir, 'go.sum')))
    .update(args.join('\0'))
    .digest('hex')
    .slice(0, 12);
  const dir = join(cacheDir, 'bin', `${name}-${version}-${goVersion}-${hash}`);
  const bin = join(dir, name);
  if (existsSync(bin)) return bin;

  mkdirSync(dir, { recursive: true });
  const logFile = join(dir, 'build.log');
  const started = Date.now();
  const elapsed = (): string => `${Math.round((Date.now() - started) / 1000)}s`;
  log(`building ${name} ${version} with ${goVersion} (a cold build takes minutes; log: ${logFile})`);
  const ticker = setInterval(() => log(`  still building ${name}… ${elapsed()}`), 30_000);
  try {
    const code = await run(GO, [...args, '-o', `${bin}.tmp`, c.pkg], modDir, logFile, {
      GOTOOLCHAIN: 'local',
      CGO_ENABLED: '0',
      GOFLAGS: '-mod=readonly -modcacherw',
      GOMODCACHE: join(cacheDir, 'gomod'),
      GOCACHE: join(cacheDir, 'gocache'),
    });
    if (code !== 0) {
      const tail = readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-15).join('\n');
      throw new Error(`build of ${name} ${version} failed (exit ${code}):\n${tail}\nfull log: ${logFile}`);
    }
  } finally {
    clearInterval(ticker);
  }
  renameSync(`${bin}.tmp`, bin);
  log(`built ${name} in ${elapsed()}: ${bin}`);
  return bin;
}

function run(cmd: string, args: string[], cwd: string, logFile: string, env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const out = createWriteStream(logFile);
    out.on('open', () => {
      const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', out, out] });
      child.on('error', reject);
      child.on('close', (code) => out.end(() => resolve(code ?? 1)));
    });
    out.on('error', reject);
  });
}

if (import.meta.main) {
  const bins = await ensureBinaries();
  for (const name of COMPONENT_NAMES) console.log(`${name}\t${bins[name]}`);
}
