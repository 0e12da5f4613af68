/**
 * What a wrapped command and the background kubetrail it uses share on disk, in the private state dir:
 *
 *   background/<addr>.json        the running kubetrail: pid, its start time and a random instance id, address,
 *                                 configuration fingerprint, the files it read (with digests), the kubeconfig
 *                                 template (written last, atomically)
 *   background/<addr>.lock        held (O_EXCL) by the one wrapper that is starting a background kubetrail
 *   background/<addr>.<instance>.kubeconfig  that instance's rewritten kubeconfig, every tls-server-name
 *                                 carrying a placeholder tag
 *   background/<addr>.log         the background kubetrail's stdout and stderr
 *   background/<addr>.sock        control calls without TLS (background-server.ts)
 *   background/commands/<addr>.<pid>-<tag>.yaml   one wrapped command's kubeconfig (its marker: written before
 *                                 its last look at the state file), removed when it ends
 *   control-token                 authorizes control calls (finish a command, stop)
 *
 * Imported by the wrapper's fast path: Node built-ins only, nothing that loads YAML, OpenTelemetry or X.509.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/schema.ts';
import { ensurePrivateDir, readPrivateText, readPrivateTextQuietly, removeQuietly, writePrivateFile } from '../fs/private.ts';
import { VERSION } from '../version.ts';

/** Same value as proxy/server.ts's CONTROL_PREFIX (a unit test keeps them equal); not imported from there to keep the fast path light. */
export const CONTROL_PREFIX = '/.kubetrail/v1/';
export const TOKEN_HEADER = 'x-kubetrail-token';
/** The wrapper hands the background kubetrail its resolved configuration in this variable. */
export const BACKGROUND_CONFIG_ENV = 'KUBETRAIL_BACKGROUND_CONFIG';

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

export interface BackgroundPaths {
  stateDir: string;
  /** The address as a file name part. */
  key: string;
  dir: string;
  state: string;
  lock: string;
  template: string;
  log: string;
  socket: string;
  commands: string;
  token: string;
}

export function backgroundPaths(stateDir: string, host: string, port: number): BackgroundPaths {
  const dir = join(stateDir, 'background');
  const key = `${host.replace(/[^0-9A-Za-z.]/g, '_')}-${port}`;
  return {
    stateDir,
    key,
    dir,
    state: join(dir, `${key}.json`),
    lock: join(dir, `${key}.lock`),
    template: join(dir, `${key}.kubeconfig`),
    log: join(dir, `${key}.log`),
    socket: join(dir, `${key}.sock`),
    commands: join(dir, 'commands'),
    token: join(stateDir, 'control-token'),
  };
}

/** An instance's kubeconfig template (per instance: a replacement never overwrites one a wrapper is reading). */
export function templatePath(paths: BackgroundPaths, instance: string): string {
  return join(paths.dir, `${paths.key}.${instance}.kubeconfig`);
}

/** A wrapped command's kubeconfig, which also tells the address's kubetrail that the command is alive. */
export function markerName(key: string, pid: number, tag: string): string {
  return `${key}.${pid}-${tag}.yaml`;
}

/**
 * Written by a kubetrail that stops while the tagged command has a request open: the command's stream was
 * cut, and its wrapper says so and exits non-zero, never as if the stream had ended cleanly.
 */
export function cutMarker(paths: BackgroundPaths, tag: string): string {
  return join(paths.commands, `${paths.key}.${tag}.cut`);
}

/** [key, pid, tag] of a marker file name (key undefined: an older version's `<pid>-<tag>.yaml`). */
export function parseMarker(name: string): [string | undefined, number, string] | undefined {
  const m = /^(?:(.+)\.)?(\d+)-([0-9a-z]+)\.yaml$/.exec(name);
  return m ? [m[1], Number(m[2]), m[3] ?? ''] : undefined;
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
    .filter((e): e is [string, string] => e[1] !== undefined && (e[0].startsWith('OTEL_') || e[0] === 'NODE_EXTRA_CA_CERTS'))
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Relative paths made absolute (the background kubetrail runs from `/`), KUBECONFIG as the resolved list:
 * the configuration a background kubetrail is started with, and the one a wrapper compares with it.
 */
export function resolveForBackground(config: Config, env: NodeJS.ProcessEnv): { config: Config; env: NodeJS.ProcessEnv } {
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
  return createHash('sha256').update(JSON.stringify([config.otlpEndpoint, config.jaegerUrl, otel])).digest('hex');
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

/** The fields of /proc/<pid>/stat after the command name (field 3 first), or undefined without /proc. */
function procStat(pid: number): string[] | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name may hold spaces and parentheses: the fields start after its last ')'.
  return text.slice(text.lastIndexOf(')') + 1).trim().split(' ');
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    // ESRCH: gone. EPERM: alive but another user's (a reused pid), so not ours either.
    return false;
  }
  // A killed background kubetrail whose parent (init, in some containers) does not reap it stays a zombie.
  return procStat(pid)?.[0] !== 'Z';
}

