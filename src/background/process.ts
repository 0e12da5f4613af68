/**
 * Is a recorded pid still the kubetrail that recorded it? After an unclean exit (SIGKILL, OOM, a reboot with
 * a persistent state dir) the pid can belong to any other process of this user: such a pid is never
 * signalled, waited for or trusted. Linux answers from /proc; elsewhere the pid's liveness is all there is.
 *
 * Imported by the wrapper's fast path (eslint.config.js lists it): Node built-ins only.
 */
import { readFileSync } from 'node:fs';

/** The fields of /proc/<pid>/stat after the command name (field 3 first), or undefined without /proc. */
function procStat(pid: number): string[] | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name may hold spaces and parentheses: the fields start after its last ')'.
  return text
    .slice(text.lastIndexOf(')') + 1)
    .trim()
    .split(' ');
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
 * Is the recorded pid still the process that recorded `procStart`? false: it is not (or it is gone);
 * undefined: cannot tell here (no /proc, or an older version's state), ask it (client.ts owned).
 */
export function sameProcess(st: { pid: number; procStart?: string | null | undefined }): boolean | undefined {
  if (!pidAlive(st.pid)) return false;
  if (typeof st.procStart !== 'string') return undefined;
  const now = procStartTime(st.pid);
  return now === undefined ? undefined : now === st.procStart;
}
