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
 *   POST stop[?ifIdle=1]                          exit (background only); with ifIdle, only when no request
 *                                                 is in flight and no wrapped command is alive (else 409)
 *   GET  status                                   {pid, instance, kind, fingerprint, startedAt, lingerMs,
 *                                                 open, wrappers}
 */
import { chmodSync, closeSync, readdirSync, writeSync } from 'node:fs';
import { createServer as createNetServer, type Server } from 'node:net';
import { join } from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { lingerMs as parseLinger } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { describeError, isKtError } from '../errors.ts';
import { installShim } from '../kubeconfig/credential-shim.ts';
import { timingDir } from '../kubeconfig/timing.ts';
import { ensurePrivateDir } from '../fs/private.ts';
import { rewriteKubeconfig } from '../kubeconfig/rewrite.ts';
import { writeKubeconfig } from '../kubeconfig/write.ts';
import type { StageObserver } from '../proxy/events.ts';
import type { KubectlLife } from '../telemetry/commands.ts';
import { redactUrl } from '../redact.ts';
import { refusesConnections } from '../telemetry/sdk.ts';
import { recordAddress } from './addresses.ts';
import { startProxy, type RunningProxy } from '../proxy/server.ts';
import {
  BACKGROUND_CONFIG_ENV,
  backgroundPaths,
  cutMarker,
  ensureToken,
  fileDigest,
  fingerprint,
  kubeconfigCandidates,
  parseMarker,
  pidAlive,
  procStartTime,
  randomTag,
  readState,
  removeQuietly,
  replacePrivate,
  sameInstance,
  templatePath,
  telemetryKey,
  TOKEN_HEADER,
  tokenMatches,
  writePrivate,
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
  /** This process's random id (BackgroundState.instance). */
  instance: string;
  token: string;
  fingerprint: string;
  /** telemetryKey: a wrapped command with other telemetry settings is not served here. */
  telemetryKey: string;
  /** The cluster route ids served (to the control token's holder only: they are not probeable). */
  routeIds: string[];
  lingerMs: number;
  startedAt: number;
  telemetry: Instrumentation;
  /** Warnings not yet shown to a wrapped command (each is shown once). */
  takeWarnings(): Promise<string[]>;
  onActivity(): void;
  /** Requests in flight and wrapped commands alive: a busy background is not replaced (stop?ifIdle=1). */
  busy(): { open: number; wrappers: number };
  /**
   * Take this kubetrail out of the state file if it is idle: false (state kept or restored) when it is busy.
   * Background only.
   */
  withdraw?(): boolean;
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
  ifIdle?: boolean;
  /** finish: the wrapped kubectl's start, exit and exit code, as its wrapper saw them. */
  life?: KubectlLife;
}

function validLife(l: unknown): KubectlLife | undefined {
  const o = l as Partial<KubectlLife> | undefined;
  const ok = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  return o && ok(o.spawnedAt) && ok(o.exitedAt) && ok(o.exitCode) && o.exitedAt >= o.spawnedAt ? { spawnedAt: o.spawnedAt, exitedAt: o.exitedAt, exitCode: o.exitCode } : undefined;
}

