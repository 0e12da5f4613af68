/**
 * Builds the end-to-end stack's binaries (kube-apiserver, kube-controller-manager, kube-scheduler, etcd,
 * Jaeger, kwok) and the clients the e2e tests drive besides kubectl (helm; clientgo-demo, our own client-go
 * program, whose source is in its module directory) from the wrapper Go modules in ./go/<module dir>, into
 * a cache directory outside the clone. A binary is keyed by its module version, the Go version and a hash
 * of go.mod, go.sum, the module's own Go source and the build flags, so an unchanged key is never built
 * twice. GOMODCACHE and GOCACHE live in the same cache directory.
 *
 *   node test/e2e/stack/build.ts [component…]   # build whatever is missing (of those named), print the paths
 */
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export type ComponentName =
  | 'etcd'
  | 'jaeger'
  | 'kube-apiserver'
  | 'kube-controller-manager'
  | 'kube-scheduler'
  | 'kwok'
  | 'helm'
  | 'clientgo-demo';

interface Component {
  /** The module whose version the wrapper's go.mod pins. */
  module: string;
  /** The wrapper module's directory under ./go; default: the component's name. */
  dir?: string;
  /** The main package to build. */
  pkg: string;
  /** -X flags for the pinned version. */
  stamp?: (version: string) => string[];
}

const LOCAL = '.';

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
    stamp: kubernetesStamp,
  },
  // The same wrapper module as the apiserver, so all three are one Kubernetes version and share its build cache.
  'kube-controller-manager': {
    module: 'k8s.io/kubernetes',
    dir: 'kube-apiserver',
    pkg: 'k8s.io/kubernetes/cmd/kube-controller-manager',
    stamp: kubernetesStamp,
  },
  'kube-scheduler': {
    module: 'k8s.io/kubernetes',
    dir: 'kube-apiserver',
    pkg: 'k8s.io/kubernetes/cmd/kube-scheduler',
    stamp: kubernetesStamp,
  },
  // Simulated nodes and kubelets. Its version is a constant in its source, so it needs no stamp.
  kwok: {
    module: 'sigs.k8s.io/kwok',
    pkg: 'sigs.k8s.io/kwok/cmd/kwok',
  },
  // Clients that send no Kubectl-Session (#19). Helm as released (its User-Agent says Helm/<version>).
  helm: {
    module: 'helm.sh/helm/v4',
    pkg: 'helm.sh/helm/v4/cmd/helm',
    stamp: (v) => [`-X helm.sh/helm/v4/internal/version.version=${v}`],
  },
  // Ours: main.go beside its go.mod; keyed by the client-go it is built with.
  'clientgo-demo': {
    module: 'k8s.io/client-go',
    pkg: LOCAL,
  },
};

/** Without these /version reports v0.0.0-master and kubectl warns about version skew. */
function kubernetesStamp(v: string): string[] {
  const [, minor] = /^v1\.(\d+)\./.exec(v) ?? [];
  if (minor === undefined) throw new Error(`k8s.io/kubernetes: unexpected version ${v}`);
  const pkg = 'k8s.io/component-base/version';
  return [`-X ${pkg}.gitVersion=${v}`, `-X ${pkg}.gitMajor=1`, `-X ${pkg}.gitMinor=${minor}`];
}

export const COMPONENT_NAMES = Object.keys(COMPONENTS) as ComponentName[];
/** What the stack runs (`npm run stack -- up`, the demo); the rest are clients only the e2e tests drive. */
export const STACK_COMPONENT_NAMES: ComponentName[] = [
  'etcd',
  'jaeger',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kwok',
];

const MODULES_DIR = join(import.meta.dirname, 'go');
export const GO = process.env.KUBETRAIL_GO ?? (existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : 'go');

export function stackCacheDir(): string {
  return process.env.KUBETRAIL_STACK_CACHE ?? join(homedir(), '.cache', 'kubetrail-stack');
}

export interface BuildOptions {
  cacheDir?: string;
  log?: (line: string) => void;
  /** Default: all of them. */
  components?: readonly ComponentName[];
}

export type Binaries = Partial<Record<ComponentName, string>>;

