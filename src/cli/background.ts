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
 */
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, fchmodSync, openSync, readFileSync, statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { extname, join } from 'node:path';
import { isatty } from 'node:tty';
import { fileURLToPath } from 'node:url';
import { lingerMs, parseListen } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { describeError, KtError, type ErrorCode } from '../errors.ts';
import {
  BACKGROUND_CONFIG_ENV,
  backgroundPaths,
  CONTROL_PREFIX,
  filesUnchanged,
  fingerprint,
  pidAlive,
  privateDir,
  randomTag,
  readState,
  readToken,
  removeQuietly,
  resolveForBackground,
  TOKEN_HEADER,
  writePrivate,
  type BackgroundPaths,
  type BackgroundState,
} from './background-state.ts';
import { runChild, takeKubeconfigArg } from './child.ts';
import { NODE_FLAGS } from './node-flags.ts';
import { errLine } from './output.ts';

const LOG_MAX_BYTES = 1 << 20;
/** How long a wrapper waits for another wrapper's background kubetrail to come up, or for one to stop. */
const START_WAIT_MS = 30_000;
const STOP_WAIT_MS = 5_000;

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
  const ca = readFileSync(join(stateDir, 'ca.crt'), 'utf8');
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

/** A control call on the background kubetrail's Unix socket (see listenControlSocket). */
function socketCall(path: string, token: string, msg: Record<string, unknown>, timeoutMs: number): Promise<ControlAnswer> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let buf = '';
    const timer = setTimeout(() => s.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => s.write(`${JSON.stringify({ ...msg, token })}\n`));
    s.on('data', (c: string) => (buf += c));
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
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

/** Finish (or stop): on the socket when there is one, else over HTTPS on the listener. */
async function call(stateDir: string, st: BackgroundState, msg: { op: 'finish' | 'stop'; tag?: string; color?: boolean; width?: number }, timeoutMs: number): Promise<ControlAnswer> {
  const token = readToken(backgroundPaths(stateDir, st.host, st.port).token);
  if (st.socket && token) {
    try {
      return await socketCall(st.socket, token, msg, timeoutMs);
    } catch {
      // fall through to HTTPS
    }
  }
  const q = msg.op === 'finish' ? `commands/${msg.tag ?? ''}/finish?color=${msg.color ? 1 : 0}${msg.width ? `&width=${msg.width}` : ''}` : 'stop';
  return controlCall(stateDir, st.host, st.port, 'POST', q, timeoutMs);
}

function matches(st: BackgroundState | undefined, fp: string): boolean {
  return st !== undefined && st.fingerprint === fp && pidAlive(st.pid) && filesUnchanged(st.files);
}

async function waitForExit(pid: number, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (pidAlive(pid)) {
    if (Date.now() > until) return false;
    await sleep(20);
  }
  return true;
}

/** Stop a background kubetrail: by control call, else SIGTERM; wait until it is gone. */
export async function stopBackground(stateDir: string, st: BackgroundState): Promise<boolean> {
  try {
    await call(stateDir, st, { op: 'stop' }, 2000);
  } catch {
    // not answering: signal it
  }
  if (await waitForExit(st.pid, STOP_WAIT_MS)) return true;
  try {
    process.kill(st.pid, 'SIGTERM');
  } catch {
    return true;
  }
  return waitForExit(st.pid, STOP_WAIT_MS);
}

type Started = { ok: true; state: BackgroundState } | { ok: false; code: string; message: string };

