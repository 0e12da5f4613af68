/**
 * Private files and directories: everything kubetrail writes into its state dir, or reads from it and then
 * trusts (its CA, the control token, a background kubetrail's state and kubeconfig template).
 *
 * - A directory is used only when it belongs to this user and nobody else can write to it (as ssh's
 *   StrictModes): another user who can write there could swap a kubeconfig for one that runs their code.
 *   One that others can only read or list is tightened to 0700 (it is ours to tighten).
 * - A file is created 0600 from its first byte, exclusively (O_EXCL: a symlink in its place is never
 *   followed), written in full (a short write is continued, a full disk is an error), and renamed into place:
 *   a reader sees the old file or the new one, never half of one; on an error the old file stays.
 * - A file is trusted only when it is a regular file of this user's, not a symlink, that nobody else can
 *   write to; what is read is the file that was checked (its device and inode compared after opening).
 *
 * Node built-ins and errors.ts only: the wrapped command's fast path imports it.
 */
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  fchmodSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { KtError } from '../errors.ts';

function myUid(): number | undefined {
  return process.getuid?.();
}

function octal(mode: number): string {
  return (mode & 0o777).toString(8).padStart(4, '0');
}

function stateDirError(message: string, cause?: unknown): KtError {
  return new KtError('KT_ERR_STATE_DIR', message, cause === undefined ? undefined : { cause });
}

/** Why `st` (a directory or a file) cannot be trusted, or undefined when it can. */
function untrusted(path: string, st: Stats): string | undefined {
  const uid = myUid();
  if (uid !== undefined && st.uid !== uid) return `${path} belongs to uid ${st.uid}, not to you (uid ${uid})`;
  if ((st.mode & 0o022) !== 0) return `${path} is ${octal(st.mode)}: others can write to it`;
  return undefined;
}

/**
 * `mkdir -p`, one level at a time, each new level with `mode`. Not Node's `mkdirSync(…, { recursive })`:
 * under a directory that answers ENOENT for every new name (/proc, /sys) its loop takes the ENOENT to mean
 * "make the parent first" and never returns (Node 24.21, measured: `--state-dir /proc/x` spun at 100% CPU).
 * Here the first level that cannot be made throws, naming itself.
 */
