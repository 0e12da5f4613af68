/**
 * Wires telemetry and the terminal report to the proxy's stage events for one kubetrail process.
 */
import { isatty } from 'node:tty';
import type { Config } from '../config/schema.ts';
import { describeError } from '../errors.ts';
import { combineObservers, type StageObserver } from '../proxy/events.ts';
import { requestLog } from '../report/request-log.ts';
import { renderWaterfall } from '../report/waterfall.ts';
import type { CommandSummary } from '../telemetry/commands.ts';
import { startTracing } from '../telemetry/sdk.ts';
import { createSpanObserver } from '../telemetry/spans.ts';
import { VERSION } from '../version.ts';
import { errLine, outLine } from './output.ts';

export interface Instrumentation {
  observer: StageObserver | undefined;
  /** End open commands, flush spans (bounded), return the finished commands. */
  finish(): Promise<CommandSummary[]>;
  waterfall(cmd: CommandSummary): string[];
}

export function instrument(config: Config, mode: 'wrap' | 'start', env: NodeJS.ProcessEnv = process.env): Instrumentation {
  const tracing = startTracing({ endpoint: config.otlpEndpoint, env, version: VERSION, warn: errLine });
  const finished: CommandSummary[] = [];
  const exportOff = /^true$/i.test(env.OTEL_SDK_DISABLED ?? '') ? 'export disabled by OTEL_SDK_DISABLED' : undefined;
  const spans = createSpanObserver({
    tracer: tracing.tracer,
    idleMs: mode === 'start' ? config.sessionIdleMs : 0,
    singleCommand: mode === 'wrap',
    onCommandFinished: (cmd) => {
      if (mode === 'wrap') {
        finished.push(cmd);
      } else if (!config.quiet) {
        outLine(`trace: ${config.jaegerUrl.replace(/\/$/, '')}/trace/${cmd.traceId} ${cmd.command} (${cmd.requests.length} requests, ${Math.round(cmd.durationMs)}ms)`);
      }
    },
  });
  const observers: StageObserver[] = [spans];
  if (mode === 'start' && !config.quiet) observers.push(requestLog(outLine));
  return {
    observer: combineObservers(observers, (e) => errLine(`kubetrail: telemetry error: ${describeError(e)}`)),
    async finish() {
      spans.finishAll();
      await tracing.shutdown();
      return finished;
    },
    waterfall: (cmd) =>
      renderWaterfall(cmd, {
        jaegerUrl: config.jaegerUrl,
        // Called after the wrapped command exited, so opening process.stderr can no longer affect it.
        color: isatty(2) && !env.NO_COLOR,
        width: isatty(2) ? process.stderr.columns : undefined,
        exportNote: exportOff,
      }),
  };
}
