/**
 * Run one kubectl command direct and through kubetrail (the real CLI), each with its own fresh HOME (so
 * both start with the same cold caches), and return both results for comparison.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kubectl, kubectlPath, type KubectlResult, type KubectlVersion } from './kubectl.ts';
import { KUBETRAIL_BIN, runKubetrail, type RunResult } from './run-kubetrail.ts';

export interface Sides {
  direct: KubectlResult;
  proxied: RunResult;
}

export interface CompareOptions {
  kubeconfig: string;
  version?: KubectlVersion;
  /** kubetrail's OTLP endpoint: a live test receiver, so nothing but kubectl writes to stderr. */
  otlpEndpoint: string;
  stdin?: string;
  env?: Record<string, string>;
  /** Extra kubetrail flags before `--`. */
  kubetrailArgs?: string[];
  /** Share one HOME/state across runs (cache tests). */
  home?: string;
}

export function freshHome(): string {
  return mkdtempSync(join(tmpdir(), 'kt-home-'));
}

export function kubetrailEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    KUBETRAIL_STATE_DIR: join(home, 'kubetrail-state'),
    NO_COLOR: '1',
    ...extra,
  };
}

export function kubetrailArgv(opts: CompareOptions, args: string[]): string[] {
  return [
    '--kubeconfig',
    opts.kubeconfig,
    '--listen',
    '127.0.0.1:0',
    '--otlp-endpoint',
    opts.otlpEndpoint,
    ...(opts.kubetrailArgs ?? ['--quiet']),
    '--',
    kubectlPath(opts.version ?? '1.33'),
    ...args,
  ];
}

export async function proxied(args: string[], opts: CompareOptions): Promise<RunResult> {
  const home = opts.home ?? freshHome();
  return runKubetrail(kubetrailArgv(opts, args), {
    env: kubetrailEnv(home, opts.env),
    timeoutMs: 40_000,
    input: opts.stdin,
  });
}

export async function compare(args: string[], opts: CompareOptions): Promise<Sides> {
  const direct = await kubectl(args, {
    kubeconfig: opts.kubeconfig,
    version: opts.version,
    stdin: opts.stdin,
    env: opts.env,
    timeoutMs: 30_000,
  });
  return { direct, proxied: await proxied(args, opts) };
}

export interface Streaming {
  stdout(): string;
  stderr(): string;
  waitFor(match: RegExp, timeoutMs?: number): Promise<void>;
  done: Promise<{ code: number }>;
  kill(): void;
}

/** Start `kubetrail -- kubectl ...` and keep it running (watch, logs -f). */
export function startProxied(args: string[], opts: CompareOptions): Streaming {
  const home = opts.home ?? freshHome();
  const child = spawn(process.execPath, [KUBETRAIL_BIN, ...kubetrailArgv(opts, args)], {
    env: kubetrailEnv(home, opts.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 40_000);
  const done = new Promise<{ code: number }>((resolve) =>
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128 });
    }),
  );
  return {
    stdout: () => out,
    stderr: () => err,
    async waitFor(match, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!match.test(out)) {
        if (Date.now() > deadline)
          throw new Error(`timed out waiting for ${String(match)}; stdout: ${out}; stderr: ${err}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    done,
    kill: () => child.kill('SIGINT'),
  };
}
