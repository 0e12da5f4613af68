/**
 * The background kubetrail's side of the launcher (src/background/launcher.ts), without sockets: what a
 * request file and a request line may hold, which wrapped commands it serves itself and which it hands to
 * the Node CLI (the same decisions as wrapViaBackground's), and the spare answer FIFOs.
 */
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { resolveConfig } from '../../../src/config/load.ts';
import type { ControlDeps } from '../../../src/background/control.ts';
import {
  beginAnswer,
  parseLine,
  parseRequest,
  removeOrphans,
  REQUEST_VERSION,
  Slots,
  type LaunchRequest,
} from '../../../src/background/launcher.ts';
import { backgroundPaths, markerName } from '../../../src/background/paths.ts';
import { fileDigest, fingerprint, resolveForBackground, type BackgroundState } from '../../../src/background/state.ts';

const dirs: string[] = [];
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'kt-launcher-unit-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  vi.useRealTimers();
});

const request = (fields: string[]): string => fields.map((f) => `${f}\0`).join('');

describe('request files', () => {
  it('reads the directory, the variables and the arguments, each of which may hold anything but NUL', () => {
    const r = parseRequest(
      request([
        REQUEST_VERSION,
        '/home/u',
        'env:KUBECONFIG=/a:/b',
        'env:OTEL_X=a=b\nc',
        'arg:--',
        'arg:kubectl',
        'arg:',
      ]),
    );
    expect(r).toEqual({
      cwd: '/home/u',
      env: { KUBECONFIG: '/a:/b', OTEL_X: 'a=b\nc' },
      argv: ['--', 'kubectl', ''],
    });
  });

  it('refuses another version, a relative directory, an unknown field or a file cut short', () => {
    expect(parseRequest(request(['kubetrail-launch-2', '/h', 'arg:--']))).toBeUndefined();
    expect(parseRequest(request([REQUEST_VERSION, 'h', 'arg:--']))).toBeUndefined();
    expect(parseRequest(request([REQUEST_VERSION, '/h', 'what:x']))).toBeUndefined();
    expect(parseRequest(request([REQUEST_VERSION, '/h', 'env:=x']))).toBeUndefined();
    expect(parseRequest(`${REQUEST_VERSION}\0/h\0arg:--`)).toBeUndefined();
  });
});

describe('request lines', () => {
  const token = 'ab'.repeat(32);
  it('begin and finish, with a spare FIFO or their own', () => {
    expect(parseLine(`begin 42 abcdef1234 ${token} -`)).toEqual({
      op: 'begin',
      pid: 42,
      tag: 'abcdef1234',
      token,
      slot: undefined,
    });
    expect(parseLine(`finish 42 abcdef1234 ${token} 0123456789 130 1700000000000.5 1700000000100.25 1 120`)).toEqual({
      op: 'finish',
      pid: 42,
      tag: 'abcdef1234',
      token,
      slot: '0123456789',
      exit: 130,
      spawned: 1700000000000.5,
      exited: 1700000000100.25,
      color: true,
      width: 120,
    });
    expect(parseLine(`finish 42 abcdef1234 ${token} - 0 1 2 0 -`)).toMatchObject({ width: undefined, color: false });
  });

  it('nothing else: a bad pid, tag or slot, a missing or extra field', () => {
    for (const bad of [
      `begin 0 abcdef1234 ${token} -`,
      `begin -1 abcdef1234 ${token} -`,
      `begin 42 ABC ${token} -`,
      `begin 42 ../../etc ${token} -`,
      `begin 42 abcdef1234 ${token} ../x`,
      `begin 42 abcdef1234 ${token}`,
      `begin 42 abcdef1234 ${token} - extra`,
      `finish 42 abcdef1234 ${token} - 0 1 2 0`,
      `stop 42 abcdef1234 ${token} -`,
      '',
    ])
      expect(parseLine(bad), bad).toBeUndefined();
  });
});