/** One control call, whichever way it came (HTTPS on the listener, or the state dir's socket). */
export async function control(d: ControlDeps, r: ControlRequest): Promise<{ status: number; body: unknown; after?: () => void }> {
  // Any local user can reach a loopback port: nothing about a command without the state dir's token.
  if (!tokenMatches(d.token, r.token)) return { status: 401, body: { error: 'unauthorized' } };
  d.onActivity();
  if (r.op === 'status') {
    return {
      status: 200,
      body: {
        kubetrail: true,
        pid: process.pid,
        instance: d.instance,
        kind: d.kind,
        fingerprint: d.fingerprint,
        telemetry: d.telemetryKey,
        routes: d.routeIds,
        startedAt: d.startedAt,
        lingerMs: d.lingerMs,
        ...d.busy(),
      },
    };
  }
  if (r.method !== 'POST') return { status: 405, body: { error: 'POST only' } };
  if (r.op === 'stop') {
    if (d.kind !== 'linger') return { status: 409, body: { error: 'a foreground kubetrail start: stop it in its terminal' } };
    // Replacing it now would cut another terminal's `kubectl logs -f`, exec or watch.
    if (r.ifIdle === true && d.withdraw && !d.withdraw()) return { status: 409, body: { busy: true, ...d.busy() } };
    return { status: 200, body: { stopping: true, pid: process.pid }, after: () => d.stop() };
  }
  if (!/^[0-9a-z]{6,10}$/.test(r.tag ?? '')) return { status: 400, body: { error: 'bad command tag' } };
  const summary = await d.telemetry.finishCommand(r.tag ?? '', FINISH_WAIT_MS, validLife(r.life));
  const width = r.width !== undefined && Number.isFinite(r.width) && r.width > 0 ? r.width : undefined;
  const lines = summary ? await d.telemetry.render(summary, { color: r.color === true, width }) : [];
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
      ifIdle: q.get('ifIdle') === '1',
      life: q.has('spawned') ? { spawnedAt: Number(q.get('spawned')), exitedAt: Number(q.get('exited')), exitCode: Number(q.get('exit')) } : undefined,
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
      control(d, { op: r.op, method: 'POST', token: r.token, tag: r.tag, color: r.color, width: r.width, ifIdle: r.ifIdle, life: r.life }).then(
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
    : refusesConnections(config.otlpEndpoint).then((refused) => {
        if (refused) warn(`kubetrail: cannot export traces to ${redactUrl(config.otlpEndpoint)} (connection refused); traces are dropped, kubectl is unaffected`);
      });
  return {
    warn,
    async take() {
      await probe;
      return pending.splice(0);
    },
  };
}

/**
 * Counts requests in flight and remembers the last activity: the idle clock. Knows which wrapped commands
 * (tags) have requests open, so a stop can tell them their streams were cut.
 */
export function activityObserver(): StageObserver & { open(): number; openTags(): string[]; last(): number; touch(): void } {
  const inFlight = new Map<string, string | undefined>();
  let last = Date.now();
  return {
    onRequestStart(req) {
      inFlight.set(req.id, req.commandTag);
      last = Date.now();
      return undefined;
    },
    onUpstreamConnected: () => undefined,
    onResponseStart: () => undefined,
    onRequestEnd(id) {
      inFlight.delete(id);
      last = Date.now();
    },
    open: () => inFlight.size,
    openTags: () => [...new Set([...inFlight.values()].filter((t): t is string => t !== undefined))],
    last: () => last,
    touch: () => {
      last = Date.now();
    },
  };
}

/**
 * Digests of the kubeconfig files taken before prepare() reads them: a file edited while kubetrail starts
 * then differs from its recorded digest and the next wrapper replaces this kubetrail (never the reverse: a
 * digest of the new content recorded for a kubetrail that loaded the old one).
 */
export function digestsBefore(config: Config, env: NodeJS.ProcessEnv): Map<string, string | null> {
  return new Map(kubeconfigCandidates(config.kubeconfig, env).map((f) => [f, fileDigest(f)]));
}

/** Files whose change makes a running kubetrail stale: kubeconfigs, what they point at, the local CA. */
export function dependedFiles(config: Config, env: NodeJS.ProcessEnv, p: Prepared, before: Map<string, string | null> = new Map()): BackgroundState['files'] {
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
  return [...paths].map((path) => ({ path, sha256: before.has(path) ? (before.get(path) ?? null) : fileDigest(path) }));
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
  instance: string;
  before?: Map<string, string | null>;
}): BackgroundState {
  const { config, prepared, paths } = opts;
  ensurePrivateDir(paths.dir);
  ensurePrivateDir(paths.commands);
  const placeholder = randomTag();
  const template = templatePath(paths, opts.instance);
  // Templates of this address's earlier instances: this process holds the port, so they serve nobody.
  for (const name of safeReaddir(paths.dir)) {
    if (name.startsWith(`${paths.key}.`) && name.endsWith('.kubeconfig') && join(paths.dir, name) !== template) removeQuietly(join(paths.dir, name));
  }
  // A wrapped command's credential plugins are timed into its own file (the tag replaces the placeholder).
  // Every command through it is one kubetrail starts (runThrough), with the shims' directory on its PATH.
  const credentialShim = { install: (command: string) => installShim(config.stateDir, command, opts.env.PATH, 'on-path'), timingFile: join(timingDir(config.stateDir), placeholder), mode: 'on-path' as const };
  writeKubeconfig(template, rewriteKubeconfig(prepared.kubeconfig, { listenUrl: opts.proxy.url, caPem: prepared.pki.caPem, currentContext: config.context, commandTag: placeholder, credentialShim }));
  const state: BackgroundState = {
    v: 1,
    instance: opts.instance,
    procStart: procStartTime(process.pid) ?? null,
    kind: opts.kind,
    pid: process.pid,
    host: prepared.listen.host,
    port: opts.proxy.port,
    fingerprint: opts.fingerprint,
    files: dependedFiles(config, opts.env, prepared, opts.before),
    template,
    placeholder,
    socket: opts.socket,
    lingerMs: opts.lingerMs,
    log: opts.log,
    startedAt: Date.now(),
  };
  replacePrivate(paths.state, `${JSON.stringify(state)}\n`);
  // So that commands run with another state dir find this kubetrail on its address (addresses.ts).
  recordAddress(opts.env, config.stateDir, state.host, state.port);
  return state;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * Remove the state file if it is still this instance's (or already gone: this process took it down itself
 * and still holds the port, so the socket is its own too); the instance's template always.
 */
