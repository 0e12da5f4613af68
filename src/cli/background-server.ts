/**
 * The kubetrail that serves wrapped commands from the background (ssh's ControlPersist, gpg-agent): started
 * by the first wrapped command, detached, on the stable listen address; it exits once it has been idle for
 * --linger (no request in flight or for that long, and no wrapped command running). A foreground
 * `kubetrail start` answers the same control calls, so wrapped commands with the same configuration use it
 * the same way.
 *
 * Control calls (under CONTROL_PREFIX, each with the state dir's control token in TOKEN_HEADER):
 *   POST commands/<tag>/finish?color=0|1&width=N   end the tagged command's trace; its waterfall lines and
 *                                                 any warnings not yet shown  → {lines, warnings}
 *   POST stop                                     exit (background only)
 *   GET  status                                   {pid, kind, fingerprint, startedAt, lingerMs}
 */
import { chmodSync, closeSync, readdirSync, writeSync } from 'node:fs';
import { connect, createServer as createNetServer, type Server } from 'node:net';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { lingerMs as parseLinger } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { describeError, isKtError } from '../errors.ts';
import { rewriteKubeconfig } from '../kubeconfig/rewrite.ts';
import { ensurePrivateDir, writeKubeconfig } from '../kubeconfig/write.ts';
import type { StageObserver } from '../proxy/events.ts';
import { startProxy, type RunningProxy } from '../proxy/server.ts';
import {
  BACKGROUND_CONFIG_ENV,
  backgroundPaths,
  ensureToken,
  fileDigest,
  fingerprint,
  kubeconfigCandidates,
  pidAlive,
  randomTag,
  readState,
  removeQuietly,
  replacePrivate,
  TOKEN_HEADER,
  tokenMatches,
  type BackgroundPaths,
  type BackgroundState,
} from './background-state.ts';
import { errLine } from './output.ts';
import { listenUrl, prepare, type Prepared } from './setup.ts';
import type { Instrumentation } from './telemetry-setup.ts';

/** How long a finish call waits for the command's requests that are still open (kubectl has exited). */
const FINISH_WAIT_MS = 1000;

