/**
 * Stage events → OpenTelemetry traces, one per kubectl command: which command each request belongs to
 * (its Kubectl-Session; a wrapped command's tag; a client that sends none, by process: command-table.ts),
 * and when a command ends (kubectl exited, or it went idle: command-table.ts). The spans themselves are built
 * by request-spans.ts (a SERVER span per request, and under it `auth`, `upstream`, `rbac`, `decode`) and
 * root-span.ts (the command's root and what happened outside the requests); no other file starts or ends
 * spans.
 */
import { ROOT_CONTEXT, trace, type Tracer } from '@opentelemetry/api';
import type { RequestEnd, RequestStart, StageObserver } from '../proxy/events.ts';
import type { CredentialRun, Timing } from '../kubeconfig/timing.ts';
import { spanName } from '../stages/request-info.ts';
import { CommandTable, type GroupedCommand } from './command-table.ts';
import { programOf, type CommandSummary, type KubectlLife, type TimedFrom } from './commands.ts';
import { endRequestSpans, startRequestSpans, traceHeaders, type RequestSpans } from './request-spans.ts';
import { closeRoot, openRoot, type CommandRoot } from './root-span.ts';
import * as sc from './semconv.ts';

interface Command extends CommandRoot, GroupedCommand {}

interface Pending extends RequestSpans {
  command: Command;
}

export interface SpanObserverOptions {
  tracer: Tracer;
  /** A command whose session saw no request for this long ends (start mode); 0 = only at finishAll(). */
  idleMs: number;
  /**
   * Wrap mode: every request belongs to the one wrapped command, including those kubectl sends without
   * Kubectl-Session (the gcloud kubectl dispatcher's /version probe that picks the kubectl binary).
   */
  singleCommand?: boolean;
  /**
   * A tagged command's wrapper is still running (its kubectl may be waiting in an editor or a prompt):
   * idle does not end the command then; it is checked again after another idle period. Default: no.
   */
  tagAlive?: (tag: string) => boolean;
  /**
   * Start mode: a request without Kubectl-Session joins the session that follows it from the same client
   * identity within this long (default ADOPT_WINDOW_MS, command-table.ts). See CommandTable.find().
   */
  adoptWindowMs?: number;
  onCommandFinished?: (summary: CommandSummary) => void;
  /**
   * What happened outside the requests (kubeconfig/credential-shim.ts): credential plugin runs and, for a
   * wrapped command, when kubectl was started. `tag` is the command's tag, or undefined for the timing of
   * commands without one. `done`: the command is over (a tagged command's file can go).
   */
  timing?: (tag: string | undefined, done: boolean) => Timing | undefined;
}

export interface SpanObserver extends StageObserver {
  /** End every open command (the wrapped kubectl exited, or kubetrail is stopping). */
  finishAll(life?: KubectlLife): void;
  /**
   * End the command tagged `tag` (its wrapper's kubectl exited) once its open requests have ended, or after
   * `waitMs` whatever is still open; resolves to its summary, also when it had already ended by idle
   * (recent ones are kept), or undefined when no request ever carried the tag.
   */
  finishCommand(tag: string, waitMs: number, life?: KubectlLife): Promise<CommandSummary | undefined>;
}

/**
 * A command without a tag (start mode) claims the credential plugin runs that ended at most this long
 * before its first request: kubectl runs its plugin just before it needs the token.
 */
const CREDENTIAL_LEAD_MS = 30_000;
/** Clocks of two processes and a shell's `date` agree to about this much. */
const CLOCK_SLACK_MS = 5;