export function unpublish(paths: BackgroundPaths, state: BackgroundState): void {
  const current = readState(paths.state);
  if (current === undefined || current.instance === state.instance) {
    if (current) removeQuietly(paths.state);
    if (state.socket) removeQuietly(state.socket);
  }
  removeQuietly(state.template);
}

/**
 * Wrapped commands of the address `key` still running (their kubeconfig files); files of wrappers that
 * died are removed (any address's).
 */
export function liveWrappers(dir: string, key: string): number {
  let live = 0;
  for (const name of safeReaddir(dir)) {
    const m = parseMarker(name);
    if (!m || !Number.isSafeInteger(m[1])) continue;
    if (!pidAlive(m[1])) removeQuietly(join(dir, name));
    else if (m[0] === key) live++;
  }
  return live;
}

/**
 * For the span observer's idle check: is the wrapper of the command tagged `tag` still running? Its
 * marker file exists and its pid is alive. Called only when a tagged command has been idle a while.
 */
export function tagAliveIn(dir: string, key: string): (tag: string) => boolean {
  return (tag) => {
    const suffix = `-${tag}.yaml`;
    for (const name of safeReaddir(dir)) {
      if (!name.endsWith(suffix)) continue;
      const m = parseMarker(name);
      if (m && m[0] === key && m[2] === tag && pidAlive(m[1])) return true;
    }
    return false;
  };
}

/** Tell each wrapped command with a request still open that this kubetrail stopped under it (cutMarker). */
function markCut(paths: BackgroundPaths, tags: string[], why: string): void {
  for (const tag of tags) {
    try {
      writePrivate(cutMarker(paths, tag), `${why}\n`, false);
    } catch {
      // the wrapper still sees its connection close
    }
  }
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
  const before = digestsBefore(config, env);
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
  // Idle does not end a tagged command whose wrapper is still running (kubectl waiting in an editor, say).
  const tagAlive = tagAliveIn(paths.commands, paths.key);
  const telemetry = instrument({ ...config, quiet: true }, 'start', telemetryEnv, { warn: warnings.warn, observers: [activity], tagAlive });
  let stopRequested: (why: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => (stopRequested = resolve));
  const startedAt = Date.now();
  const instance = randomTag();
  const busy = (): { open: number; wrappers: number } => ({ open: activity.open(), wrappers: liveWrappers(paths.commands, paths.key) });
  const deps: ControlDeps = {
    kind: 'linger',
    instance,
    token,
    fingerprint: fp,
    telemetryKey: telemetryKey(config, env),
    routeIds: [...prepared.routes.clusters.keys()],
    lingerMs: linger,
    startedAt,
    telemetry,
    takeWarnings: warnings.take,
    onActivity: () => activity.touch(),
    busy,
    withdraw: () => withdraw(),
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
      onNotice: log,
      onControl: controlHandler(deps),
      reuseUpstream: config.reuseUpstream,
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    report({ ok: false, code: code === 'EADDRINUSE' ? 'EADDRINUSE' : 'KT_ERR_LISTEN', message: `--listen ${config.listen}: ${describeError(err)}` });
    return 2;
  }
  let state: BackgroundState | undefined;
  const isBusy = (): boolean => {
    const b = busy();
    return b.open > 0 || b.wrappers > 0;
  };
  /**
   * Leave the state file before stopping (idle, or a replacing wrapper's stop?ifIdle=1), then look again: a
   * wrapper writes its marker before its last look at the state file, so it either saw no state (and does
   * not use this kubetrail) or it is counted here, and then the state is put back.
   */
  const withdraw = (): boolean => {
    if (isBusy()) return false;
    if (!state) return true;
    const removed = readState(paths.state)?.instance === instance;
    if (removed) removeQuietly(paths.state);
    if (!isBusy()) return true;
    if (removed) replacePrivate(paths.state, `${JSON.stringify(state)}\n`);
    return false;
  };
  // Holding the port makes this the address's kubetrail: a socket left by a killed one is replaced.
  ensurePrivateDir(paths.dir);
  const socket = await listenControlSocket(paths.socket, deps, log);
  try {
    state = publish({ kind: 'linger', config, env, prepared, proxy, paths, fingerprint: fp, lingerMs: linger, log: paths.log, socket: socket ? paths.socket : undefined, instance, before });
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
    if (current?.instance !== instance) {
      stopRequested('its state file was removed or replaced');
      return;
    }
    if (isBusy()) activity.touch();
    const idle = Date.now() - activity.last();
    if (idle >= linger) {
      if (withdraw()) {
        stopRequested(`idle for ${config.linger}`);
        return;
      }
      activity.touch();
    }
    timer = setTimeout(tick, Math.min(Math.max(linger - idle, 20), 5000));
  };
  timer = setTimeout(tick, Math.min(linger, 5000));
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(sig, () => stopRequested(sig));

  const why = await stopped;
  clearTimeout(timer);
  log(`stopping: ${why}`);
  // Before any connection is closed: a wrapped command whose stream is cut must not end as if complete.
  markCut(paths, activity.openTags(), why);
  unpublish(paths, state);
  socket?.close();
  await proxy.close();
  await telemetry.finish();
  return 0;
}

