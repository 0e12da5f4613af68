/**
 * The kubetrail that serves wrapped commands from the background (ssh's ControlPersist, gpg-agent): started
 * by the first wrapped command, detached, on the stable listen address; it exits once it has been idle for
 * --linger (no request in flight or for that long, and no wrapped command running). It answers the control
 * calls (protocol.ts, control.ts) and publishes itself for wrappers (publish.ts); a foreground `kubetrail
 * start` does the same (foreground.ts), so wrapped commands with the same configuration use it the same way.
 */
import { closeSync, writeSync } from 'node:fs';
import { lingerMs as parseLinger } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { describeError, isKtError } from '../errors.ts';
import { removeQuietly } from '../fs/private.ts';
import type { StageObserver } from '../proxy/events.ts';
import { startProxy, type RunningProxy } from '../proxy/server.ts';
import { redactUrl } from '../redact.ts';
import { refusesConnections } from '../telemetry/sdk.ts';
import { errLine } from '../cli/output.ts';
import { listenUrl, prepare, servingProxyOptions, type Prepared } from '../cli/setup.ts';
import { controlHandler, newIdentity, type ControlDeps } from './control.ts';
import { findEnvBin, listenLauncher } from './launcher.ts';
import { backgroundPaths, cutMarker, type BackgroundPaths } from './paths.ts';
import { BACKGROUND_CONFIG_ENV, type Busy } from './protocol.ts';
import { digestsBefore, liveWrappers, publication, tagAliveIn } from './publish.ts';
import { readState, replacePrivate, writePrivate, type BackgroundState } from './state.ts';
import { ensureToken } from './token.ts';

/**
 * Telemetry's warnings, each shown once to the next wrapped command that finishes (and logged). A collector
 * that refuses connections is known before any export fails: the first wrapped command is told, as it is
 * in-process; the exporter's own first-failure line is then not repeated.
 */
export function warningRelay(
  config: Config,
  env: NodeJS.ProcessEnv,
  log: (line: string) => void,
): { warn: (line: string) => void; take: () => Promise<string[]> } {
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
        if (refused)
          warn(
            `kubetrail: cannot export traces to ${redactUrl(config.otlpEndpoint)} (connection refused); traces are dropped, kubectl is unaffected`,
          );
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
export function activityObserver(): StageObserver & {
  open(): number;
  openTags(): string[];
  last(): number;
  touch(): void;
} {
  const inFlight = new Map<string, string | undefined>();
  let last = Date.now();
  return {
    onRequestStart(req) {
      inFlight.set(req.id, req.commandTag);
      last = Date.now();
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
  const activity = activityObserver();
  const warnings = warningRelay(config, env, log);
  const { instrument } = await import('../cli/telemetry-setup.ts');
  // In-process, a wrapped command's spans are flushed before kubetrail exits, so its trace is in the
  // collector by the time the link is printed. Here export is asynchronous: send each batch soon after its
  // spans end (the SDK's default waits 500 ms), unless the user chose a delay.
  const telemetryEnv = { ...env, OTEL_BSP_SCHEDULE_DELAY: env.OTEL_BSP_SCHEDULE_DELAY ?? '50' };
  // Idle does not end a tagged command whose wrapper is still running (kubectl waiting in an editor, say).
  const tagAlive = tagAliveIn(paths.commands, paths.key);
  const telemetry = instrument({ ...config, quiet: true }, 'start', telemetryEnv, {
    warn: warnings.warn,
    observers: [activity],
    tagAlive,
  });
  let stopRequested: (why: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => (stopRequested = resolve));
  const identity = newIdentity(config, env, [...prepared.routes.clusters.keys()], linger);
  const { instance } = identity;
  const busy = (): Busy => ({ open: activity.open(), wrappers: liveWrappers(paths.commands, paths.key) });
  const deps: ControlDeps = {
    token,
    identity,
    busy,
    finisher: telemetry,
    takeWarnings: warnings.take,
    lingering: {
      touch: () => activity.touch(),
      withdraw: () => withdraw(),
      stop: () => stopRequested('stop requested'),
    },
  };
  let proxy: RunningProxy;
  try {
    proxy = await startProxy(
      servingProxyOptions(config, prepared, {
        observer: telemetry.observer,
        say: log,
        onControl: controlHandler(deps),
      }),
    );
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    report({
      ok: false,
      code: code === 'EADDRINUSE' ? 'EADDRINUSE' : 'KT_ERR_LISTEN',
      message: `--listen ${config.listen}: ${describeError(err)}`,
    });
    return 2;
  }
  const published = publication(deps, { config, env, say: log, logFile: paths.log, before });
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
    const state = published.state;
    if (isBusy()) return false;
    if (!state) return true;
    const removed = readState(paths.state)?.instance === instance;
    if (removed) removeQuietly(paths.state);
    if (!isBusy()) return true;
    if (removed) replacePrivate(paths.state, `${JSON.stringify(state)}\n`);
    return false;
  };
  let state: BackgroundState;
  try {
    state = await published.publish(prepared, proxy);
  } catch (err) {
    await proxy.close();
    report({ ok: false, code: isKtError(err) ? err.code : 'KT_ERR_STATE_DIR', message: describeError(err) });
    return 2;
  }
  log(
    `serving ${listenUrl(prepared.listen)} for ${prepared.routes.clusters.size} cluster(s); exits after ${config.linger} idle`,
  );
  report({ ok: true, pid: process.pid, port: state.port });
  // The launcher's channel (bin/kubetrail): wrapped commands this kubetrail serves then start no Node.
  // After the report: its two processes (mkfifo, the env check) must not delay the first command, which
  // the Node CLI serves.
  const launcher = listenLauncher({ paths, state, deps, envBin: findEnvBin() }, log);

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
  launcher?.close();
  published.unpublish();
  await proxy.close();
  await telemetry.finish();
  return 0;
}
