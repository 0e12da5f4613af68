/**
 * Run the real kubectl (the Google Cloud SDK's versioned binaries, not the /usr/bin dispatcher) in a
 * hermetic environment: a fresh temporary HOME and KUBECACHEDIR per run unless given, only PATH from the
 * parent environment, and a hard timeout.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';

export type KubectlVersion = '1.32' | '1.33';

export const KUBECTL_DIR = process.env['KUBETRAIL_KUBECTL_DIR'] ?? '/usr/lib/google-cloud-sdk/bin';

export function kubectlPath(version: KubectlVersion = '1.33'): string {
  return join(KUBECTL_DIR, `kubectl.${version}`);
}

/** Whether the versioned kubectl binaries exist (tests skip themselves otherwise). */
export function kubectlAvailable(version: KubectlVersion = '1.33'): boolean {
  return existsSync(kubectlPath(version));
}

export interface KubectlOptions {
  /** Passed as KUBECONFIG. */
  kubeconfig: string;
  version?: KubectlVersion;
  /** Added to (and overriding) the minimal environment. */
  env?: Record<string, string>;
  stdin?: string | Buffer;
  /** Kill with SIGKILL after this long (default 20 s). */
  timeoutMs?: number;
  /** Defaults to a fresh temporary directory, removed afterwards. */
  home?: string;
  /** Defaults to `<home>/.kube/cache`. */
  cacheDir?: string;
}

export interface KubectlResult {
  stdout: Buffer;
  stderr: string;
  /** Exit code; 128+signal when killed by a signal. */
  code: number;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
}

export interface RunningKubectl {
  readonly child: ChildProcess;
  /** Output so far. */
  stdout(): string;
  stderr(): string;
  /** Resolve with all stdout so far once it matches (rejects when kubectl exits first or on timeout). */
  waitForStdout(match: string | RegExp, timeoutMs?: number): Promise<string>;
  kill(signal?: NodeJS.Signals): void;
  readonly result: Promise<KubectlResult>;
}

/** Start kubectl and keep it running (for `-w`, `logs -f`, `port-forward`). */
export function startKubectl(args: string[], opts: KubectlOptions): RunningKubectl {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const waiters = new Set<() => void>();
  let exited = false;
  let timedOut = false;
  let childRef: ChildProcess | undefined;
  const notify = (): void => {
    for (const w of [...waiters]) w();
  };

  const result = (async (): Promise<KubectlResult> => {
    const ownHome = opts.home === undefined;
    const home = opts.home ?? (await mkdtemp(join(tmpdir(), 'kt-kubectl-')));
    try {
      const env: Record<string, string> = {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        HOME: home,
        KUBECONFIG: opts.kubeconfig,
        KUBECACHEDIR: opts.cacheDir ?? join(home, '.kube', 'cache'),
        ...opts.env,
      };
      const child = spawn(kubectlPath(opts.version), args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
      childRef = child;
      child.stdout.on('data', (d: Buffer) => {
        out.push(d);
        notify();
      });
      child.stderr.on('data', (d: Buffer) => err.push(d));
      child.stdin.on('error', () => undefined);
      if (opts.stdin !== undefined) child.stdin.end(opts.stdin);
      else child.stdin.end();
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, opts.timeoutMs ?? 20_000);
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
        child.once('error', reject);
        child.once('close', (c, s) => resolve([c, s]));
      });
      clearTimeout(timer);
      return {
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err).toString('utf8'),
        code: code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : -1),
        signal,
        timedOut,
      };
    } finally {
      exited = true;
      notify();
      if (ownHome) await rm(home, { recursive: true, force: true });
    }
  })();

  return {
    get child(): ChildProcess {
      if (!childRef) throw new Error('kubectl has not started yet');
      return childRef;
    },
    stdout: () => Buffer.concat(out).toString('utf8'),
    stderr: () => Buffer.concat(err).toString('utf8'),
    waitForStdout(match, timeoutMs = 10_000) {
      return new Promise<string>((resolve, reject) => {
        const check = (): void => {
          const s = Buffer.concat(out).toString('utf8');
          if (typeof match === 'string' ? s.includes(match) : match.test(s)) {
            done();
            resolve(s);
          } else if (exited) {
            done();
            reject(
              new Error(
                `kubectl exited before stdout matched ${String(match)}; stdout: ${s} stderr: ${Buffer.concat(err).toString('utf8')}`,
              ),
            );
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(
            new Error(
              `timed out waiting for ${String(match)} in kubectl stdout: ${Buffer.concat(out).toString('utf8')}`,
            ),
          );
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    kill(signal = 'SIGTERM') {
      childRef?.kill(signal);
    },
    result,
  };
}

/** Run kubectl to completion. */
export function kubectl(args: string[], opts: KubectlOptions): Promise<KubectlResult> {
  return startKubectl(args, opts).result;
}