/** A published background kubetrail in a temp state dir, serving `env`'s configuration. */
function published(env: NodeJS.ProcessEnv) {
  const home = tmp();
  const stateDir = join(home, 'state');
  const kubeconfig = join(home, 'kc');
  writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\n');
  const fullEnv = { HOME: home, KUBECONFIG: kubeconfig, KUBETRAIL_STATE_DIR: stateDir, ...env };
  const config = resolveConfig({ listen: '127.0.0.1:17999' }, fullEnv);
  const resolved = resolveForBackground(config, fullEnv);
  const paths = backgroundPaths(stateDir, '127.0.0.1', 17999);
  mkdirSync(paths.commands, { recursive: true, mode: 0o700 });
  mkdirSync(join(stateDir, 'timing'), { mode: 0o700 });
  const template = join(paths.dir, 'tmpl.kubeconfig');
  writeFileSync(template, 'server: https://127.0.0.1:17999\ntls-server-name: PLACEHOLD.kubetrail\n', { mode: 0o600 });
  const state: BackgroundState = {
    v: 1,
    instance: 'inst000001',
    procStart: null,
    kind: 'linger',
    pid: process.pid,
    host: '127.0.0.1',
    port: 17999,
    fingerprint: fingerprint(resolved.config, resolved.env),
    files: [{ path: kubeconfig, sha256: fileDigest(kubeconfig) }],
    template,
    placeholder: 'PLACEHOLD',
    socket: undefined,
    lingerMs: 600_000,
    log: undefined,
    startedAt: 1,
  };
  writeFileSync(paths.state, JSON.stringify(state), { mode: 0o600 });
  let touched = 0;
  const deps = {
    token: 't',
    identity: { fingerprint: state.fingerprint },
    lingering: { touch: () => touched++ },
  } as unknown as ControlDeps;
  const ctx = { paths, state, deps, envBin: '/usr/bin/env' };
  const req = (argv: string[], extra: NodeJS.ProcessEnv = {}, cwd = home): LaunchRequest => ({
    cwd,
    env: { PATH: '/usr/bin:/bin', ...fullEnv, ...extra },
    argv: ['--listen', '127.0.0.1:17999', ...argv],
  });
  return { ctx, req, paths, kubeconfig, touched: () => touched, home };
}

