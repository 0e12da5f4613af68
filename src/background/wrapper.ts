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
import { join } from 'node:path';
import { isatty } from 'node:tty';
import { randomTag } from '../command-tag.ts';
import { lingerMs, parseListen } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { describeError, KtError, type ErrorCode } from '../errors.ts';
import { ensurePrivateDir, readPrivateTextQuietly, removeQuietly } from '../fs/private.ts';
import { shimPathEnv } from '../kubeconfig/credential-shim.ts';
import { spawnRecord, timingDir } from '../kubeconfig/timing.ts';
import { hostForUrl } from '../net/host.ts';
import { tcpProbe } from '../net/tcp-probe.ts';
import { epochNow, runChild, takeKubeconfigArg } from '../cli/child.ts';
import { errLine } from '../cli/output.ts';
import { call, answers, owned, ownedElsewhere, stopBackground, STOP_WAIT_MS } from './client.ts';
import { spawnBackground, START_WAIT_MS } from './launch.ts';
import { releaseLock, tryLock } from './lock.ts';
import { backgroundPaths, cutMarker, markerName, privateDir, type BackgroundPaths } from './paths.ts';
import { busyText, FINISH_DEADLINE_MS, type Busy } from './protocol.ts';
import {
  commandKubeconfig,
  filesUnchanged,
  fingerprint,
  readState,
  resolveForBackground,
  sameInstance,
  writePrivate,
  type BackgroundState,
} from './state.ts';

/** A background kubetrail that does not answer a status call within this long is hung. */
const HUNG_MS = 500;
/** A kubetrail that is ours but neither listens nor answers for this long is stale (hung, or stopping). */
const STALE_MS = 1000;
/** A wrapper waiting this long for another one's start lock says what it waits for. */
const WAIT_NOTICE_MS = 1000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Something accepts TCP connections on host:port (a loopback connect answers at once). */
async function portOpen(host: string, port: number): Promise<boolean> {
  return (await tcpProbe(host, port, 1000)) === 'open';
}

interface Found {
  state: BackgroundState;
  /** This wrapper started it (say so once). */
  started: boolean;
  /** Why the one it replaced could not serve this command (said with "replaced"). */
  replaced: string | undefined;
}

interface Busied {
  busy: Busy & { hung?: boolean };
}

/** Forget a state file whose kubetrail is gone, hung or not a kubetrail any more (never signalled). */
function dropStale(paths: BackgroundPaths, st: BackgroundState): void {
  if (sameInstance(readState(paths.state), st)) removeQuietly(paths.state);
}

