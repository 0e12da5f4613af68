/**
 * Wires telemetry and the terminal report to the proxy's stage events for one kubetrail process.
 */
import { isatty } from 'node:tty';
import type { Config } from '../config/schema.ts';
import { describeError } from '../errors.ts';
import { combineObservers, type StageObserver } from '../proxy/events.ts';
import { fmtMs, plural } from '../report/format.ts';
import { requestLog } from '../report/request-log.ts';
import { renderWaterfall } from '../report/waterfall.ts';
import type { CommandSummary } from '../telemetry/commands.ts';
import { startTracing } from '../telemetry/sdk.ts';
import { createSpanObserver } from '../telemetry/spans.ts';
import { VERSION } from '../version.ts';
import { errLine, outLine, writeAll } from './output.ts';

export interface Instrumentation {
  observer: StageObserver | undefined;
  /** End open commands, flush spans (bounded), return the finished commands. */
  finish(): Promise<CommandSummary[]>;
  waterfall(cmd: CommandSummary): string[];
  /** A wrapped command's kubectl exited: end its tagged trace (see SpanObserver.finishCommand). */
  finishCommand(tag: string, waitMs: number): Promise<CommandSummary | undefined>;
  /** The waterfall for a wrapper's terminal (its colour and width, not ours). */
  render(cmd: CommandSummary, terminal: { color: boolean; width: number | undefined }): string[];
}

export interface InstrumentOptions {
  /** Where telemetry's own warnings go (default: stderr). */
  warn?: (line: string) => void;
  /** More observers of the same events. */
  observers?: StageObserver[];
  /** Is a tagged command's wrapper still running? Idle then does not end its trace (SpanObserverOptions.tagAlive). */
  tagAlive?: (tag: string) => boolean;
}

export function instrument(config: Config, mode: 'wrap' | 'start', env: NodeJS.ProcessEnv = process.env, opts: InstrumentOptions = {}): Instrumentation {
  const warn = opts.warn ?? errLine;
  const tracing = startTracing({ endpoint: config.otlpEndpoint, env, version: VERSION, warn });
  const finished: CommandSummary[] = [];
  /** Start mode's lines go through the request log, which keeps its live status line below them. */
  let print: (line: string) => void = outLine;
  const exportOff = /^true$/i.test(env.OTEL_SDK_DISABLED ?? '') ? 'export disabled by OTEL_SDK_DISABLED' : undefined;
  const spans = createSpanObserver({
    tracer: tracing.tracer,
    idleMs: mode === 'start' ? config.sessionIdleMs : 0,
    singleCommand: mode === 'wrap',
    tagAlive: opts.tagAlive,
    onCommandFinished: (cmd) => {
      if (mode === 'wrap') {
        finished.push(cmd);
      } else if (!config.quiet) {
        print(`trace: ${config.jaegerUrl.replace(/\/$/, '')}/trace/${cmd.traceId} ${cmd.command} (${plural(cmd.requests.length, 'request')}, ${fmtMs(cmd.durationMs)})`);
      }
    },
  });
  const observers: StageObserver[] = [spans, ...(opts.observers ?? [])];
  if (mode === 'start' && !config.quiet) {
    // On a terminal the log keeps a live status line for long watches; no wrapped command shares it.
    const terminal = isatty(1) ? { write: (t: string) => writeAll(1, t), columns: process.stdout.columns || 100 } : undefined;
    const log = requestLog(outLine, terminal ? { terminal } : {});
    print = log.print;
    observers.push(log);
  }
  const render = (cmd: CommandSummary, terminal: { color: boolean; width: number | undefined }): string[] =>
    renderWaterfall(cmd, { jaegerUrl: config.jaegerUrl, color: terminal.color, width: terminal.width, exportNote: exportOff });
  return {
    observer: combineObservers(observers, (e) => warn(`kubetrail: telemetry error: ${describeError(e)}`)),
    async finish() {
      spans.finishAll();
      await tracing.shutdown();
      return finished;
    },
    waterfall: (cmd) =>
      render(cmd, {
        // Called after the wrapped command exited, so opening process.stderr can no longer affect it.
        color: isatty(2) && !env.NO_COLOR,
        width: isatty(2) ? process.stderr.columns : undefined,
      }),
    finishCommand: (tag, waitMs) => spans.finishCommand(tag, waitMs),
    render,
  };
}
