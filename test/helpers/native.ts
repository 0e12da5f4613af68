/** Whether `npm ci` / `npm install` builds native/build/trim.node here (native/build.sh): Linux with a C compiler. */
import { execFileSync } from 'node:child_process';

export function canBuildNative(env: NodeJS.ProcessEnv = process.env): boolean {
  if (process.platform !== 'linux') return false;
  try {
    execFileSync('sh', ['-c', 'command -v "${CC:-cc}"'], { stdio: 'ignore', env });
    return true;
  } catch {
    return false;
  }
}
