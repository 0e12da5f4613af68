/**
 * The control calls between a wrapped command (client.ts) and the kubetrail serving it (control.ts): one
 * message shape, and its two encodings, each written and read here only.
 *
 * Over HTTPS on the listener, under CONTROL_PREFIX, with the state dir's control token in TOKEN_HEADER:
 *   POST commands/<tag>/finish?color=0|1&width=N&spawned=T&exited=T&exit=N   end the tagged command's
 *        trace: its waterfall lines and the warnings not yet shown  → {lines, warnings}
 *   POST stop[?ifIdle=1]   exit (background only); with ifIdle, only when no request is in flight and no
 *                          wrapped command is alive (else 409 {busy, open, wrappers})
 *   GET  status            {kubetrail, pid, instance, kind, fingerprint, telemetry, routes, startedAt,
 *                          lingerMs, open, wrappers}
 * On the state dir's Unix socket: the same message as one JSON line with a `token` field; the answer is one
 * JSON line {status, body}.
 *
 * A new control message: a member of ControlMessage, its two encodings below, its answer in control.ts.
 * Imported by the wrapper's fast path (eslint.config.js lists it): Node built-ins only.
 */
import { CONTROL_PREFIX } from '../proxy/control.ts';
import type { KubectlLife } from '../telemetry/commands.ts';

export { CONTROL_PREFIX };
export const TOKEN_HEADER = 'x-kubetrail-token';
/** The wrapper hands the background kubetrail its resolved configuration in this variable. */
export const BACKGROUND_CONFIG_ENV = 'KUBETRAIL_BACKGROUND_CONFIG';

/** How long a finish call waits for the command's requests that are still open (kubectl has exited). */
export const FINISH_WAIT_MS = 1000;
/** The finish call's whole budget, as the wrapper gives it (FINISH_WAIT_MS and the rendering). */
export const FINISH_DEADLINE_MS = 1500;

export type ControlMessage =
  | { op: 'finish'; tag: string; color?: boolean; width?: number | undefined; life?: KubectlLife | undefined }
  | { op: 'stop'; ifIdle?: boolean }
  | { op: 'status' };

export interface ControlAnswer {
  status: number;
  body: unknown;
}

/** What a kubetrail serves: requests in flight, wrapped commands alive. */
export interface Busy {
  open: number;
  wrappers: number;
}

/** The wrapper's view of kubectl's life, when it is one (a finite start, exit and code, in order). */
export function validLife(l: unknown): KubectlLife | undefined {
  const o = l as Partial<KubectlLife> | undefined;
  const ok = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  return o && ok(o.spawnedAt) && ok(o.exitedAt) && ok(o.exitCode) && o.exitedAt >= o.spawnedAt
    ? { spawnedAt: o.spawnedAt, exitedAt: o.exitedAt, exitCode: o.exitCode }
    : undefined;
}

function validWidth(w: unknown): number | undefined {
  return typeof w === 'number' && Number.isFinite(w) && w > 0 ? w : undefined;
}

/** The HTTPS form: method and path under CONTROL_PREFIX. */
export function toHttp(msg: ControlMessage): { method: 'GET' | 'POST'; subpath: string } {
  if (msg.op === 'status') return { method: 'GET', subpath: 'status' };
  if (msg.op === 'stop') return { method: 'POST', subpath: `stop${msg.ifIdle ? '?ifIdle=1' : ''}` };
  const life = msg.life ? `&spawned=${msg.life.spawnedAt}&exited=${msg.life.exitedAt}&exit=${msg.life.exitCode}` : '';
  return {
    method: 'POST',
    subpath: `commands/${msg.tag}/finish?color=${msg.color ? 1 : 0}${msg.width ? `&width=${msg.width}` : ''}${life}`,
  };
}

/** A request's path under CONTROL_PREFIX and its query; undefined when it names no control call. */
export function fromHttp(path: string, query: string): ControlMessage | undefined {
  const q = new URLSearchParams(query);
  if (path === 'status') return { op: 'status' };
  if (path === 'stop') return { op: 'stop', ifIdle: q.get('ifIdle') === '1' };
  const finish = /^commands\/([^/]+)\/finish$/.exec(path);
  if (!finish) return undefined;
  const life = q.has('spawned')
    ? { spawnedAt: Number(q.get('spawned')), exitedAt: Number(q.get('exited')), exitCode: Number(q.get('exit')) }
    : undefined;
  return {
    op: 'finish',
    tag: finish[1] ?? '',
    color: q.get('color') === '1',
    width: validWidth(q.has('width') ? Number(q.get('width')) : undefined),
    life: validLife(life),
  };
}

/** The socket form: one JSON line, the token in it. */
export function toLine(msg: ControlMessage, token: string): string {
  return `${JSON.stringify({ ...msg, token })}\n`;
}

/** One line read from the socket; undefined when it is no control message. */
export function fromLine(line: string): { msg: ControlMessage; token: unknown } | undefined {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (typeof o !== 'object' || o === null) return undefined;
  const token = o.token;
  if (o.op === 'status') return { msg: { op: 'status' }, token };
  if (o.op === 'stop') return { msg: { op: 'stop', ifIdle: o.ifIdle === true }, token };
  if (o.op !== 'finish') return undefined;
  return {
    msg: {
      op: 'finish',
      tag: typeof o.tag === 'string' ? o.tag : '',
      color: o.color === true,
      width: validWidth(o.width),
      life: validLife(o.life),
    },
    token,
  };
}

/** An answer on the socket: one JSON line. */
export function answerLine(a: ControlAnswer): string {
  return `${JSON.stringify({ status: a.status, body: a.body })}\n`;
}

/** The status call's answer, read by the wrapper, `kubetrail start`'s in-process check and doctor. */
export interface StatusBody {
  kubetrail: true;
  pid: number;
  instance: string;
  kind: 'linger' | 'start';
  fingerprint: string;
  telemetry: string;
  routes: string[];
  startedAt: number;
  lingerMs: number;
  open: number;
  wrappers: number;
}

/** A status answer's body when it is a kubetrail's; only the fields callers rely on are checked. */
export function statusBody(a: ControlAnswer): Partial<StatusBody> | undefined {
  const b = a.body as Partial<StatusBody> | undefined;
  return a.status === 200 && b?.kubetrail === true ? b : undefined;
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** What a busy kubetrail serves, for a line: `1 command running, 2 requests open`. */
export function busyText(b: Busy): string {
  return [
    b.wrappers > 0 ? `${plural(b.wrappers, 'command', 'commands')} running` : '',
    b.open > 0 ? `${plural(b.open, 'request', 'requests')} open` : '',
  ]
    .filter(Boolean)
    .join(', ');
}
