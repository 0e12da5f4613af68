/** Which malloc a long-running kubetrail gets (cli/allocator.ts), and what that means after a flood. */
import { ALLOCATOR_ENV, chooseAllocator } from '../allocator.ts';
import type { Finding } from './format.ts';

export function checkMemory(env: NodeJS.ProcessEnv, platform: NodeJS.Platform = process.platform): Finding {
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
  return {
    level: 'ok',
    subject,
    message: `glibc's malloc: after a flood of connections RSS stays near its peak until kubetrail restarts (${ALLOCATOR_ENV}=mimalloc gives much of it back, for ~10% more CPU per request)`,
  };
}
