/**
 * Running the wrapped command: kubectl's own --kubeconfig redirected, stdio inherited, ^C left to the
 * command (same process group), SIGTERM passed on, its exit code returned. Imported by the wrapper's fast
 * path, so it imports nothing heavy.
 */
import { spawn } from 'node:child_process';
import { basename } from 'node:path';
import { KtError } from '../errors.ts';

/** The one error for `kubetrail` (or `kubetrail --`) without a command to run. */
export function noCommandGiven(): KtError {
  return new KtError('KT_ERR_USAGE', 'no command given: kubetrail [flags] -- kubectl get pods');
}

/** kubectl's own --kubeconfig inside the wrapped command must not bypass the proxy. */
export function takeKubeconfigArg(argv: string[]): { path: string | undefined; rewrite: (to: string) => string[] } {
  const isKubectl = basename(argv[0] ?? '').startsWith('kubectl');
  let index = -1;
  let inline = false;
  if (isKubectl) {
    for (let i = 1; i < argv.length; i++) {
      const a = argv[i] ?? '';
      if (a === '--') break;
      if (a === '--kubeconfig' && i + 1 < argv.length) {
        index = i + 1;
        inline = false;
      } else if (a.startsWith('--kubeconfig=')) {
        index = i;
        inline = true;
      }
    }
  }
  const value = index === -1 ? undefined : inline ? (argv[index] ?? '').slice('--kubeconfig='.length) : argv[index];
  return {
    path: value,
    rewrite: (to) => argv.map((a, i) => (i === index ? (inline ? `--kubeconfig=${to}` : to) : a)),
  };
}

/** Epoch ms with sub-millisecond precision, on the clock the proxy's request times use. */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Why the command could not be started, and what to do, in one line. */
export function cannotRun(cmd: string, err: NodeJS.ErrnoException): string {
  const plugin = basename(cmd).startsWith('kubectl') ? ' (kubectl trail: set KUBETRAIL_KUBECTL to its path)' : '';
  if (err.code === 'ENOENT')
    return `cannot run ${cmd}: ${cmd.includes('/') ? 'no such file' : 'not found on PATH'}; give its full path${plugin}`;
  if (err.code === 'EACCES')
    return `cannot run ${cmd}: permission denied (not executable?); give the path of an executable${plugin}`;
  return `cannot run ${cmd}: ${err.code ?? err.message}`;
}

export function runChild(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    if (!cmd) {
      reject(noCommandGiven());
      return;
    }
    const child = spawn(cmd, args, { stdio: 'inherit', env });
    // ^C in the terminal reaches the child directly (same process group); kubetrail waits for it to exit.
    const ignore = (): void => undefined;
    process.on('SIGINT', ignore);
    const forward = (): void => {
      child.kill('SIGTERM');
    };
    process.on('SIGTERM', forward);
    child.once('error', (err) => {
      process.off('SIGINT', ignore);
      process.off('SIGTERM', forward);
      reject(new KtError('KT_ERR_USAGE', cannotRun(cmd, err)));
    });
    child.once('exit', (code, signal) => {
      process.off('SIGINT', ignore);
      process.off('SIGTERM', forward);
      const signo = signal
        ? (({ SIGINT: 2, SIGKILL: 9, SIGTERM: 15, SIGPIPE: 13, SIGHUP: 1 } as Record<string, number>)[signal] ?? 1)
        : 0;
      resolve(code ?? 128 + signo);
    });
  });
}
