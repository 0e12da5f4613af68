/**
 * A command's root span: opened with the command's first request (or kubectl's start), closed when the
 * command ends, with the spans of what happened outside the requests as its children (`kubectl
 * credential`, `kubectl start`, `client-side throttling`, `kubectl output`) and the division of its wall
 * time. spans.ts decides when a command opens and ends; this file builds its root.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, type Context, type Span, type Tracer } from '@opentelemetry/api';
import type { CredentialRun } from '../kubeconfig/timing.ts';
import type { RequestStart } from '../proxy/events.ts';
import { setAttr, type Attributes } from '../stages/attributes.ts';
import { inferThrottling } from '../stages/throttle.ts';
import {
  coveredMs,
  podPhaseTotals,
  totals,
  unionMs,
  type CommandSummary,
  type KubectlLife,
  type RequestSummary,
  type TimedFrom,
} from './commands.ts';
import { INSTANT_MS } from './request-spans.ts';
import * as sc from './semconv.ts';

/** What a command's root span needs to be closed: the facts gathered while the command ran. */
export interface CommandRoot {
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
  requests: RequestSummary[];
}

/** The root span of a command named `command`, begun at `startedAt`, with its first request's facts. */
export function openRoot(tracer: Tracer, command: string, startedAt: number, start: RequestStart | undefined): Span {
  const root = tracer.startSpan(command, { kind: SpanKind.INTERNAL, startTime: startedAt, root: true }, ROOT_CONTEXT);
  const attrs: Attributes = {};
  setAttr(attrs, sc.ATTR_KUBECTL_COMMAND, start?.kubectlCommand);
  setAttr(attrs, sc.ATTR_KUBECTL_SESSION, start?.kubectlSession);
  setAttr(attrs, sc.ATTR_K8S_CLUSTER_NAME, start?.cluster);
  setAttr(attrs, sc.ATTR_USER_AGENT_ORIGINAL, start?.userAgent);
  // connect and TLS then show a pool's, not what this command would pay on its own.
  if (start?.upstreamShared === true) attrs[sc.ATTR_KUBETRAIL_UPSTREAM_SHARED] = true;
  root.setAttributes(attrs);
  return root;
}

/**
 * Ends the root at `endAt` (kubectl's exit when known, else its last request's end) after its children,
 * and returns the command's summary.
 */
export function closeRoot(
  tracer: Tracer,
  cmd: CommandRoot,
  endAt: number,
  life: KubectlLife | undefined,
): CommandSummary {
  cmd.credentials.sort((a, b) => a.start - b.start);
  const sum = totals(cmd.requests);
  const requests = [...cmd.requests].sort((a, b) => a.startedAt - b.startedAt);
  const throttling = inferThrottling(requests);

  for (const c of cmd.credentials) {
    child(tracer, cmd, 'kubectl credential', c.start, c.end, {
      [sc.ATTR_AUTH_EXEC_COMMAND]: c.command,
      [sc.ATTR_AUTH_EXEC_EXIT_CODE]: c.exitCode,
    });
  }
  const firstRequest = requests[0]?.startedAt;
  const firstThing = Math.min(firstRequest ?? endAt, ...cmd.credentials.map((c) => c.start));
  if (cmd.timedFrom === 'process_start' && firstThing > cmd.startedAt)
    child(tracer, cmd, 'kubectl start', cmd.startedAt, firstThing);
  for (const w of throttling.waits) {
    const limiter = w.discovery ? 'discovery' : 'ordinary';
    child(tracer, cmd, 'client-side throttling', w.from, w.to, { [sc.ATTR_KUBECTL_LIMITER]: limiter });
  }
  if (life && requests.length > 0 && life.exitedAt > cmd.lastEnd)
    child(tracer, cmd, 'kubectl output', cmd.lastEnd, life.exitedAt);

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
  return summary;
}

function child(tracer: Tracer, cmd: CommandRoot, name: string, from: number, to: number, attrs: Attributes = {}): void {
  tracer
    .startSpan(name, { kind: SpanKind.INTERNAL, startTime: from }, cmd.rootCtx)
    .setAttributes(attrs)
    .end(Math.max(to, from + INSTANT_MS));
}

function round1(ms: number): number {
  return Math.round(ms * 10) / 10;
}
