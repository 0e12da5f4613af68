/**
 * One HTTP request's spans: the SERVER span named for what it asks (`list pods`), and under it the stages
 * `auth`, `upstream` (CLIENT), `rbac` and `decode`, in that order and nested in time; and, when it ends,
 * the request's summary for its command. spans.ts decides which command (trace) a request belongs to;
 * this file only builds the request's own spans.
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
import type { RequestEnd, RequestStart, ResponseStart, UpstreamConnected } from '../proxy/events.ts';
import { setAttr, type Attributes } from '../stages/attributes.ts';
import { decodeAttributes, watchEventSpanEvents } from '../stages/decode/index.ts';
import { upstreamLatency, upstreamLatencyAttributes } from '../stages/latency.ts';
import { rbacOutcome, rbacOutcomeAttributes, type RbacOutcome } from '../stages/rbac.ts';
import { isDiscovery, normalizeMethod, requestInfoAttributes } from '../stages/request-info.ts';
import { readKind, type RequestSummary } from './commands.ts';
import * as sc from './semconv.ts';

/**
 * auth and rbac are decisions, not waits: they last one microsecond. (A zero-length span makes Jaeger
 * report a negative duration and rewrite its end.)
 */
export const INSTANT_MS = 0.001;

/** A request's open spans, and what the proxy has told of it so far. */
export interface RequestSpans {
  start: RequestStart;
  /** The SERVER span. */
  span: Span;
  /** The context with `span` active: the parent of the stage spans. */
  ctx: Context;
  upstream: Span;
  /** The span's name: `list pods`, `GET /api`. */
  name: string;
  connected?: UpstreamConnected;
  response?: ResponseStart;
}

/** Epoch ms of a monotonic time `t` of this request. */
export function epochOf(start: RequestStart, t: number): number {
  return start.startedAt + (t - start.t0);
}

/**
 * A continue token is opaque and long: it adds nothing to a span but cardinality. exec's `command`
 * parameters are the user's command line (`kubectl exec -- sh -c 'PASSWORD=...'`): never recorded.
 */
export function redactQuery(query: string): string {
  if (!query.includes('continue=') && !query.includes('command=')) return query;
  return query.replace(/(^|&)(continue|command)=[^&]*/g, '$1$2=REDACTED');
}

/**
 * Opens the request's SERVER span under `parent` (its command's root), ends its `auth` span and opens its
 * `upstream` span.
 */
export function startRequestSpans(tracer: Tracer, start: RequestStart, name: string, parent: Context): RequestSpans {
  // Attributes are set after the start, not passed to startSpan: the SDK would check them three times
  // there (its samplers do not read them), once here.
  const span = tracer.startSpan(name, { kind: SpanKind.SERVER, startTime: start.startedAt }, parent);
  const attrs: Attributes = {
    [sc.ATTR_HTTP_REQUEST_METHOD]: normalizeMethod(start.method),
    [sc.ATTR_URL_PATH]: start.path,
    [sc.ATTR_SERVER_ADDRESS]: start.upstream.host,
    [sc.ATTR_SERVER_PORT]: start.upstream.port,
    [sc.ATTR_K8S_CLUSTER_NAME]: start.cluster,
    ...requestInfoAttributes(start.info),
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
  return { start, span, ctx, upstream, name };
}

/** The headers that carry the request's trace to the apiserver. */
export function traceHeaders(p: RequestSpans): Record<string, string> {
  // The apiserver joins our trace: its spans link to (1.33+: for system:masters, are children of) the
  // upstream span, and its audit events carry the trace id unless kubectl chose an Audit-ID itself.
  const sc0 = p.upstream.spanContext();
  const headers: Record<string, string> = {
    traceparent: `00-${sc0.traceId}-${sc0.spanId}-${sc0.traceFlags === 1 ? '01' : '00'}`,
  };
  if (!p.start.clientAuditId) headers['Audit-ID'] = sc0.traceId;
  return headers;
}

/**
 * Ends the request's spans: `upstream` with its timing, `rbac` and `decode` when there was an answer, then
 * the SERVER span with the outcome. Returns the request's summary.
 */
export function endRequestSpans(tracer: Tracer, p: RequestSpans, ev: RequestEnd): RequestSummary {
  const { start, span, ctx, upstream, connected, response } = p;
  const endAt = epochOf(start, ev.t);

  const latency = upstreamLatency({
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
  if (connected) upstream.setAttributes(upstreamLatencyAttributes(latency));
  if (response) upstream.setAttribute(sc.ATTR_HTTP_RESPONSE_STATUS_CODE, response.statusCode);
  if (ev.error && ev.outcome !== 'proxy_error') {
    upstream.setAttribute(sc.ATTR_ERROR_TYPE, ev.error.code);
    upstream.setStatus({ code: SpanStatusCode.ERROR });
  } else if (response && response.statusCode >= 400) {
    upstream.setStatus({ code: SpanStatusCode.ERROR });
  }
  upstream.end(endAt);

  let rbac: RbacOutcome | undefined;
  if (response) {
    rbac = rbacOutcome({
      statusCode: response.statusCode,
      statusBody: ev.statusBody,
      retryAfter: response.retryAfter,
    });
    const rbacAt = epochOf(start, response.t);
    tracer
      .startSpan('rbac', { startTime: rbacAt }, ctx)
      .setAttributes(rbacOutcomeAttributes(rbac))
      .end(rbacAt + INSTANT_MS);
  }
  if (response && ev.decode) {
    const decodeSpan = tracer
      .startSpan('decode', { startTime: epochOf(start, response.t) }, ctx)
      .setAttributes(decodeAttributes(ev.decode));
    for (const e of watchEventSpanEvents(ev.decode)) decodeSpan.addEvent(e.name, e.attributes, epochOf(start, e.atMs));
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

  return {
    id: start.id,
    name: p.name,
    method: start.method,
    path: start.path,
    group: start.info.isResourceRequest ? start.info.apiGroup : undefined,
    cluster: start.cluster,
    discovery: isDiscovery(start.info),
    startedAt: start.startedAt,
    durationMs: ev.t - start.t0,
    statusCode: response?.statusCode,
    outcome: ev.outcome,
    errorCode: ev.error?.code,
    bytes: ev.bytesDown,
    items: ev.decode?.items,
    itemsPartial: ev.decode?.partial === true,
    page: /(^|&)continue=/.test(start.query),
    reads: readKind(start.info),
    ...(start.info.isResourceRequest ? { namespace: start.info.namespace, objectName: start.info.name } : {}),
    watchEvents: ev.decode?.watch?.events,
    connectMs: latency.connectMs,
    tlsMs: latency.tlsMs,
    ttfbMs: latency.ttfbMs,
    transferMs: latency.transferMs,
    reused: connected?.reused,
    rbac,
    ...(ev.decode?.podPhases ? { podPhases: ev.decode.podPhases } : {}),
  };
}
