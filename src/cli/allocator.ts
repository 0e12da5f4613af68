/**
 * The malloc of a long-running kubetrail (`start`, the background kubetrail), when the user asks for
 * mimalloc (`KUBETRAIL_ALLOCATOR=mimalloc`): loaded with LD_PRELOAD into the process kubetrail starts itself
 * with (the background spawn, and the re-exec of `start` in node-flags.ts). Why one would: after a flood of
 * connections glibc's malloc keeps the freed memory (its main arena returns only its top; OpenSSL's and
 * Node's per-connection allocations lie between longer-lived ones), and mimalloc gives much of it back on its
 * own (scripts/flood.ts: 60 s after, 398 MB on glibc, 177-228 MB on mimalloc, idle 115). Since malloc_trim
 * (native/trim.c, proxy/reclaim.ts) gives it back on glibc too, that matters only where no C compiler built
 * the trim at install. Why it is not the default: it costs the relay ~10% more CPU per request and large
 * lists a quarter more time (docs/decisions.md "Memory after a connection flood").
 *
 * Linux only, and only a library the system owns: a regular file, and its directory, owned by root and
 * writable by nobody else, at one of the distributions' paths (Debian and Ubuntu's libmimalloc2.0, Fedora's
 * and Arch's mimalloc). The user's own LD_PRELOAD is kept (after ours), and given back to the environment of
 * the process once it runs (settleAllocatorEnv), so that nothing kubetrail might start inherits mimalloc.
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

/** The library to preload for a long-running kubetrail (none: glibc's malloc), or what is wrong with the setting. */
export type AllocatorChoice = { lib: string | undefined } | { problem: string };

/** What `KUBETRAIL_ALLOCATOR` asks for: `system` (the default) or `mimalloc`, which must then be there. */
export function chooseAllocator(
  env: NodeJS.ProcessEnv,
  platform: NodeJS.Platform = process.platform,
  candidates: readonly string[] = MIMALLOC_PATHS,
): AllocatorChoice {
  const raw = env[ALLOCATOR_ENV] ?? '';
  const v = raw.trim().toLowerCase();
  if (v === '' || v === 'system' || v === 'glibc') return { lib: undefined };
  if (v !== 'mimalloc') return { problem: `${ALLOCATOR_ENV}=${raw}: expected system (the default) or mimalloc` };
  if (platform !== 'linux') return { problem: `${ALLOCATOR_ENV}=mimalloc: Linux only (it is loaded with LD_PRELOAD)` };
  const lib = findMimalloc(candidates);
  if (lib === undefined)
    return {
      problem: `${ALLOCATOR_ENV}=mimalloc: no mimalloc owned by root at ${candidates.join(', ')} (Debian, Ubuntu: apt install libmimalloc2.0)`,
    };
  return { lib };
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
  const theirs = (env.LD_PRELOAD ?? '')
    .split(':')
    .filter((p, i) => !(i === 0 && p === lib))
    .join(':');
  if (theirs !== '') env.LD_PRELOAD = theirs;
  else delete env.LD_PRELOAD;
}
