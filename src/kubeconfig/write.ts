/**
 * Private files: created 0600 from the first byte (no chmod window), in a 0700 directory, replaced
 * atomically so a reader never sees half a file.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, linkSync, mkdirSync, openSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { KtError } from '../errors.ts';
import type { Entry } from './load.ts';

export function ensurePrivateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const st = statSync(dir);
    if (!st.isDirectory()) throw new Error('not a directory');
    // mkdir's mode is filtered by the umask and does not touch an existing directory: make sure.
    if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
  } catch (err) {
    throw new KtError('KT_ERR_STATE_DIR', `state dir ${dir}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Write `file` atomically with mode 0600. With `exclusive`, never replace an existing file: returns false
 * when another process created it first (so two kubetrails starting at once agree on one CA).
 */
export function writePrivateFile(file: string, content: string | Buffer, opts: { exclusive?: boolean; executable?: boolean } = {}): boolean {
  ensurePrivateDir(dirname(file));
  const tmp = join(dirname(file), `.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    // An executable (the credential shim) is the owner's alone too: 0700 from the first byte.
    fd = openSync(tmp, 'wx', opts.executable === true ? 0o700 : 0o600);
    writeSync(fd, typeof content === 'string' ? Buffer.from(content) : content);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    if (opts.exclusive) {
      try {
        linkSync(tmp, file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        return false;
      } finally {
        unlinkSync(tmp);
      }
    } else {
      renameSync(tmp, file);
    }
    return true;
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw new KtError('KT_ERR_STATE_DIR', `cannot write ${file}: ${(err as Error).message}`, { cause: err });
  }
}

export function writeKubeconfig(file: string, config: Entry): void {
  writePrivateFile(file, `# Written by kubetrail; every cluster points at the local kubetrail proxy.\n${stringify(config)}`);
}
