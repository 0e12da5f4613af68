/**
 * Timing kubectl's exec credential plugins (`gke-gcloud-auth-plugin`, `aws eks get-token`, `kubelogin`).
 * kubectl runs them itself, before its first request, so the proxy never sees them. The rewritten
 * kubeconfig runs each `users[].user.exec` plugin through a small POSIX sh script of ours instead:
 *
 *   command: <state dir>/bin/<hash>/<the plugin's base name>      (the shim)
 *   args:    [<timing file>, <the plugin's command>, <its args>...]
 *
 * The shim runs the plugin as its child with the same stdin, stdout, stderr, environment (kubectl's, with
 * the kubeconfig's `env` and KUBERNETES_EXEC_INFO) and terminal, returns its exit code, and appends one
 * line to the timing file: when it started and ended, its exit code and the command's base name. Never
 * its arguments, environment or output. sh, not Node: a Node start would cost ~40 ms per credential; the
 * shim costs one `sh` start (`npm run bench:shim`; docs/findings.md has the figures).
 *
 * Timing files live in `<state dir>/timing/` (0700; the shim creates its lines' file 0600): one per
 * wrapped command (`<tag>`, with the line `spawn <epoch ms>` the wrapper writes before starting kubectl)
 * and `untagged` for kubeconfigs shared by many commands (`kubetrail start`, the in-process wrap).
 */
import { createHash } from 'node:crypto';
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { basename, delimiter, join } from 'node:path';
import { timingDir } from './timing.ts';
import { ensurePrivateDir, writePrivateFile } from '../fs/private.ts';

/**
 * The shim. It must not cost a process per timestamp (a process start is ~1 ms idle, tens of ms on a busy
 * machine): the time is $EPOCHREALTIME where sh has it (bash 5, zsh), else Linux's /proc/uptime read by the
 * shell itself (10 ms steps; timing.ts turns it into wall time), else `date +%s%N` (one process; BSD date
 * prints `<seconds>N`, whole seconds). `now` runs in the shim's own shell, not in a $(...) subshell. The
 * umask is set only after the plugin has run, so the plugin keeps the caller's.
 */
export const SHIM_SCRIPT = `#!/bin/sh
# Written by kubetrail: runs a kubectl exec credential plugin and records when it ran (never its
# arguments, environment or output) in the timing file named first. Everything else passes through.
rec=$1; cmd=$2; shift 2
now() {
  if [ -n "\${EPOCHREALTIME:-}" ]; then t=$EPOCHREALTIME
  elif [ -r /proc/uptime ] && read -r t _ </proc/uptime; then t=up$t
  else t=$(date +%s%N 2>/dev/null); fi
}
now; t0=$t
"$cmd" "$@"
rc=$?
now; t1=$t
umask 077
printf 'credential %s %s %s %s\\n' "$t0" "$t1" "$rc" "\${cmd##*/}" >>"$rec" 2>/dev/null
exit $rc
`;

/**
 * Install the shim for one plugin command and return its path, or undefined when the command cannot be
 * run from here (not found, not executable): the stanza is then left alone, so kubectl says so itself,
 * with the plugin's installHint.
 *
 * Each plugin gets its own copy, named after the plugin, in `<stateDir>/bin/<hash>/` (0700): client-go
 * names the executable in its errors (`exec: executable <command> failed with exit code 1`), and the
 * user should read their plugin's name there, not ours.
 */
export function installShim(stateDir: string, command: string, path = process.env.PATH ?? ''): string | undefined {
  if (!runnable(command, path)) return undefined;
  const dir = join(stateDir, 'bin', createHash('sha256').update(command).digest('hex').slice(0, 12));
  const shim = join(dir, basename(command));
  ensurePrivateDir(timingDir(stateDir));
  try {
    const st = statSync(shim);
    if ((st.mode & 0o777) === 0o700 && readFileSync(shim, 'utf8') === SHIM_SCRIPT) return shim;
  } catch {
    // not there yet
  }
  writePrivateFile(shim, SHIM_SCRIPT, { executable: true });
  return shim;
}

/** As exec.Command would find it: a path as it is, a bare name on PATH. */
function runnable(command: string, path: string): boolean {
  const candidates = command.includes('/') ? [command] : path.split(delimiter).filter(Boolean).map((d) => join(d, command));
  return candidates.some((c) => {
    try {
      accessSync(c, constants.X_OK);
      return statSync(c).isFile();
    } catch {
      return false;
    }
  });
}

/** A user's `exec` stanza, run through the shim; its args and env stay in the kubeconfig, as they were. */
export function shimExec(exec: Record<string, unknown>, shim: { install: (command: string) => string | undefined; timingFile: string }): Record<string, unknown> {
  const command = exec.command;
  if (typeof command !== 'string' || command === '') return exec;
  const path = shim.install(command);
  if (path === undefined) return exec;
  const args: unknown[] = Array.isArray(exec.args) ? (exec.args as unknown[]) : [];
  return { ...exec, command: path, args: [shim.timingFile, command, ...args] };
}
