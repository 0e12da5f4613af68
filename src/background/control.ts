/**
 * The serving side of the control calls (protocol.ts), for both kinds of kubetrail that wrapped commands use:
 * the background one (daemon.ts) and a foreground `kubetrail start` (foreground.ts). The same answers on
 * HTTPS under CONTROL_PREFIX (controlHandler, given to the proxy as `onControl`) and on the state dir's Unix
 * socket (listenControlSocket).
 */
import { chmodSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server } from 'node:net';
import { isCommandTag, randomTag } from '../command-tag.ts';
import type { Config } from '../config/schema.ts';
import { describeError } from '../errors.ts';
import { removeQuietly } from '../fs/private.ts';
import type { ControlHandler } from '../proxy/control.ts';
import type { Instrumentation } from '../cli/telemetry-setup.ts';
import {
  answerLine,
  FINISH_WAIT_MS,
  fromHttp,
  fromLine,
  TOKEN_HEADER,
  type Busy,
  type ControlAnswer,
  type ControlMessage,
  type StatusBody,
} from './protocol.ts';
import { fingerprint, telemetryKey } from './state.ts';
import { tokenMatches } from './token.ts';

/** Who answers: what a status call reports besides its pid and load. */
export interface Identity {
  /** This process's random id (BackgroundState.instance). */
  instance: string;
  fingerprint: string;
  /** telemetryKey: a wrapped command with other telemetry settings is not served here. */
  telemetryKey: string;
  /** The cluster route ids served (to the control token's holder only: they are not probeable). */
  routeIds: string[];
  lingerMs: number;
  startedAt: number;
}

/** A new process's identity, from the configuration it serves (the same for both kinds of kubetrail). */
export function newIdentity(config: Config, env: NodeJS.ProcessEnv, routeIds: string[], lingerMs: number): Identity {
  return {
    instance: randomTag(),
    fingerprint: fingerprint(config, env),
    telemetryKey: telemetryKey(config, env),
    routeIds,
    lingerMs,
    startedAt: Date.now(),
  };
}

/** What ends a tagged command's trace and renders its waterfall (the telemetry of this kubetrail). */
export type Finisher = Pick<Instrumentation, 'finishCommand' | 'render'>;

/** A background kubetrail's own: its idle clock and its exit. A foreground `kubetrail start` has neither. */
export interface Lingering {
  /** A control call is activity: the idle clock starts again. */
  touch(): void;
  /** Take this kubetrail out of the state file if it is idle: false (state kept or restored) when it is busy. */
  withdraw(): boolean;
  stop(): void;
}

export interface ControlDeps {
  token: string;
  identity: Identity;
  /** Requests in flight and wrapped commands alive: a busy background is not replaced (stop?ifIdle=1). */
  busy(): Busy;
  finisher: Finisher;
  /** Warnings not yet shown to a wrapped command (each is shown once). */
  takeWarnings?(): Promise<string[]>;
  /** Present in the background kubetrail only: it is stopped by a call, a foreground one in its terminal. */
  lingering?: Lingering;
}

type Answer = ControlAnswer & { after?: () => void };

/** One control call, whichever way it came; `method` is the HTTP method (a socket call counts as POST). */
export async function control(d: ControlDeps, msg: ControlMessage, method: string, token: unknown): Promise<Answer> {
  // Any local user can reach a loopback port: nothing about a command without the state dir's token.
  if (!tokenMatches(d.token, token)) return { status: 401, body: { error: 'unauthorized' } };
  d.lingering?.touch();
  if (msg.op === 'status') {
    const { identity: id } = d;
    const body: StatusBody = {
      kubetrail: true,
      pid: process.pid,
      instance: id.instance,
      kind: d.lingering ? 'linger' : 'start',
      fingerprint: id.fingerprint,
      telemetry: id.telemetryKey,
      routes: id.routeIds,
      startedAt: id.startedAt,
      lingerMs: id.lingerMs,
      ...d.busy(),
    };
    return { status: 200, body };
  }
  if (method !== 'POST') return { status: 405, body: { error: 'POST only' } };
  if (msg.op === 'stop') {
    const lingering = d.lingering;
    if (!lingering) return { status: 409, body: { error: 'a foreground kubetrail start: stop it in its terminal' } };
    // Replacing it now would cut another terminal's `kubectl logs -f`, exec or watch.
    if (msg.ifIdle === true && !lingering.withdraw()) return { status: 409, body: { busy: true, ...d.busy() } };
    return { status: 200, body: { stopping: true, pid: process.pid }, after: () => lingering.stop() };
  }
  if (!isCommandTag(msg.tag)) return { status: 400, body: { error: 'bad command tag' } };
  const summary = await d.finisher.finishCommand(msg.tag, FINISH_WAIT_MS, msg.life);
  const lines = summary ? await d.finisher.render(summary, { color: msg.color === true, width: msg.width }) : [];
  d.lingering?.touch();
  return { status: 200, body: { lines, warnings: (await d.takeWarnings?.()) ?? [] } };
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/** The control calls on the listener (the proxy hands over what is under CONTROL_PREFIX). */
export function controlHandler(d: ControlDeps): ControlHandler {
  return (subpath: string, req: IncomingMessage, res: ServerResponse) => {
    const msg = fromHttp(subpath, (req.url ?? '').split('?')[1] ?? '');
    if (!msg) return false;
    control(d, msg, req.method ?? 'GET', req.headers[TOKEN_HEADER]).then(
      (a) => {
        if (a.after) res.on('finish', a.after);
        json(res, a.status, a.body);
      },
      (err: unknown) => json(res, 500, { error: describeError(err) }),
    );
    return true;
  };
}

/**
 * The same control calls on a Unix socket in the private state dir: one JSON line each way. A wrapped
 * command uses it after kubectl exits because it costs no TLS (a first TLS connection costs a Node process
 * ~15 ms); the directory's 0700 means only this user can connect, and the token is checked all the same.
 */
export async function listenControlSocket(
  path: string,
  d: ControlDeps,
  log: (line: string) => void,
): Promise<Server | undefined> {
  // A socket path is limited to ~100 bytes; beyond it wrappers use the HTTPS control path.
  if (Buffer.byteLength(path) > 100) return undefined;
  removeQuietly(path);
  const server = createNetServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => sock.destroy());
    sock.setTimeout(10_000, () => sock.destroy());
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > 64 * 1024) sock.destroy();
      const nl = buf.indexOf('\n');
      if (nl === -1) return;
      const line = fromLine(buf.slice(0, nl));
      if (!line) {
        sock.end(answerLine({ status: 400, body: { error: 'bad request' } }));
        return;
      }
      sock.pause();
      control(d, line.msg, 'POST', line.token).then(
        (a) => {
          sock.end(answerLine(a), () => a.after?.());
        },
        (err: unknown) => sock.end(answerLine({ status: 500, body: { error: describeError(err) } })),
      );
    });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(path, 0o600);
  } catch (err) {
    log(`kubetrail: no control socket at ${path}: ${describeError(err)}`);
    return undefined;
  }
  server.on('error', (err) => log(`kubetrail: control socket: ${describeError(err)}`));
  return server;
}