function makeDirs(dir: string, mode: number): void {
  const missing: string[] = [];
  for (let cur = resolve(dir); ; cur = dirname(cur)) {
    try {
      statSync(cur);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    missing.push(cur);
    if (dirname(cur) === cur) break;
  }
  for (const level of missing.reverse()) {
    try {
      mkdirSync(level, { mode });
    } catch (err) {
      // Another process made it between our stat and our mkdir: fine, the checks below judge it.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

/**
 * Create `dir` (0700) if needed, and make sure it is this user's and private: refuse one that belongs to
 * another user or that others can write to; tighten one that others can only read.
 */
export function ensurePrivateDir(dir: string): void {
  let st: Stats;
  try {
    makeDirs(dir, 0o700);
    st = statSync(dir);
  } catch (err) {
    throw stateDirError(
      `state dir ${dir}: ${(err as Error).message} (pass --state-dir DIR or set KUBETRAIL_STATE_DIR to a directory you can write)`,
      err,
    );
  }
  if (!st.isDirectory()) throw stateDirError(`state dir ${dir}: not a directory`);
  const why = untrusted(dir, st);
  if (why)
    throw stateDirError(`refusing the state dir: ${why}; fix: chmod 700 it if it is yours, or pass --state-dir DIR`);
  // mkdir's mode is filtered by the umask and does not touch an existing directory: make sure.
  if ((st.mode & 0o077) !== 0) {
    try {
      chmodSync(dir, 0o700);
    } catch (err) {
      throw stateDirError(`state dir ${dir}: ${(err as Error).message}`, err);
    }
  }
}

/** Write all of `buf`: a short write (a nearly full disk, a signal) is continued, never left short. */
function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
}

export interface WriteOptions {
  /** Never replace an existing file: returns false when it exists (another process created it first). */
  exclusive?: boolean;
  /** fsync the file and its directory (default true): false for runtime files that die with the process. */
  durable?: boolean;
  /** An executable (the credential shim) is the owner's alone too: 0700 from the first byte. */
  executable?: boolean;
}

/**
 * Write `file` (mode 0600) atomically: a temporary file in the same directory, written in full, then
 * renamed (or, with `exclusive`, hard-linked) into place. On any error the temporary file is removed, the
 * old file is left as it was, and a KT_ERR_STATE_DIR error names the file.
 */
export function writePrivateFile(file: string, content: string | Buffer, opts: WriteOptions = {}): boolean {
  const dir = dirname(file);
  const durable = opts.durable ?? true;
  ensurePrivateDir(dir);
  const tmp = join(dir, `.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    // 'wx' is O_CREAT|O_EXCL: fails on anything already there, a symlink included.
    fd = openSync(tmp, 'wx', opts.executable === true ? 0o700 : 0o600);
    writeAll(fd, typeof content === 'string' ? Buffer.from(content) : content);
    if (durable) fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    if (opts.exclusive) {
      try {
        linkSync(tmp, file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        return false;
      }
    } else {
      renameSync(tmp, file);
    }
    if (durable) syncDir(dir);
    return true;
  } catch (err) {
    throw stateDirError(`cannot write ${file}: ${(err as Error).message}; the previous file, if any, is kept`, err);
  } finally {
    if (fd !== undefined) closeSync(fd);
    removeQuietly(tmp);
  }
}

/** The rename itself survives a crash only once the directory is synced (best effort: not every fs allows it). */
function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // not supported here
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

/** lstat `path` and check it is a regular file we can trust; undefined when it does not exist. */
function checkedStat(path: string): Stats | undefined {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw stateDirError(`${path}: ${(err as Error).message}`, err);
  }
  if (st.isSymbolicLink())
    throw stateDirError(
      `refusing ${path}: it is a symbolic link (kubetrail never follows one in its state dir); remove it`,
    );
  if (!st.isFile()) throw stateDirError(`refusing ${path}: not a regular file; remove it`);
  const why = untrusted(path, st);
  if (why) throw stateDirError(`refusing ${why}; remove it`);
  return st;
}

/** Open `path` as checked by checkedStat, and make sure the descriptor is that file (not one swapped in meanwhile). */
function openChecked(path: string, st: Stats, flags: string): number {
  const fd = openSync(path, flags);
  const now = fstatSync(fd);
  if (now.ino !== st.ino || now.dev !== st.dev) {
    closeSync(fd);
    throw stateDirError(`refusing ${path}: it was replaced while being opened`);
  }
  return fd;
}

/**
 * The content of a private file kubetrail trusts, or undefined when it does not exist. A symlink, a file
 * of another user's, one that others can write to or a hard-linked one is refused (KT_ERR_STATE_DIR).
 */
export function readPrivateFile(path: string): Buffer | undefined {
  const st = checkedStat(path);
  if (!st) return undefined;
  let fd: number;
  try {
    fd = openChecked(path, st, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (err instanceof KtError) throw err;
    throw stateDirError(`${path}: ${(err as Error).message}`, err);
  }
  try {
    const chunks: Buffer[] = [];
    for (;;) {
      const buf = Buffer.allocUnsafe(64 * 1024);
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      chunks.push(buf.subarray(0, n));
    }
    return Buffer.concat(chunks);
  } finally {
    closeSync(fd);
  }
}

export function readPrivateText(path: string): string | undefined {
  return readPrivateFile(path)?.toString('utf8');
}

/** readPrivateText, with any failure (refused, unreadable) as "not there". */
export function readPrivateTextQuietly(path: string): string | undefined {
  try {
    return readPrivateText(path);
  } catch {
    return undefined;
  }
}

/**
 * A descriptor to append to `path` (a log), created 0600 if missing; with `truncate`, emptied first. Never
 * through a symlink or into another user's file: the file is checked before it is opened (and emptied).
 */
export function openPrivateAppend(path: string, truncate: boolean): number {
  ensurePrivateDir(dirname(path));
  try {
    const st = checkedStat(path);
    if (!st) return openSync(path, 'ax', 0o600);
    // A hard link to a file elsewhere would be written through (and emptied).
    if (st.nlink > 1) throw stateDirError(`refusing ${path}: it has ${st.nlink} hard links; remove it`);
    const fd = openChecked(path, st, 'a');
    // Emptied only once the descriptor is known to be the checked file (O_APPEND writes at the new end).
    if (truncate) ftruncateSync(fd, 0);
    if ((st.mode & 0o077) !== 0) fchmodSync(fd, 0o600);
    return fd;
  } catch (err) {
    if (err instanceof KtError) throw err;
    throw stateDirError(`cannot open ${path}: ${(err as Error).message}`, err);
  }
}
