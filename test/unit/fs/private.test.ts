/**
 * Making the state dir: what a user who passes an odd `--state-dir` sees.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensurePrivateDir } from '../../../src/fs/private.ts';
import { KtError } from '../../../src/errors.ts';

const work = mkdtempSync(join(tmpdir(), 'kt-private-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('ensurePrivateDir', () => {
  it('makes every missing level, the last one 0700', () => {
    const dir = join(work, 'a', 'b', 'c');
    ensurePrivateDir(dir);
    expect(statSync(dir).isDirectory()).toBe(true);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  // Node's recursive mkdirSync never returns here: /proc answers ENOENT for any new name, and Node's
  // loop takes ENOENT to mean "make the parent first" (measured on Node 24.21: a spin at 100% CPU).
  it('under a directory that refuses new entries (/proc): a KT_ERR_STATE_DIR naming the dir, at once', () => {
    let error: unknown;
    try {
      ensurePrivateDir('/proc/kubetrail-state/sub');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(KtError);
    expect((error as KtError).code).toBe('KT_ERR_STATE_DIR');
    expect((error as Error).message).toContain('/proc/kubetrail-state');
  });

  it('a path through a regular file: the same error, not a crash', () => {
    const file = join(work, 'file');
    ensurePrivateDir(work);
    writeFileSync(file, 'not a directory');
    expect(() => ensurePrivateDir(join(file, 'sub'))).toThrow(/state dir .*file\/sub: ENOTDIR/);
  });
});
