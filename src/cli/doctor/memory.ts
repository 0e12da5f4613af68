/** Which malloc a long-running kubetrail gets (cli/allocator.ts), and what that means after a flood. */
import { allocatorSetting, ALLOCATOR_ENV, chosenAllocator } from '../allocator.ts';
import type { Finding } from './format.ts';

export function checkMemory(env: NodeJS.ProcessEnv, platform: NodeJS.Platform = process.platform): Finding {
  const subject = 'memory';
  const setting = allocatorSetting(env);
  if (typeof setting === 'object')
    return {
      level: 'fail',
      subject,
      message: setting.problem,
      fix: `set ${ALLOCATOR_ENV} to auto or system, or unset it`,
    };
  if (platform !== 'linux') return { level: 'ok', subject, message: "the system's malloc" };
  if (setting === 'system')
    return {
      level: 'ok',
      subject,
      message: `glibc's malloc (${ALLOCATOR_ENV}=system): after a flood of connections RSS stays near its peak until kubetrail restarts`,
    };
  const lib = chosenAllocator(env, platform);
  if (lib !== undefined)
    return {
      level: 'ok',
      subject,
      message: `mimalloc (${lib}) for \`start\` and the background kubetrail: much of a flood of connections' memory goes back`,
    };
  return {
    level: 'ok',
    subject,
    message:
      "glibc's malloc: after a flood of connections RSS stays near its peak until kubetrail restarts; with mimalloc installed (Debian, Ubuntu: apt install libmimalloc2.0) it goes back",
  };
}
