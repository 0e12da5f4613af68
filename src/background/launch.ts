/**
 * Starting the background kubetrail (`kubetrail __background`, daemon.ts): detached, in its own session,
 * its stdout and stderr appended to its private log, its configuration in BACKGROUND_CONFIG_ENV; it says on
 * descriptor 3 whether it serves.
 *
 * Imported by the wrapper's fast path (eslint.config.js lists it): Node built-ins only.
 */
import { spawn } from 'node:child_process';
import { closeSync, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Config } from '../config/schema.ts';
import { openPrivateAppend } from '../fs/private.ts';
import { chooseAllocator, withAllocator } from '../cli/allocator.ts';
import { NODE_FLAGS } from '../cli/node-flags.ts';
import { privateDir, type BackgroundPaths } from './paths.ts';
import { pidAlive } from './process.ts';
import { BACKGROUND_CONFIG_ENV } from './protocol.ts';
import { readState, type BackgroundState } from './state.ts';

const LOG_MAX_BYTES = 1 << 20;
/** How long a background kubetrail may take to come up (a wrapper waits as long for another one's). */
export const START_WAIT_MS = 30_000;

export type Started = { ok: true; state: BackgroundState } | { ok: false; code: string; message: string };

/** Start the background kubetrail (this wrapper holds the lock) and wait until it serves or fails. */
export async function spawnBackground(
  config: Config,
  env: NodeJS.ProcessEnv,
  paths: BackgroundPaths,
): Promise<Started> {
  const allocator = chooseAllocator(env);
  if ('problem' in allocator) return { ok: false, code: 'KT_ERR_CONFIG_INVALID', message: allocator.problem };
  privateDir(paths.stateDir, paths.dir);
  let size = 0;
  try {
    size = statSync(paths.log).size;
  } catch {
    // new log
  }
  // Never through a symlink or into another user's file (it would be truncated and re-moded).
  const logFd = openPrivateAppend(paths.log, size > LOG_MAX_BYTES);
  const here = fileURLToPath(import.meta.url);
  const bin = fileURLToPath(new URL(`../bin/kubetrail${extname(here)}`, import.meta.url));
  const child = spawn(process.execPath, [...NODE_FLAGS, bin, '__background'], {
    detached: true,
    cwd: '/',
    stdio: ['ignore', logFd, logFd, 'pipe'],
    // mimalloc when KUBETRAIL_ALLOCATOR asks for it (cli/allocator.ts).
    env: withAllocator({ ...env, [BACKGROUND_CONFIG_ENV]: JSON.stringify(config) }, allocator.lib),
  });
  closeSync(logFd);
  const pipe = child.stdio[3] as Socket;
  const answer = await new Promise<{ ok: boolean; code?: string; message?: string } | undefined>((resolve) => {
    let text = '';
    const timer = setTimeout(() => resolve(undefined), START_WAIT_MS);
    pipe.on('data', (c: Buffer) => {
      text += c.toString();
      const nl = text.indexOf('\n');
      if (nl === -1) return;
      clearTimeout(timer);
      try {
        resolve(JSON.parse(text.slice(0, nl)) as { ok: boolean; code?: string; message?: string });
      } catch {
        resolve(undefined);
      }
    });
    pipe.on('error', () => undefined);
    pipe.on('close', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    child.on('error', () => resolve(undefined));
  });
  pipe.destroy();
  child.unref();
  if (answer?.ok) {
    const state = readState(paths.state);
    if (state && state.pid === child.pid) return { ok: true, state };
    return { ok: false, code: 'GONE', message: 'it wrote no state file' };
  }
  if (answer === undefined && child.pid !== undefined && pidAlive(child.pid)) process.kill(child.pid, 'SIGTERM');
  return {
    ok: false,
    code: answer?.code ?? 'GONE',
    message: answer?.message ?? `it exited without saying why (see ${paths.log})`,
  };
}
