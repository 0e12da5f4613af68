/**
 * Which malloc a long-running kubetrail gets (cli/allocator.ts), and what that means after a flood: on glibc,
 * whether native/build/trim.node (malloc_trim, proxy/reclaim.ts) was built at install to give it back.
 */
import { nativeTrim } from '../../proxy/reclaim.ts';
import { ALLOCATOR_ENV, chooseAllocator } from '../allocator.ts';
import type { Finding } from './format.ts';

export function checkMemory(
  env: NodeJS.ProcessEnv,
  platform: NodeJS.Platform = process.platform,
  trimBuilt: () => boolean = () => nativeTrim() !== undefined,
): Finding {
  const subject = 'memory';
  const choice = chooseAllocator(env, platform);
  if ('problem' in choice)
    return {
      level: 'fail',
      subject,
      message: choice.problem,
      fix: `install mimalloc, or set ${ALLOCATOR_ENV} to system (or unset it)`,
    };
  if (choice.lib !== undefined)
    return {
      level: 'ok',
      subject,
      message: `mimalloc (${choice.lib}) for \`start\` and the background kubetrail: much of a flood of connections' memory goes back`,
    };
  if (platform !== 'linux') return { level: 'ok', subject, message: "the system's malloc" };
  if (trimBuilt())
    return {
      level: 'ok',
      subject,
      message: "glibc's malloc: after a flood of connections kubetrail gives the memory back (malloc_trim)",
    };
  return {
    level: 'warn',
    subject,
    message:
      "glibc's malloc: after a flood of connections RSS stays near its peak until kubetrail restarts: native/build/trim.node, which gives it back, was not built (no C compiler at install)",
    fix: 'with a C compiler (cc) on PATH, run `npm rebuild kubetrail` (`npm rebuild -g kubetrail` for a global install)',
  };
}
