/**
 * The background kubetrail's side of the launcher (bin/kubetrail): a wrapped command that this kubetrail
 * can serve runs with no Node process of its own. Node's start alone is most of what wrap mode cost a
 * `kubectl get pods` (#18, W5); the launcher is a bash script that asks here instead.
 *
 * The channel is a FIFO in the private state dir, `background/<addr>.fifo` (0600 in a 0700 directory the
 * launcher has checked is the user's alone, as ensurePrivateDir would), one line per request:
 *
 *   begin <pid> <tag> <token> <slot|->
 *       the launcher has written `commands/<addr>.<pid>-<tag>.req` (NUL-separated: a version, its working
 *       directory, `env:NAME=value` for the variables that decide a configuration, `arg:` for each of its
 *       arguments). The answer goes into a FIFO: one of the spare ones this kubetrail keeps,
 *       `commands/<addr>.slot-<slot>.fifo`, which the launcher took by creating `….slot-<slot>.claim`
 *       (O_EXCL; mkfifo costs a process, ~7 ms on the bench machine), or, with `-`, one it made itself,
 *       `commands/<addr>.<pid>-<tag>.fifo`. The answer: `ok` and the command's kubeconfig (claimed as the
 *       Node wrapper claims it), or `no <why>`, and then the Node CLI decides as it always has
 *       (beginAnswer: the same decisions as wrapViaBackground's, for the one case served here, this
 *       kubetrail unchanged and serving the command's configuration);
 *   finish <pid> <tag> <token> <slot|-> <exit> <spawned-ms> <exited-ms> <color 0|1> <width|->
 *       kubectl has exited: the same finish call as the Node wrapper's (control.ts), its warnings and
 *       waterfall lines as the answer. A slot is used once: removed after this answer, and replaced.
 *
 * Every answer ends with the line `end`. The control token is checked as on the other control paths, and
 * the state dir's directories are checked private (ensurePrivateDir) before a file in them is read: the
 * launcher checks only that they are the user's (bash has no stat), so a directory others can write to is
 * refused here, by the Node CLI's rule and words.
 */
import { execFile, execFileSync } from 'node:child_process';
import { closeSync, constants as C, existsSync, fstatSync, openSync, realpathSync } from 'node:fs';
import { Socket } from 'node:net';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { isCommandTag, randomTag } from '../command-tag.ts';
import { lingerMs, parseListen, resolveConfig, type RawValues } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { describeError } from '../errors.ts';
import { ensurePrivateDir, readPrivateTextQuietly, removeQuietly } from '../fs/private.ts';
import { shimPathEnv } from '../kubeconfig/credential-shim.ts';
import { spawnRecord, timingDir } from '../kubeconfig/timing.ts';
import { epochNow, takeKubeconfigArg } from '../cli/child.ts';
import { parseWrapArgv } from '../cli/wrap-argv.ts';
import { control, type ControlDeps } from './control.ts';
import { launchFiles, markerName, type BackgroundPaths } from './paths.ts';
import { pidAlive } from './process.ts';
import { validLife } from './protocol.ts';
import { tokenMatches } from './token.ts';
import { safeReaddir } from './publish.ts';
import {
  commandKubeconfig,
  fingerprint,
  filesUnchanged,
  readState,
  resolveForBackground,
  sameInstance,
  writePrivate,
  type BackgroundState,
} from './state.ts';

/** The first field of a request file: a launcher of another version is answered `no`. */
export const REQUEST_VERSION = 'kubetrail-launch-1';

export interface LaunchRequest {
  cwd: string;
  env: NodeJS.ProcessEnv;
  argv: string[];
}