export function createSpanObserver(opts: SpanObserverOptions): SpanObserver {
  const { tracer } = opts;
  const pending = new Map<string, Pending>();
  const commands: CommandTable<Command> = new CommandTable<Command>({
    idleMs: opts.idleMs,
    singleCommand: opts.singleCommand,
    tagAlive: opts.tagAlive,
    adoptWindowMs: opts.adoptWindowMs,
    onIdle: (cmd) => endCommand(cmd),
  });

  /** Credential runs already given to a command without a tag (start mode), by id. */
  const claimed = new Map<string, number>();

  function claim(runs: readonly CredentialRun[], from: number, to: number): CredentialRun[] {
    const now = Date.now();
    for (const [k, at] of claimed) if (now - at > 2 * CREDENTIAL_LEAD_MS) claimed.delete(k);
    const mine = runs.filter((r) => r.end <= to + CLOCK_SLACK_MS && r.end >= from && !claimed.has(r.id));
    for (const r of mine) claimed.set(r.id, now);
    return mine;
  }

  /** The command's timing facts: a tagged or wrapped command owns its file; others claim by time. */
  function credentialsFor(
    cmd: Pick<Command, 'key' | 'startedAt'>,
    timing: Timing | undefined,
    upTo: number,
    since: number | undefined,
  ): CredentialRun[] {
    const runs = timing?.credentials ?? [];
    if (cmd.key.startsWith('tag:')) return runs;
    if (cmd.key === 'wrapped') return runs.filter((r) => since === undefined || r.start >= since - CLOCK_SLACK_MS);
    return claim(runs, upTo - CREDENTIAL_LEAD_MS, upTo);
  }

  function endCommand(cmd: Command, life?: KubectlLife): void {
    if (!commands.remove(cmd)) return;
    const tag = cmd.key.startsWith('tag:') ? cmd.key.slice('tag:'.length) : undefined;
    // Plugins may run again mid-command (a token refreshed after a 401).
    const later = kubectlCommand(cmd.key) ? opts.timing?.(tag, true) : undefined;
    const known = new Set(cmd.credentials.map((c) => c.id));
    const endAt = life ? Math.max(life.exitedAt, cmd.lastEnd) : cmd.lastEnd;
    for (const c of credentialsFor(cmd, later, endAt, cmd.timedFrom === 'process_start' ? cmd.startedAt : undefined)) {
      if (!known.has(c.id)) cmd.credentials.push(c);
    }
    const summary = closeRoot(tracer, cmd, endAt, life);
    if (cmd.key.startsWith('tag:')) commands.remember(cmd.key, summary);
    opts.onCommandFinished?.(summary);
  }

  /**
   * A new command's root. It begins at kubectl's start when the wrapper said when that was, else at the
   * first credential plugin run it can claim, else at its first request (start mode: no process to watch).
   * Its name: kubectl's Kubectl-Command, else the wrapped command line's (commandLineName), else for a
   * session-less client its User-Agent's program, else the first request's.
   */
  function openCommand(key: string, firstName: string, firstAt: number, start: RequestStart | undefined): Command {
    const tag = key.startsWith('tag:') ? key.slice('tag:'.length) : undefined;
    const timing = kubectlCommand(key) ? opts.timing?.(tag, false) : undefined;
    const command =
      start?.kubectlCommand ??
      timing?.command ??
      (key.startsWith('client:') ? programOf(start?.userAgent) : undefined) ??
      firstName;
    const spawnedAt = timing?.spawnedAt;
    const credentials = credentialsFor({ key, startedAt: firstAt }, timing, firstAt, spawnedAt);
    const credentialStart = Math.min(...credentials.map((c) => c.start));
    const startedAt = Math.min(firstAt, spawnedAt ?? Infinity, credentialStart);
    const timedFrom: TimedFrom =
      spawnedAt !== undefined && spawnedAt <= startedAt
        ? 'process_start'
        : credentialStart <= startedAt
          ? 'credential'
          : 'first_request';
    const root = openRoot(tracer, command, startedAt, start);
    const cmd: Command = {
      key,
      upstreamShared: start?.upstreamShared === true,
      root,
      rootCtx: trace.setSpan(ROOT_CONTEXT, root),
      traceId: root.spanContext().traceId,
      command,
      session: start?.kubectlSession,
      startedAt,
      timedFrom,
      credentials,
      lastEnd: firstAt,
      open: 0,
      requests: [],
      idleTimer: undefined,
      idleSince: 0,
      onIdle: undefined,
      kubectlProbe:
        key.startsWith('client:') &&
        start?.kubectlSession === undefined &&
        (programOf(start?.userAgent)?.startsWith('kubectl') ?? false),
    };
    commands.add(cmd);
    return cmd;
  }

  function commandFor(start: RequestStart, name: string): Command {
    const key = commands.keyOf(start);
    let cmd = commands.find(start, key);
    if (cmd && cmd.command !== start.kubectlCommand && cmd.session === undefined && start.kubectlCommand) {
      // The first request had no Kubectl-Command (dispatcher probe): name the trace after kubectl's command.
      cmd.command = start.kubectlCommand;
      cmd.session = start.kubectlSession;
      cmd.root.updateName(start.kubectlCommand);
      cmd.root.setAttribute(sc.ATTR_KUBECTL_COMMAND, start.kubectlCommand);
      if (start.kubectlSession) cmd.root.setAttribute(sc.ATTR_KUBECTL_SESSION, start.kubectlSession);
    }
    cmd ??= openCommand(key, name, start.startedAt, start);
    cmd.open++;
    return cmd;
  }

  /**
   * kubectl exited without a request (a credential plugin that failed, `kubectl version --client`): its
   * trace is its life and whatever plugins ran, when kubetrail knows it started it.
   */
  function commandWithoutRequests(key: string, life: KubectlLife): Command | undefined {
    if (!Number.isFinite(life.spawnedAt)) return undefined;
    const tag = key.startsWith('tag:') ? key.slice('tag:'.length) : undefined;
    if ((opts.timing?.(tag, false)?.credentials.length ?? 0) === 0) return undefined;
    const cmd = openCommand(key, 'kubectl', life.spawnedAt, undefined);
    cmd.lastEnd = cmd.startedAt;
    return cmd;
  }

  return {
    onRequestStart(start) {
      const { info } = start;
      const name = spanName(info, start.method);
      const cmd = commandFor(start, name);
      pending.set(start.id, { ...startRequestSpans(tracer, start, name, cmd.rootCtx), command: cmd });
    },

    upstreamHeaders(start) {
      const p = pending.get(start.id);
      return p ? traceHeaders(p) : undefined;
    },

    onUpstreamConnected(id, ev) {
      const p = pending.get(id);
      if (p) p.connected = ev;
    },

    onResponseStart(id, ev) {
      const p = pending.get(id);
      if (p) p.response = ev;
    },

    onRequestEnd(id, ev: RequestEnd) {
      const p = pending.get(id);
      if (!p) return;
      pending.delete(id);
      const { start, command } = p;
      const summary = endRequestSpans(tracer, p, ev);
      command.requests.push(summary);
      const endAt = summary.startedAt + summary.durationMs;
      command.lastEnd = Math.max(command.lastEnd, endAt);
      commands.requestEnded(command, start);
    },

    onConnectionClosed(connection) {
      commands.connectionClosed(connection);
    },

    finishAll(life) {
      if (life && opts.singleCommand && !commands.has('wrapped')) commandWithoutRequests('wrapped', life);
      for (const cmd of commands.all()) endCommand(cmd, cmd.key === 'wrapped' ? life : undefined);
    },

    finishCommand(tag, waitMs, life) {
      const key = `tag:${tag}`;
      let cmd = commands.get(key);
      if (!cmd && life && !commands.hasRecent(key)) cmd = commandWithoutRequests(key, life);
      if (!cmd) return Promise.resolve(commands.recent(key));
      return new Promise((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          endCommand(cmd, life);
          resolve(commands.recent(key));
        };
        const timer = setTimeout(done, cmd.open === 0 ? 0 : waitMs);
        cmd.onIdle = done;
      });
    },
  };
}

/**
 * A command of a process (kubectl's session, a wrapped command, a session-less client's grouped requests),
 * not one request of a client kubetrail cannot group: only these have plugins and a life to time.
 */
function kubectlCommand(key: string): boolean {
  return !key.startsWith('request:');
}
