/**
 * Wrap mode with a background kubetrail (the default; --linger 0 turns it off): find the kubetrail serving
 * this configuration on the stable address, or start one; point the command at it with a kubeconfig whose
 * TLS server names carry this command's tag; run it; then ask for the tagged command's waterfall.
 *
 * This is the wrapped command's fast path: it imports Node built-ins and small CLI modules only. The heavy
 * work (kubeconfig parsing, certificates, OpenTelemetry) happens once, in the background process.
 * Returns undefined whenever the in-process path (wrap.ts) must serve the command instead: a port held by
 * something that is not a background kubetrail for this configuration (a `kubetrail start` for other
 * settings, or another program: wrap.ts says which), or a background kubetrail that could not start.
 * A background kubetrail for another configuration that is busy (requests in flight, wrapped commands alive)
 * is not replaced: the command is served in-process on an ephemeral port instead.
 */
import { spawn } from 'node:child_process';
import { closeSync, linkSync, renameSync, statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { extname, join } from 'node:path';
import { isatty } from 'node:tty';
import { fileURLToPath } from 'node:url';
import { lingerMs, parseListen } from '../config/load.ts';
import { recordedElsewhere, type Elsewhere } from './addresses.ts';
import type { Config } from '../config/schema.ts';
import { describeError, KtError, type ErrorCode } from '../errors.ts';
import { openPrivateAppend, readPrivateText, readPrivateTextQuietly } from '../fs/private.ts';
import {
  BACKGROUND_CONFIG_ENV,
  backgroundPaths,
  busyText,
  CONTROL_PREFIX,
  cutMarker,
  filesUnchanged,
  fingerprint,
  kubetrailAlive,
  markerName,
  pidAlive,
  privateDir,
  procStartTime,
  randomTag,
  readState,
  readToken,
  removeQuietly,
  resolveForBackground,
  sameInstance,
  sameProcess,
  TOKEN_HEADER,
  writePrivate,
  type BackgroundPaths,
  type BackgroundState,
} from './background-state.ts';
import { shimPathEnv } from '../kubeconfig/credential-shim.ts';
import { timingDir } from '../kubeconfig/timing.ts';
import type { KubectlLife } from '../telemetry/commands.ts';
import { epochNow, runChild, takeKubeconfigArg } from './child.ts';
import { NODE_FLAGS } from './node-flags.ts';
import { errLine } from './output.ts';

const LOG_MAX_BYTES = 1 << 20;
/** How long a wrapper waits for another wrapper's background kubetrail to come up, or for one to stop. */
const START_WAIT_MS = 30_000;
const STOP_WAIT_MS = 5_000;
/** A background kubetrail that does not answer a status call within this long is hung. */
const HUNG_MS = 500;
/** A kubetrail that is ours but neither listens nor answers for this long is stale (hung, or stopping). */
const STALE_MS = 1000;
/** A wrapper waiting this long for another one's start lock says what it waits for. */
const WAIT_NOTICE_MS = 1000;
/** The finish call's whole budget (the background waits FINISH_WAIT_MS = 1 s for the command's open requests). */
const FINISH_DEADLINE_MS = 1500;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Something accepts TCP connections on host:port (a loopback connect answers at once). */
function portOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s: Socket = connect({ host, port });
    const done = (v: boolean): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(false), 1000);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

export interface ControlAnswer {
  status: number;
  body: unknown;
}

/**
 * A control call to the kubetrail at host:port, verified against this state dir's local CA before the token
 * is sent (whoever else holds the port never sees it).
 */