describe('which commands the background kubetrail serves for the launcher', () => {
  it('its own configuration: the command kubeconfig (claimed), the timing file, and what the launcher sets', () => {
    const p = published({});
    const a = beginAnswer(p.ctx, p.req(['--', 'kubectl', 'get', 'pods']), 4242, 'tag0000001');
    expect(a.ok, JSON.stringify(a)).toBe(true);
    const marker = join(p.paths.commands, markerName(p.paths.key, 4242, 'tag0000001'));
    expect(a.ok && a.lines).toEqual([
      'ok',
      `set KUBECONFIG=${marker}`,
      'env /usr/bin/env',
      'quiet 0',
      'listen 127.0.0.1:17999',
    ]);
    expect(readFileSync(marker, 'utf8')).toContain('tls-server-name: tag0000001.kubetrail');
    expect(readFileSync(join(p.home, 'state', 'timing', 'tag0000001'), 'utf8')).toMatch(
      /^spawn \d+(\.\d+)?\nname kubectl get\n$/,
    );
    expect(p.touched()).toBe(1);
    // --quiet is the launcher's to honour.
    expect(beginAnswer(p.ctx, p.req(['--quiet', '--', 'kubectl', 'get', 'pods']), 4243, 'tag0000002')).toMatchObject({
      ok: true,
      lines: expect.arrayContaining(['quiet 1']) as unknown,
    });
  });

  it('relative paths are the launcher directory’s: a KUBECONFIG given relative is the same configuration', () => {
    const p = published({});
    const a = beginAnswer(p.ctx, p.req(['--', 'kubectl', 'get', 'pods'], { KUBECONFIG: 'kc' }), 1, 'tag0000003');
    expect(a.ok, JSON.stringify(a)).toBe(true);
  });

  it('everything else is the Node CLI’s, and claims nothing', () => {
    const p = published({});
    const cases: [string, LaunchRequest][] = [
      [
        'another collector',
        p.req(['--', 'kubectl', 'get', 'pods'], { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://x:1' }),
      ],
      ['another kubeconfig', p.req(['--', 'kubectl', 'get', 'pods'], { KUBECONFIG: '/elsewhere' })],
      ["kubectl's own --kubeconfig", p.req(['--', 'kubectl', '--kubeconfig', '/x', 'get', 'pods'])],
      ['--linger 0', p.req(['--linger', '0', '--', 'kubectl', 'get', 'pods'])],
      ['a flag commander must parse', p.req(['--bogus', '--', 'kubectl', 'get', 'pods'])],
      ['no command', p.req(['--'])],
      ['a relative --config', p.req(['--config', 'cfg.yaml', '--', 'kubectl', 'get', 'pods'])],
      ['an allocator to check', p.req(['--', 'kubectl', 'get', 'pods'], { KUBETRAIL_ALLOCATOR: 'mimalloc' })],
    ];
    for (const [what, r] of cases) expect(beginAnswer(p.ctx, r, 7, 'tag0000004').ok, what).toBe(false);
    // A changed kubeconfig, or a kubetrail that has left its state file (stopping): no.
    writeFileSync(p.kubeconfig, 'apiVersion: v1\nkind: Config\nusers: []\n');
    expect(beginAnswer(p.ctx, p.req(['--', 'kubectl', 'get', 'pods']), 7, 'tag0000004')).toEqual({
      ok: false,
      why: 'a file it read changed',
    });
    expect(existsSync(join(p.paths.commands, markerName(p.paths.key, 7, 'tag0000004')))).toBe(false);
    expect(p.touched()).toBe(0);
  });

  it('what could make it die or hang is refused, not read: a bad --linger, a FIFO as config, relative XDG dirs', () => {
    const p = published({});
    const fifo = join(p.home, 'cfg.fifo');
    execFileSync('mkfifo', [fifo]);
    const cases: [string, LaunchRequest][] = [
      ['--linger 10min', p.req(['--linger', '10min', '--', 'kubectl', 'get', 'pods'])],
      ['KUBETRAIL_LINGER=soon', p.req(['--', 'kubectl', 'get', 'pods'], { KUBETRAIL_LINGER: 'soon' })],
      ['--config <a FIFO>', p.req(['--config', fifo, '--', 'kubectl', 'get', 'pods'])],
      ['--config /dev/fd/0', p.req(['--config', '/dev/fd/0', '--', 'kubectl', 'get', 'pods'])],
      ['KUBETRAIL_CONFIG=<a FIFO>', p.req(['--', 'kubectl', 'get', 'pods'], { KUBETRAIL_CONFIG: fifo })],
      ['XDG_CONFIG_HOME=rel', p.req(['--', 'kubectl', 'get', 'pods'], { XDG_CONFIG_HOME: 'rel' })],
      ['a directory that is gone', p.req(['--', 'kubectl', 'get', 'pods'], {}, join(p.home, 'gone'))],
    ];
    for (const [what, r] of cases) expect(beginAnswer(p.ctx, r, 7, 'tag0000006').ok, what).toBe(false);
  });

  it('relative paths are resolved from the physical directory, as the kernel resolves `..`', () => {
    const p = published({});
    // home/phys/sub, reached as home/link: `../kc` from there is home/phys/kc for kubectl, not home/kc.
    mkdirSync(join(p.home, 'phys', 'sub'), { recursive: true });
    symlinkSync(join(p.home, 'phys', 'sub'), join(p.home, 'link'));
    writeFileSync(join(p.home, 'phys', 'kc'), 'apiVersion: v1\nkind: Config\n');
    const viaLink = p.req(['--', 'kubectl', 'get', 'pods'], { KUBECONFIG: '../kc' }, join(p.home, 'link'));
    expect(beginAnswer(p.ctx, viaLink, 8, 'tag0000007')).toEqual({ ok: false, why: 'another configuration' });
    // From home itself, `kc` is the served kubeconfig.
    expect(beginAnswer(p.ctx, p.req(['--', 'kubectl', 'get', 'pods'], { KUBECONFIG: 'kc' }), 8, 'tag0000008').ok).toBe(
      true,
    );
  });

  it('no env(1) that restores SIGINT here: every command is the Node CLI’s', () => {
    const p = published({});
    expect(
      beginAnswer({ ...p.ctx, envBin: undefined }, p.req(['--', 'kubectl', 'get', 'pods']), 1, 'tag0000005').ok,
    ).toBe(false);
  });
});

describe('spare answer FIFOs', () => {
  function slots(idle: () => boolean) {
    const dir = tmp();
    const paths = backgroundPaths(dir, '127.0.0.1', 1);
    mkdirSync(paths.commands, { recursive: true });
    const calls: string[][] = [];
    const s = new Slots(
      paths,
      () => undefined,
      idle,
      (fifos, done) => {
        calls.push(fifos);
        for (const f of fifos) writeFileSync(f, '');
        done(null);
      },
    );
    return { s, calls, paths };
  }
  const ids = (fifos: string[]): string[] => fifos.map((f) => /slot-([0-9a-z]{10})\.fifo$/.exec(f)?.[1] ?? '');

  it('makes the missing ones in one process, each used once, and the next batch only while no request is in flight', () => {
    vi.useFakeTimers();
    let idle = false;
    const { s, calls } = slots(() => idle);
    s.fill();
    expect(calls).toHaveLength(1);
    expect(calls[0]).toHaveLength(8);
    const [a = '', b = ''] = ids(calls[0] ?? []);
    expect(s.has(a)).toBe(true);
    writeFileSync(s.claim(a), '1');
    s.done(a);
    s.done(b);
    expect(s.has(a)).toBe(false);
    expect(existsSync(s.fifo(a))).toBe(false);
    expect(existsSync(s.claim(a))).toBe(false);
    // Busy: not yet (a fork would stall the requests in flight), however often it is asked.
    vi.advanceTimersByTime(1000);
    expect(calls).toHaveLength(1);
    idle = true;
    vi.advanceTimersByTime(300);
    expect(calls).toHaveLength(2);
    expect(calls[1]).toHaveLength(2);
  });

  it('busy for long: made all the same', () => {
    vi.useFakeTimers();
    const { s, calls } = slots(() => false);
    s.fill();
    s.done(ids(calls[0] ?? [])[0] ?? '');
    vi.advanceTimersByTime(5600);
    expect(calls).toHaveLength(2);
  });

  it('a sweep drops the slots of launchers that died and slots whose FIFO is gone', () => {
    const { s, calls } = slots(() => true);
    s.fill();
    const [dead = '', live = '', gone = ''] = ids(calls[0] ?? []);
    writeFileSync(s.claim(dead), '999999999');
    writeFileSync(s.claim(live), String(process.pid));
    rmSync(s.fifo(gone));
    s.sweep(existsSync, (p) => Number(readFileSync(p, 'utf8')));
    expect(s.has(dead)).toBe(false);
    expect(s.has(gone)).toBe(false);
    expect(s.has(live)).toBe(true);
    s.close();
    expect(existsSync(s.fifo(live))).toBe(false);
  });
});

describe('spare FIFOs of an earlier kubetrail on the address', () => {
  it('are removed when the next one starts; its own and other addresses’ are kept', () => {
    const dir = tmp();
    const paths = backgroundPaths(dir, '127.0.0.1', 1);
    mkdirSync(paths.commands, { recursive: true });
    const s = new Slots(
      paths,
      () => undefined,
      () => true,
      (fifos, done) => {
        for (const f of fifos) writeFileSync(f, '');
        done(null);
      },
    );
    s.fill();
    const names = [
      '127.0.0.1-1.slot-aaaaaaaaaa.fifo',
      '127.0.0.1-1.slot-aaaaaaaaaa.claim',
      '127.0.0.1-12.slot-bbbbbbbbbb.fifo',
      '127.0.0.1-1.4242-cccccccccc.yaml',
    ];
    for (const n of names) writeFileSync(join(paths.commands, n), '');
    s.removeStale(readdirSync(paths.commands));
    const left = readdirSync(paths.commands);
    expect(left).not.toContain(names[0]);
    expect(left).not.toContain(names[1]);
    expect(left).toContain(names[2]);
    expect(left).toContain(names[3]);
    expect(left.filter((n) => /^127\.0\.0\.1-1\.slot-[0-9a-z]{10}\.fifo$/.test(n))).toHaveLength(8);
  });
});

describe('files of launchers that died', () => {
  it('their request and answer FIFO are removed; a live launcher’s, slots and markers are kept', () => {
    const dir = tmp();
    const paths = backgroundPaths(dir, '127.0.0.1', 1);
    mkdirSync(paths.commands, { recursive: true });
    const names = [
      '127.0.0.1-1.999999999-aaaaaaaaaa.req',
      '127.0.0.1-1.999999999-aaaaaaaaaa.fifo',
      `127.0.0.1-1.${process.pid}-bbbbbbbbbb.req`,
      '127.0.0.1-1.slot-cccccccccc.fifo',
      '127.0.0.1-1.999999999-dddddddddd.yaml',
      '127.0.0.1-12.999999999-eeeeeeeeee.req',
    ];
    for (const n of names) writeFileSync(join(paths.commands, n), '');
    removeOrphans(paths, readdirSync(paths.commands));
    expect(readdirSync(paths.commands).sort()).toEqual(names.slice(2).sort());
  });
});
