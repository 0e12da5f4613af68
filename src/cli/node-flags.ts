/**
 * V8 flags for a long-running kubetrail (`start`, the background kubetrail, the image). A 2 MiB young
 * generation instead of Node's default 16 MiB: relayed chunks die young, and a large list left ~50 MB of
 * them waiting for a scavenge. Measured (bench/lib/watch-mem.ts, 4 x 82 MB lists): peak RSS 165 -> 139 MB
 * for ~1% more CPU (1 MiB: 128 MB for +8%). Used where kubetrail starts Node itself: the background
 * kubetrail and the image's ENTRYPOINT (a test checks); and `kubetrail start` run as a user runs it
 * re-executes itself with them (withNodeFlags). Not in the bin's shebang: `env -S` is missing from
 * BusyBox, older coreutils and the BSDs, and the bin must start everywhere.
 *
 * `--expose-gc`: the proxy runs V8's last-resort GC once a flood of connections is over (proxy/reclaim.ts).
 */
import { chooseAllocator, MIMALLOC_PATHS, PRELOADED_ENV, withAllocator } from './allocator.ts';

export const NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2', '--expose-gc'];

type Execve = (file: string, args: string[], env: NodeJS.ProcessEnv) => never;

/**
 * `kubetrail start` without NODE_FLAGS (`npx kubetrail start`: the bin's plain shebang) replaces its own
 * process with one that has them, before anything else is loaded: the young generation is sized when V8's
 * heap is made, so `v8.setFlagsFromString` at run time does not shrink it (measured: no change in peak
 * RSS). process.execve keeps the pid, stdio, signals and exit status, so nobody sees a second process; it
 * costs one more Node start (~30-40 ms) on a command that then runs for hours. Only `start` given first
 * (as the docs write it): short commands and wrap mode must not pay a second start. Where Node has no
 * execve (Node < 22.15, Windows), or it fails, kubetrail runs on with Node's defaults.
 *
 * The same re-exec preloads mimalloc when KUBETRAIL_ALLOCATOR=mimalloc asks for it (cli/allocator.ts), also
 * for a `start` that was given NODE_FLAGS by hand (the image's ENTRYPOINT). Returns the one line that says
 * KUBETRAIL_ALLOCATOR is wrong (the bin prints it and exits 2), else undefined.
 */
export function withNodeFlags(
  argv: readonly string[],
  proc: { execArgv: string[]; argv: string[]; execPath: string; env: NodeJS.ProcessEnv; execve?: Execve } = process,
  platform: NodeJS.Platform = process.platform,
  candidates: readonly string[] = MIMALLOC_PATHS,
): string | undefined {
  if (argv[0] !== 'start') return undefined;
  const choice = chooseAllocator(proc.env, platform, candidates);
  if ('problem' in choice) return choice.problem;
  const flagsMissing = !NODE_FLAGS.every((f) => proc.execArgv.includes(f));
  const lib = proc.env[PRELOADED_ENV] === undefined ? choice.lib : undefined;
  if ((!flagsMissing && lib === undefined) || typeof proc.execve !== 'function') return undefined;
  const flags = flagsMissing ? NODE_FLAGS : [];
  try {
    proc.execve(
      proc.execPath,
      [proc.execPath, ...flags, ...proc.execArgv, ...proc.argv.slice(1)],
      withAllocator(proc.env, lib),
    );
  } catch {
    // Could not replace the process: go on as we are.
  }
  return undefined;
}
