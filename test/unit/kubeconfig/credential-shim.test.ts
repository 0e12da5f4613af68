/**
 * The credential shim as kubectl meets it in wrap mode: first on PATH under the plugin's own name. It must
 * run the real plugin (never itself), with kubectl's PATH as it was, the same arguments, stdin, stdout and
 * exit code, and record one timing line; called by name by anyone else, it only hands over.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  installShim,
  SHIM_MARKER,
  shimExec,
  shimPathDir,
  shimPathEnv,
} from '../../../src/kubeconfig/credential-shim.ts';
import { parseTiming } from '../../../src/kubeconfig/timing.ts';

let dir: string;
let state: string;
let plugins: string;
let timing: string;
const SYSTEM_PATH = '/usr/bin:/bin';

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'kt-shim-'));
  state = join(dir, 'state');
  plugins = join(dir, 'plugins');
  mkdirSync(plugins);
  timing = join(dir, 'timing-file');
  // The real plugin: says what it got, and fails with 4 when asked to.
  writeFileSync(
    join(plugins, 'auth-plugin'),
    '#!/bin/sh\nread -r line\nprintf "path=%s args=%s stdin=%s\\n" "$PATH" "$*" "$line"\n[ "$1" = fail ] && exit 4\nexit 0\n',
    { mode: 0o755 },
  );
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Run `name` as Go's exec.Command would: looked up on the given PATH. */
function runByName(name: string, args: string[], path: string): { code: number | null; out: string } {
  const r = spawnSync(name, args, { env: { PATH: path }, input: 'from-stdin\n', timeout: 10_000 });
  return { code: r.status, out: r.stdout.toString() };
}

describe('the credential shim, on PATH', () => {
  it('is the command itself in the kubeconfig, and its directory goes first on PATH only for a kubeconfig that uses it', () => {
    const exec = shimExec(
      { command: 'auth-plugin', args: ['a'] },
      {
        install: (c) => installShim(state, c, `${plugins}:${SYSTEM_PATH}`, 'on-path'),
        timingFile: timing,
        mode: 'on-path',
      },
    );
    expect(exec).toEqual({ command: 'auth-plugin', args: [`${SHIM_MARKER}${timing}`, 'auth-plugin', 'a'] });
    expect(existsSync(join(shimPathDir(state), 'auth-plugin'))).toBe(true);
    expect(shimPathEnv({ PATH: SYSTEM_PATH }, state, JSON.stringify(exec)).PATH).toBe(
      `${shimPathDir(state)}:${SYSTEM_PATH}`,
    );
    expect(shimPathEnv({ PATH: SYSTEM_PATH }, state, 'users: []').PATH).toBe(SYSTEM_PATH);
  });

  it('leaves alone a plugin given by path, and one whose env sets PATH (kubectl would look it up elsewhere)', () => {
    const shim = {
      install: (c: string) => installShim(state, c, `${plugins}:${SYSTEM_PATH}`, 'on-path'),
      timingFile: timing,
      mode: 'on-path' as const,
    };
    const byPath = { command: join(plugins, 'auth-plugin') };
    expect(shimExec(byPath, shim)).toBe(byPath);
    const ownPath = { command: 'auth-plugin', env: [{ name: 'PATH', value: '/opt/bin' }] };
    expect(shimExec(ownPath, shim)).toBe(ownPath);
  });

  it("runs the real plugin of the same name with kubectl's PATH, arguments, stdin and exit code, and records the run", () => {
    rmSync(timing, { force: true });
    const path = `${shimPathDir(state)}:${plugins}:${SYSTEM_PATH}`;
    const r = runByName('auth-plugin', [`${SHIM_MARKER}${timing}`, 'auth-plugin', 'fail', 'two words'], path);
    expect(r.code).toBe(4);
    expect(r.out).toBe(`path=${plugins}:${SYSTEM_PATH} args=fail two words stdin=from-stdin\n`);
    const runs = parseTiming(readFileSync(timing, 'utf8')).credentials;
    expect(runs.map((c) => [c.exitCode, c.command])).toEqual([[4, 'auth-plugin']]);
  });

  it('called by name without its marker (a program kubectl started), hands over untimed', () => {
    rmSync(timing, { force: true });
    const r = runByName('auth-plugin', ['x', 'y'], `${shimPathDir(state)}:${plugins}:${SYSTEM_PATH}`);
    expect(r).toEqual({ code: 0, out: `path=${plugins}:${SYSTEM_PATH} args=x y stdin=from-stdin\n` });
    expect(existsSync(timing)).toBe(false);
  });

  it('never runs itself when its directory is on PATH more than once (a kubetrail inside a kubetrail)', () => {
    const d = shimPathDir(state);
    const r = runByName(
      'auth-plugin',
      [`${SHIM_MARKER}${timing}`, 'auth-plugin'],
      `${d}:${d}:${plugins}:${d}:${SYSTEM_PATH}`,
    );
    expect(r).toEqual({ code: 0, out: `path=${plugins}:${SYSTEM_PATH} args= stdin=from-stdin\n` });
  });
});

describe('timing file: the wrapped command name (#19 item 1)', () => {
  it("reads the wrapper's `name` line, and only words a command line's name is made of", () => {
    expect(parseTiming('spawn 1700000000000\nname helm install\n')).toMatchObject({
      spawnedAt: 1700000000000,
      command: 'helm install',
    });
    expect(parseTiming('name clientgo-demo\n').command).toBe('clientgo-demo');
    expect(parseTiming('name helm install --set x=1\n').command).toBeUndefined();
    expect(parseTiming('name Helm\n').command).toBeUndefined();
  });
});
