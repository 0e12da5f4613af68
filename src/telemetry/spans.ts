/**
 * Stage events → OpenTelemetry spans. One trace per kubectl command (grouped by Kubectl-Session; a client
 * that sends none, by process: commands.ts ClientGroups): a root
 * span `kubectl <command>`, a SERVER span per HTTP request, and under it `auth`, `upstream` (CLIENT),
 * `rbac` and `decode`, in that order and nested in time. The only file that starts or ends spans.
 *
 * Span times come from the proxy's monotonic clock, anchored to the request's epoch start.
 */
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import type { RequestEnd, RequestStart, ResponseStart, StageObserver, UpstreamConnected } from '../proxy/events.ts';
import { setAttr, type Attributes } from '../stages/attributes.ts';
import { decodeAttributes, watchEventSpanEvents } from '../stages/decode/index.ts';
import { latencyAttributes } from '../stages/latency.ts';
import { rbacAttributes } from '../stages/rbac.ts';
import { inferThrottling } from '../stages/throttle.ts';
import type { CredentialRun, Timing } from '../kubeconfig/timing.ts';
import {
  isDiscovery,
  normalizeMethod,
  requestInfoAttributes,
  spanName,
  type RequestInfo,
} from '../stages/request-info.ts';
import {
  ClientGroups,
  coveredMs,
  podPhaseTotals,
  programOf,
  readKind,
  totals,
  unionMs,
  type CommandSummary,
  type KubectlLife,
  type RequestSummary,
  type TimedFrom,
} from './commands.ts';
import * as sc from './semconv.ts';

interface Command {
  key: string;
  /** Its requests rode shared upstream connections (--reuse-upstream). */
  upstreamShared: boolean;
  root: Span;
  /** The context with `root` active: the parent of the command's request spans. */
  rootCtx: Context;
  traceId: string;
  command: string;
  session: string | undefined;
  /** Epoch ms the root begins: kubectl's start (wrap), its first credential plugin, or its first request. */
  startedAt: number;
  timedFrom: TimedFrom;
  /** Credential plugin runs that belong to this command, known so far. */
  credentials: CredentialRun[];
  /** Epoch ms of the last request end. */
  lastEnd: number;
  open: number;
  requests: RequestSummary[];
  /**
   * Armed when the command went idle and left armed while requests come and go (re-arming a timer per
   * request costs more than the request's spans): when it fires, it ends the command if it is still idle
   * and has been for the idle time since `idleSince`, or waits for the rest of it.
   */
  idleTimer: NodeJS.Timeout | undefined;
  /** performance.now() when `open` last went to 0. */
  idleSince: number;
  /** Set by finishCommand() while it waits for the command's open requests to end. */
  onIdle: (() => void) | undefined;
  /** Session-less, from a kubectl program (the dispatcher's probe): a session may adopt it. */
  kubectlProbe: boolean;
}

