/**
 * A `node` to put first on PATH that records each run, then runs this Node (or exits with `exitCode`): how
 * the launcher tests see whether bin/kubetrail handed a command to the Node CLI.
 */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface NodeRecorder {
  /** The directory holding `node`: put it first on PATH. */
  bin: string;
  /** How many times `node` ran so far. */
  runs: () => number;
}

export function nodeRecorder(dir: string, opts: { exitCode?: number } = {}): NodeRecorder {
  const bin = join(dir, 'recording-bin');
  mkdirSync(bin, { recursive: true });
  const log = join(dir, 'node-runs');
  writeFileSync(log, '');
  const then = opts.exitCode === undefined ? `exec '${process.execPath}' "$@"` : `exit ${opts.exitCode}`;
  writeFileSync(join(bin, 'node'), `#!/bin/sh\necho node >> '${log}'\n${then}\n`);
  chmodSync(join(bin, 'node'), 0o755);
  return { bin, runs: () => readFileSync(log, 'utf8').split('\n').filter(Boolean).length };
}
