/**
 * Where a wrapped command and the background kubetrail it uses meet on disk, in the private state dir:
 *
 *   background/<addr>.json        the running kubetrail (state.ts): pid, its start time and a random instance
 *                                 id, address, configuration fingerprint, the files it read (with digests),
 *                                 the kubeconfig template (written last, atomically)
 *   background/<addr>.lock        held (O_EXCL) by the one wrapper that is starting a background kubetrail
 *   background/<addr>.<instance>.kubeconfig  that instance's rewritten kubeconfig, every tls-server-name
 *                                 carrying a placeholder tag
 *   background/<addr>.log         the background kubetrail's stdout and stderr
 *   background/<addr>.sock        control calls without TLS (control.ts)
 *   background/<addr>.fifo        the launcher's requests (bin/kubetrail, launcher.ts): a line each
 *   background/commands/<addr>.<pid>-<tag>.yaml   one wrapped command's kubeconfig (its marker: written before
 *                                 its last look at the state file), removed when it ends
 *   background/commands/<addr>.<pid>-<tag>.req   a launched command's argv and environment (launcher.ts)
 *   background/commands/<addr>.<pid>-<tag>.fifo  the launcher's end of that command's answers
 *   control-token                 authorizes control calls (finish a command, stop): token.ts
 *
 * Imported by the wrapper's fast path (eslint.config.js lists it): Node built-ins only.
 */
import { join } from 'node:path';
import { ensurePrivateDir } from '../fs/private.ts';

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
  /** The launcher's request FIFO (launcher.ts). */
  fifo: string;
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
    fifo: join(dir, `${key}.fifo`),
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

/** A launched command's request file and answer FIFO (bin/kubetrail makes both; launcher.ts reads them). */
export function launchFiles(paths: BackgroundPaths, pid: number, tag: string): { request: string; answers: string } {
  const base = join(paths.commands, `${paths.key}.${pid}-${tag}`);
  return { request: `${base}.req`, answers: `${base}.fifo` };
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

/** The state dir and one of its subdirectories, each this user's alone (src/fs/private.ts). */
export function privateDir(stateDir: string, dir: string): void {
  ensurePrivateDir(stateDir);
  ensurePrivateDir(dir);
}
