/**
 * The wrapper's side of the control calls (protocol.ts): on the state dir's Unix socket when there is one,
 * else over HTTPS on the listener, verified against the state dir's local CA before the token is sent
 * (whoever else holds the port never sees it). Also what is decided by asking: is the recorded kubetrail
 * still that one (owned), and stopping it.
 *
 * Imported by the wrapper's fast path (eslint.config.js lists it): Node built-ins only; node:https is
 * loaded when a call needs it.
 */
import { connect } from 'node:net';
import { join } from 'node:path';
import { describeError } from '../errors.ts';
import { readPrivateText, removeQuietly } from '../fs/private.ts';
import { recordedElsewhere, type Elsewhere } from './addresses.ts';
import { backgroundPaths } from './paths.ts';
import { sameProcess } from './process.ts';
import {
  CONTROL_PREFIX,
  statusBody,
  toHttp,
  toLine,
  TOKEN_HEADER,
  type Busy,
  type ControlAnswer,
  type ControlMessage,
} from './protocol.ts';
import { readState, sameInstance, type BackgroundState } from './state.ts';
import { readToken } from './token.ts';

/** How long a stopped kubetrail is given to exit. */
export const STOP_WAIT_MS = 5_000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A control call to the kubetrail at host:port over HTTPS, verified against this state dir's local CA before
 * the token is sent.
 */
export async function controlCall(
  stateDir: string,
  host: string,
  port: number,
  msg: ControlMessage,
  timeoutMs = 5000,
): Promise<ControlAnswer> {
  const token = readToken(backgroundPaths(stateDir, host, port).token);
  if (!token) throw new Error('no control token in the state dir');
  const ca = readPrivateText(join(stateDir, 'ca.crt'));
  if (ca === undefined) throw new Error('no local CA in the state dir');
  const { method, subpath } = toHttp(msg);
  const { request } = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host,
        port,
        method,
        path: `${CONTROL_PREFIX}${subpath}`,
        ca,
        servername: 'localhost',
        agent: false,
        headers: { [TOKEN_HEADER]: token },
        timeout: timeoutMs,
      },
      (res) => {
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
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** The socket could not be connected to (no such file, nobody listening): the HTTPS path may still answer. */
class NotConnected extends Error {}

/** A control call on the background kubetrail's Unix socket (control.ts listenControlSocket). */
function socketCall(path: string, token: string, msg: ControlMessage, timeoutMs: number): Promise<ControlAnswer> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let buf = '';
    let connected = false;
    const timer = setTimeout(() => s.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => {
      connected = true;
      s.write(toLine(msg, token));
    });
    s.on('data', (c: string) => (buf += c));
    s.on('error', (err) => {
      clearTimeout(timer);
      reject(
        connected || err.message.startsWith('no answer') ? err : new NotConnected(describeError(err), { cause: err }),
      );
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

/**
 * A control call within `timeoutMs` in all: on the socket when there is one; over HTTPS on the listener
 * only when the socket cannot be connected to (a kubetrail that does not answer on its socket in time is
 * hung: asking it again over HTTPS would only double the wait).
 */
export async function call(
  stateDir: string,
  st: BackgroundState,
  msg: ControlMessage,
  timeoutMs: number,
): Promise<ControlAnswer> {
  const until = Date.now() + timeoutMs;
  const token = readToken(backgroundPaths(stateDir, st.host, st.port).token);
  if (st.socket && token) {
    try {
      return await socketCall(st.socket, token, msg, timeoutMs);
    } catch (err) {
      if (!(err instanceof NotConnected)) throw err;
    }
  }
  return controlCall(stateDir, st.host, st.port, msg, Math.max(until - Date.now(), 1));
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
export async function answers(stateDir: string, st: BackgroundState, timeoutMs = 300): Promise<boolean> {
  try {
    const b = statusBody(await call(stateDir, st, { op: 'status' }, timeoutMs));
    return b?.pid === st.pid && b.instance === st.instance;
  } catch {
    return false;
  }
}

/** The kubetrail another state dir recorded on host:port (addresses.ts), if it is still that kubetrail. */
export async function ownedElsewhere(
  stateDir: string,
  host: string,
  port: number,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Elsewhere | undefined> {
  const other = recordedElsewhere(env, stateDir, host, port);
  return other && (await owned(other.stateDir, other.state)) ? other : undefined;
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

export type StopResult = { stopped: true } | { stopped: false; busy?: Busy };

/**
 * Stop a background kubetrail: by control call, else SIGTERM (only when the pid is still that kubetrail);
 * wait until it is gone. With `ifIdle`, a kubetrail with requests in flight or wrapped commands alive
 * refuses and keeps serving.
 */
export async function stopBackground(stateDir: string, st: BackgroundState, ifIdle = false): Promise<StopResult> {
  try {
    const r = await call(stateDir, st, { op: 'stop', ifIdle }, 2000);
    const b = r.body as { busy?: unknown; open?: unknown; wrappers?: unknown } | undefined;
    if (r.status === 409 && b?.busy === true)
      return { stopped: false, busy: { open: Number(b.open) || 0, wrappers: Number(b.wrappers) || 0 } };
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

/**
 * Stop the background kubetrail recorded for host:port in this state dir, if one is running and idle: one
 * with requests in flight or wrapped commands alive is left serving (a `kubectl get -w` in another terminal
 * would be cut), and `busy` says what it serves. `kubetrail stop` is how the user stops it anyway.
 */
export async function stopBackgroundOn(
  stateDir: string,
  host: string,
  port: number,
): Promise<{ stopped: boolean; busy?: Busy }> {
  const paths = backgroundPaths(stateDir, host, port);
  const st = readState(paths.state);
  if (!st || st.kind !== 'linger') return { stopped: false };
  // A pid reused by another process after an unclean exit is never signalled.
  if (!(await owned(stateDir, st))) {
    if (sameInstance(readState(paths.state), st)) removeQuietly(paths.state);
    return { stopped: false };
  }
  return stopBackground(stateDir, st, true);
}