/** A kubetrail's command line: its bin (kubetrail, kubectl-trail; .js/.ts) is one of the arguments. */
const KUBETRAIL_ARG = /(^|\/)(kubetrail|kubectl-trail)(\.[cm]?[jt]s)?$/;

/**
 * Is `pid` a live kubetrail, and (when `start` is known) the same process that recorded `start`? A lock or
 * state naming a pid that an unrelated process reuses is stale, never waited for. Without /proc, the pid's
 * liveness is all there is.
 */
export function kubetrailAlive(pid: number, start: string | undefined): boolean {
  if (!pidAlive(pid)) return false;
  if (start !== undefined && start !== '-' && /^\d+$/.test(start)) {
    const now = procStartTime(pid);
    if (now !== undefined && now !== start) return false;
  }
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return true;
  }
  return cmdline.split('\0').some((a) => KUBETRAIL_ARG.test(a));
}

/** When the process started (clock ticks since boot: field 22 of /proc/<pid>/stat); undefined without /proc. */
export function procStartTime(pid: number): string | undefined {
  return procStat(pid)?.[19];
}

/**
 * Is the state's pid still the process that wrote it? After an unclean exit (SIGKILL, OOM, a reboot with a
 * persistent state dir) the pid can belong to any other process of this user. false: it is not (or it is
 * gone); undefined: cannot tell here (no /proc, or an older version's state), ask it (background.ts owned).
 */
export function sameProcess(st: Pick<BackgroundState, 'pid' | 'procStart'>): boolean | undefined {
  if (!pidAlive(st.pid)) return false;
  if (typeof st.procStart !== 'string') return undefined;
  const now = procStartTime(st.pid);
  return now === undefined ? undefined : now === st.procStart;
}

/** Same kubetrail process, same state (a replacement's state names another instance). */
export function sameInstance(a: BackgroundState | undefined, b: BackgroundState): boolean {
  return a !== undefined && a.pid === b.pid && a.instance === b.instance && a.startedAt === b.startedAt;
}

/** The state dir and one of its subdirectories, each this user's alone (src/fs/private.ts). */
export function privateDir(stateDir: string, dir: string): void {
  ensurePrivateDir(stateDir);
  ensurePrivateDir(dir);
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

export { removeQuietly };

/** The state dir's control token, created (0600, exclusively) by the first kubetrail that needs one. */
export function ensureToken(path: string): string {
  // A token file that is not ours (a symlink, another user's) is refused here, not silently replaced.
  const existing = readPrivateText(path)?.trim();
  if (existing) return existing;
  try {
    writePrivate(path, `${randomBytes(32).toString('hex')}\n`, true);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const token = readToken(path);
  if (!token) throw new Error(`${path}: empty control token`);
  return token;
}

export function readToken(path: string): string | undefined {
  const t = readPrivateTextQuietly(path)?.trim();
  return t === '' ? undefined : t;
}

/** Constant-time comparison (over digests, so lengths never leak either). */
export function tokenMatches(expected: string, given: string | string[] | undefined): boolean {
  if (typeof given !== 'string') return false;
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}

/** A command tag: 10 characters of [0-9a-z] (proxy/routing.ts isCommandTag). */
export function randomTag(): string {
  const bytes = randomBytes(10);
  let s = '';
  for (const b of bytes) s += '0123456789abcdefghijklmnopqrstuvwxyz'[b % 36];
  return s;
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** What a busy kubetrail serves, for a line: `1 command running, 2 requests open`. */
export function busyText(b: { open: number; wrappers: number }): string {
  return [b.wrappers > 0 ? `${plural(b.wrappers, 'command', 'commands')} running` : '', b.open > 0 ? `${plural(b.open, 'request', 'requests')} open` : ''].filter(Boolean).join(', ');
}