async function findOrStart(
  config: Config,
  env: NodeJS.ProcessEnv,
  host: string,
  port: number,
  fp: string,
): Promise<Found | Busied | undefined> {
  const paths = backgroundPaths(config.stateDir, host, port);
  // Every directory this command's files go into is the user's alone, also one that was made private and
  // opened to others since (a kubeconfig swapped there before kubectl reads it runs another user's plugin).
  privateDir(paths.stateDir, paths.dir);
  ensurePrivateDir(paths.commands);
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
    const taken = tryLock(paths.lock, START_WAIT_MS + STOP_WAIT_MS);
    if (!('mine' in taken)) {
      // Another wrapper is starting one: wait for it, and say so when it takes a while (not silently).
      waitingSince ??= Date.now();
      if (taken.holder !== undefined && !saidWaiting && Date.now() - waitingSince >= WAIT_NOTICE_MS) {
        saidWaiting = true;
        errLine(
          `kubetrail: waiting for kubetrail pid ${taken.holder}, which is starting the background kubetrail on ${config.listen} (at most ${Math.round((until - Date.now()) / 1000)}s more)`,
        );
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

/**
 * This command's kubeconfig from the kubetrail's template. The file is created first, empty: it is the
 * marker that keeps the kubetrail from stopping (idle, or a replacing wrapper's stop?ifIdle=1), and it
 * exists before the last look at the state file, so the kubetrail either sees it or this sees no state.
 * undefined: the kubetrail went away or was replaced meanwhile.
 */
function claim(paths: BackgroundPaths, st: BackgroundState, tag: string): string | undefined {
  const path = join(paths.commands, markerName(paths.key, process.pid, tag));
  // The commands directory exists: findOrStart made sure of it (private) before it found this kubetrail.
  try {
    writePrivate(path, '', true);
  } catch {
    return undefined;
  }
  try {
    const kubeconfig = commandKubeconfig(st, tag);
    if (kubeconfig === undefined || !sameInstance(readState(paths.state), st)) return fail();
    writePrivate(path, kubeconfig, false);
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
async function inProcessElsewhere(
  config: Config,
  argv: string[],
  env: NodeJS.ProcessEnv,
  host: string,
): Promise<number> {
  const { wrapInProcess } = await import('../cli/wrap.ts');
  return wrapInProcess({ ...config, listen: `${hostForUrl(host)}:0` }, argv, env);
}

/** The wrapped command through a background kubetrail; undefined = use the in-process path. */
export async function wrapViaBackground(
  configIn: Config,
  argv: string[],
  envIn: NodeJS.ProcessEnv = process.env,
): Promise<number | undefined> {
  const linger = lingerMs(configIn.linger);
  if (linger === 0) return undefined;
  const listen = parseListen(configIn.listen, configIn.allowNonLoopback);
  // A background kubetrail needs an address to be found at again, and stays on loopback.
  if (listen.port === 0 || !listen.loopback) return undefined;
  const kcArg = takeKubeconfigArg(argv);
  const { config, env } = resolveForBackground(
    kcArg.path !== undefined ? { ...configIn, kubeconfig: kcArg.path } : configIn,
    envIn,
  );
  const fp = fingerprint(config, env);
  const tag = randomTag();
  // Twice at most: the kubetrail found may stop or be replaced before this command's kubeconfig is written.
  for (let attempt = 0; attempt < 2; attempt++) {
    const found = await findOrStart(config, env, listen.host, listen.port, fp).catch((err: unknown) => {
      // Its files could not be made (a state dir under a file, not writable): the user's to fix.
      if ((err as NodeJS.ErrnoException).syscall === undefined) throw err;
      throw new KtError(
        'KT_ERR_STATE_DIR',
        `state dir ${config.stateDir}: ${describeError(err)} (pass --state-dir DIR or set KUBETRAIL_STATE_DIR to a directory you can write)`,
        { cause: err },
      );
    });
    if (!found) return undefined;
    if ('busy' in found) {
      const { open, wrappers, hung } = found.busy;
      if (hung) {
        errLine(
          `kubetrail: the background kubetrail on ${config.listen} (pid ${readState(backgroundPaths(config.stateDir, listen.host, listen.port).state)?.pid ?? '?'}) does not answer; serving this command in-process (kubetrail stop, or kill it)`,
        );
        return inProcessElsewhere(configIn, argv, envIn, listen.host);
      }
      const what = busyText({ open, wrappers });
      if (!config.quiet)
        errLine(
          `kubetrail: the background kubetrail on ${config.listen} has another configuration and is in use (${what}); serving this command in-process`,
        );
      return inProcessElsewhere(configIn, argv, envIn, listen.host);
    }
    const { state } = found;
    const paths = backgroundPaths(config.stateDir, state.host, state.port);
    const kubeconfigPath = claim(paths, state, tag);
    if (kubeconfigPath === undefined) continue;
    if (state.kind === 'start') {
      errLine(
        `kubetrail: using the kubetrail already listening on ${config.listen}; its output shows this command's requests`,
      );
    } else if (found.started && !config.quiet) {
      errLine(
        `kubetrail: ${found.replaced ? `restarted the background kubetrail on ${config.listen} (${found.replaced})` : `started a background kubetrail on ${config.listen}`} (pid ${state.pid}) for the next commands; it exits after ${durationText(linger)} idle. Stop it: kubetrail stop; never: --linger 0`,
      );
    }
    return runThrough(
      config,
      envIn,
      state,
      tag,
      kubeconfigPath,
      kcArg.path !== undefined ? kcArg.rewrite(kubeconfigPath) : argv,
    );
  }
  return inProcessElsewhere(configIn, argv, envIn, listen.host);
}

async function runThrough(
  config: Config,
  envIn: NodeJS.ProcessEnv,
  state: BackgroundState,
  tag: string,
  kubeconfigPath: string,
  childArgv: string[],
): Promise<number> {
  let code: number;
  // The trace begins now: the kubetrail reads this when the command's first request arrives.
  const spawnedAt = epochNow();
  const timingFile = join(timingDir(config.stateDir), tag);
  try {
    writePrivate(timingFile, spawnRecord(spawnedAt, childArgv), true);
  } catch {
    // an older kubetrail's state dir: the trace begins at the first request
  }
  let exitedAt: number;
  try {
    code = await runChild(childArgv, {
      ...shimPathEnv(envIn, config.stateDir, readPrivateTextQuietly(kubeconfigPath)),
      KUBECONFIG: kubeconfigPath,
    });
  } finally {
    exitedAt = epochNow();
    removeQuietly(kubeconfigPath);
  }
  const cutFile = cutMarker(backgroundPaths(config.stateDir, state.host, state.port), tag);
  const cut = readPrivateTextQuietly(cutFile);
  if (cut !== undefined) {
    removeQuietly(cutFile);
    // kubectl reads a cut watch or log stream as its normal end (exit 0): it was not.
    errLine(
      `kubetrail: the background kubetrail on ${config.listen} stopped while this command had a request open (${cut.trim()}): its output was cut short`,
    );
    return code === 0 ? 1 : code;
  }

  // kubectl has exited: opening process.stderr can no longer affect it.
  const tty = isatty(2);
  try {
    const life = { spawnedAt, exitedAt, exitCode: code };
    const r = await call(
      config.stateDir,
      state,
      { op: 'finish', tag, color: tty && !envIn.NO_COLOR, width: tty ? process.stderr.columns : undefined, life },
      FINISH_DEADLINE_MS,
    );
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