interface Pending {
  start: RequestStart;
  command: Command;
  span: Span;
  /** The context with `span` active: the parent of the stage spans. */
  ctx: Context;
  upstream: Span;
  connected?: UpstreamConnected;
  response?: ResponseStart;
  name: string;
  group: string | undefined;
  discovery: boolean;
  info: RequestInfo;
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
   * identity within this long (default ADOPT_WINDOW_MS). See adoptable().
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
 * A tagged command is ended by its wrapper; idle only ends one whose wrapper vanished. Finished tagged
 * commands are kept for their wrappers this long, at most RECENT_MAX of them.
 */
const TAGGED_IDLE_MS = 60_000;
const RECENT_MS = 60_000;
const RECENT_MAX = 64;

/**
 * How soon after a session-less request a session of the same client identity must start to join its
 * trace: the gcloud kubectl dispatcher's `/version` probe, then the kubectl it picked, a new process.
 */
export const ADOPT_WINDOW_MS = 1500;

/**
 * auth and rbac are decisions, not waits: they last one microsecond. (A zero-length span makes Jaeger
 * report a negative duration and rewrite its end.)
 */
const INSTANT_MS = 0.001;

/**
 * A command without a tag (start mode) claims the credential plugin runs that ended at most this long
 * before its first request: kubectl runs its plugin just before it needs the token.
 */
const CREDENTIAL_LEAD_MS = 30_000;
/** Clocks of two processes and a shell's `date` agree to about this much. */
const CLOCK_SLACK_MS = 5;

/**
 * A continue token is opaque and long: it adds nothing to a span but cardinality. exec's `command`
 * parameters are the user's command line (`kubectl exec -- sh -c 'PASSWORD=...'`): never recorded.
 */
export function redactQuery(query: string): string {
  if (!query.includes('continue=') && !query.includes('command=')) return query;
  return query.replace(/(^|&)(continue|command)=[^&]*/g, '$1$2=REDACTED');
}

export function createSpanObserver(opts: SpanObserverOptions): SpanObserver {
  const { tracer } = opts;
  const commands = new Map<string, Command>();
  const pending = new Map<string, Pending>();
  const at = (start: RequestStart, t: number): number => start.startedAt + (t - start.t0);

  const recent = new Map<string, { summary: CommandSummary; at: number }>();
  const adoptWindow = opts.adoptWindowMs ?? ADOPT_WINDOW_MS;
  /** Start mode: the commands of clients that send no Kubectl-Session (helm, client-go programs: #19). */
  const groups = new ClientGroups();
  /**
   * Session-less commands a session may still adopt, by client identity (the last one each). Only a
   * kubectl program's discovery is adopted (the gcloud dispatcher's `/version`, User-Agent
   * `kubectl-dispatcher/…`): helm's first requests are discovery too, and a kubectl started beside it
   * must not take them.
   */
  const unclaimed = new Map<string, { cmd: Command; until: number }>();

  /** The session-less command of this client identity that a new session joins, if any. */
  function adoptable(start: RequestStart): Command | undefined {
    if (!start.kubectlSession || start.clientIdentity === undefined) return undefined;
    const u = unclaimed.get(start.clientIdentity);
    if (!u) return undefined;
    unclaimed.delete(start.clientIdentity);
    const live = commands.get(u.cmd.key) === u.cmd && (u.cmd.open > 0 || performance.now() <= u.until);
    return live && u.cmd.requests.every((r) => r.discovery) && u.cmd.kubectlProbe ? u.cmd : undefined;
  }

  function remember(key: string, summary: CommandSummary): void {
    const now = Date.now();
    for (const [k, v] of recent) if (recent.size >= RECENT_MAX || now - v.at > RECENT_MS) recent.delete(k);
    recent.set(key, { summary, at: now });
  }

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

  function child(cmd: Command, name: string, from: number, to: number, attrs: Attributes = {}): void {
    tracer
      .startSpan(name, { kind: SpanKind.INTERNAL, startTime: from }, cmd.rootCtx)
      .setAttributes(attrs)
      .end(Math.max(to, from + INSTANT_MS));
  }

  function endCommand(cmd: Command, life?: KubectlLife): void {
    if (!commands.delete(cmd.key)) return;
    groups.ended(cmd.key);
    for (const [identity, u] of unclaimed) if (u.cmd === cmd) unclaimed.delete(identity);
    if (cmd.idleTimer) clearTimeout(cmd.idleTimer);
    cmd.onIdle = undefined;
    const sum = totals(cmd.requests);
    const tag = cmd.key.startsWith('tag:') ? cmd.key.slice('tag:'.length) : undefined;
    // Plugins may run again mid-command (a token refreshed after a 401).
    const later = kubectlCommand(cmd.key) ? opts.timing?.(tag, true) : undefined;
    const known = new Set(cmd.credentials.map((c) => c.id));
    const endAt = life ? Math.max(life.exitedAt, cmd.lastEnd) : cmd.lastEnd;
    for (const c of credentialsFor(cmd, later, endAt, cmd.timedFrom === 'process_start' ? cmd.startedAt : undefined)) {
      if (!known.has(c.id)) cmd.credentials.push(c);
    }
    cmd.credentials.sort((a, b) => a.start - b.start);
    const requests = [...cmd.requests].sort((a, b) => a.startedAt - b.startedAt);
    const throttling = inferThrottling(requests);

    for (const c of cmd.credentials) {
      child(cmd, 'kubectl credential', c.start, c.end, {
        [sc.ATTR_AUTH_EXEC_COMMAND]: c.command,
        [sc.ATTR_AUTH_EXEC_EXIT_CODE]: c.exitCode,
      });
    }
    const firstRequest = requests[0]?.startedAt;
    const firstThing = Math.min(firstRequest ?? endAt, ...cmd.credentials.map((c) => c.start));
    if (cmd.timedFrom === 'process_start' && firstThing > cmd.startedAt)
      child(cmd, 'kubectl start', cmd.startedAt, firstThing);
    for (const w of throttling.waits) {
      const limiter = w.discovery ? 'discovery' : 'ordinary';
      child(cmd, 'client-side throttling', w.from, w.to, { [sc.ATTR_KUBECTL_LIMITER]: limiter });
    }
    if (life && requests.length > 0 && life.exitedAt > cmd.lastEnd)
      child(cmd, 'kubectl output', cmd.lastEnd, life.exitedAt);

    const wallMs = endAt - cmd.startedAt;
    const requestsMs = coveredMs(requests);
    const credentialMs = unionMs(cmd.credentials.map((c) => [c.start, c.end]));
    const everything = unionMs([
      ...requests.map((r) => [r.startedAt, r.startedAt + r.durationMs] as const),
      ...cmd.credentials.map((c) => [c.start, c.end] as const),
      ...throttling.waits.map((w) => [w.from, w.to] as const),
    ]);
    const division = {
      wallMs: round1(wallMs),
      requestsMs: round1(requestsMs),
      credentialMs: round1(credentialMs),
      throttledMs: throttling.totalMs,
      ownMs: round1(Math.max(0, wallMs - everything)),
    };

    cmd.root.setAttributes({
      [sc.ATTR_COMMAND_REQUESTS]: sum.requests,
      [sc.ATTR_COMMAND_DISCOVERY_REQUESTS]: sum.discoveryRequests,
      [sc.ATTR_COMMAND_DISCOVERY_MS]: sum.discoveryMs,
      [sc.ATTR_COMMAND_ITEMS]: sum.items,
      ...(sum.itemsPartial ? { [sc.ATTR_COMMAND_ITEMS_PARTIAL]: true } : {}),
      [sc.ATTR_COMMAND_PAGES]: sum.pages,
      [sc.ATTR_COMMAND_OBJECTS]: sum.objects,
      [sc.ATTR_COMMAND_BYTES]: sum.bytes,
      [sc.ATTR_COMMAND_ERRORS]: sum.errors,
      [sc.ATTR_KUBECTL_TIMED_FROM]: cmd.timedFrom,
      [sc.ATTR_KUBECTL_THROTTLED_MS]: throttling.totalMs,
      [sc.ATTR_KUBECTL_CREDENTIAL_MS]: division.credentialMs,
      [sc.ATTR_KUBECTL_OWN_MS]: division.ownMs,
      ...(life ? { [sc.ATTR_PROCESS_EXIT_CODE]: life.exitCode } : {}),
      ...Object.fromEntries(
        Object.entries(podPhaseTotals(requests) ?? {}).map(([phase, n]) => [`decode.pod_phase.${phase}`, n]),
      ),
    });
    if (
      sum.errors > 0 &&
      cmd.requests.some(
        (r) => (r.statusCode ?? 0) >= 500 || r.outcome === 'upstream_error' || r.outcome === 'proxy_error',
      )
    ) {
      cmd.root.setStatus({ code: SpanStatusCode.ERROR });
    }
    cmd.root.end(endAt);
    const summary: CommandSummary = {
      traceId: cmd.traceId,
      command: cmd.command,
      session: cmd.session,
      startedAt: cmd.startedAt,
      durationMs: wallMs,
      requests,
      timedFrom: cmd.timedFrom,
      exitCode: life?.exitCode,
      credentials: cmd.credentials,
      throttling,
      division,
      ...(cmd.upstreamShared ? { upstreamShared: true } : {}),
    };
    if (cmd.key.startsWith('tag:')) remember(cmd.key, summary);
    opts.onCommandFinished?.(summary);
  }

  function keyOf(start: RequestStart): string {
    return start.commandTag
      ? `tag:${start.commandTag}`
      : opts.singleCommand
        ? 'wrapped'
        : start.kubectlSession
          ? `session:${start.kubectlSession}`
          : start.clientIdentity !== undefined
            ? groups.keyFor(start.clientIdentity, start.userAgent, start.clientConnection)
            : `request:${start.id}`;
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
    const root = tracer.startSpan(command, { kind: SpanKind.INTERNAL, startTime: startedAt, root: true }, ROOT_CONTEXT);
    const attrs: Attributes = {};
    setAttr(attrs, sc.ATTR_KUBECTL_COMMAND, start?.kubectlCommand);
    setAttr(attrs, sc.ATTR_KUBECTL_SESSION, start?.kubectlSession);
    setAttr(attrs, sc.ATTR_K8S_CLUSTER_NAME, start?.cluster);
    setAttr(attrs, sc.ATTR_USER_AGENT_ORIGINAL, start?.userAgent);
    // connect and TLS then show a pool's, not what this command would pay on its own.
    if (start?.upstreamShared === true) attrs[sc.ATTR_KUBETRAIL_UPSTREAM_SHARED] = true;
    root.setAttributes(attrs);
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
    commands.set(key, cmd);
    return cmd;
  }

  function commandFor(start: RequestStart, name: string): Command {
    const key = keyOf(start);
    let cmd = commands.get(key);
    if (!cmd && !opts.singleCommand && !start.commandTag) {
      cmd = adoptable(start);
      if (cmd) {
        commands.delete(cmd.key);
        groups.ended(cmd.key);
        cmd.key = key;
        // A session's now: no other session may take it.
        cmd.kubectlProbe = false;
        commands.set(key, cmd);
      }
    }
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

  function idleDelay(cmd: Command): number {
    if (cmd.key.startsWith('tag:')) return Math.max(opts.idleMs, TAGGED_IDLE_MS);
    // A kubectl program's session-less probe stays open for a session to adopt it.
    if (cmd.kubectlProbe) return Math.max(opts.idleMs, adoptWindow);
    return opts.idleMs;
  }

  function armIdle(cmd: Command, ms: number): void {
    cmd.idleTimer = setTimeout(() => onIdleTimer(cmd), ms);
    cmd.idleTimer.unref();
  }

  function onIdleTimer(cmd: Command): void {
    cmd.idleTimer = undefined;
    // Busy again: the end of its last open request arms the timer anew.
    if (cmd.open > 0 || cmd.onIdle) return;
    const left = cmd.idleSince + idleDelay(cmd) - performance.now();
    // Timers fire up to a millisecond early or late; within that, the command has been idle long enough.
    if (left >= 1) armIdle(cmd, left);
    else if (cmd.key.startsWith('tag:') && opts.tagAlive?.(cmd.key.slice('tag:'.length)) === true)
      armIdle(cmd, idleDelay(cmd));
    else endCommand(cmd);
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
      const discovery = isDiscovery(info);
      const cmd = commandFor(start, name);
      // Attributes are set after the start, not passed to startSpan: the SDK would check them three times
      // there (its samplers do not read them), once here.
      const span = tracer.startSpan(name, { kind: SpanKind.SERVER, startTime: start.startedAt }, cmd.rootCtx);
      const attrs: Attributes = {
        [sc.ATTR_HTTP_REQUEST_METHOD]: normalizeMethod(start.method),
        [sc.ATTR_URL_PATH]: start.path,
        [sc.ATTR_SERVER_ADDRESS]: start.upstream.host,
        [sc.ATTR_SERVER_PORT]: start.upstream.port,
        [sc.ATTR_K8S_CLUSTER_NAME]: start.cluster,
        ...requestInfoAttributes(info),
      };
      setAttr(attrs, sc.ATTR_URL_QUERY, redactQuery(start.query));
      setAttr(attrs, sc.ATTR_USER_AGENT_ORIGINAL, start.userAgent);
      setAttr(attrs, sc.ATTR_KUBECTL_COMMAND, start.kubectlCommand);
      setAttr(attrs, sc.ATTR_KUBECTL_SESSION, start.kubectlSession);
      if (start.upgrade) attrs[sc.ATTR_KUBETRAIL_UPGRADE] = true;
      if (start.insecure) attrs[sc.ATTR_KUBETRAIL_INSECURE] = true;
      span.setAttributes(attrs);
      const ctx = trace.setSpan(ROOT_CONTEXT, span);
      tracer
        .startSpan('auth', { startTime: start.startedAt }, ctx)
        .setAttributes(start.auth)
        .end(start.startedAt + INSTANT_MS);
      const upstream = tracer.startSpan('upstream', { kind: SpanKind.CLIENT, startTime: start.startedAt }, ctx);
      upstream.setAttribute(sc.ATTR_SERVER_ADDRESS, start.upstream.host);
      upstream.setAttribute(sc.ATTR_SERVER_PORT, start.upstream.port);
      pending.set(start.id, {
        start,
        command: cmd,
        span,
        ctx,
        upstream,
        name,
        group: info.isResourceRequest ? info.apiGroup : undefined,
        discovery,
        info,
      });
      // The apiserver joins our trace: its spans link to (1.33+: for system:masters, are children of) the
      // upstream span, and its audit events carry the trace id unless kubectl chose an Audit-ID itself.
      const sc0 = upstream.spanContext();
      const headers: Record<string, string> = {
        traceparent: `00-${sc0.traceId}-${sc0.spanId}-${sc0.traceFlags === 1 ? '01' : '00'}`,
      };
      if (!start.clientAuditId) headers['Audit-ID'] = sc0.traceId;
      return headers;
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
      const { start, span, ctx, upstream, connected, response, command } = p;
      const endAt = at(start, ev.t);

      const latency = latencyAttributes({
        start: start.t0,
        socketAssigned: connected?.t,
        connectEnd: connected?.connectEnd,
        tlsEnd: connected?.tlsEnd,
        requestSent: ev.requestSent,
        firstByte: response?.t,
        end: response ? ev.t : undefined,
        reused: connected?.reused ?? false,
        h2: connected?.protocol === 'h2',
      });
      upstream.setAttributes(connected ? latency : {});
      if (response) upstream.setAttribute(sc.ATTR_HTTP_RESPONSE_STATUS_CODE, response.statusCode);
      if (ev.error && ev.outcome !== 'proxy_error') {
        upstream.setAttribute(sc.ATTR_ERROR_TYPE, ev.error.code);
        upstream.setStatus({ code: SpanStatusCode.ERROR });
      } else if (response && response.statusCode >= 400) {
        upstream.setStatus({ code: SpanStatusCode.ERROR });
      }
      upstream.end(endAt);

      let rbac: Attributes = {};
      if (response) {
        rbac = rbacAttributes({
          statusCode: response.statusCode,
          statusBody: ev.statusBody,
          retryAfter: response.retryAfter,
        });
        const rbacAt = at(start, response.t);
        tracer
          .startSpan('rbac', { startTime: rbacAt }, ctx)
          .setAttributes(rbac)
          .end(rbacAt + INSTANT_MS);
      }
      if (response && ev.decode) {
        const decodeSpan = tracer
          .startSpan('decode', { startTime: at(start, response.t) }, ctx)
          .setAttributes(decodeAttributes(ev.decode));
        for (const e of watchEventSpanEvents(ev.decode)) decodeSpan.addEvent(e.name, e.attributes, at(start, e.atMs));
        decodeSpan.end(endAt);
      }

      const attrs: Attributes = {
        [sc.ATTR_KUBETRAIL_OUTCOME]: ev.outcome,
        [sc.ATTR_KUBETRAIL_BYTES_DOWN]: ev.bytesDown,
        [sc.ATTR_KUBETRAIL_BYTES_UP]: ev.bytesUp,
      };
      if (response) {
        attrs[sc.ATTR_HTTP_RESPONSE_STATUS_CODE] = response.statusCode;
        setAttr(attrs, sc.ATTR_KUBE_AUDIT_ID, response.auditId);
        setAttr(attrs, sc.ATTR_KUBE_APF_FLOW_SCHEMA_UID, response.flowSchemaUid);
        setAttr(attrs, sc.ATTR_KUBE_APF_PRIORITY_LEVEL_UID, response.priorityLevelUid);
        setAttr(attrs, sc.ATTR_KUBE_WARNINGS, response.warnings);
      }
      if (ev.error) {
        attrs[sc.ATTR_ERROR_TYPE] = ev.error.code;
        span.setStatus({ code: SpanStatusCode.ERROR, message: ev.error.message });
      } else if (response && response.statusCode >= 500) {
        attrs[sc.ATTR_ERROR_TYPE] = String(response.statusCode);
        span.setStatus({ code: SpanStatusCode.ERROR });
      }
      span.setAttributes(attrs);
      span.end(endAt);

      command.requests.push({
        id,
        name: p.name,
        method: start.method,
        path: start.path,
        group: p.group,
        cluster: start.cluster,
        discovery: p.discovery,
        startedAt: start.startedAt,
        durationMs: ev.t - start.t0,
        statusCode: response?.statusCode,
        outcome: ev.outcome,
        errorCode: ev.error?.code,
        bytes: ev.bytesDown,
        items: ev.decode?.items,
        itemsPartial: ev.decode?.partial === true,
        page: /(^|&)continue=/.test(start.query),
        reads: readKind(p.info),
        ...(p.info.isResourceRequest ? { namespace: p.info.namespace, objectName: p.info.name } : {}),
        watchEvents: ev.decode?.watch?.events,
        connectMs: latency['upstream.connect_ms'] as number | undefined,
        tlsMs: latency['upstream.tls_ms'] as number | undefined,
        ttfbMs: latency['upstream.ttfb_ms'] as number | undefined,
        transferMs: latency['upstream.transfer_ms'] as number | undefined,
        reused: connected?.reused,
        rbac,
        ...(ev.decode?.podPhases ? { podPhases: ev.decode.podPhases } : {}),
      });
      command.lastEnd = Math.max(command.lastEnd, endAt);
      command.open--;
      if (command.kubectlProbe && start.clientIdentity !== undefined)
        unclaimed.set(start.clientIdentity, { cmd: command, until: performance.now() + adoptWindow });
      if (command.open === 0 && command.onIdle) {
        command.onIdle();
      } else if (command.open === 0 && opts.idleMs > 0) {
        command.idleSince = performance.now();
        if (!command.idleTimer) armIdle(command, idleDelay(command));
      }
    },

    onConnectionClosed(connection) {
      groups.closed(connection);
    },

    finishAll(life) {
      if (life && opts.singleCommand && !commands.has('wrapped')) commandWithoutRequests('wrapped', life);
      for (const cmd of [...commands.values()]) endCommand(cmd, cmd.key === 'wrapped' ? life : undefined);
    },

    finishCommand(tag, waitMs, life) {
      const key = `tag:${tag}`;
      let cmd = commands.get(key);
      if (!cmd && life && !recent.has(key)) cmd = commandWithoutRequests(key, life);
      if (!cmd) return Promise.resolve(recent.get(key)?.summary);
      return new Promise((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          endCommand(cmd, life);
          resolve(recent.get(key)?.summary);
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

function round1(ms: number): number {
  return Math.round(ms * 10) / 10;
}
