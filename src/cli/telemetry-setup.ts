/**
 * Wires telemetry and the terminal report to the proxy's stage events for one kubetrail process.
 */
import { isatty } from 'node:tty';
import type { Config } from '../config/schema.ts';
import { describeError } from '../errors.ts';
import { combineObservers, type StageObserver } from '../proxy/events.ts';
import { redactUrl } from '../redact.ts';
import { requestLog } from '../report/request-log.ts';
import { commandTraceLine, renderWaterfall } from '../report/waterfall.ts';
import { join } from 'node:path';
import {
  commandLineName,
  readTiming,
  takeTiming,
  timingDir,
  trimShared,
  untaggedTimingFile,
  type Timing,
} from '../kubeconfig/timing.ts';
import type { CommandSummary, KubectlLife } from '../telemetry/commands.ts';
import { startTracing } from '../telemetry/sdk.ts';
import { createSpanObserver } from '../telemetry/spans.ts';
import { traceStoreDir, traceStoreProcessor } from '../telemetry/trace-store.ts';
import { VERSION } from '../version.ts';
import { errLine, outLine, writeAll } from './output.ts';

export interface Instrumentation {
  observer: StageObserver | undefined;
  /** End open commands (the wrapped kubectl's with its life), flush spans (bounded), return the finished commands. */
  finish(life?: KubectlLife): Promise<CommandSummary[]>;
  /** In-process wrap: kubectl is being started now (epoch ms); its trace begins here. */
  spawning(at: number, argv: readonly string[]): void;
  /** The waterfall for this process's terminal (wrap mode, after finish()). */
  waterfall(cmd: CommandSummary): Promise<string[]>;
  /** A wrapped command's kubectl exited: end its tagged trace (see SpanObserver.finishCommand). */
  finishCommand(tag: string, waitMs: number, life?: KubectlLife): Promise<CommandSummary | undefined>;
  /** The waterfall for a wrapper's terminal (its colour and width, not ours). */
  render(cmd: CommandSummary, terminal: { color: boolean; width: number | undefined }): Promise<string[]>;
}

export interface InstrumentOptions {
  /** Where telemetry's own warnings go (default: stderr). */
  warn?: (line: string) => void;
  /** More observers of the same events. */
  observers?: StageObserver[];
  /** Is a tagged command's wrapper still running? Idle then does not end its trace (SpanObserverOptions.tagAlive). */
  tagAlive?: (tag: string) => boolean;
}

/**
 * How long a finished command's report waits to learn whether its spans reach the collector, while no
 * export has answered yet (a background kubetrail's first command: its batch goes out 50 ms after the
 * spans end). Once the collector has answered, either way, nothing is waited for.
 */
const FATE_WAIT_MS = 800;

export function instrument(
  config: Config,
  mode: 'wrap' | 'start',
  env: NodeJS.ProcessEnv = process.env,
  opts: InstrumentOptions = {},
): Instrumentation {
  const warn = opts.warn ?? errLine;
  // Trace links are printed: never with the Jaeger URL's userinfo.
  const jaegerUrl = redactUrl(config.jaegerUrl);
  const tracing = startTracing({
    endpoint: config.otlpEndpoint,
    env,
    version: VERSION,
    warn,
    store: traceStoreProcessor(traceStoreDir(config.stateDir), warn),
  });
  const finished: CommandSummary[] = [];
  /** Start mode's lines go through the request log, which keeps its live status line below them. */
  let print: (line: string) => void = outLine;
  const exportOff = /^true$/i.test(env.OTEL_SDK_DISABLED ?? '') ? 'export disabled by OTEL_SDK_DISABLED' : undefined;
  // Credential plugin runs and kubectl's start: a tagged command's own timing file, else the shared one.
  let spawnedAt: number | undefined;
  /** The wrapped command's root name from its command line (commandLineName), when kubectl does not say. */
  let wrappedName: string | undefined;
  const timing = (tag: string | undefined, done: boolean): Timing | undefined => {
    if (tag !== undefined) {
      const path = join(timingDir(config.stateDir), tag);
      return done ? takeTiming(path) : readTiming(path);
    }
    const shared = untaggedTimingFile(config.stateDir);
    const t = readTiming(shared);
    if (done) trimShared(shared);
    return mode === 'wrap'
      ? {
          credentials: t?.credentials ?? [],
          ...(spawnedAt !== undefined ? { spawnedAt } : {}),
          ...(wrappedName !== undefined ? { command: wrappedName } : {}),
        }
      : t;
  };
  /** Why the command's trace will not be in the collector (each command is judged, not only the first). */
  const notSent = async (cmd: CommandSummary, waitMs: number): Promise<string | undefined> => {
    if (exportOff) return exportOff;
    const fate = await tracing.traceFate(cmd.traceId, waitMs);
    return fate.state === 'dropped' ? fate.why : undefined;
  };
  const spans = createSpanObserver({
    timing,
    tracer: tracing.tracer,
    idleMs: mode === 'start' ? config.sessionIdleMs : 0,
    singleCommand: mode === 'wrap',
    tagAlive: opts.tagAlive,
    onCommandFinished: (cmd) => {
      if (mode === 'wrap') {
        finished.push(cmd);
      } else if (!config.quiet) {
        void notSent(cmd, FATE_WAIT_MS).then((why) => print(commandTraceLine(cmd, jaegerUrl, why)));
      }
    },
  });
  const observers: StageObserver[] = [spans, ...(opts.observers ?? [])];
  if (mode === 'start' && !config.quiet) {
    // On a terminal the log keeps a live status line for long watches; no wrapped command shares it.
    const terminal = isatty(1)
      ? { write: (t: string) => writeAll(1, t), columns: process.stdout.columns || 100 }
      : undefined;
    const log = requestLog(outLine, terminal ? { terminal } : {});
    print = log.print;
    observers.push(log);
  }
  const render = async (
    cmd: CommandSummary,
    terminal: { color: boolean; width: number | undefined },
    waitMs = FATE_WAIT_MS,
  ): Promise<string[]> =>
    renderWaterfall(cmd, {
      jaegerUrl,
      color: terminal.color,
      width: terminal.width,
      exportNote: await notSent(cmd, waitMs),
    });
  return {
    observer: combineObservers(observers, (e) => warn(`kubetrail: telemetry error: ${describeError(e)}`)),
    spawning(at, argv) {
      spawnedAt = at;
      wrappedName = commandLineName(argv);
    },
    async finish(life) {
      spans.finishAll(life);
      await tracing.shutdown();
      return finished;
    },
    waterfall: (cmd) =>
      render(
        cmd,
        {
          // Called after the wrapped command exited, so opening process.stderr can no longer affect it.
          color: isatty(2) && !env.NO_COLOR,
          width: isatty(2) ? process.stderr.columns : undefined,
        },
        // After finish(): every span has been exported, refused or given up on.
        0,
      ),
    finishCommand: (tag, waitMs, life) => spans.finishCommand(tag, waitMs, life),
    render: (cmd, terminal) => render(cmd, terminal),
  };
}
