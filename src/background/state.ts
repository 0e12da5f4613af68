/**
 * The state file (paths.ts: `background/<addr>.json`) a running kubetrail publishes for wrapped commands,
 * and what decides whether a wrapper may use it: the configuration fingerprint and the digests of the files
 * it read.
 *
 * Imported by the wrapper's fast path (eslint.config.js lists it): Node built-ins only, nothing that loads
 * YAML, OpenTelemetry or X.509.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/schema.ts';
import { readPrivateTextQuietly, writePrivateFile } from '../fs/private.ts';
import { VERSION } from '../version.ts';
import { BACKGROUND_CONFIG_ENV } from './protocol.ts';

export interface BackgroundState {
  v: 1;
  /** Random per process: a pid can be reused, this cannot (absent in state files of older versions). */
  instance?: string;
  /** Field 22 of /proc/<pid>/stat when the state was written (null: no /proc). */
  procStart?: string | null;
  /** `linger`: started by a wrapped command, exits when idle. `start`: a foreground `kubetrail start`. */
  kind: 'linger' | 'start';
  pid: number;
  host: string;
  port: number;
  fingerprint: string;
  /** Every file whose content the running kubetrail depends on; null = did not exist. */
  files: { path: string; sha256: string | null }[];
  template: string;
  placeholder: string;
  /** Unix socket for control calls (no TLS), when the path fits. */
  socket: string | undefined;
  lingerMs: number;
  log: string | undefined;
  startedAt: number;
}

/** kubectl's kubeconfig file list (mirrors kubeconfigPaths in kubeconfig/load.ts, which a unit test compares). */
export function kubeconfigCandidates(explicitPath: string | undefined, env: NodeJS.ProcessEnv): string[] {
  if (explicitPath) return [resolve(explicitPath)];
  if (env.KUBECONFIG) {
    const seen = new Set<string>();
    for (const p of env.KUBECONFIG.split(delimiter)) if (p) seen.add(resolve(p));
    return [...seen];
  }
  return [resolve(env.HOME ?? homedir(), '.kube', 'config')];
}

/** Environment variables that change what a running kubetrail does, beyond its Config. */
function relevantEnv(env: NodeJS.ProcessEnv): [string, string][] {
  return Object.entries(env)
    .filter(
      (e): e is [string, string] => e[1] !== undefined && (e[0].startsWith('OTEL_') || e[0] === 'NODE_EXTRA_CA_CERTS'),
    )
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Relative paths made absolute (the background kubetrail runs from `/`), KUBECONFIG as the resolved list:
 * the configuration a background kubetrail is started with, and the one a wrapper compares with it.
 */
export function resolveForBackground(
  config: Config,
  env: NodeJS.ProcessEnv,
): { config: Config; env: NodeJS.ProcessEnv } {
  const out: Record<string, unknown> = { ...config, stateDir: resolve(config.stateDir) };
  if (config.kubeconfig !== undefined) out.kubeconfig = resolve(config.kubeconfig);
  const e: NodeJS.ProcessEnv = { ...env };
  if (config.kubeconfig === undefined) {
    const list = kubeconfigCandidates(undefined, env);
    if (env.KUBECONFIG) e.KUBECONFIG = list.join(delimiter);
    else e.HOME = resolve(env.HOME ?? homedir());
  }
  delete e[BACKGROUND_CONFIG_ENV];
  return { config: Object.freeze(out) as Config, env: e };
}

/**
 * One hash over everything that decides which clusters, credentials and collector a kubetrail serves. A
 * wrapper uses a background kubetrail only when its fingerprint is equal and the files it read are unchanged.
 * `quiet` (the wrapper prints) and `linger` (how long it stays) are left out.
 */
export function fingerprint(config: Config, env: NodeJS.ProcessEnv): string {
  const spec = {
    version: VERSION,
    // This installation's code (another checkout, a rebuild, an upgrade in place): never an older kubetrail.
    code: codeStamp(),
    listen: config.listen,
    allowNonLoopback: config.allowNonLoopback,
    stateDir: config.stateDir,
    kubeconfigs: kubeconfigCandidates(config.kubeconfig, env),
    explicit: config.kubeconfig !== undefined,
    context: config.context ?? null,
    otlpEndpoint: config.otlpEndpoint,
    jaegerUrl: config.jaegerUrl,
    sessionIdleMs: config.sessionIdleMs,
    reuseUpstream: config.reuseUpstream,
    env: relevantEnv(env),
  };
  return createHash('sha256').update(JSON.stringify(spec)).digest('hex');
}

/**
 * Where a kubetrail sends a command's spans and what its trace links point at: a wrapped command is served
 * by another kubetrail only when this is equal (else its spans would go to a collector it did not ask for).
 */
export function telemetryKey(config: Pick<Config, 'otlpEndpoint' | 'jaegerUrl'>, env: NodeJS.ProcessEnv): string {
  const otel = relevantEnv(env).filter(([k]) => k.startsWith('OTEL_'));
  return createHash('sha256')
    .update(JSON.stringify([config.otlpEndpoint, config.jaegerUrl, otel]))
    .digest('hex');
}

function codeStamp(): string {
  const file = fileURLToPath(import.meta.url);
  try {
    return `${file}@${statSync(file).mtimeMs}`;
  } catch {
    return file;
  }
}

export function fileDigest(path: string): string | null {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return null;
  }
}

export function filesUnchanged(files: BackgroundState['files']): boolean {
  return files.every((f) => fileDigest(f.path) === f.sha256);
}

/** A state file that is not a private file of ours (a symlink, another user's) is no state. */
export function readState(path: string): BackgroundState | undefined {
  try {
    const s = JSON.parse(readPrivateTextQuietly(path) ?? '') as BackgroundState;
    return s.v === 1 && Number.isSafeInteger(s.pid) && typeof s.fingerprint === 'string' ? s : undefined;
  } catch {
    return undefined;
  }
}

/** A wrapped command's kubeconfig: the instance's template with this command's tag; undefined when the
 * template is gone or not this instance's (no placeholder). */
export function commandKubeconfig(st: BackgroundState, tag: string): string | undefined {
  const template = readPrivateTextQuietly(st.template);
  return template?.includes(st.placeholder) ? template.replaceAll(st.placeholder, tag) : undefined;
}

/** Same kubetrail process, same state (a replacement's state names another instance). */
export function sameInstance(a: BackgroundState | undefined, b: BackgroundState): boolean {
  return a !== undefined && a.pid === b.pid && a.instance === b.instance && a.startedAt === b.startedAt;
}

/**
 * Create `path` 0600 with `content`, in full; with `exclusive`, fail (EEXIST) when it exists, else replace
 * it atomically (a reader sees the old file or the new one). No fsync: these are runtime files.
 */
export function writePrivate(path: string, content: string, exclusive: boolean): void {
  if (!writePrivateFile(path, content, { exclusive, durable: false })) {
    throw Object.assign(new Error(`${path} exists`), { code: 'EEXIST' });
  }
}

/** Replace `path` atomically (a reader sees the old file or the new one), 0600. */
export function replacePrivate(path: string, content: string): void {
  writePrivate(path, content, false);
}