/** Start the background kubetrail (this wrapper holds the lock) and wait until it serves or fails. */
async function spawnBackground(config: Config, env: NodeJS.ProcessEnv, paths: BackgroundPaths): Promise<Started> {
  privateDir(paths.dir);
  let size = 0;
  try {
    size = statSync(paths.log).size;
  } catch {
    // new log
  }
  const logFd = openSync(paths.log, size > LOG_MAX_BYTES ? 'w' : 'a', 0o600);
  if ((fstatSync(logFd).mode & 0o077) !== 0) fchmodSync(logFd, 0o600);
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

/** Take the start lock (O_EXCL); a lock whose holder died is removed. */
function tryLock(path: string): boolean {
  try {
    writePrivate(path, `${process.pid}\n`, true);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  let holder = NaN;
  try {
    holder = Number(readFileSync(path, 'utf8').trim());
  } catch {
    return false;
  }
  if (Number.isSafeInteger(holder) && !pidAlive(holder)) removeQuietly(path);
  return false;
}

interface Found {
  state: BackgroundState;
  /** This wrapper started it (say so once). */
  started: boolean;
  replaced: boolean;
}

async function findOrStart(config: Config, env: NodeJS.ProcessEnv, host: string, port: number, fp: string): Promise<Found | undefined> {
  const paths = backgroundPaths(config.stateDir, host, port);
  let replaced = false;
  const until = Date.now() + START_WAIT_MS;
  while (Date.now() < until) {
    const st = readState(paths.state);
    if (st && matches(st, fp)) {
      if (await portOpen(st.host, st.port)) return { state: st, started: false, replaced };
      // Alive but not listening: it is stopping. Wait for it to go.
      await sleep(20);
      continue;
    } else if (st && pidAlive(st.pid)) {
      // Another configuration. A foreground `kubetrail start` is the user's: never stopped from here.
      if (st.kind === 'start') return undefined;
      if (!(await stopBackground(config.stateDir, st))) return undefined;
      replaced = true;
      continue;
    } else if (st) {
      // Crashed or killed: its files are stale.
      if (readState(paths.state)?.pid === st.pid) removeQuietly(paths.state);
    }
    privateDir(paths.dir);
    if (!tryLock(paths.lock)) {
      // Another wrapper is starting one: wait for it.
      await sleep(20);
      continue;
    }
    try {
      // Checked under the lock: a background kubetrail that came up meanwhile, or something else on the port.
      const again = readState(paths.state);
      if (matches(again, fp)) continue;
      if (await portOpen(host, port)) return undefined;
      const r = await spawnBackground(config, env, paths);
      if (r.ok) return { state: r.state, started: true, replaced };
      if (r.code === 'EADDRINUSE') return undefined;
      if (r.code.startsWith('KT_ERR_')) throw new KtError(r.code as ErrorCode, r.message);
      errLine(`kubetrail: the background kubetrail did not start (${r.message}); serving this command in-process`);
      return undefined;
    } finally {
      removeQuietly(paths.lock);
    }
  }
  return undefined;
}

function durationText(ms: number): string {
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
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
  const found = await findOrStart(config, env, listen.host, listen.port, fp);
  if (!found) return undefined;
  const { state } = found;
  if (state.kind === 'start') {
    errLine(`kubetrail: using the kubetrail already listening on ${config.listen}; its output shows this command's requests`);
  } else if (found.started && !config.quiet) {
    errLine(
      `kubetrail: ${found.replaced ? 'restarted' : 'started'} a background kubetrail on ${config.listen} (pid ${state.pid}) for the next commands; it exits after ${durationText(linger)} idle. Stop it: kubetrail stop; never: --linger 0`,
    );
  }

  const tag = randomTag();
  const paths = backgroundPaths(config.stateDir, state.host, state.port);
  const kubeconfigPath = join(paths.commands, `${process.pid}-${tag}.yaml`);
  const template = readFileSync(state.template, 'utf8');
  try {
    writePrivate(kubeconfigPath, template.replaceAll(state.placeholder, tag), true);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    privateDir(paths.commands);
    writePrivate(kubeconfigPath, template.replaceAll(state.placeholder, tag), true);
  }
  const childArgv = kcArg.path !== undefined ? kcArg.rewrite(kubeconfigPath) : argv;
  let code: number;
  try {
    code = await runChild(childArgv, { ...envIn, KUBECONFIG: kubeconfigPath });
  } finally {
    removeQuietly(kubeconfigPath);
  }

  // kubectl has exited: opening process.stderr can no longer affect it.
  const tty = isatty(2);
  try {
    const r = await call(config.stateDir, state, { op: 'finish', tag, color: tty && !envIn.NO_COLOR, width: tty ? process.stderr.columns : undefined }, 5000);
    const body = r.body as { lines?: unknown; warnings?: unknown } | undefined;
    if (r.status !== 200 || !body) throw new Error(`answered ${r.status}`);
    for (const w of Array.isArray(body.warnings) ? body.warnings : []) errLine(String(w));
    if (!config.quiet) for (const l of Array.isArray(body.lines) ? body.lines : []) errLine(String(l));
  } catch (err) {
    errLine(`kubetrail: no trace summary from the kubetrail on ${config.listen}: ${describeError(err)}`);
  }
  return code;
}
