/**
 * A stand-in kube-apiserver for fast tests and fault injection (the real one is exercised by the e2e suite;
 * test/e2e/conformance.test.ts checks the wire facts below against a real v1.33 apiserver).
 *
 * - HTTPS on 127.0.0.1, port 0, certificates made per run (SAN IP 127.0.0.1, DNS localhost + `extraDnsNames`);
 *   ALPN h2 and http/1.1 from one listener (HTTP/1.1 upgrades included), or HTTP/1.1 only (`http2: false`).
 * - Authentication like the apiserver's union: a client certificate verified against the client CA
 *   (user = CN, groups = O), bearer tokens, optional basic auth, anonymous; 401 Status; h2 GOAWAY after 401
 *   and anonymous answers. Impersonation headers. Authorization via a policy function; 403 Status worded
 *   exactly as the apiserver's (`pods is forbidden: User "x" cannot list resource "pods" in API group ""
 *   in the namespace "default"`). SelfSubjectAccessReview (`kubectl auth can-i`) uses the same policy.
 * - Headers as the apiserver sends them, in Go's order on HTTP/1.1 (sorted, then Date, then Content-Length
 *   or Transfer-Encoding): Audit-Id (echoing a client Audit-ID), Cache-Control, X-Kubernetes-Pf-* (flow
 *   schemas exempt / probes / global-default; not on 401s or long-running non-watch answers),
 *   X-Content-Type-Options on 403, Content-Type; Content-Length only when the whole answer fits Go's
 *   buffer (2 KiB h1, 4 KiB h2), gzipped or not; gzip (level 1) above 128 KiB for clients that accept it,
 *   never for streams.
 * - /version (1.32 or 1.33), /healthz /livez /readyz, aggregated (v2; v2beta1 on 1.32 only, a 406 on 1.33)
 *   and legacy discovery with ETag/304, a minimal /openapi/v3 (enough for `kubectl apply`'s server-side
 *   field validation check). Paths no handler serves (unknown groups, unknown non-resource paths) get Go's
 *   text `404 page not found`; unknown resources and versions of served groups a NotFound Status.
 * - pods, configmaps, namespaces, apps/v1 deployments (+ /scale): list (JSON with kind-less items, Table
 *   with the server's columns, PartialObjectMetadata; includeObject), limit/continue with opaque tokens and
 *   remainingItemCount (410 with a fresh token once compacted), label/field selectors, get, create (JSON,
 *   YAML, and protobuf for ConfigMap and Namespace), update, patch (merge, strategic-merge approximation, JSON patch, apply), delete (with body,
 *   preconditions, dryRun), deletecollection; watch (JSON or Table events, resume from a resourceVersion,
 *   410 after `compact()`, bookmarks, sendInitialEvents on 1.32 (a 422 on 1.33, whose WatchList gate is
 *   off), timeoutSeconds); pods/log (tailLines, timestamps, limitBytes, follow; 204 for an unscheduled pod).
 * - exec/attach: WebSocket `v5.channel.k8s.io` (the stream translator's, with its readiness message),
 *   `v4.channel.k8s.io`/`channel.k8s.io`, and SPDY/3.1 negotiating `v4.channel.k8s.io` like a kubelet;
 *   port-forward: `SPDY/3.1+portforward.k8s.io` WebSocket tunnel and plain SPDY/3.1. `websocket: false`
 *   refuses WebSockets like an apiserver without the translator, so kubectl falls back to SPDY. An
 *   unscheduled pod gets the apiserver's `400 pod X does not have a host assigned` (with or without an
 *   Upgrade header, on every transport).
 * - Faults (`setFault`): delay, status (+ body, Retry-After), reset after N body bytes, hang after headers,
 *   drop the connection. On upgrade requests only delay, status and drop apply.
 *
 * Not served: other resources, protobuf responses, request bodies in protobuf for kinds other than
 * ConfigMap, Namespace and SelfSubjectAccessReview (`kubectl create deployment` gets a 415), OpenAPI
 * schemas (`kubectl explain` fails), `kubectl cp` (the default exec handler has no `tar`; pass `exec`).
 */
export { defaultAuthorize, startFakeApiserver } from './fake-apiserver/server.ts';
export type { FakeApiserver } from './fake-apiserver/server.ts';
export type {
  AuthorizeFn,
  Fault,
  FakeApiserverOptions,
  KubeconfigContext,
  KubeconfigSpec,
  KubeconfigUser,
  RecordedRequest,
  RequestAttributes,
  TokenEntry,
  UserInfo,
  WatchEvent,
} from './fake-apiserver/types.ts';
export { writeKubeconfigFile as writeKubeconfig } from './fake-apiserver/kubeconfig.ts';
export { makeConfigMap, makeNamespace, makePod } from './fake-apiserver/resources.ts';
export type { KubeObject, ObjectMeta, PodOptions } from './fake-apiserver/resources.ts';
export { defaultExec, defaultPortForward } from './fake-apiserver/streaming.ts';
export type {
  ExecHandler,
  ExecIO,
  ExecRequest,
  PortForwardHandler,
  PortForwardRequest,
} from './fake-apiserver/streaming.ts';
