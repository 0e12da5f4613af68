/**
 * Stage events → OpenTelemetry spans. One trace per kubectl command (grouped by Kubectl-Session): a root
 * span `kubectl <command>`, a SERVER span per HTTP request, and under it `auth`, `upstream` (CLIENT),
 * `rbac` and `decode`, in that order and nested in time. The only file that starts or ends spans.
 *
 * Span times come from the proxy's monotonic clock, anchored to the request's epoch start.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes as OtelAttributes, type Context, type Span, type Tracer } from '@opentelemetry/api';
import type { RequestEnd, RequestStart, ResponseStart, StageObserver, UpstreamConnected } from '../proxy/events.ts';
import { setAttr, type Attributes } from '../stages/attributes.ts';
import { decodeAttributes, watchEventSpanEvents } from '../stages/decode/index.ts';
import { latencyAttributes } from '../stages/latency.ts';
import { rbacAttributes } from '../stages/rbac.ts';
import { isDiscovery, normalizeMethod, parseRequestInfo, requestInfoAttributes, spanName } from '../stages/request-info.ts';
import { totals, type CommandSummary, type RequestSummary } from './commands.ts';
import * as sc from './semconv.ts';

interface Command {
  key: string;
  root: Span;
  /** The context with `root` active: the parent of the command's request spans. */
  rootCtx: Context;
  traceId: string;
  command: string;
  session: string | undefined;
  startedAt: number;
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
}