/** A request file's fields; undefined when it is not one this version reads. */
export function parseRequest(text: string): LaunchRequest | undefined {
  const fields = text.split('\0');
  if (fields.pop() !== '' || fields[0] !== REQUEST_VERSION) return undefined;
  const cwd = fields[1];
  if (cwd === undefined || !isAbsolute(cwd)) return undefined;
  const env: NodeJS.ProcessEnv = {};
  const argv: string[] = [];
  for (const f of fields.slice(2)) {
    if (f.startsWith('arg:')) argv.push(f.slice(4));
    else if (f.startsWith('env:') && f.indexOf('=') > 4) env[f.slice(4, f.indexOf('='))] = f.slice(f.indexOf('=') + 1);
    else return undefined;
  }
  return { cwd, env, argv };
}

/** What the launcher asks about: this kubetrail as it was published. */
export interface LauncherContext {
  paths: BackgroundPaths;
  state: BackgroundState;
  deps: ControlDeps;
  /** An `env` that can restore SIGINT and SIGQUIT in the command the launcher starts in the background of
   * its shell (bash ignores both there); undefined: none here, the Node CLI runs every command. */
  envBin: string | undefined;
}

export type BeginAnswer = { ok: true; lines: string[] } | { ok: false; why: string };

function no(why: string): BeginAnswer {
  return { ok: false, why };
}

/**
 * The command's configuration as the Node wrapper would resolve it, with relative paths made absolute from
 * the launcher's directory as the kernel sees it (its realpath: `..` after a symlinked directory is the
 * physical parent, as for kubectl and the Node CLI), since this process runs from `/`.
 */
function configOf(req: LaunchRequest, flags: RawValues): { config: Config; cwd: string } | { why: string } {
  for (const name of ['HOME', 'XDG_CONFIG_HOME', 'XDG_STATE_HOME'] as const) {
    const v = req.env[name];
    if (v !== undefined && v !== '' && !isAbsolute(v)) return { why: `a relative ${name}` };
  }
  // resolveConfig reads it in this process (without blocking: config/load.ts), where a relative path would
  // name another file.
  const configFile = (flags.config as string | undefined) ?? req.env.KUBETRAIL_CONFIG;
  if (configFile !== undefined && configFile !== '' && !isAbsolute(configFile)) return { why: 'a relative --config' };
  let cwd: string;
  try {
    cwd = realpathSync(req.cwd);
  } catch (err) {
    return { why: describeError(err) };
  }
  let config: Config;
  try {
    config = resolveConfig(flags, req.env);
  } catch (err) {
    return { why: describeError(err) };
  }
  const abs = (p: string): string => resolve(cwd, p);
  return {
    cwd,
    config: {
      ...config,
      stateDir: abs(config.stateDir),
      ...(config.kubeconfig !== undefined ? { kubeconfig: abs(config.kubeconfig) } : {}),
    },
  };
}

/** A text as one line of an answer. */
function oneLine(x: unknown): string {
  return String(x).replace(/[\n\r]/g, ' ');
}

/** A value the launcher sets for kubectl: one line. */
function setLine(name: string, value: string): string | undefined {
  return /[\n\r\0]/.test(value) ? undefined : `set ${name}=${value}`;
}

/**
 * The `begin` decision: the same checks as wrapViaBackground and findOrStart make before they use a running
 * background kubetrail, then claim() (the command's kubeconfig, which is also its marker) and the timing
 * file. Anything else (another configuration, a flag commander must parse, kubectl's own --kubeconfig, a
 * changed kubeconfig, this kubetrail stopping) is `no`: the Node CLI handles it as before.
 */
