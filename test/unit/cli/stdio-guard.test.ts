import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const GUARD = fileURLToPath(new URL('../../../src/cli/stdio-guard.ts', import.meta.url));
const O_NONBLOCK = 0o4000;

/**
 * Run `script` in a fresh Node with stdout and stderr as pipes (as when kubetrail's output is piped or
 * captured) and return the flags of descriptor 1's open file description afterwards, read from /proc.
 */
function stdoutFlagsAfter(script: string, guarded: boolean): number {
  const prelude = guarded ? `await import(${JSON.stringify(GUARD)});` : '';
  const body = `${prelude}\n${script}\nconst m = /flags:\\s+(\\d+)/.exec((await import('node:fs')).readFileSync('/proc/self/fdinfo/1', 'utf8'));\nconsole.error('FLAGS=' + m[1]);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', body], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const m = /FLAGS=(\d+)/.exec(r.stderr);
  if (!m?.[1]) throw new Error(`no flags: ${r.stderr}`);
  return parseInt(m[1], 8);
}

// What the OTLP exporter does on every export: pipe() reads process.stdout to compare its destination.
const PIPE = `const { PassThrough } = await import('node:stream'); new PassThrough().pipe(new PassThrough());`;

describe.runIf(process.platform === 'linux')('stdio guard', () => {
  it('the control: without the guard, a pipe() anywhere makes the shared stdout non-blocking', () => {
    expect(stdoutFlagsAfter(PIPE, false) & O_NONBLOCK).toBe(O_NONBLOCK);
  });

  it('with the guard, pipe() and console output leave the stdout kubectl shares blocking', () => {
    expect(stdoutFlagsAfter(`${PIPE}\nconsole.log('hello'); process.stdout.write('x\\n');`, true) & O_NONBLOCK).toBe(0);
  });

  it('what is written through process.stdout still arrives, in order', () => {
    const r = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `await import(${JSON.stringify(GUARD)}); console.log('a'); process.stdout.write(Buffer.from('b\\n')); console.error('c');`,
      ],
      { encoding: 'utf8' },
    );
    expect(r.stdout).toBe('a\nb\n');
    expect(r.stderr).toBe('c\n');
  });
});
