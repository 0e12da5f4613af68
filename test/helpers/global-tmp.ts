/**
 * Vitest global setup: every test file's temporary directories (fresh HOMEs, state dirs, kubeconfigs,
 * the stack's run dir) go under one directory per run, removed when the run ends, so no run leaves
 * thousands of directories behind in /tmp. Workers and the processes they start inherit TMPDIR.
 *
 * Wrapped commands at a fixed port start background kubetrails (--linger) that outlive them; at the end of
 * the run every one whose state dir is under this run's directory is stopped, so a run leaks no process.
 */
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The pid runs and is not a zombie. Kept apart from src/cli/background-state.ts: tests check the product's view. */
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
      const st = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { pid?: unknown; kind?: unknown; procStart?: unknown };
      // Only the process that wrote the state: a test that leaves a stale state behind (a killed background
      // kubetrail) may have its pid reused by something else by now.
      if (typeof st.pid === 'number' && alive(st.pid) && (typeof st.procStart !== 'string' || st.procStart === procStart(st.pid))) pids.push(st.pid);
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

export default function setup(): () => Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'kubetrail-test-'));
  // Traversable, not listable: the packaging test runs the image's command as an unprivileged user
  // from a tree under here, as /tmp itself would allow.
  chmodSync(dir, 0o711);
  process.env.TMPDIR = dir;
  return async () => {
    await stopBackgroundKubetrails(dir);
    rmSync(dir, { recursive: true, force: true });
  };
}