/** For `kubetrail start`: answer wrapped commands with the same configuration (and the control calls). */
export function foregroundControl(
  config: Config,
  env: NodeJS.ProcessEnv,
  routeIds: string[],
): { deps: Omit<ControlDeps, 'telemetry'>; publish: (prepared: Prepared, proxy: RunningProxy, telemetry: Instrumentation) => Promise<void>; unpublish: () => void } | undefined {
  let paths: BackgroundPaths | undefined;
  let socket: Server | undefined;
  let state: BackgroundState | undefined;
  let token: string;
  try {
    token = ensureToken(backgroundPaths(config.stateDir, '', 0).token);
  } catch {
    return undefined;
  }
  const pending: string[] = [];
  const fp = fingerprint(config, env);
  const instance = randomTag();
  const deps: Omit<ControlDeps, 'telemetry'> = {
    kind: 'start',
    instance,
    token,
    fingerprint: fp,
    telemetryKey: telemetryKey(config, env),
    routeIds,
    lingerMs: 0,
    startedAt: Date.now(),
    takeWarnings: () => Promise.resolve(pending.splice(0)),
    onActivity: () => undefined,
    // Never stopped by a wrapper, so only reported (status); its requests are in its own log.
    busy: () => ({ open: 0, wrappers: paths ? liveWrappers(paths.commands, paths.key) : 0 }),
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
        state = publish({ kind: 'start', config, env, prepared, proxy, paths, fingerprint: fp, lingerMs: 0, log: undefined, socket: socket ? paths.socket : undefined, instance });
      } catch (err) {
        errLine(`kubetrail: wrapped commands will not find this kubetrail: ${describeError(err)}`);
      }
    },
    unpublish() {
      socket?.close();
      if (paths && state) unpublish(paths, state);
    },
  };
}

/**
 * Stop the background kubetrail recorded for host:port in this state dir, if one is running and idle: one
 * with requests in flight or wrapped commands alive is left serving (a `kubectl get -w` in another terminal
 * would be cut), and `busy` says what it serves. `kubetrail stop` is how the user stops it anyway.
 */
export async function stopBackgroundOn(stateDir: string, host: string, port: number): Promise<{ stopped: boolean; busy?: { open: number; wrappers: number } }> {
  const paths = backgroundPaths(stateDir, host, port);
  const st = readState(paths.state);
  if (!st || st.kind !== 'linger') return { stopped: false };
  const { owned, stopBackground } = await import('./background.ts');
  // A pid reused by another process after an unclean exit is never signalled.
  if (!(await owned(stateDir, st))) {
    if (sameInstance(readState(paths.state), st)) removeQuietly(paths.state);
    return { stopped: false };
  }
  return stopBackground(stateDir, st, true);
}