export function beginAnswer(ctx: LauncherContext, req: LaunchRequest, pid: number, tag: string): BeginAnswer {
  const { paths, state } = ctx;
  if (!ctx.envBin) return no('no env(1) that restores SIGINT here');
  const parsed = parseWrapArgv(req.argv);
  if (!parsed || parsed.command.length === 0) return no('flags the Node CLI parses');
  if (takeKubeconfigArg(parsed.command).path !== undefined) return no("kubectl's own --kubeconfig");
  const allocator = req.env.KUBETRAIL_ALLOCATOR;
  if (allocator !== undefined && allocator !== '' && allocator !== 'system') return no('KUBETRAIL_ALLOCATOR');
  const c = configOf(req, parsed.flags);
  if ('why' in c) return no(c.why);
  const { config, cwd } = c;
  // A bad value is the Node CLI's to report (one line, exit 2), never this process's to die of.
  try {
    if (lingerMs(config.linger) === 0) return no('--linger 0');
    const listen = parseListen(config.listen, config.allowNonLoopback);
    if (listen.port === 0 || !listen.loopback) return no('not a background address');
  } catch (err) {
    return no(describeError(err));
  }
  const env = { ...req.env };
  if (env.KUBECONFIG)
    env.KUBECONFIG = env.KUBECONFIG.split(delimiter)
      .map((p) => (p ? resolve(cwd, p) : p))
      .join(delimiter);
  const resolved = resolveForBackground(config, env);
  if (fingerprint(resolved.config, resolved.env) !== ctx.deps.identity.fingerprint) return no('another configuration');
  if (!filesUnchanged(state.files)) return no('a file it read changed');
  if (!sameInstance(readState(paths.state), state)) return no('stopping');
  const kubeconfig = commandKubeconfig(state, tag);
  if (kubeconfig === undefined) return no('no template');
  const marker = join(paths.commands, markerName(paths.key, pid, tag));
  const childPath = shimPathEnv(req.env, resolved.config.stateDir, kubeconfig).PATH;
  const lines = [
    'ok',
    setLine('KUBECONFIG', marker),
    childPath !== undefined && childPath !== req.env.PATH ? setLine('PATH', childPath) : '',
    `env ${ctx.envBin}`,
    `quiet ${config.quiet ? 1 : 0}`,
    `listen ${config.listen}`,
  ];
  if (lines.some((l) => l === undefined) || /[\n\r]/.test(config.listen)) return no('a value with a line break');
  try {
    writePrivate(marker, kubeconfig, true);
  } catch (err) {
    return no(describeError(err));
  }
  try {
    // The trace begins now (the launcher spawns kubectl as soon as it reads the answer); the finish line
    // brings the exact spawn and exit times.
    writePrivate(join(timingDir(resolved.config.stateDir), tag), spawnRecord(epochNow(), parsed.command), true);
  } catch {
    // the trace then begins at the first request
  }
  ctx.deps.lingering?.touch();
  return { ok: true, lines: lines.filter((l): l is string => l !== undefined && l !== '') };
}

/** An `env` whose --default-signal works (GNU coreutils 8.31+), by absolute path; undefined: none. */
export function findEnvBin(candidates = ['/usr/bin/env', '/bin/env']): string | undefined {
  for (const bin of candidates) {
    try {
      execFileSync(bin, ['--default-signal=INT,QUIT', 'true'], { stdio: 'ignore', timeout: 2000 });
      return bin;
    } catch {
      // not there, or not GNU
    }
  }
  return undefined;
}

/**
 * Write the answer into the launcher's FIFO: opened without following a link and without blocking (the
 * launcher holds it open; ENXIO: it has gone), and only when it is a FIFO of this user's.
 */
function answer(path: string, lines: string[]): void {
  let fd: number;
  try {
    fd = openSync(path, C.O_WRONLY | C.O_NONBLOCK | C.O_NOFOLLOW);
  } catch {
    return;
  }
  try {
    const st = fstatSync(fd);
    const uid = process.getuid?.();
    if (!st.isFIFO() || (uid !== undefined && st.uid !== uid)) {
      closeSync(fd);
      return;
    }
  } catch {
    closeSync(fd);
    return;
  }
  const sock = new Socket({ fd, readable: false, writable: true });
  sock.on('error', () => sock.destroy());
  // A launcher that stops reading (stopped with ^Z) does not keep this open for ever.
  sock.setTimeout(10_000, () => sock.destroy());
  sock.end(`${[...lines, 'end'].join('\n')}\n`);
}

const LINE_MAX = 1024;
/** A launcher's request file and own answer FIFO, left by a launcher that died before its `begin`. */
export function removeOrphans(paths: BackgroundPaths, names: string[]): void {
  const prefix = `${paths.key}.`;
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const m = /^(\d+)-[0-9a-z]+\.(req|fifo)$/.exec(name.slice(prefix.length));
    if (m && !pidAlive(Number(m[1]))) removeQuietly(join(paths.commands, name));
  }
}

