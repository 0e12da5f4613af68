/**
 * The start lock (paths.ts: `background/<addr>.lock`): of the wrappers that find no background kubetrail on
 * an address, one starts it and the others wait for it.
 *
 * Imported by the wrapper's fast path (eslint.config.js lists it): Node built-ins only.
 */
import { linkSync, renameSync, statSync } from 'node:fs';
import { randomTag } from '../command-tag.ts';
import { readPrivateText, readPrivateTextQuietly, removeQuietly } from '../fs/private.ts';
import { kubetrailAlive, procStartTime } from './process.ts';
import { writePrivate } from './state.ts';

/**
 * Take the start lock (O_EXCL); returns its content (released only while it is still this wrapper's), or
 * the pid of the kubetrail that holds it. The lock names its holder by pid and start time: a holder that
 * is gone, whose pid now belongs to another process (another start time, or not a kubetrail at all), or
 * older than `staleAfterMs` (longer than any start can take), is stale. A stale lock is moved aside under a
 * unique name before it is removed: of two wrappers that both find it stale, one moves it and neither
 * removes a lock a third one took meanwhile (moved aside by mistake, that one is put back).
 */
export function tryLock(path: string, staleAfterMs: number): { mine: string } | { holder: number | undefined } {
  const mine = `${process.pid} ${procStartTime(process.pid) ?? '-'} ${randomTag()}\n`;
  try {
    writePrivate(path, mine, true);
    return { mine };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  let text: string;
  let age: number;
  try {
    text = readPrivateText(path) ?? '';
    age = Date.now() - statSync(path).mtimeMs;
  } catch {
    return { holder: undefined };
  }
  const [pidText, start] = text.split(/\s/);
  const holder = Number(pidText);
  if (Number.isSafeInteger(holder) && kubetrailAlive(holder, start) && age < staleAfterMs) return { holder };
  const aside = `${path}.${randomTag()}.stale`;
  try {
    renameSync(path, aside);
  } catch {
    return { holder: undefined };
  }
  let moved = '';
  try {
    moved = readPrivateText(aside) ?? '';
  } catch {
    // gone
  }
  if (moved !== text) {
    try {
      linkSync(aside, path);
    } catch {
      // yet another wrapper holds a new lock: that one stands
    }
  }
  removeQuietly(aside);
  return { holder: undefined };
}

export function releaseLock(path: string, mine: string): void {
  try {
    if (readPrivateTextQuietly(path) === mine) removeQuietly(path);
  } catch {
    // gone
  }
}
