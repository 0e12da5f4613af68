/**
 * Stage events as the proxy core publishes them (src/proxy/events.ts), for unit tests of the observers
 * (telemetry spans, the request log) that need no proxy. Each factory fills what a plain `kubectl get pods`
 * would carry; a test overrides only the facts it is about.
 */
import type { RequestEnd, RequestStart, ResponseStart } from '../../src/proxy/events.ts';
import { parseRequestInfo } from '../../src/stages/request-info.ts';

let seq = 0;

/**
 * A request's start. `info` is parsed from the final method, path and query, as the proxy does, unless the
 * test gives one.
 */
export function requestStart(over: Partial<RequestStart> = {}): RequestStart {
  seq++;
  const base = {
    id: `r${seq}`,
    startedAt: Date.now(),
    t0: performance.now(),
    method: 'GET',
    path: '/api/v1/namespaces/default/pods',
    query: 'limit=500',
    cluster: 'kind',
    upstream: { host: '127.0.0.1', port: 6443 },
    upgrade: false,
    userAgent: 'kubectl/v1.33.1',
    kubectlCommand: 'kubectl get',
    kubectlSession: undefined,
    commandTag: undefined,
    clientAuditId: undefined,
    auth: {},
    insecure: false,
    ...over,
  };
  return { ...base, info: over.info ?? parseRequestInfo(base.method, base.path, base.query) };
}

/** The head of a 200 JSON answer. */
export function responseStart(over: Partial<ResponseStart> = {}): ResponseStart {
  return {
    t: performance.now(),
    statusCode: 200,
    contentType: 'application/json',
    contentEncoding: undefined,
    auditId: undefined,
    flowSchemaUid: undefined,
    priorityLevelUid: undefined,
    retryAfter: undefined,
    warnings: [],
    ...over,
  };
}

/** A request that completed. */
export function requestEnd(over: Partial<RequestEnd> = {}): RequestEnd {
  return { t: performance.now(), outcome: 'complete', bytesDown: 10, bytesUp: 0, ...over };
}