export async function controlCall(stateDir: string, host: string, port: number, method: 'GET' | 'POST', subpath: string, timeoutMs = 5000): Promise<ControlAnswer> {
  const token = readToken(backgroundPaths(stateDir, host, port).token);
  if (!token) throw new Error('no control token in the state dir');
  const ca = readPrivateText(join(stateDir, 'ca.crt'));
  if (ca === undefined) throw new Error('no local CA in the state dir');
  const { request } = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = request({ host, port, method, path: `${CONTROL_PREFIX}${subpath}`, ca, servername: 'localhost', agent: false, headers: { [TOKEN_HEADER]: token }, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let body: unknown;
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** The socket could not be connected to (no such file, nobody listening): the HTTPS path may still answer. */
class NotConnected extends Error {}

/** A control call on the background kubetrail's Unix socket (see listenControlSocket). */
function socketCall(path: string, token: string, msg: Record<string, unknown>, timeoutMs: number): Promise<ControlAnswer> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let buf = '';
    let connected = false;
    const timer = setTimeout(() => s.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => {
      connected = true;
      s.write(`${JSON.stringify({ ...msg, token })}\n`);
    });
    s.on('data', (c: string) => (buf += c));
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(connected || err.message.startsWith('no answer') ? err : new NotConnected(describeError(err), { cause: err }));
    });
    s.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as ControlAnswer);
      } catch {
        reject(new Error('malformed answer'));
      }
    });
  });
}

type CallMsg = { op: 'finish'; tag: string; color?: boolean; width?: number; life?: KubectlLife } | { op: 'stop'; ifIdle?: boolean } | { op: 'status' };

/**
 * A control call within `timeoutMs` in all: on the socket when there is one; over HTTPS on the listener
 * only when the socket cannot be connected to (a kubetrail that does not answer on its socket in time is
 * hung: asking it again over HTTPS would only double the wait).
 */
async function call(stateDir: string, st: BackgroundState, msg: CallMsg, timeoutMs: number): Promise<ControlAnswer> {
  const until = Date.now() + timeoutMs;
  const token = readToken(backgroundPaths(stateDir, st.host, st.port).token);
  if (st.socket && token) {
    try {
      return await socketCall(st.socket, token, msg, timeoutMs);
    } catch (err) {
      if (!(err instanceof NotConnected)) throw err;
    }
  }
  const q =
    msg.op === 'finish'
      ? `commands/${msg.tag}/finish?color=${msg.color ? 1 : 0}${msg.width ? `&width=${msg.width}` : ''}${msg.life ? `&spawned=${msg.life.spawnedAt}&exited=${msg.life.exitedAt}&exit=${msg.life.exitCode}` : ''}`
      : msg.op === 'stop' ? `stop${msg.ifIdle ? '?ifIdle=1' : ''}` : 'status';
  return controlCall(stateDir, st.host, st.port, msg.op === 'status' ? 'GET' : 'POST', q, Math.max(until - Date.now(), 1));
}

/**
 * Is the state's pid still the kubetrail that wrote it? Decided from /proc (the process start time) when it
 * can be, else by asking it: an authenticated status call must name the same pid and instance. A pid
 * reused by another process is never signalled, waited for or trusted.
 */
export async function owned(stateDir: string, st: BackgroundState, timeoutMs = 1000): Promise<boolean> {
  const same = sameProcess(st);
  return same ?? answers(stateDir, st, timeoutMs);
}

/** It answers an authenticated status call as the same pid and instance. */
async function answers(stateDir: string, st: BackgroundState, timeoutMs = 300): Promise<boolean> {
  try {
    const r = await call(stateDir, st, { op: 'status' }, timeoutMs);
    const b = r.body as { pid?: unknown; instance?: unknown } | undefined;
    return r.status === 200 && b?.pid === st.pid && b.instance === st.instance;
  } catch {
    return false;
  }
}

/** Cheap and synchronous: false only when the state's process is certainly gone (or not that kubetrail). */
function maybeRunning(st: BackgroundState): boolean {
  return sameProcess(st) !== false;
}

async function waitForExit(st: BackgroundState, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (maybeRunning(st)) {
    if (Date.now() > until) return false;
    await sleep(20);
  }
  return true;
}

export type StopResult = { stopped: true } | { stopped: false; busy?: { open: number; wrappers: number } };

/**
 * Stop a background kubetrail: by control call, else SIGTERM (only when the pid is still that kubetrail);
 * wait until it is gone. With `ifIdle`, a kubetrail with requests in flight or wrapped commands alive
 * refuses and keeps serving.
 */
