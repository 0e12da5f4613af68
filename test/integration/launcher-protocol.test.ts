/**
 * The launcher (bin/kubetrail) against a stand-in for the background kubetrail's FIFO side: each answer
 * it may get, good or hostile, and what it does with it, without a proxy or a cluster. What the real
 * background kubetrail answers is launcher.test.ts's; this file is about the script's own rules: it runs
 * a command only on an answer this kubetrail can give, says why there is no waterfall, and keeps the
 * user's shell options and paths.
 *
 * `node` on PATH is a script that records its run and exits 42: a hand-over to the Node CLI is seen, and
 * nothing else runs.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, existsSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { freshHome } from '../helpers/compare.ts';
import { nodeRecorder } from '../helpers/node-recorder.ts';
import { runProcess } from '../helpers/run-kubetrail.ts';

const LAUNCHER = fileURLToPath(new URL('../../bin/kubetrail', import.meta.url));
const PORT = 17999;
const KEY = `127.0.0.1-${PORT}`;
const TOKEN = 'ab'.repeat(32);

type Line = { op: 'begin' | 'finish'; pid: string; tag: string; token: string; slot: string; rest: string[] };
type Answer = (l: Line, paths: { commands: string }) => string[] | undefined;

interface Stand {
  env: NodeJS.ProcessEnv;
  home: string;
  state: string;
  lines: Line[];
  nodeRuns: () => number;
  close: () => void;
}

const open: Stand[] = [];
afterEach(() => {
  for (const s of open.splice(0)) s.close();
});

/** A state dir with a control FIFO served by `answer` (undefined: no answer at all). */
function stand(answer: Answer, stateDirAs?: (state: string) => string): Stand {
  const home = freshHome();
  const state = join(home, 'state');
  const commands = join(state, 'background', 'commands');
  mkdirSync(commands, { recursive: true, mode: 0o700 });
  writeFileSync(join(state, 'control-token'), `${TOKEN}\n`, { mode: 0o600 });
  const fifo = join(state, 'background', `${KEY}.fifo`);
  execFileSync('mkfifo', ['-m', '600', fifo]);
  const node = nodeRecorder(home, { exitCode: 42 });
  const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
  const sock = new Socket({ fd, readable: true, writable: false });
  const lines: Line[] = [];
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const [op, pid = '', tag = '', token = '', slot = '', ...rest] = buf.slice(0, nl).split(' ');
      buf = buf.slice(nl + 1);
      const l = { op: op as Line['op'], pid, tag, token, slot, rest };
      lines.push(l);
      const out = answer(l, { commands });
      if (!out) continue;
      const w = openSync(join(commands, `${KEY}.${pid}-${tag}.fifo`), constants.O_WRONLY | constants.O_NONBLOCK);
      writeFileSync(w, `${[...out, 'end'].join('\n')}\n`);
      closeSync(w);
    }
  });
  const s: Stand = {
    home,
    state,
    lines,
    env: {
      PATH: `${node.bin}:/usr/bin:/bin`,
      HOME: home,
      KUBETRAIL_STATE_DIR: stateDirAs ? stateDirAs(state) : state,
      KUBETRAIL_LISTEN: `127.0.0.1:${PORT}`,
    },
    nodeRuns: node.runs,
    close: () => sock.destroy(),
  };
  open.push(s);
  return s;
}

/** The answer the background kubetrail gives a command it serves (launcher.ts beginAnswer). */
function ok(l: Line, p: { commands: string }, over: Record<string, string> = {}): string[] {
  const kubeconfig = join(p.commands, `${KEY}.${l.pid}-${l.tag}.yaml`);
  writeFileSync(kubeconfig, 'apiVersion: v1\nkind: Config\n', { mode: 0o600 });
  return [
    'ok',
    `set KUBECONFIG=${over.kubeconfig ?? kubeconfig}`,
    `env ${over.env ?? '/usr/bin/env'}`,
    `quiet ${over.quiet ?? '0'}`,
    `listen 127.0.0.1:${PORT}`,
  ];
}

const run = (s: Stand, cmd: string[], env: NodeJS.ProcessEnv = {}) =>
  runProcess(LAUNCHER, ['--', ...cmd], { env: { ...s.env, ...env }, timeoutMs: 20_000 });

