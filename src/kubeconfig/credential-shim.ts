/**
 * Timing kubectl's exec credential plugins (`gke-gcloud-auth-plugin`, `aws eks get-token`, `kubelogin`).
 * kubectl runs them itself, before its first request, so the proxy never sees them. The rewritten
 * kubeconfig runs each `users[].user.exec` plugin through a small POSIX sh script of ours instead:
 *
 *   args: [--kubetrail-timing=<timing file>, <the plugin's command>, <its args>...]
 *
 * The shim runs the plugin as its child with the same stdin, stdout, stderr, environment (kubectl's, with
 * the kubeconfig's `env` and KUBERNETES_EXEC_INFO) and terminal, returns its exit code, and appends one
 * line to the timing file: when it started and ended, its exit code and the command's base name. Never
 * its arguments, environment or output. sh, not Node: a Node start would cost ~40 ms per credential; the
 * shim costs one `sh` start (`npm run bench:shim`; docs/findings.md has the figures).
 *
 * client-go names the command in its errors (`exec: executable <command> failed with exit code 1`), so
 * where the shim is found matters to what kubectl prints:
 * - **On PATH** (a wrapped command: kubetrail starts kubectl and sets its PATH). The command stays the
 *   plugin's bare name; `<state dir>/bin/on-path/<name>` is the shim, and that directory goes first on
 *   kubectl's PATH. kubectl's error names the plugin exactly as without kubetrail. The shim takes its
 *   directory off PATH again before it runs the plugin, so the plugin is found on, and sees, kubectl's PATH
 *   as it was: never the shim itself, even when the name is also a real program's. A plugin given by path
 *   (`/usr/local/bin/doctl`) cannot be reached this way without changing the path kubectl prints, and a
 *   plugin whose `env` sets PATH would be looked up on another PATH: both run as they are, untimed.
 * - **By path** (`kubetrail start` and `kubetrail kubeconfig`: kubectl is started by the user, with a PATH
 *   kubetrail cannot touch). The command is `<state dir>/bin/<hash>/<base name>`, a copy per plugin named
 *   after it: a failing plugin's error names that path (docs/findings.md says so).
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

/** The shim's first argument starts with this: the rest of it is the timing file. */
export const SHIM_MARKER = '--kubetrail-timing=';

/**
 * The shim. It must not cost a process per timestamp (a process start is ~1 ms idle, tens of ms on a busy
 * machine): the time is $EPOCHREALTIME where sh has it (bash 5, zsh), else Linux's /proc/uptime read by the
 * shell itself (10 ms steps; timing.ts turns it into wall time), else `date +%s%N` (one process; BSD date
 * prints `<seconds>N`, whole seconds). `now` runs in the shim's own shell, not in a $(...) subshell. The
 * umask is set only after the plugin has run, so the plugin keeps the caller's. Its variables are prefixed
 * `_kt_`: assigning one the environment already has would change what the plugin sees.
 *
 * Called without the marker, it was found on PATH by someone else (a kubectl plugin or editor kubectl
 * started, running a program of the same name): it hands over to that program untimed.
 */
export const SHIM_SCRIPT = `#!/bin/sh
# Written by kubetrail: runs a kubectl exec credential plugin and records when it ran (never its
# arguments, environment or output) in the timing file its first argument names. Everything else passes
# through. kubetrail put this directory first on kubectl's PATH: take it off, so the plugin is looked up
# on, and sees, kubectl's own PATH (and never finds this script).
_kt_d=\${0%/*}
case $PATH in "$_kt_d:"*) PATH=\${PATH#"$_kt_d:"} ;; esac
case :$PATH: in *":$_kt_d:"*)
  # Still there (a kubetrail inside a kubetrail): drop every copy.
  _kt_p=$PATH: PATH=
  while [ -n "$_kt_p" ]; do _kt_e=\${_kt_p%%:*}; _kt_p=\${_kt_p#*:}; [ "$_kt_e" = "$_kt_d" ] || PATH=\${PATH:+$PATH:}$_kt_e; done ;;
esac
case \${1-} in
${SHIM_MARKER}*) ;;
*) exec "\${0##*/}" "$@" ;;
esac
_kt_rec=\${1#${SHIM_MARKER}}; _kt_cmd=$2; shift 2
_kt_now() {
  if [ -n "\${EPOCHREALTIME:-}" ]; then _kt_t=$EPOCHREALTIME
  elif [ -r /proc/uptime ] && read -r _kt_t _kt_x </proc/uptime; then _kt_t=up$_kt_t
  else _kt_t=$(date +%s%N 2>/dev/null); fi
}
_kt_now; _kt_t0=$_kt_t
"$_kt_cmd" "$@"
_kt_rc=$?
_kt_now
umask 077
printf 'credential %s %s %s %s\\n' "$_kt_t0" "$_kt_t" "$_kt_rc" "\${_kt_cmd##*/}" >>"$_kt_rec" 2>/dev/null
exit $_kt_rc
`;