/** How often claims of launchers that died are looked for. */
const SWEEP_MS = 5000;

const SLOT_RE = /^[0-9a-z]{10}$/;

export type RequestLine =
  | { op: 'begin'; pid: number; tag: string; token: string; slot: string | undefined }
  | {
      op: 'finish';
      pid: number;
      tag: string;
      token: string;
      slot: string | undefined;
      exit: number;
      spawned: number;
      exited: number;
      color: boolean;
      width: number | undefined;
    };

/** One request line; undefined when it is none. */
export function parseLine(line: string): RequestLine | undefined {
  const f = line.split(' ');
  const [op, pidText, tag, token, slotText] = f;
  const pid = Number(pidText);
  if (!Number.isSafeInteger(pid) || pid <= 0 || tag === undefined || !isCommandTag(tag) || token === undefined)
    return undefined;
  if (slotText === undefined || (slotText !== '-' && !SLOT_RE.test(slotText))) return undefined;
  const slot = slotText === '-' ? undefined : slotText;
  if (op === 'begin' && f.length === 5) return { op, pid, tag, token, slot };
  if (op !== 'finish' || f.length !== 10) return undefined;
  const width = f[9] === '-' ? undefined : Number(f[9]);
  return {
    op,
    pid,
    tag,
    token,
    slot,
    exit: Number(f[5]),
    spawned: Number(f[6]),
    exited: Number(f[7]),
    color: f[8] === '1',
    width: width !== undefined && Number.isSafeInteger(width) && width > 0 ? width : undefined,
  };
}

/** How many spare answer FIFOs a kubetrail keeps: more commands at once make their own. */
const SPARE_SLOTS = 8;
/** Spares are made this long after one is used, once no request is in flight (REFILL_MAX_WAIT_MS at most). */
const REFILL_DELAY_MS = 250;
const REFILL_MAX_WAIT_MS = 5000;

/**
 * The spare answer FIFOs (`commands/<addr>.slot-<id>.fifo`). A launcher takes one by creating its
 * `.claim` file with O_EXCL (its pid inside); each is used by one command and then removed. Spares are made
 * by one mkfifo process for all that are missing, later and while no request is in flight: starting a
 * process stops this event loop for as long as the fork takes (~10 ms on the bench machine), and a request
 * must not wait for it. A claim whose launcher died (its pid gone), or a slot whose FIFO is gone, is
 * removed on the next sweep.
 */
export class Slots {
  private readonly ids = new Set<string>();
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private waitingSince: number | undefined;
  private readonly paths: BackgroundPaths;
  private readonly log: (line: string) => void;
  private readonly idle: () => boolean;
  private readonly mkfifo: (paths: string[], done: (err: Error | null) => void) => void;

  constructor(
    paths: BackgroundPaths,
    log: (line: string) => void,
    idle: () => boolean,
    mkfifo: (paths: string[], done: (err: Error | null) => void) => void = (fifos, done) =>
      execFile('mkfifo', ['-m', '600', '--', ...fifos], { timeout: 5000 }, (err) => done(err)),
  ) {
    this.paths = paths;
    this.log = log;
    this.idle = idle;
    this.mkfifo = mkfifo;
  }

  fifo(id: string): string {
    return join(this.paths.commands, `${this.paths.key}.slot-${id}.fifo`);
  }

  claim(id: string): string {
    return join(this.paths.commands, `${this.paths.key}.slot-${id}.claim`);
  }

  /** Make every missing spare now, in one process. Each is ours from the start: a launcher may take one
   * the moment mkfifo has made it. */
  fill(): void {
    const n = SPARE_SLOTS - this.ids.size;
    if (this.closed || n <= 0) return;
    const made = Array.from({ length: n }, () => randomTag());
    for (const id of made) this.ids.add(id);
    this.mkfifo(
      made.map((id) => this.fifo(id)),
      (err) => {
        if (!err || this.closed) return;
        this.log(`kubetrail: spare launcher FIFOs: ${describeError(err)}`);
        for (const id of made) if (!existsSync(this.fifo(id))) this.ids.delete(id);
      },
    );
  }

