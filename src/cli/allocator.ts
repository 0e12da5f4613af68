/**
 * The malloc of a long-running kubetrail (`start`, the background kubetrail): mimalloc when the system has
 * it, loaded with LD_PRELOAD into the process kubetrail starts itself with (the background spawn, and the
 * re-exec of `start` in node-flags.ts). Why: after a connection flood glibc's malloc keeps the freed memory
 * (its main arena returns only its top; OpenSSL's and Node's per-connection allocations lie between
 * longer-lived ones), so RSS stayed near the flood's peak until kubetrail restarted; mimalloc gives freed
 * pages back on its own (measured with scripts/flood.ts: 60 s after, 398 MB with glibc, 177 MB with
 * mimalloc, idle 115; docs/decisions.md "Memory after a connection flood").
 *
 * Linux only (macOS's malloc returns memory itself), and only a library the system owns: a regular file,
 * and its directory, owned by root and writable by nobody else, at one of the distributions' paths (Debian
 * and Ubuntu's libmimalloc2.0, Fedora's and Arch's mimalloc). `KUBETRAIL_ALLOCATOR=system` keeps glibc's.
 * The user's own LD_PRELOAD is kept (after ours), and given back to the environment of the process once it
 * runs (settleAllocatorEnv), so that nothing kubetrail might start inherits mimalloc.
 *
 * On the wrapper's fast path (eslint.config.js): Node built-ins only.
 */
import { realpathSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

export const ALLOCATOR_ENV = 'KUBETRAIL_ALLOCATOR';
/** Set in the environment of a process started with mimalloc preloaded: the library's path. */
export const PRELOADED_ENV = 'KUBETRAIL_ALLOCATOR_PRELOADED';

/** Where distributions install mimalloc 2's shared library (Debian/Ubuntu multiarch, Fedora, Arch). */
export const MIMALLOC_PATHS: readonly string[] = [
  '/usr/lib/x86_64-linux-gnu/libmimalloc.so.2',
  '/usr/lib/aarch64-linux-gnu/libmimalloc.so.2',
  '/usr/lib64/libmimalloc.so.2',
  '/usr/lib/libmimalloc.so.2',
];

/** What `KUBETRAIL_ALLOCATOR` asks for, or the one line that says it is wrong. */
export function allocatorSetting(env: NodeJS.ProcessEnv): 'auto' | 'system' | { problem: string } {
  const v = (env[ALLOCATOR_ENV] ?? '').trim().toLowerCase();
  if (v === '' || v === 'auto' || v === 'mimalloc') return 'auto';
  if (v === 'system' || v === 'glibc') return 'system';
  return {
    problem: `${ALLOCATOR_ENV}=${env[ALLOCATOR_ENV] ?? ''}: expected auto (mimalloc when the system has it) or system`,
  };
}

/** Owned by root and writable by no one else: the system's, as the C library itself is. */
function systemOwned(path: string): boolean {
  const st = statSync(path);
  return st.uid === 0 && (st.mode & 0o022) === 0;
}

/** The first candidate that is a regular file the system owns, in a directory the system owns; its real path. */
export function findMimalloc(candidates: readonly string[] = MIMALLOC_PATHS): string | undefined {
  for (const p of candidates) {
    try {
      const real = realpathSync(p);
      if (statSync(real).isFile() && systemOwned(real) && systemOwned(dirname(real))) return real;
    } catch {
      // not there (or not readable): the next one
    }
  }
  return undefined;
}

/** The library to preload for a long-running kubetrail in this environment, if any. */
export function chosenAllocator(
  env: NodeJS.ProcessEnv,
  platform: NodeJS.Platform = process.platform,
  candidates: readonly string[] = MIMALLOC_PATHS,
): string | undefined {
  if (platform !== 'linux' || allocatorSetting(env) !== 'auto') return undefined;
  return findMimalloc(candidates);
}

/** `env` for a long-running kubetrail: mimalloc first in LD_PRELOAD when chosen, the user's own kept after it. */
export function withAllocator(env: NodeJS.ProcessEnv, lib: string | undefined): NodeJS.ProcessEnv {
  if (lib === undefined) return env;
  const theirs = env.LD_PRELOAD;
  return { ...env, LD_PRELOAD: theirs ? `${lib}:${theirs}` : lib, [PRELOADED_ENV]: lib };
}

/** In the process started withAllocator: put the user's LD_PRELOAD back, so that no child inherits ours. */
export function settleAllocatorEnv(env: NodeJS.ProcessEnv = process.env): void {
  const lib = env[PRELOADED_ENV];
  if (lib === undefined) return;
  delete env[PRELOADED_ENV];
  const rest = (env.LD_PRELOAD ?? '').split(':').filter((p, i) => !(i === 0 && p === lib));
  if (rest.length > 0 && rest.join('') !== '') env.LD_PRELOAD = rest.join(':');
  else delete env.LD_PRELOAD;
}
