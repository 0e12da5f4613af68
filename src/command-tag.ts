/**
 * A command tag names one wrapped command's requests: 6 to 10 characters of [0-9a-z], carried in TLS SNI
 * (proxy/routing.ts) and in the finish call (background/protocol.ts). kubetrail makes 10.
 *
 * Node built-ins only: the wrapped command's fast path imports it (eslint.config.js FAST_PATH).
 */
import { randomBytes } from 'node:crypto';

const TAG_RE = /^[0-9a-z]{6,10}$/;

export function isCommandTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/** 10 random characters of [0-9a-z]: a command tag, also the random part of instance ids and file names. */
export function randomTag(): string {
  const bytes = randomBytes(10);
  let s = '';
  for (const b of bytes) s += '0123456789abcdefghijklmnopqrstuvwxyz'[b % 36];
  return s;
}