export interface ControlDeps {
  kind: BackgroundState['kind'];
  token: string;
  fingerprint: string;
  lingerMs: number;
  startedAt: number;
  telemetry: Instrumentation;
  /** Warnings not yet shown to a wrapped command (each is shown once). */
  takeWarnings(): Promise<string[]>;
  onActivity(): void;
  stop(): void;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

export interface ControlRequest {
  op: 'finish' | 'stop' | 'status';
  method: string;
  token: string | string[] | undefined;
  tag?: string;
  color?: boolean;
  width?: number;
}

/** One control call, whichever way it came (HTTPS on the listener, or the state dir's socket). */
export async function control(d: ControlDeps, r: ControlRequest): Promise<{ status: number; body: unknown; after?: () => void }> {
  // Any local user can reach a loopback port: nothing about a command without the state dir's token.
  if (!tokenMatches(d.token, r.token)) return { status: 401, body: { error: 'unauthorized' } };
  d.onActivity();
  if (r.op === 'status') {
    return { status: 200, body: { kubetrail: true, pid: process.pid, kind: d.kind, fingerprint: d.fingerprint, startedAt: d.startedAt, lingerMs: d.lingerMs } };
  }
  if (r.method !== 'POST') return { status: 405, body: { error: 'POST only' } };
  if (r.op === 'stop') {
    if (d.kind !== 'linger') return { status: 409, body: { error: 'a foreground kubetrail start: stop it in its terminal' } };
    return { status: 200, body: { stopping: true, pid: process.pid }, after: () => d.stop() };
  }
  if (!/^[0-9a-z]{6,10}$/.test(r.tag ?? '')) return { status: 400, body: { error: 'bad command tag' } };
  const summary = await d.telemetry.finishCommand(r.tag ?? '', FINISH_WAIT_MS);
  const width = r.width !== undefined && Number.isFinite(r.width) && r.width > 0 ? r.width : undefined;
  const lines = summary ? d.telemetry.render(summary, { color: r.color === true, width }) : [];
  d.onActivity();
  return { status: 200, body: { lines, warnings: await d.takeWarnings() } };
}

export function controlHandler(d: ControlDeps): (subpath: string, req: IncomingMessage, res: ServerResponse) => boolean {
  return (subpath, req, res) => {
    const finish = /^commands\/([^/]+)\/finish$/.exec(subpath);
    if (!finish && subpath !== 'stop' && subpath !== 'status') return false;
    const q = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
    const r: ControlRequest = {
      op: finish ? 'finish' : (subpath as 'stop' | 'status'),
      method: req.method ?? 'GET',
      token: req.headers[TOKEN_HEADER],
      tag: finish?.[1],
      color: q.get('color') === '1',
      width: q.has('width') ? Number(q.get('width')) : undefined,
    };
    control(d, r).then(
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
export async function listenControlSocket(path: string, d: ControlDeps, log: (line: string) => void): Promise<Server | undefined> {
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
      let r: ControlRequest;
      try {
        r = JSON.parse(buf.slice(0, nl)) as ControlRequest;
      } catch {
        sock.end(`${JSON.stringify({ status: 400, body: { error: 'bad request' } })}\n`);
        return;
      }
      sock.pause();
      control(d, { op: r.op, method: 'POST', token: r.token, tag: r.tag, color: r.color, width: r.width }).then(
        (a) => {
          sock.end(`${JSON.stringify({ status: a.status, body: a.body })}\n`, () => a.after?.());
        },
        (err: unknown) => sock.end(`${JSON.stringify({ status: 500, body: { error: describeError(err) } })}\n`),
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

/** True only when the endpoint's host actively refuses a TCP connection (within 250 ms). */
function refuses(endpoint: string): Promise<boolean> {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return Promise.resolve(false);
  }
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname.replace(/^\[|\]$/g, ''), port });
    const done = (v: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(false), 250);
    socket.once('connect', () => done(false));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED'));
  });
}

/**
 * Telemetry's warnings, each shown once to the next wrapped command that finishes (and logged). A collector
 * that refuses connections is known before any export fails: the first wrapped command is told, as it is
 * in-process; the exporter's own first-failure line is then not repeated.
 */
export function warningRelay(config: Config, env: NodeJS.ProcessEnv, log: (line: string) => void): { warn: (line: string) => void; take: () => Promise<string[]> } {
  const pending: string[] = [];
  let exportWarned = false;
  const warn = (line: string): void => {
    log(line);
    const isExport = line.startsWith('kubetrail: cannot export traces');
    if (isExport && exportWarned) return;
    if (isExport) exportWarned = true;
    pending.push(line);
  };
  const disabled = /^true$/i.test(env.OTEL_SDK_DISABLED ?? '');
  const probe = disabled
    ? Promise.resolve()
    : refuses(config.otlpEndpoint).then((refused) => {
        if (refused) warn(`kubetrail: cannot export traces to ${config.otlpEndpoint} (connection refused); traces are dropped, kubectl is unaffected`);
      });
  return {
    warn,
    async take() {
      await probe;
      return pending.splice(0);
    },
  };
}

/** Counts requests in flight and remembers the last activity: the idle clock. */
export function activityObserver(): StageObserver & { open(): number; last(): number; touch(): void } {
  let open = 0;
  let last = Date.now();
  return {
    onRequestStart() {
      open++;
      last = Date.now();
      return undefined;
    },
    onUpstreamConnected: () => undefined,
    onResponseStart: () => undefined,
    onRequestEnd() {
      open = Math.max(0, open - 1);
      last = Date.now();
    },
    open: () => open,
    last: () => last,
    touch: () => {
      last = Date.now();
    },
  };
}

/** Files whose change makes a running kubetrail stale: kubeconfigs, what they point at, the local CA. */
export function dependedFiles(config: Config, env: NodeJS.ProcessEnv, p: Prepared): BackgroundState['files'] {
  const paths = new Set<string>(kubeconfigCandidates(config.kubeconfig, env));
  for (const c of p.kubeconfig.clusters.values()) {
    const f = c.body['certificate-authority'];
    if (typeof f === 'string') paths.add(f);
  }
  for (const u of p.kubeconfig.users.values()) {
    for (const k of ['client-certificate', 'client-key', 'tokenFile']) {
      const f = u.body[k];
      if (typeof f === 'string') paths.add(f);
    }
  }
  paths.add(join(config.stateDir, 'ca.pem'));
  paths.add(join(config.stateDir, 'server.pem'));
  return [...paths].map((path) => ({ path, sha256: fileDigest(path) }));
}

/** Write the kubeconfig template and the state file that let wrapped commands use this kubetrail. */
export function publish(opts: {
  kind: BackgroundState['kind'];
  config: Config;
  env: NodeJS.ProcessEnv;
  prepared: Prepared;
  proxy: RunningProxy;
  paths: BackgroundPaths;
  fingerprint: string;
  lingerMs: number;
  log: string | undefined;
  socket: string | undefined;
}): BackgroundState {
  const { config, prepared, paths } = opts;
  ensurePrivateDir(paths.dir);
  ensurePrivateDir(paths.commands);
  const placeholder = randomTag();
  writeKubeconfig(paths.template, rewriteKubeconfig(prepared.kubeconfig, { listenUrl: opts.proxy.url, caPem: prepared.pki.caPem, currentContext: config.context, commandTag: placeholder }));
  const state: BackgroundState = {
    v: 1,
    kind: opts.kind,
    pid: process.pid,
    host: prepared.listen.host,
    port: opts.proxy.port,
    fingerprint: opts.fingerprint,
    files: dependedFiles(config, opts.env, prepared),
    template: paths.template,
    placeholder,
    socket: opts.socket,
    lingerMs: opts.lingerMs,
    log: opts.log,
    startedAt: Date.now(),
  };
  replacePrivate(paths.state, `${JSON.stringify(state)}\n`);
  return state;
}

/** Remove the state file if it is still this process's (a replacement may have written its own). */
export function unpublish(paths: BackgroundPaths): void {
  if (readState(paths.state)?.pid === process.pid) {
    removeQuietly(paths.state);
    removeQuietly(paths.template);
    removeQuietly(paths.socket);
  }
}

/** Wrapped commands still running (their kubeconfig files); files of wrappers that died are removed. */
export function liveWrappers(dir: string): number {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  let live = 0;
  for (const name of names) {
    const pid = Number(/^(\d+)-[0-9a-z]+\.yaml$/.exec(name)?.[1]);
    if (!Number.isSafeInteger(pid)) continue;
    if (pidAlive(pid)) live++;
    else removeQuietly(join(dir, name));
  }
  return live;
}

/** `kubetrail __background`: the process a wrapped command starts. Reports readiness on descriptor 3. */
export async function runBackground(): Promise<number> {
  const raw = process.env[BACKGROUND_CONFIG_ENV];
  delete process.env[BACKGROUND_CONFIG_ENV];
  const report = (msg: object): void => {
    try {
      writeSync(3, `${JSON.stringify(msg)}\n`);
      closeSync(3);
    } catch {
      // the wrapper went away
    }
  };
  const log = (line: string): void => errLine(`${new Date().toISOString()} [${process.pid}] ${line}`);
  if (!raw) {
    errLine('kubetrail: __background is started by wrapped commands, not by hand');
    return 2;
  }
  const config = JSON.parse(raw) as Config;
  const env = process.env;
  const linger = parseLinger(config.linger);
  let prepared: Prepared;
  try {
    prepared = await prepare(config, env);
  } catch (err) {
    report({ ok: false, code: isKtError(err) ? err.code : 'KT_ERR_STATE_DIR', message: describeError(err) });
    return 2;
  }
  const paths = backgroundPaths(config.stateDir, prepared.listen.host, prepared.listen.port);
  const token = ensureToken(paths.token);
  const fp = fingerprint(config, env);
  const activity = activityObserver();
  const warnings = warningRelay(config, env, log);
  const { instrument } = await import('./telemetry-setup.ts');
  // In-process, a wrapped command's spans are flushed before kubetrail exits, so its trace is in the
  // collector by the time the link is printed. Here export is asynchronous: send each batch soon after its
  // spans end (the SDK's default waits 500 ms), unless the user chose a delay.
  const telemetryEnv = { ...env, OTEL_BSP_SCHEDULE_DELAY: env.OTEL_BSP_SCHEDULE_DELAY ?? '50' };
  const telemetry = instrument({ ...config, quiet: true }, 'start', telemetryEnv, { warn: warnings.warn, observers: [activity] });
  let stopRequested: (why: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => (stopRequested = resolve));
  const startedAt = Date.now();
  const deps: ControlDeps = {
    kind: 'linger',
    token,
    fingerprint: fp,
    lingerMs: linger,
    startedAt,
    telemetry,
    takeWarnings: warnings.take,
    onActivity: () => activity.touch(),
    stop: () => stopRequested('stop requested'),
  };
  let proxy: RunningProxy;
  try {
    proxy = await startProxy({
      routes: prepared.routes,
      pki: prepared.pki,
      host: prepared.listen.host,
      port: prepared.listen.port,
      observer: telemetry.observer,
      onInternalError: (e) => log(`kubetrail: internal error: ${describeError(e)}`),
      onControl: controlHandler(deps),
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    report({ ok: false, code: code === 'EADDRINUSE' ? 'EADDRINUSE' : 'KT_ERR_LISTEN', message: `--listen ${config.listen}: ${describeError(err)}` });
    return 2;
  }
  // Holding the port makes this the address's kubetrail: a socket left by a killed one is replaced.
  ensurePrivateDir(paths.dir);
  const socket = await listenControlSocket(paths.socket, deps, log);
  let state: BackgroundState;
  try {
    state = publish({ kind: 'linger', config, env, prepared, proxy, paths, fingerprint: fp, lingerMs: linger, log: paths.log, socket: socket ? paths.socket : undefined });
  } catch (err) {
    socket?.close();
    await proxy.close();
    report({ ok: false, code: isKtError(err) ? err.code : 'KT_ERR_STATE_DIR', message: describeError(err) });
    return 2;
  }
  log(`serving ${listenUrl(prepared.listen)} for ${prepared.routes.clusters.size} cluster(s); exits after ${config.linger} idle`);
  report({ ok: true, pid: process.pid, port: state.port });

  // The idle clock, and a check that this process is still the one wrapped commands find.
  let timer: NodeJS.Timeout | undefined;
  const tick = (): void => {
    const current = readState(paths.state);
    if (current?.pid !== process.pid) {
      stopRequested('its state file was removed or replaced');
      return;
    }
    if (liveWrappers(paths.commands) > 0 || activity.open() > 0) activity.touch();
    const idle = Date.now() - activity.last();
    if (idle >= linger) {
      stopRequested(`idle for ${config.linger}`);
      return;
    }
    timer = setTimeout(tick, Math.min(Math.max(linger - idle, 20), 5000));
  };
  timer = setTimeout(tick, Math.min(linger, 5000));
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(sig, () => stopRequested(sig));

  const why = await stopped;
  clearTimeout(timer);
  log(`stopping: ${why}`);
  unpublish(paths);
  socket?.close();
  await proxy.close();
  await telemetry.finish();
  return 0;
}

/** For `kubetrail start`: answer wrapped commands with the same configuration (and the control calls). */
export function foregroundControl(
  config: Config,
  env: NodeJS.ProcessEnv,
): { deps: Omit<ControlDeps, 'telemetry'>; publish: (prepared: Prepared, proxy: RunningProxy, telemetry: Instrumentation) => Promise<void>; unpublish: () => void } | undefined {
  let paths: BackgroundPaths | undefined;
  let socket: Server | undefined;
  let token: string;
  try {
    token = ensureToken(backgroundPaths(config.stateDir, '', 0).token);
  } catch {
    return undefined;
  }
  const pending: string[] = [];
  const fp = fingerprint(config, env);
  const deps: Omit<ControlDeps, 'telemetry'> = {
    kind: 'start',
    token,
    fingerprint: fp,
    lingerMs: 0,
    startedAt: Date.now(),
    takeWarnings: () => Promise.resolve(pending.splice(0)),
    onActivity: () => undefined,
    stop: () => undefined,
  };
  return {
    deps,
    async publish(prepared, proxy, telemetry) {
      if (proxy.port === 0) return;
      paths = backgroundPaths(config.stateDir, prepared.listen.host, proxy.port);
      try {
        ensurePrivateDir(paths.dir);
        socket = await listenControlSocket(paths.socket, { ...deps, telemetry }, errLine);
        publish({ kind: 'start', config, env, prepared, proxy, paths, fingerprint: fp, lingerMs: 0, log: undefined, socket: socket ? paths.socket : undefined });
      } catch (err) {
        errLine(`kubetrail: wrapped commands will not find this kubetrail: ${describeError(err)}`);
      }
    },
    unpublish() {
      socket?.close();
      if (paths) unpublish(paths);
    },
  };
}

/** Stop the background kubetrail recorded for host:port in this state dir, if one is running. */
export async function stopBackgroundOn(stateDir: string, host: string, port: number): Promise<boolean> {
  const st = readState(backgroundPaths(stateDir, host, port).state);
  if (!st || st.kind !== 'linger' || !pidAlive(st.pid)) return false;
  const { stopBackground } = await import('./background.ts');
  return stopBackground(stateDir, st);
}
