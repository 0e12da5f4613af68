/**
 * Vitest global setup: every test file's temporary directories (fresh HOMEs, state dirs, kubeconfigs,
 * the stack's run dir) go under one directory per run, removed when the run ends, so no run leaves
 * thousands of directories behind in /tmp. Workers and the processes they start inherit TMPDIR.
 *
 * Wrapped commands at a fixed port start background kubetrails (--linger) that outlive them; at the end of
 * the run every one whose state dir is under this run's directory is stopped, so a run leaks no process.
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';

/** The pid runs and is not a zombie. Kept apart from src/background/process.ts: tests check the product's view. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

/** Field 22 of /proc/<pid>/stat: the process's start time, which a reused pid does not share. */
function procStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/** Pids of the background kubetrails recorded under `dir` (state dirs' background/<addr>.json). */
export function backgroundKubetrails(dir: string): number[] {
  let files: string[];
  try {
    files = readdirSync(dir, { recursive: true, encoding: 'utf8' });
  } catch {
    return [];
  }
  const pids: number[] = [];
  for (const f of files) {
    if (!/(^|\/)background\/[^/]+\.json$/.test(f)) continue;
    try {
      const st = JSON.parse(readFileSync(join(dir, f), 'utf8')) as {
        pid?: unknown;
        kind?: unknown;
        procStart?: unknown;
      };
      // Only the process that wrote the state: a test that leaves a stale state behind (a killed background
      // kubetrail) may have its pid reused by something else by now.
      if (
        typeof st.pid === 'number' &&
        alive(st.pid) &&
        (typeof st.procStart !== 'string' || st.procStart === procStart(st.pid))
      )
        pids.push(st.pid);
    } catch {
      // half-written or not ours
    }
  }
  return pids;
}

export async function stopBackgroundKubetrails(dir: string): Promise<number> {
  const pids = backgroundKubetrails(dir);
  for (const pid of pids) process.kill(pid, 'SIGTERM');
  const until = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  for (const pid of pids.filter(alive)) process.kill(pid, 'SIGKILL');
  return pids.length;
}

/** Test-run knobs a caller may set on purpose (where the built stack is, a fault report); nothing else of theirs. */
const TEST_KNOBS = new Set(['KUBETRAIL_STACK_CACHE', 'KUBETRAIL_GO', 'KUBETRAIL_FAULT_REPORT']);

/**
 * The caller's environment must not reach the tests: their KUBETRAIL_* and OTEL_* settings, KUBECONFIG,
 * config and state homes (a shell with KUBETRAIL_LISTEN or KUBETRAIL_STATE_DIR set would otherwise move
 * the README commands' port and state), and HOME (a kubetrail started without a state dir would keep its
 * files, and a background kubetrail, in the caller's). Caches stay the caller's, pinned by path: the built
 * stack (with its Go caches), npm's cache (tests install offline from it).
 */
export function isolate(env: NodeJS.ProcessEnv, home: string): void {
  const realHome = env.HOME || homedir();
  const cacheHome = env.XDG_CACHE_HOME || join(realHome, '.cache');
  env.KUBETRAIL_STACK_CACHE ||= join(cacheHome, 'kubetrail-stack');
  env.npm_config_cache ||= join(realHome, '.npm');
  for (const name of Object.keys(env)) {
    if (
      (name.startsWith('KUBETRAIL_') && !TEST_KNOBS.has(name)) ||
      name.startsWith('OTEL_') ||
      ['KUBECONFIG', 'XDG_CONFIG_HOME', 'XDG_STATE_HOME', 'XDG_CACHE_HOME', 'NO_COLOR'].includes(name)
    )
      delete env[name];
  }
  mkdirSync(home, { mode: 0o700 });
  env.HOME = home;
}

export default function setup(): () => Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kubetrail-test-'));
  // Traversable, not listable: the packaging test runs the image's command as an unprivileged user
  // from a tree under here, as /tmp itself would allow.
  chmodSync(dir, 0o711);
  process.env.TMPDIR = dir;
  isolate(process.env, join(dir, 'home'));
  return async () => {
    await stopBackgroundKubetrails(dir);
    rmSync(dir, { recursive: true, force: true });
  };
}
