import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readState, startStack, type Stack, type UserName } from './stack.ts';

const KUBECTL = '/usr/lib/google-cloud-sdk/bin/kubectl.1.33';

function alive(pid: number): boolean {
  try {
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

describe('the end-to-end stack', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(() => stack?.stop());

  const kubectl = async (context: UserName, ...args: string[]): Promise<{ ok: boolean; out: string }> =>
    promisify(execFile)(KUBECTL, ['--kubeconfig', stack.kubeconfig, '--context', context, ...args]).then(
      ({ stdout, stderr }) => ({ ok: true, out: stdout + stderr }),
      (err: { stderr: string }) => ({ ok: false, out: err.stderr }),
    );

  it('serves the pinned Kubernetes version', async () => {
    const { out } = await kubectl('admin', 'get', '--raw', '/version');
    expect((JSON.parse(out) as { gitVersion: string }).gitVersion).toBe(stack.apiserverVersion);
    expect(stack.apiserverVersion).toMatch(/^v1\.33\.\d+$/);
  });

  it.each(['admin', 'alice', 'tina'] as const)('lets %s list pods', async (user) => {
    expect(await kubectl(user, 'get', 'pods')).toEqual({ ok: true, out: 'No resources found in default namespace.\n' });
  });

  it.each(['mallory', 'tom'] as const)('forbids %s to list pods', async (user) => {
    const res = await kubectl(user, 'get', 'pods');
    expect(res.ok).toBe(false);
    expect(res.out).toContain(`Error from server (Forbidden): pods is forbidden: User "${user}" cannot list`);
  });

  it('exports the apiserver spans to Jaeger', async () => {
    const services = async (): Promise<string[]> =>
      ((await (await fetch(`${stack.jaegerUrl}/api/services`)).json()) as { data: string[] }).data;
    for (let i = 0; i < 50 && !(await services()).includes('apiserver'); i++) await sleep(200);
    expect(await services()).toContain('apiserver');
  });

  it('stop() ends every process and deletes the run dir', async () => {
    const { procs } = readState(stack.runDir) ?? { procs: [] };
    expect(procs.map((p) => p.name).sort()).toEqual(['etcd', 'jaeger', 'kube-apiserver']);
    await stack.stop();
    for (const { pid } of procs) expect(alive(pid)).toBe(false);
    expect(existsSync(stack.runDir)).toBe(false);
  });
});

describe('npm run stack (the CLI)', () => {
  const STACK_TS = fileURLToPath(new URL('./stack.ts', import.meta.url));
  const runDir = join(tmpdir(), `kt-stack-cli-${process.pid}`);
  const cli = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
    promisify(execFile)(process.execPath, [STACK_TS, ...args], {
      env: { ...process.env, KUBETRAIL_STACK_DIR: runDir },
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (err: { code: number; stdout: string; stderr: string }) => ({
        code: err.code,
        stdout: err.stdout,
        stderr: err.stderr,
      }),
    );
  afterAll(() => cli('down'));

  it('refuses a bad --nodes with a one-line error naming the flag', async () => {
    expect(await cli('up', '--nodes', 'three')).toMatchObject({
      code: 1,
      stderr: 'stack up: --nodes needs a whole number ≥ 0, not three\n',
    });
    expect((await cli('up', '--node=3')).stderr).toMatch(/^stack up: unknown argument --node=3\n/);
  });

  it('up starts the nodes, a second up prints the running stack, down stops it', async () => {
    const first = await cli('up', '--nodes=1');
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/^stack up in [\d.]+s \(run dir /);
    expect(first.stdout).toMatch(/^ {2}nodes {11}kwok-node-0 \(kwok; kubelet server https:\/\/127\.0\.0\.1:\d+\)$/m);
    const state = readState(runDir);
    expect(state?.procs.map((p) => p.name).sort()).toEqual([
      'etcd',
      'jaeger',
      'kube-apiserver',
      'kube-controller-manager',
      'kube-scheduler',
      'kwok',
    ]);

    const second = await cli('up', '--nodes=1');
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain(`stack already running in ${runDir}\n`);
    expect(second.stdout).toContain(`  kube-apiserver  ${state?.info.apiserverUrl ?? '?'}`);
    // Nothing was restarted.
    expect(readState(runDir)?.procs.map((p) => p.pid)).toEqual(state?.procs.map((p) => p.pid));

    expect((await cli('down')).stderr).toBe(`stack in ${runDir} stopped\n`);
    for (const { pid } of state?.procs ?? []) expect(alive(pid)).toBe(false);
    expect(existsSync(state?.info.container?.rootDir ?? '/nonexistent')).toBe(false);
  });
});