  /** Make the missing spares soon, once no request is in flight (or when none is left, or waited too long). */
  fillSoon(): void {
    if (this.closed || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const now = Date.now();
      this.waitingSince ??= now;
      if (this.idle() || this.ids.size === 0 || now - this.waitingSince >= REFILL_MAX_WAIT_MS) {
        this.waitingSince = undefined;
        this.fill();
      } else this.fillSoon();
    }, REFILL_DELAY_MS);
    this.timer.unref();
  }

  /** Is `id` one of ours (so its FIFO is one this kubetrail made)? */
  has(id: string): boolean {
    return this.ids.has(id);
  }

  /** A slot's one use is over: remove it (also one an earlier kubetrail on this address made); another
   * is made soon. */
  done(id: string): void {
    removeQuietly(this.fifo(id));
    removeQuietly(this.claim(id));
    if (this.ids.delete(id)) this.fillSoon();
  }

  /** The slots of the kubetrails this address had before: this one holds the port, so nobody answers them. */
  removeStale(names: string[]): void {
    const re = new RegExp(`^${this.paths.key.replace(/[.]/g, '\\.')}\\.slot-([0-9a-z]{10})\\.(fifo|claim)$`);
    for (const name of names) {
      const id = re.exec(name)?.[1];
      if (id !== undefined && !this.ids.has(id)) removeQuietly(join(this.paths.commands, name));
    }
  }

  /** Slots taken by launchers that died, and slots whose FIFO was removed: dropped and replaced. */
  sweep(exists: (path: string) => boolean, claimPid: (path: string) => number | undefined): void {
    for (const id of [...this.ids]) {
      const claim = this.claim(id);
      const pid = exists(claim) ? claimPid(claim) : undefined;
      const dead = pid !== undefined && !pidAlive(pid);
      if (!exists(this.fifo(id)) || dead) this.done(id);
    }
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    for (const id of [...this.ids]) {
      removeQuietly(this.fifo(id));
      removeQuietly(this.claim(id));
    }
    this.ids.clear();
  }
}

/** The state dir's directories as ensurePrivateDir requires them; a problem as one line. */
function privateDirsProblem(paths: BackgroundPaths): string | undefined {
  try {
    for (const dir of [paths.stateDir, paths.dir, paths.commands]) ensurePrivateDir(dir);
    return undefined;
  } catch (err) {
    return describeError(err);
  }
}

/** One request line, answered; nothing it meets (a bad value, a file that cannot be read) escapes it. */
async function serve(ctx: LauncherContext, slots: Slots, line: string, log: (line: string) => void): Promise<void> {
  try {
    await serveLine(ctx, slots, line, log);
  } catch (err) {
    log(`kubetrail: launcher request: ${describeError(err)}`);
  }
}

