/**
 * The state dir's control token: whoever holds it may finish a command's trace or stop a background
 * kubetrail, so it is read only from a private file of ours, and compared in constant time.
 *
 * Imported by the wrapper's fast path (eslint.config.js lists it): Node built-ins only.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readPrivateText, readPrivateTextQuietly } from '../fs/private.ts';
import { writePrivate } from './state.ts';

/** The state dir's control token, created (0600, exclusively) by the first kubetrail that needs one. */
export function ensureToken(path: string): string {
  // A token file that is not ours (a symlink, another user's) is refused here, not silently replaced.
  const existing = readPrivateText(path)?.trim();
  if (existing) return existing;
  try {
    writePrivate(path, `${randomBytes(32).toString('hex')}\n`, true);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const token = readToken(path);
  if (!token) throw new Error(`${path}: empty control token`);
  return token;
}

export function readToken(path: string): string | undefined {
  const t = readPrivateTextQuietly(path)?.trim();
  return t === '' ? undefined : t;
}

/** Constant-time comparison (over digests, so lengths never leak either). */
export function tokenMatches(expected: string, given: unknown): boolean {
  if (typeof given !== 'string') return false;
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}
