/**
 * Run the real kubetrail CLI (src/bin/kubetrail.ts on the project's Node 24) as a child process.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const KUBETRAIL_BIN = fileURLToPath(new URL('../../src/bin/kubetrail.ts', import.meta.url));
export const KUBECTL_TRAIL_BIN = fileURLToPath(new URL('../../src/bin/kubectl-trail.ts', import.meta.url));

export interface RunResult {
  stdout: Buffer;
  stderr: string;
  code: number;
  /** Wall time, ms. */
  ms: number;
}

export function runProcess(
  cmd: string,
  args: string[],
  opts: { env: NodeJS.ProcessEnv; timeoutMs?: number; input?: string; cwd?: string },
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(cmd, args, { env: opts.env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err).toString('utf8'),
        code: code ?? (signal === 'SIGKILL' ? 137 : 128),
        ms: performance.now() - started,
      });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** `kubetrail <args>` with the given environment (give it its own HOME and KUBETRAIL_STATE_DIR). */
export function runKubetrail(
  args: string[],
  opts: { env: NodeJS.ProcessEnv; timeoutMs?: number; input?: string },
): Promise<RunResult> {
  return runProcess(process.execPath, [KUBETRAIL_BIN, ...args], opts);
}