async function serveLine(ctx: LauncherContext, slots: Slots, line: string, log: (line: string) => void): Promise<void> {
  const req = parseLine(line);
  if (!req) return;
  const files = launchFiles(ctx.paths, req.pid, req.tag);
  // A slot is a FIFO in the private commands directory (answer() checks it is one, and this user's): also
  // one an earlier kubetrail made, which a launcher took before this one removed it.
  const answers = req.slot !== undefined ? slots.fifo(req.slot) : files.answers;
  // The token first, as on every control path: nothing is read or removed for anyone else.
  if (!tokenMatches(ctx.deps.token, req.token)) {
    answer(answers, [req.op === 'begin' ? 'no unauthorized' : 'fail unauthorized']);
    return;
  }
  if (req.op === 'begin') {
    const problem = privateDirsProblem(ctx.paths);
    if (problem !== undefined) {
      answer(answers, [`no ${oneLine(problem)}`]);
      return;
    }
    const text = readPrivateTextQuietly(files.request);
    removeQuietly(files.request);
    const parsed = text !== undefined ? parseRequest(text) : undefined;
    let a: BeginAnswer;
    try {
      a = parsed ? beginAnswer(ctx, parsed, req.pid, req.tag) : no('no request');
    } catch (err) {
      a = no(describeError(err));
    }
    answer(answers, a.ok ? a.lines : [`no ${oneLine(a.why)}`]);
    if (req.slot !== undefined) slots.fillSoon();
    return;
  }
  // kubectl has exited: its kubeconfig is no longer a live command's marker (the Node wrapper removes it
  // before its finish call too).
  removeQuietly(join(ctx.paths.commands, markerName(ctx.paths.key, req.pid, req.tag)));
  const life = validLife({ spawnedAt: req.spawned, exitedAt: req.exited, exitCode: req.exit });
  try {
    const a = await control(
      ctx.deps,
      { op: 'finish', tag: req.tag, color: req.color, width: req.width, life },
      'POST',
      req.token,
    );
    const body = a.body as { lines?: unknown; warnings?: unknown } | undefined;
    if (a.status !== 200 || !body) {
      answer(answers, [`fail answered ${a.status}`]);
      return;
    }
    answer(answers, [
      ...(Array.isArray(body.warnings) ? body.warnings : []).map((w) => `warn ${oneLine(w)}`),
      ...(Array.isArray(body.lines) ? body.lines : []).map((l) => `line ${oneLine(l)}`),
    ]);
  } catch (err) {
    log(`kubetrail: launcher finish: ${describeError(err)}`);
    answer(answers, [`fail ${oneLine(describeError(err))}`]);
  } finally {
    // The launcher has it open; nothing else uses the name.
    if (req.slot !== undefined) slots.done(req.slot);
    else removeQuietly(files.answers);
  }
}

/**
 * Make the request FIFO and serve it until close(). undefined (logged) when no FIFO can be made here:
 * every wrapped command then runs the Node CLI, as before the launcher.
 */
export function listenLauncher(ctx: LauncherContext, log: (line: string) => void): { close(): void } | undefined {
  const path = ctx.paths.fifo;
  let fd: number;
  try {
    removeQuietly(path);
    execFileSync('mkfifo', ['-m', '600', path], { stdio: 'ignore', timeout: 5000 });
    // Read-write: the FIFO always has a writer, so it never reads as ended between two launchers.
    fd = openSync(path, C.O_RDWR | C.O_NONBLOCK | C.O_NOFOLLOW);
    const st = fstatSync(fd);
    if (!st.isFIFO() || (st.mode & 0o077) !== 0) {
      closeSync(fd);
      throw new Error('not a private FIFO');
    }
  } catch (err) {
    log(`kubetrail: no launcher FIFO at ${path} (wrapped commands start Node): ${describeError(err)}`);
    removeQuietly(path);
    return undefined;
  }
  const slots = new Slots(ctx.paths, log, () => ctx.deps.busy().open === 0);
  slots.removeStale(safeReaddir(ctx.paths.commands));
  slots.fill();
  const sweep = setInterval(() => {
    slots.sweep(existsSync, (p) => {
      const pid = Number(readPrivateTextQuietly(p));
      return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
    });
    removeOrphans(ctx.paths, safeReaddir(ctx.paths.commands));
  }, SWEEP_MS);
  sweep.unref();
  const sock = new Socket({ fd, readable: true, writable: false });
  sock.setEncoding('utf8');
  let buf = '';
  sock.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.length <= LINE_MAX) void serve(ctx, slots, line, log);
    }
    // A line longer than any request is noise: dropped, not buffered.
    if (buf.length > LINE_MAX) buf = '';
  });
  sock.on('error', (err) => log(`kubetrail: launcher FIFO: ${describeError(err)}`));
  return {
    close() {
      clearInterval(sweep);
      sock.destroy();
      slots.close();
      removeQuietly(path);
    },
  };
}