/** The directory a wrapped command's PATH starts with when its kubeconfig runs plugins through shims on PATH. */
export function shimPathDir(stateDir: string): string {
  return join(stateDir, 'bin', 'on-path');
}

/** kubectl's environment for a kubeconfig from rewriteKubeconfig: the shims' directory first on PATH when it has shims there. */
export function shimPathEnv(
  env: NodeJS.ProcessEnv,
  stateDir: string,
  kubeconfigText: string | undefined,
): NodeJS.ProcessEnv {
  if (!env.PATH || kubeconfigText === undefined || !kubeconfigText.includes(SHIM_MARKER)) return env;
  return { ...env, PATH: `${shimPathDir(stateDir)}${delimiter}${env.PATH}` };
}

export type ShimMode = 'on-path' | 'by-path';

/**
 * Install the shim for one plugin command and return the command the kubeconfig names, or undefined when
 * the stanza must be left alone: the command cannot be run from here (not found, not executable: kubectl
 * says so itself, with the plugin's installHint), or, on PATH, it is given by path.
 */
export function installShim(
  stateDir: string,
  command: string,
  path = process.env.PATH ?? '',
  mode: ShimMode = 'by-path',
): string | undefined {
  if (!runnable(command, path)) return undefined;
  if (mode === 'on-path') {
    if (command.includes('/')) return undefined;
    writeShim(join(shimPathDir(stateDir), command), stateDir);
    return command;
  }
  const shim = join(
    stateDir,
    'bin',
    createHash('sha256').update(command).digest('hex').slice(0, 12),
    basename(command),
  );
  writeShim(shim, stateDir);
  return shim;
}

function writeShim(shim: string, stateDir: string): void {
  ensurePrivateDir(timingDir(stateDir));
  try {
    const st = statSync(shim);
    if ((st.mode & 0o777) === 0o700 && readFileSync(shim, 'utf8') === SHIM_SCRIPT) return;
  } catch {
    // not there yet
  }
  writePrivateFile(shim, SHIM_SCRIPT, { executable: true });
}

/** As exec.Command would find it: a path as it is, a bare name on PATH. */
function runnable(command: string, path: string): boolean {
  const candidates = command.includes('/')
    ? [command]
    : path
        .split(delimiter)
        .filter(Boolean)
        .map((d) => join(d, command));
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
export function shimExec(
  exec: Record<string, unknown>,
  shim: { install: (command: string) => string | undefined; timingFile: string; mode?: ShimMode },
): Record<string, unknown> {
  const command = exec.command;
  if (typeof command !== 'string' || command === '') return exec;
  // The plugin's env sets PATH: kubectl looks the command up on its own PATH, the shim would on that one.
  if (
    shim.mode === 'on-path' &&
    Array.isArray(exec.env) &&
    exec.env.some((e) => (e as { name?: unknown } | null)?.name === 'PATH')
  )
    return exec;
  const path = shim.install(command);
  if (path === undefined) return exec;
  const args: unknown[] = Array.isArray(exec.args) ? (exec.args as unknown[]) : [];
  return { ...exec, command: path, args: [`${SHIM_MARKER}${shim.timingFile}`, command, ...args] };
}