export interface SpanObserver extends StageObserver {
  /** End every open command (the wrapped kubectl exited, or kubetrail is stopping). */
  finishAll(): void;
  /**
   * End the command tagged `tag` (its wrapper's kubectl exited) once its open requests have ended, or after
   * `waitMs` whatever is still open; resolves to its summary, also when it had already ended by idle
   * (recent ones are kept), or undefined when no request ever carried the tag.
   */
  finishCommand(tag: string, waitMs: number): Promise<CommandSummary | undefined>;
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
 * A continue token is opaque and long: it adds nothing to a span but cardinality. exec's `command`
 * parameters are the user's command line (`kubectl exec -- sh -c 'PASSWORD=...'`): never recorded.
 */
export function redactQuery(query: string): string {
  if (!query.includes('continue=') && !query.includes('command=')) return query;
  return query.replace(/(^|&)(continue|command)=[^&]*/g, '$1$2=REDACTED');
}

function toOtel(a: Attributes): OtelAttributes {
  return a;
}

export function createSpanObserver(opts: SpanObserverOptions): SpanObserver {
  const { tracer } = opts;
  const commands = new Map<string, Command>();
  const pending = new Map<string, Pending>();
  const at = (start: RequestStart, t: number): number => start.startedAt + (t - start.t0);

  const recent = new Map<string, { summary: CommandSummary; at: number }>();
  const adoptWindow = opts.adoptWindowMs ?? ADOPT_WINDOW_MS;
  /**
   * Session-less commands a session may still adopt, by client identity (the last one each). Only
   * discovery (the dispatcher's `/version`) is adopted: a client that never sends a session (helm,
   * client-go: #19) keeps a trace per request until grouping by identity, user agent and idleness
   * serves it too, with this same map.
   */
  const unclaimed = new Map<string, { cmd: Command; until: number }>();

  /** The session-less command of this client identity that a new session joins, if any. */
  function adoptable(start: RequestStart): Command | undefined {
    if (!start.kubectlSession || start.clientIdentity === undefined) return undefined;
    const u = unclaimed.get(start.clientIdentity);
    if (!u) return undefined;
    unclaimed.delete(start.clientIdentity);
    const live = commands.get(u.cmd.key) === u.cmd && (u.cmd.open > 0 || performance.now() <= u.until);
    return live && u.cmd.requests.every((r) => r.discovery) ? u.cmd : undefined;
  }

  function remember(key: string, summary: CommandSummary): void {
    const now = Date.now();
    for (const [k, v] of recent) if (recent.size >= RECENT_MAX || now - v.at > RECENT_MS) recent.delete(k);
    recent.set(key, { summary, at: now });
  }

  function endCommand(cmd: Command): void {
    if (!commands.delete(cmd.key)) return;
    for (const [identity, u] of unclaimed) if (u.cmd === cmd) unclaimed.delete(identity);
    if (cmd.idleTimer) clearTimeout(cmd.idleTimer);
    cmd.onIdle = undefined;
    const sum = totals(cmd.requests);
    cmd.root.setAttributes({
      [sc.ATTR_COMMAND_REQUESTS]: sum.requests,
      [sc.ATTR_COMMAND_DISCOVERY_REQUESTS]: sum.discoveryRequests,
      [sc.ATTR_COMMAND_DISCOVERY_MS]: sum.discoveryMs,
      [sc.ATTR_COMMAND_ITEMS]: sum.items,
      ...(sum.itemsPartial ? { [sc.ATTR_COMMAND_ITEMS_PARTIAL]: true } : {}),
      [sc.ATTR_COMMAND_PAGES]: sum.pages,
      [sc.ATTR_COMMAND_BYTES]: sum.bytes,
      [sc.ATTR_COMMAND_ERRORS]: sum.errors,
    });
    if (sum.errors > 0 && cmd.requests.some((r) => (r.statusCode ?? 0) >= 500 || r.outcome === 'upstream_error' || r.outcome === 'proxy_error')) {
      cmd.root.setStatus({ code: SpanStatusCode.ERROR });
    }
    cmd.root.end(cmd.lastEnd);
    const summary: CommandSummary = {
      traceId: cmd.traceId,
      command: cmd.command,
      session: cmd.session,
      startedAt: cmd.startedAt,
      durationMs: cmd.lastEnd - cmd.startedAt,
      requests: [...cmd.requests].sort((a, b) => a.startedAt - b.startedAt),
    };
    if (cmd.key.startsWith('tag:')) remember(cmd.key, summary);
    opts.onCommandFinished?.(summary);
  }

  function commandFor(start: RequestStart, name: string): Command {
    const key = start.commandTag
      ? `tag:${start.commandTag}`
      : opts.singleCommand
        ? 'wrapped'
        : start.kubectlSession
          ? `session:${start.kubectlSession}`
          : `request:${start.id}`;
    let cmd = commands.get(key);
    if (!cmd && !opts.singleCommand && !start.commandTag) {
      cmd = adoptable(start);
      if (cmd) {
        commands.delete(cmd.key);
        cmd.key = key;
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
    if (!cmd) {
      const command = start.kubectlCommand ?? name;
      const root = tracer.startSpan(command, { kind: SpanKind.INTERNAL, startTime: start.startedAt, root: true }, ROOT_CONTEXT);
      const attrs: Attributes = {};
      setAttr(attrs, sc.ATTR_KUBECTL_COMMAND, start.kubectlCommand);
      setAttr(attrs, sc.ATTR_KUBECTL_SESSION, start.kubectlSession);
      setAttr(attrs, sc.ATTR_K8S_CLUSTER_NAME, start.cluster);
      setAttr(attrs, sc.ATTR_USER_AGENT_ORIGINAL, start.userAgent);
      root.setAttributes(toOtel(attrs));
      cmd = {
        key,
        root,
        rootCtx: trace.setSpan(ROOT_CONTEXT, root),
        traceId: root.spanContext().traceId,
        command,
        session: start.kubectlSession,
        startedAt: start.startedAt,
        lastEnd: start.startedAt,
        open: 0,
        requests: [],
        idleTimer: undefined,
        idleSince: 0,
        onIdle: undefined,
      };
      commands.set(key, cmd);
    }
    cmd.open++;
    return cmd;
  }

  function idleDelay(cmd: Command): number {
    if (cmd.key.startsWith('tag:')) return Math.max(opts.idleMs, TAGGED_IDLE_MS);
    // A session-less command stays open for a session to adopt it.
    if (cmd.key.startsWith('request:')) return Math.max(opts.idleMs, adoptWindow);
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
    else if (cmd.key.startsWith('tag:') && opts.tagAlive?.(cmd.key.slice('tag:'.length)) === true) armIdle(cmd, idleDelay(cmd));
    else endCommand(cmd);
  }

  return {
    onRequestStart(start) {
      const info = parseRequestInfo(start.method, start.path, start.query);
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
      span.setAttributes(toOtel(attrs));
      const ctx = trace.setSpan(ROOT_CONTEXT, span);
      tracer.startSpan('auth', { startTime: start.startedAt }, ctx).setAttributes(toOtel(start.auth)).end(start.startedAt + INSTANT_MS);
      const upstream = tracer.startSpan('upstream', { kind: SpanKind.CLIENT, startTime: start.startedAt }, ctx);
      upstream.setAttribute(sc.ATTR_SERVER_ADDRESS, start.upstream.host);
      upstream.setAttribute(sc.ATTR_SERVER_PORT, start.upstream.port);
      pending.set(start.id, { start, command: cmd, span, ctx, upstream, name, group: info.isResourceRequest ? info.apiGroup : undefined, discovery });
      // The apiserver joins our trace: its spans link to (1.33+: for system:masters, are children of) the
      // upstream span, and its audit events carry the trace id unless kubectl chose an Audit-ID itself.
      const sc0 = upstream.spanContext();
      const headers: Record<string, string> = { traceparent: `00-${sc0.traceId}-${sc0.spanId}-${sc0.traceFlags === 1 ? '01' : '00'}` };
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
      upstream.setAttributes(toOtel(connected ? latency : {}));
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
        rbac = rbacAttributes({ statusCode: response.statusCode, statusBody: ev.statusBody, retryAfter: response.retryAfter });
        const rbacAt = at(start, response.t);
        tracer.startSpan('rbac', { startTime: rbacAt }, ctx).setAttributes(toOtel(rbac)).end(rbacAt + INSTANT_MS);
      }
      if (response && ev.decode) {
        const decodeSpan = tracer.startSpan('decode', { startTime: at(start, response.t) }, ctx).setAttributes(toOtel(decodeAttributes(ev.decode)));
        for (const e of watchEventSpanEvents(ev.decode)) decodeSpan.addEvent(e.name, toOtel(e.attributes), at(start, e.atMs));
        decodeSpan.end(endAt);
      }

      const attrs: Attributes = { [sc.ATTR_KUBETRAIL_OUTCOME]: ev.outcome, [sc.ATTR_KUBETRAIL_BYTES_DOWN]: ev.bytesDown, [sc.ATTR_KUBETRAIL_BYTES_UP]: ev.bytesUp };
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
      span.setAttributes(toOtel(attrs));
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
        watchEvents: ev.decode?.watch?.events,
        connectMs: latency['upstream.connect_ms'] as number | undefined,
        tlsMs: latency['upstream.tls_ms'] as number | undefined,
        ttfbMs: latency['upstream.ttfb_ms'] as number | undefined,
        transferMs: latency['upstream.transfer_ms'] as number | undefined,
        reused: connected?.reused,
        rbac,
      });
      command.lastEnd = Math.max(command.lastEnd, endAt);
      command.open--;
      if (command.key.startsWith('request:') && start.clientIdentity !== undefined) unclaimed.set(start.clientIdentity, { cmd: command, until: performance.now() + adoptWindow });
      if (command.open === 0 && command.onIdle) {
        command.onIdle();
      } else if (command.open === 0 && opts.idleMs > 0) {
        command.idleSince = performance.now();
        if (!command.idleTimer) armIdle(command, idleDelay(command));
      }
    },

    finishAll() {
      for (const cmd of [...commands.values()]) endCommand(cmd);
    },

    finishCommand(tag, waitMs) {
      const key = `tag:${tag}`;
      const cmd = commands.get(key);
      if (!cmd) return Promise.resolve(recent.get(key)?.summary);
      return new Promise((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          endCommand(cmd);
          resolve(recent.get(key)?.summary);
        };
        const timer = setTimeout(done, cmd.open === 0 ? 0 : waitMs);
        cmd.onIdle = done;
      });
    },
  };
}