/** Returns the path of each component's binary, building those not in the cache yet (minutes each). */
export async function ensureBinaries(opts: BuildOptions = {}): Promise<Binaries> {
  const cacheDir = opts.cacheDir ?? stackCacheDir();
  const log = opts.log ?? ((line: string) => process.stderr.write(`[stack] ${line}\n`));
  const goVersion = goEnv('GOVERSION');
  const out: Binaries = {};
  for (const name of opts.components ?? COMPONENT_NAMES) out[name] = await ensureBinary(name, goVersion, cacheDir, log);
  return out;
}

/**
 * Where the Go module cache holds the source of a component's pinned module (extracted by its build):
 * the stack reads kwok's stock Stage definitions from there rather than copying them into the repository.
 */
export function moduleSourceDir(name: ComponentName, cacheDir = stackCacheDir()): string {
  const { module } = COMPONENTS[name];
  // The module cache escapes upper-case letters as '!' + lower case.
  const escaped = module.replace(/[A-Z]/g, (c) => `!${c.toLowerCase()}`);
  return join(cacheDir, 'gomod', `${escaped}@${pinnedVersion(name)}`);
}

function pinnedVersion(name: ComponentName): string {
  const c = COMPONENTS[name];
  const goMod = readFileSync(join(MODULES_DIR, c.dir ?? name, 'go.mod'), 'utf8');
  const version = new RegExp(`^\\s*(?:require\\s+)?${c.module.replaceAll('.', '\\.')}\\s+(v\\S+)`, 'm').exec(
    goMod,
  )?.[1];
  if (version === undefined)
    throw new Error(`build: ${join(MODULES_DIR, c.dir ?? name)}/go.mod does not require ${c.module}`);
  return version;
}

function goEnv(key: string): string {
  try {
    return execFileSync(GO, ['env', key], { encoding: 'utf8', env: { ...process.env, GOTOOLCHAIN: 'local' } }).trim();
  } catch (err) {
    throw new Error(`build: cannot run Go (${GO}; set KUBETRAIL_GO): ${(err as Error).message}`);
  }
}

/** True when every named component's binary is in the cache for the current go.mod/go.sum and Go. */
export function isBuilt(
  components: readonly ComponentName[] = STACK_COMPONENT_NAMES,
  cacheDir = stackCacheDir(),
): boolean {
  const goVersion = goEnv('GOVERSION');
  return components.every((name) => existsSync(buildPlan(name, goVersion, cacheDir).bin));
}

/** Where a component's binary goes and how it is built: the cache key is the version, Go and a hash of what goes in. */
function buildPlan(name: ComponentName, goVersion: string, cacheDir: string) {
  const c = COMPONENTS[name];
  const modDir = join(MODULES_DIR, c.dir ?? name);
  const version = pinnedVersion(name);
  const args = [
    'build',
    '-trimpath',
    '-buildvcs=false',
    '-ldflags',
    ['-s', '-w', ...(c.stamp?.(version) ?? [])].join(' '),
  ];
  const h = createHash('sha256')
    .update(readFileSync(join(modDir, 'go.mod')))
    .update(readFileSync(join(modDir, 'go.sum')));
  // A program of ours: its source is part of what goes in (the wrappers have none, so their keys stay).
  if (c.pkg === LOCAL)
    for (const f of readdirSync(modDir)
      .filter((f) => f.endsWith('.go'))
      .sort())
      h.update(f).update(readFileSync(join(modDir, f)));
  const hash = h.update(args.join('\0')).digest('hex').slice(0, 12);
  const dir = join(cacheDir, 'bin', `${name}-${version}-${goVersion}-${hash}`);
  return { c, modDir, version, args, dir, bin: join(dir, name) };
}

async function ensureBinary(
  name: ComponentName,
  goVersion: string,
  cacheDir: string,
  log: (line: string) => void,
): Promise<string> {
  const { c, modDir, version, args, dir, bin } = buildPlan(name, goVersion, cacheDir);
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
  const named = process.argv.slice(2);
  const unknown = named.filter((n) => !(COMPONENT_NAMES as string[]).includes(n));
  if (unknown.length > 0) {
    console.error(`build: unknown component ${unknown.join(', ')} (known: ${COMPONENT_NAMES.join(' ')})`);
    process.exit(2);
  }
  const components = named.length > 0 ? (named as ComponentName[]) : COMPONENT_NAMES;
  const started = Date.now();
  const bins = await ensureBinaries({ components });
  for (const name of components) console.log(`${name}\t${bins[name] ?? ''}`);
  console.error(`[stack] binaries ready in ${Math.round((Date.now() - started) / 1000)}s`);
}