describe('the launcher runs a command only on an answer this kubetrail can give', () => {
  it('serves it: kubectl-to-be gets the kubeconfig, its exit code is kept, the waterfall is printed', async () => {
    const s = stand((l, p) => (l.op === 'begin' ? ok(l, p) : ['line waterfall  with  spaces \\n ', 'warn a warning']));
    const r = await run(s, ['sh', '-c', 'echo "$KUBECONFIG"; exit 3']);
    expect(s.nodeRuns()).toBe(0);
    expect(r.code).toBe(3);
    expect(r.stdout.toString()).toMatch(new RegExp(`/background/commands/${KEY}\\.\\d+-[0-9a-z]{10}\\.yaml\\n$`));
    expect(r.stderr).toBe('waterfall  with  spaces \\n \na warning\n');
    expect(s.lines.map((l) => l.op)).toEqual(['begin', 'finish']);
    expect(s.lines.every((l) => l.token === TOKEN)).toBe(true);
    // finish <exit> <spawned> <exited> <color> <width>
    const [exit, spawned, exited] = s.lines[1]?.rest ?? [];
    expect(exit).toBe('3');
    expect(Number(exited) - Number(spawned)).toBeGreaterThanOrEqual(0);
    expect(Number(exited) - Date.now()).toBeLessThan(60_000);
  });

  it.each([
    ['an env of its own choosing', { env: '/tmp/not-env' }],
    ['a kubeconfig that is not this command’s', { kubeconfig: '/tmp/other.yaml' }],
    ['a quiet value bash would evaluate', { quiet: 'x[$(touch /tmp/kt-launcher-pwned)]' }],
  ])('refuses %s: the Node CLI serves the command', async (_what, over) => {
    const s = stand((l, p) => (l.op === 'begin' ? ok(l, p, over) : []));
    const marker = join(s.home, 'ran');
    const r = await run(s, ['touch', marker]);
    expect(r.code).toBe(42);
    expect(s.nodeRuns()).toBe(1);
    expect(existsSync(marker)).toBe(false);
    expect(existsSync('/tmp/kt-launcher-pwned')).toBe(false);
    // Nothing of the command is left: its kubeconfig, request, FIFO and timing file.
    expect(readdirNames(join(s.state, 'background', 'commands'))).toEqual([]);
  });

  it('`no`, or no answer within 0.5 s: the Node CLI', async () => {
    for (const answer of [(() => ['no another configuration']) as Answer, () => undefined]) {
      const s = stand(answer);
      const r = await run(s, ['true']);
      expect(r.code).toBe(42);
      expect(s.nodeRuns()).toBe(1);
      expect(r.ms).toBeLessThan(5000);
    }
  });
});

function readdirNames(dir: string): string[] {
  return execFileSync('ls', ['-A', dir], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

describe('when there is no waterfall, the launcher says why, and kubectl’s exit code stands', () => {
  it.each([
    ['a failed finish', () => ['fail answered 500'], 'answered 500'],
    ['no answer', () => undefined, 'timed out'],
  ])('%s', async (_what, finish, why) => {
    const s = stand((l, p) => (l.op === 'begin' ? ok(l, p) : finish()));
    const r = await run(s, ['sh', '-c', 'exit 5']);
    expect(r.code).toBe(5);
    expect(r.stderr).toBe(`kubetrail: no trace summary from the kubetrail on 127.0.0.1:${PORT}: ${why}\n`);
  });
});

describe("the user's shell options and paths", () => {
  it('an exported SHELLOPTS with errexit: the command still ends with its waterfall, and its bash gets errexit', async () => {
    const s = stand((l, p) => (l.op === 'begin' ? ok(l, p) : ['line the waterfall']));
    const r = await run(s, ['bash', '-c', 'echo "$-"; exit 4'], { SHELLOPTS: 'braceexpand:errexit:hashall' });
    expect(s.nodeRuns()).toBe(0);
    expect(r.code).toBe(4);
    expect(r.stdout.toString()).toContain('e');
    expect(r.stdout.toString()).not.toContain('C');
    expect(r.stderr).toBe('the waterfall\n');
  });

  it('a state dir written with a trailing slash or doubled slashes is the same state dir', async () => {
    const s = stand(
      (l, p) => (l.op === 'begin' ? ok(l, p) : []),
      (state) => `${state.replace('/state', '//state')}/`,
    );
    const r = await run(s, ['true']);
    expect(s.nodeRuns()).toBe(0);
    expect(r.code).toBe(0);
  });
});