export async function stopBackground(stateDir: string, st: BackgroundState, ifIdle = false): Promise<StopResult> {
  try {
    const r = await call(stateDir, st, { op: 'stop', ifIdle }, 2000);
    const b = r.body as { busy?: unknown; open?: unknown; wrappers?: unknown } | undefined;
    if (r.status === 409 && b?.busy === true) return { stopped: false, busy: { open: Number(b.open) || 0, wrappers: Number(b.wrappers) || 0 } };
  } catch {
    // not answering: signal it
  }
  if (await waitForExit(st, STOP_WAIT_MS)) return { stopped: true };
  if (!(await owned(stateDir, st))) return { stopped: true };
  try {
    process.kill(st.pid, 'SIGTERM');
  } catch {
    return { stopped: true };
  }
  return { stopped: await waitForExit(st, STOP_WAIT_MS) };
}

type Started = { ok: true; state: BackgroundState } | { ok: false; code: string; message: string };

/** Start the background kubetrail (this wrapper holds the lock) and wait until it serves or fails. */
async function spawnBackground(config: Config, env: NodeJS.ProcessEnv, paths: BackgroundPaths): Promise<Started> {
  privateDir(paths.stateDir, paths.dir);
  let size = 0;
  try {
    size = statSync(paths.log).size;
  } catch {
    // new log
  }
  // Never through a symlink or into another user's file (it would be truncated and re-moded).
  const logFd = openPrivateAppend(paths.log, size > LOG_MAX_BYTES);
  const here = fileURLToPath(import.meta.url);
  const bin = fileURLToPath(new URL(`../bin/kubetrail${extname(here)}`, import.meta.url));
  const child = spawn(process.execPath, [...NODE_FLAGS, bin, '__background'], {
    detached: true,
    cwd: '/',
    stdio: ['ignore', logFd, logFd, 'pipe'],
    env: { ...env, [BACKGROUND_CONFIG_ENV]: JSON.stringify(config) },
  });
  closeSync(logFd);
  const pipe = child.stdio[3] as Socket;
  const answer = await new Promise<{ ok: boolean; code?: string; message?: string } | undefined>((resolve) => {
    let text = '';
    const timer = setTimeout(() => resolve(undefined), START_WAIT_MS);
    pipe.on('data', (c: Buffer) => {
      text += c.toString();
      const nl = text.indexOf('\n');
      if (nl === -1) return;
      clearTimeout(timer);
      try {
        resolve(JSON.parse(text.slice(0, nl)) as { ok: boolean; code?: string; message?: string });
      } catch {
        resolve(undefined);
      }
    });
    pipe.on('error', () => undefined);
    pipe.on('close', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    child.on('error', () => resolve(undefined));
  });
  pipe.destroy();
  child.unref();
  if (answer?.ok) {
    const state = readState(paths.state);
    if (state && state.pid === child.pid) return { ok: true, state };
    return { ok: false, code: 'GONE', message: 'it wrote no state file' };
  }
  if (answer === undefined && child.pid !== undefined && pidAlive(child.pid)) process.kill(child.pid, 'SIGTERM');
  return { ok: false, code: answer?.code ?? 'GONE', message: answer?.message ?? `it exited without saying why (see ${paths.log})` };
}

/**
 * Take the start lock (O_EXCL); returns its content (released only while it is still this wrapper's), or
 * the pid of the kubetrail that holds it. The lock names its holder by pid and start time: a holder that
 * is gone, whose pid now belongs to another process (another start time, or not a kubetrail at all), or
 * older than any start can take, is stale. A stale lock is moved aside under a unique name before it is
 * removed: of two wrappers that both find it stale, one moves it and neither removes a lock a third one
 * took meanwhile (moved aside by mistake, that one is put back).
 */
function tryLock(path: string): { mine: string } | { holder: number | undefined } {
  const mine = `${process.pid} ${procStartTime(process.pid) ?? '-'} ${randomTag()}\n`;
  try {
    writePrivate(path, mine, true);
    return { mine };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  let text: string;
  let age: number;
  try {
    text = readPrivateText(path) ?? '';
    age = Date.now() - statSync(path).mtimeMs;
  } catch {
    return { holder: undefined };
  }
  const [pidText, start] = text.split(/\s/);
  const holder = Number(pidText);
  if (Number.isSafeInteger(holder) && kubetrailAlive(holder, start) && age < START_WAIT_MS + STOP_WAIT_MS) return { holder };
  const aside = `${path}.${randomTag()}.stale`;
  try {
    renameSync(path, aside);
  } catch {
    return { holder: undefined };
  }
  let moved = '';
  try {
    moved = readPrivateText(aside) ?? '';
  } catch {
    // gone
  }
  if (moved !== text) {
    try {
      linkSync(aside, path);
    } catch {
      // yet another wrapper holds a new lock: that one stands
    }
  }
  removeQuietly(aside);
  return { holder: undefined };
}

function releaseLock(path: string, mine: string): void {
  try {
    if (readPrivateTextQuietly(path) === mine) removeQuietly(path);
  } catch {
    // gone
  }
}

interface Found {
  state: BackgroundState;
  /** This wrapper started it (say so once). */
  started: boolean;
  /** Why the one it replaced could not serve this command (said with "replaced"). */
  replaced: string | undefined;
}

interface Busy {
  busy: { open: number; wrappers: number; hung?: boolean };
}

/** Forget a state file whose kubetrail is gone, hung or not a kubetrail any more (never signalled). */
function dropStale(paths: BackgroundPaths, st: BackgroundState): void {
  if (sameInstance(readState(paths.state), st)) removeQuietly(paths.state);
}

async function findOrStart(config: Config, env: NodeJS.ProcessEnv, host: string, port: number, fp: string): Promise<Found | Busy | undefined> {
  const paths = backgroundPaths(config.stateDir, host, port);
  let replaced: string | undefined;
  let closedSince: number | undefined;
  let heldSince: number | undefined;
  let waitingSince: number | undefined;
  let saidWaiting = false;
  const until = Date.now() + START_WAIT_MS;
  while (Date.now() < until) {
    const st = readState(paths.state);
    if (st) {
      if (!(await owned(config.stateDir, st))) {
        // Killed, crashed, or its pid now belongs to another process: its files are stale.
        dropStale(paths, st);
        continue;
      }
      if (st.fingerprint === fp && filesUnchanged(st.files)) {
        if (await portOpen(st.host, st.port)) {
          // A kubetrail whose event loop is stuck (stopped, spinning) still accepts connections (the kernel
          // does): kubectl would hang on it. An authenticated status call says it is serving.
          if (await answers(config.stateDir, st, HUNG_MS)) return { state: st, started: false, replaced };
          return { busy: { open: 0, wrappers: 0, hung: true } };
        }
        // Alive but not listening: stopping (it goes soon), or hung: stale once it has neither listened nor
        // answered on its socket for STALE_MS (a slow one that answers is waited for).
        closedSince ??= Date.now();
        if (Date.now() - closedSince >= STALE_MS && !(await answers(config.stateDir, st))) dropStale(paths, st);
        else await sleep(20);
        continue;
      }
      // Another configuration. A foreground `kubetrail start` is the user's: never stopped from here.
      if (st.kind === 'start') return undefined;
      // Nor is a background kubetrail that other terminals are using (a `kubectl logs -f` there would be cut).
      const r = await stopBackground(config.stateDir, st, true);
      if (!r.stopped) return r.busy ? { busy: r.busy } : undefined;
      replaced =
        st.fingerprint === fp
          ? 'a file it had read changed (a kubeconfig, the local CA)'
          : "it had other settings (kubeconfig, --context, --otlp-endpoint, --jaeger-url, OTEL_*, or another kubetrail's code)";
      continue;
    }
    privateDir(paths.stateDir, paths.dir);
    const taken = tryLock(paths.lock);
    if (!('mine' in taken)) {
      // Another wrapper is starting one: wait for it, and say so when it takes a while (not silently).
      waitingSince ??= Date.now();
      if (taken.holder !== undefined && !saidWaiting && Date.now() - waitingSince >= WAIT_NOTICE_MS) {
        saidWaiting = true;
        errLine(`kubetrail: waiting for kubetrail pid ${taken.holder}, which is starting the background kubetrail on ${config.listen} (at most ${Math.round((until - Date.now()) / 1000)}s more)`);
      }
      await sleep(20);
      continue;
    }
    const lock = taken.mine;
    try {
      // Checked under the lock: a background kubetrail that came up meanwhile (look at it again), or
      // something on the port: a kubetrail that is stopping (it leaves the state file first), or another program.
      if (readState(paths.state)) continue;
      if (await portOpen(host, port)) {
        // A kubetrail started with another state dir (the demo's, a script's --state-dir): replaced, as one
        // of another configuration is, when it is an idle background one.
        const other = await ownedElsewhere(config.stateDir, host, port);
        if (other) {
          if (other.state.kind === 'start') return undefined;
          const r = await stopBackground(other.stateDir, other.state, true);
          if (!r.stopped) return r.busy ? { busy: r.busy } : undefined;
          replaced = `it had another state dir, ${other.stateDir}`;
          continue;
        }
        heldSince ??= Date.now();
        if (Date.now() - heldSince >= STALE_MS) return undefined;
        await sleep(20);
        continue;
      }
      const r = await spawnBackground(config, env, paths);
      if (r.ok) return { state: r.state, started: true, replaced };
      if (r.code === 'EADDRINUSE') return undefined;
      if (r.code.startsWith('KT_ERR_')) throw new KtError(r.code as ErrorCode, r.message);
      errLine(`kubetrail: the background kubetrail did not start (${r.message}); serving this command in-process`);
      return undefined;
    } finally {
      releaseLock(paths.lock, lock);
    }
  }
  return undefined;
}

/** The kubetrail another state dir recorded on host:port (addresses.ts), if it is still that kubetrail. */
export async function ownedElsewhere(stateDir: string, host: string, port: number, env: NodeJS.ProcessEnv = process.env): Promise<Elsewhere | undefined> {
  const other = recordedElsewhere(env, stateDir, host, port);
  return other && (await owned(other.stateDir, other.state)) ? other : undefined;
}

/**
 * This command's kubeconfig from the kubetrail's template. The file is created first, empty: it is the
 * marker that keeps the kubetrail from stopping (idle, or a replacing wrapper's stop?ifIdle=1), and it
 * exists before the last look at the state file, so the kubetrail either sees it or this sees no state.
 * undefined: the kubetrail went away or was replaced meanwhile.
 */
function claim(paths: BackgroundPaths, st: BackgroundState, tag: string): string | undefined {
  const path = join(paths.commands, markerName(paths.key, process.pid, tag));
  try {
    try {
      writePrivate(path, '', true);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      privateDir(paths.stateDir, paths.commands);
      writePrivate(path, '', true);
    }
  } catch {
    return undefined;
  }
  try {
    const template = readPrivateText(st.template);
    if (template === undefined || !template.includes(st.placeholder)) return fail();
    if (!sameInstance(readState(paths.state), st)) return fail();
    writePrivate(path, template.replaceAll(st.placeholder, tag), false);
    return path;
  } catch {
    return fail();
  }
  function fail(): undefined {
    removeQuietly(path);
    return undefined;
  }
}

function durationText(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

/** The in-process path on an ephemeral port: leaves the address's kubetrail alone (kubectl's caches are cold). */
async function inProcessElsewhere(config: Config, argv: string[], env: NodeJS.ProcessEnv, host: string): Promise<number> {
  const { wrapInProcess } = await import('./wrap.ts');
  return wrapInProcess({ ...config, listen: `${host.includes(':') ? `[${host}]` : host}:0` }, argv, env);
}

/** The wrapped command through a background kubetrail; undefined = use the in-process path. */
export async function wrapViaBackground(configIn: Config, argv: string[], envIn: NodeJS.ProcessEnv = process.env): Promise<number | undefined> {
  const linger = lingerMs(configIn.linger);
  if (linger === 0) return undefined;
  const listen = parseListen(configIn.listen, configIn.allowNonLoopback);
  // A background kubetrail needs an address to be found at again, and stays on loopback.
  if (listen.port === 0 || !listen.loopback) return undefined;
  const kcArg = takeKubeconfigArg(argv);
  const { config, env } = resolveForBackground(kcArg.path !== undefined ? { ...configIn, kubeconfig: kcArg.path } : configIn, envIn);
  const fp = fingerprint(config, env);
  const tag = randomTag();
  // Twice at most: the kubetrail found may stop or be replaced before this command's kubeconfig is written.
  for (let attempt = 0; attempt < 2; attempt++) {
    const found = await findOrStart(config, env, listen.host, listen.port, fp).catch((err: unknown) => {
      // Its files could not be made (a state dir under a file, not writable): the user's to fix.
      if ((err as NodeJS.ErrnoException).syscall === undefined) throw err;
      throw new KtError('KT_ERR_STATE_DIR', `state dir ${config.stateDir}: ${describeError(err)} (pass --state-dir DIR or set KUBETRAIL_STATE_DIR to a directory you can write)`, { cause: err });
    });
    if (!found) return undefined;
    if ('busy' in found) {
      const { open, wrappers, hung } = found.busy;
      if (hung) {
        errLine(`kubetrail: the background kubetrail on ${config.listen} (pid ${readState(backgroundPaths(config.stateDir, listen.host, listen.port).state)?.pid ?? '?'}) does not answer; serving this command in-process (kubetrail stop, or kill it)`);
        return inProcessElsewhere(configIn, argv, envIn, listen.host);
      }
      const what = busyText({ open, wrappers });
      if (!config.quiet) errLine(`kubetrail: the background kubetrail on ${config.listen} has another configuration and is in use (${what}); serving this command in-process`);
      return inProcessElsewhere(configIn, argv, envIn, listen.host);
    }
    const { state } = found;
    const paths = backgroundPaths(config.stateDir, state.host, state.port);
    const kubeconfigPath = claim(paths, state, tag);
    if (kubeconfigPath === undefined) continue;
    if (state.kind === 'start') {
      errLine(`kubetrail: using the kubetrail already listening on ${config.listen}; its output shows this command's requests`);
    } else if (found.started && !config.quiet) {
      errLine(
        `kubetrail: ${found.replaced ? `restarted the background kubetrail on ${config.listen} (${found.replaced})` : `started a background kubetrail on ${config.listen}`} (pid ${state.pid}) for the next commands; it exits after ${durationText(linger)} idle. Stop it: kubetrail stop; never: --linger 0`,
      );
    }
    return runThrough(config, envIn, state, tag, kubeconfigPath, kcArg.path !== undefined ? kcArg.rewrite(kubeconfigPath) : argv);
  }
  return inProcessElsewhere(configIn, argv, envIn, listen.host);
}

async function runThrough(config: Config, envIn: NodeJS.ProcessEnv, state: BackgroundState, tag: string, kubeconfigPath: string, childArgv: string[]): Promise<number> {
  let code: number;
  // The trace begins now: the kubetrail reads this when the command's first request arrives.
  const spawnedAt = epochNow();
  const timingFile = join(timingDir(config.stateDir), tag);
  try {
    writePrivate(timingFile, `spawn ${spawnedAt}\n`, true);
  } catch {
    // an older kubetrail's state dir: the trace begins at the first request
  }
  let exitedAt: number;
  try {
    code = await runChild(childArgv, { ...shimPathEnv(envIn, config.stateDir, readPrivateTextQuietly(kubeconfigPath)), KUBECONFIG: kubeconfigPath });
  } finally {
    exitedAt = epochNow();
    removeQuietly(kubeconfigPath);
  }
  const cutFile = cutMarker(backgroundPaths(config.stateDir, state.host, state.port), tag);
  const cut = readPrivateTextQuietly(cutFile);
  if (cut !== undefined) {
    removeQuietly(cutFile);
    // kubectl reads a cut watch or log stream as its normal end (exit 0): it was not.
    errLine(`kubetrail: the background kubetrail on ${config.listen} stopped while this command had a request open (${cut.trim()}): its output was cut short`);
    return code === 0 ? 1 : code;
  }

  // kubectl has exited: opening process.stderr can no longer affect it.
  const tty = isatty(2);
  try {
    const life = { spawnedAt, exitedAt, exitCode: code };
    const r = await call(config.stateDir, state, { op: 'finish', tag, color: tty && !envIn.NO_COLOR, width: tty ? process.stderr.columns : undefined, life }, FINISH_DEADLINE_MS);
    const body = r.body as { lines?: unknown; warnings?: unknown } | undefined;
    if (r.status !== 200 || !body) throw new Error(`answered ${r.status}`);
    for (const w of Array.isArray(body.warnings) ? body.warnings : []) errLine(String(w));
    if (!config.quiet) for (const l of Array.isArray(body.lines) ? body.lines : []) errLine(String(l));
  } catch (err) {
    errLine(`kubetrail: no trace summary from the kubetrail on ${config.listen}: ${describeError(err)}`);
    removeQuietly(timingFile);
  }
  return code;
}
