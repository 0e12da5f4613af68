import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { owned } from '../../../src/background/client.ts';
import { markerName, parseMarker } from '../../../src/background/paths.ts';
import { procStartTime, sameProcess } from '../../../src/background/process.ts';
import { liveWrappers, tagAliveIn } from '../../../src/background/publish.ts';
import type { BackgroundState } from '../../../src/background/state.ts';

const hasProc = procStartTime(process.pid) !== undefined;

function state(over: Partial<BackgroundState>): BackgroundState {
  return {
    v: 1,
    kind: 'linger',
    pid: process.pid,
    host: '127.0.0.1',
    port: 1,
    fingerprint: 'x',
    files: [],
    template: '/nonexistent',
    placeholder: 'abcdefghij',
    socket: undefined,
    lingerMs: 1000,
    log: undefined,
    startedAt: 0,
    ...over,
  };
}

/** A pid that is no process (the child has exited and been reaped). */
async function deadPid(): Promise<number> {
  const c = spawn('true');
  await new Promise((r) => c.on('exit', r));
  return c.pid ?? 0;
}

describe('is the recorded pid still that kubetrail?', () => {
  it.skipIf(!hasProc)('the start time in /proc/<pid>/stat decides: same process, another process, gone', async () => {
    const mine = procStartTime(process.pid);
    expect(mine).toMatch(/^\d+$/);
    expect(sameProcess(state({ procStart: mine }))).toBe(true);
    expect(sameProcess(state({ procStart: `${Number(mine) + 1}` }))).toBe(false);
    expect(sameProcess(state({ pid: await deadPid(), procStart: mine }))).toBe(false);
    // Not recorded (no /proc where it was written, an older version): cannot tell from here.
    expect(sameProcess(state({ procStart: null }))).toBeUndefined();
    expect(sameProcess(state({}))).toBeUndefined();
  });

  it('without a start time, only a kubetrail that answers with the same pid and instance is ours', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kt-owned-'));
    // Alive (this test process) but no kubetrail answers: not ours, so never signalled.
    expect(await owned(dir, state({ procStart: null, instance: 'abc' }), 300)).toBe(false);
    if (hasProc) expect(await owned(dir, state({ procStart: procStartTime(process.pid) ?? null }))).toBe(true);
  });
});

describe('wrapped-command markers', () => {
  it('name the address, the pid and the tag', () => {
    expect(markerName('127.0.0.1-17443', 42, 'abc123xyz0')).toBe('127.0.0.1-17443.42-abc123xyz0.yaml');
    expect(parseMarker('127.0.0.1-17443.42-abc123xyz0.yaml')).toEqual(['127.0.0.1-17443', 42, 'abc123xyz0']);
    expect(parseMarker('__1-17443.42-abc123xyz0.yaml')).toEqual(['__1-17443', 42, 'abc123xyz0']);
    expect(parseMarker('42-abc123xyz0.yaml')).toEqual([undefined, 42, 'abc123xyz0']);
    expect(parseMarker('127.0.0.1-17443.json')).toBeUndefined();
  });

  it("an address's kubetrail counts only its own live wrappers and removes dead ones' files", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kt-markers-'));
    mkdirSync(dir, { recursive: true });
    const dead = await deadPid();
    const files = [
      markerName('127.0.0.1-1000', process.pid, 'aaaaaaaaaa'),
      markerName('127.0.0.1-1000', process.pid, 'bbbbbbbbbb'),
      markerName('127.0.0.1-2000', process.pid, 'cccccccccc'),
      markerName('127.0.0.1-1000', dead, 'dddddddddd'),
    ];
    for (const f of files) writeFileSync(join(dir, f), '');
    expect(liveWrappers(dir, '127.0.0.1-1000')).toBe(2);
    expect(liveWrappers(dir, '127.0.0.1-2000')).toBe(1);
    expect(liveWrappers(dir, '127.0.0.1-3000')).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(files.slice(0, 3).sort());
    expect(liveWrappers(join(dir, 'none'), 'x')).toBe(0);
  });

  it("tagAlive: the tag's marker exists, for this address, and its wrapper is alive", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kt-tags-'));
    const dead = await deadPid();
    writeFileSync(join(dir, markerName('127.0.0.1-1000', process.pid, 'aaaaaaaaaa')), '');
    writeFileSync(join(dir, markerName('127.0.0.1-2000', process.pid, 'bbbbbbbbbb')), '');
    writeFileSync(join(dir, markerName('127.0.0.1-1000', dead, 'cccccccccc')), '');
    const alive = tagAliveIn(dir, '127.0.0.1-1000');
    expect(alive('aaaaaaaaaa')).toBe(true);
    expect(alive('bbbbbbbbbb')).toBe(false);
    expect(alive('cccccccccc')).toBe(false);
    expect(alive('zzzzzzzzzz')).toBe(false);
  });
});
