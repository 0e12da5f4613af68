/**
 * The allocator of a long-running kubetrail (src/cli/allocator.ts) and the re-exec that preloads it
 * (src/cli/node-flags.ts): which library is trusted, what LD_PRELOAD the process gets, and that the user's
 * own LD_PRELOAD is kept and given back.
 */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  chooseAllocator,
  findMimalloc,
  PRELOADED_ENV,
  settleAllocatorEnv,
  withAllocator,
} from '../../../src/cli/allocator.ts';
import { checkMemory } from '../../../src/cli/doctor/memory.ts';
import { NODE_FLAGS, withNodeFlags } from '../../../src/cli/node-flags.ts';

const root = mkdtempSync(join(tmpdir(), 'kt-alloc-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const asRoot = process.getuid?.() === 0;

/** A file standing for the library, in a directory of its own, with these modes. */
function lib(name: string, fileMode = 0o644, dirMode = 0o755): string {
  const dir = join(root, name);
  mkdirSync(dir, { mode: dirMode });
  chmodSync(dir, dirMode);
  const path = join(dir, 'libmimalloc.so.2');
  writeFileSync(path, 'ELF');
  chmodSync(path, fileMode);
  return path;
}

describe('which mimalloc is trusted', () => {
  it.runIf(asRoot)('takes a root-owned file in a root-owned directory, neither writable by others', () => {
    const good = lib('good');
    expect(findMimalloc([join(root, 'missing/libmimalloc.so.2'), good])).toBe(good);
  });

  it.runIf(asRoot)(
    'refuses one that another user could replace: the file or its directory group/other-writable, or not root-owned',
    () => {
      expect(findMimalloc([lib('file-g+w', 0o664)])).toBeUndefined();
      expect(findMimalloc([lib('file-o+w', 0o646)])).toBeUndefined();
      expect(findMimalloc([lib('dir-o+w', 0o644, 0o757)])).toBeUndefined();
      const theirs = lib('theirs');
      chownSync(theirs, 65534, 65534);
      expect(findMimalloc([theirs])).toBeUndefined();
      const theirDir = lib('their-dir');
      chownSync(join(root, 'their-dir'), 65534, 65534);
      expect(findMimalloc([theirDir])).toBeUndefined();
    },
  );

  it.runIf(asRoot)(
    'follows a symlink to the real file and judges that (Debian: libmimalloc.so.2 -> libmimalloc.so.2.0)',
    () => {
      const real = lib('linked');
      const link = join(root, 'linked', 'libmimalloc.so');
      symlinkSync(real, link);
      expect(findMimalloc([link])).toBe(real);
      const dangling = join(root, 'linked', 'dangling.so');
      symlinkSync(join(root, 'nowhere'), dangling);
      expect(findMimalloc([dangling])).toBeUndefined();
    },
  );

  it('is not a directory, and nothing at all when there is none', () => {
    expect(findMimalloc([root])).toBeUndefined();
    expect(findMimalloc([join(root, 'none.so')])).toBeUndefined();
  });
});

describe('KUBETRAIL_ALLOCATOR', () => {
  it('system (the default) never preloads; mimalloc preloads the one found, on Linux only', () => {
    const candidates = asRoot ? [lib('setting')] : [];
    expect(chooseAllocator({}, 'linux', candidates)).toEqual({ lib: undefined });
    expect(chooseAllocator({ KUBETRAIL_ALLOCATOR: 'System' }, 'linux', candidates)).toEqual({ lib: undefined });
    if (asRoot)
      expect(chooseAllocator({ KUBETRAIL_ALLOCATOR: 'mimalloc' }, 'linux', candidates)).toEqual({ lib: candidates[0] });
    expect(chooseAllocator({ KUBETRAIL_ALLOCATOR: 'mimalloc' }, 'darwin', candidates)).toEqual({
      problem: 'KUBETRAIL_ALLOCATOR=mimalloc: Linux only (it is loaded with LD_PRELOAD)',
    });
  });

  it('anything else, or mimalloc asked for and not there, is one line naming the variable', () => {
    expect(chooseAllocator({ KUBETRAIL_ALLOCATOR: 'jemalloc' })).toEqual({
      problem: 'KUBETRAIL_ALLOCATOR=jemalloc: expected system (the default) or mimalloc',
    });
    expect(chooseAllocator({ KUBETRAIL_ALLOCATOR: 'mimalloc' }, 'linux', ['/nonexistent/libmimalloc.so.2'])).toEqual({
      problem:
        'KUBETRAIL_ALLOCATOR=mimalloc: no mimalloc owned by root at /nonexistent/libmimalloc.so.2 (Debian, Ubuntu: apt install libmimalloc2.0)',
    });
  });
});

describe('LD_PRELOAD', () => {
  it("puts mimalloc first and keeps the user's own after it; gives theirs back in the process that runs", () => {
    const env = withAllocator({ LD_PRELOAD: '/opt/theirs.so', HOME: '/h' }, '/usr/lib/libmimalloc.so.2');
    expect(env).toEqual({
      LD_PRELOAD: '/usr/lib/libmimalloc.so.2:/opt/theirs.so',
      HOME: '/h',
      [PRELOADED_ENV]: '/usr/lib/libmimalloc.so.2',
    });
    settleAllocatorEnv(env);
    expect(env).toEqual({ LD_PRELOAD: '/opt/theirs.so', HOME: '/h' });

    const alone = withAllocator({}, '/usr/lib/libmimalloc.so.2');
    expect(alone.LD_PRELOAD).toBe('/usr/lib/libmimalloc.so.2');
    settleAllocatorEnv(alone);
    expect(alone).toEqual({});
  });

  it('changes nothing without a library, nor in a process kubetrail did not preload', () => {
    const env = { LD_PRELOAD: '/opt/theirs.so' };
    expect(withAllocator(env, undefined)).toBe(env);
    settleAllocatorEnv(env);
    expect(env).toEqual({ LD_PRELOAD: '/opt/theirs.so' });
  });
});

describe('`kubetrail start` re-executes itself with the flags and the allocator, once', () => {
  type Call = { file: string; args: string[]; env: NodeJS.ProcessEnv };
  function proc(execArgv: string[], env: NodeJS.ProcessEnv): { calls: Call[]; p: Parameters<typeof withNodeFlags>[1] } {
    const calls: Call[] = [];
    return {
      calls,
      p: {
        execArgv,
        argv: ['/node', '/kt.js', 'start'],
        execPath: '/node',
        env,
        execve: ((file: string, args: string[], e: NodeJS.ProcessEnv) => {
          calls.push({ file, args, env: e });
        }) as never,
      },
    };
  }

  it('adds only what is missing; does nothing once both are there, nor for other commands', () => {
    // The platform is given as darwin so the host's own mimalloc does not enter this test.
    const none = proc([], {});
    withNodeFlags(['start'], none.p, 'darwin');
    expect(none.calls).toEqual([{ file: '/node', args: ['/node', ...NODE_FLAGS, '/kt.js', 'start'], env: {} }]);

    const flagged = proc([...NODE_FLAGS], {});
    withNodeFlags(['start'], flagged.p, 'darwin');
    expect(flagged.calls).toEqual([]);

    const other = proc([], {});
    withNodeFlags(['get'], other.p, 'darwin');
    expect(other.calls).toEqual([]);
  });

  it.runIf(asRoot)('preloads mimalloc when asked, also for a start given the flags by hand (the image), once', () => {
    const candidate = lib('reexec');
    const ask = { KUBETRAIL_ALLOCATOR: 'mimalloc' };
    const flagged = proc([...NODE_FLAGS], ask);
    withNodeFlags(['start'], flagged.p, 'linux', [candidate]);
    expect(flagged.calls).toHaveLength(1);
    expect(flagged.calls[0]?.args).toEqual(['/node', ...NODE_FLAGS, '/kt.js', 'start']);
    expect(flagged.calls[0]?.env).toEqual({ ...ask, LD_PRELOAD: candidate, [PRELOADED_ENV]: candidate });

    const again = proc([...NODE_FLAGS], { ...ask, LD_PRELOAD: candidate, [PRELOADED_ENV]: candidate });
    withNodeFlags(['start'], again.p, 'linux', [candidate]);
    expect(again.calls).toEqual([]);

    const notAsked = proc([...NODE_FLAGS], {});
    withNodeFlags(['start'], notAsked.p, 'linux', [candidate]);
    expect(notAsked.calls).toEqual([]);
  });

  it('says what is wrong with KUBETRAIL_ALLOCATOR instead of starting', () => {
    const bad = proc([], { KUBETRAIL_ALLOCATOR: 'tcmalloc' });
    expect(withNodeFlags(['start'], bad.p, 'linux')).toMatch(/^KUBETRAIL_ALLOCATOR=tcmalloc: expected/);
    expect(bad.calls).toEqual([]);
  });
});

describe('`kubetrail doctor` says which malloc a long-running kubetrail gets', () => {
  it('names the setting that is wrong (a failure), glibc by default, and nothing Linux-only elsewhere', () => {
    expect(checkMemory({ KUBETRAIL_ALLOCATOR: 'x' }, 'linux')).toEqual({
      level: 'fail',
      subject: 'memory',
      message: 'KUBETRAIL_ALLOCATOR=x: expected system (the default) or mimalloc',
      fix: 'install mimalloc, or set KUBETRAIL_ALLOCATOR to system (or unset it)',
    });
    expect(checkMemory({}, 'linux', () => true)).toEqual({
      level: 'ok',
      subject: 'memory',
      message: "glibc's malloc: after a flood of connections kubetrail gives the memory back (malloc_trim)",
    });
    // Installed where there was no C compiler: said, with how to build it.
    const unbuilt = checkMemory({}, 'linux', () => false);
    expect(unbuilt.level).toBe('warn');
    expect(unbuilt.message).toMatch(
      /^glibc's malloc: after a flood of connections RSS stays near its peak until kubetrail restarts: native\/build\/trim\.node, which gives it back, was not built/,
    );
    expect(unbuilt.fix).toMatch(/npm rebuild kubetrail/);
    expect(checkMemory({}, 'darwin', () => false)).toEqual({
      level: 'ok',
      subject: 'memory',
      message: "the system's malloc",
    });
  });
});
