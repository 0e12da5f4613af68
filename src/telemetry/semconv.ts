/**
 * Attribute names kubetrail emits that are not stage attributes. Stable OpenTelemetry names are written
 * out here rather than imported (the package's full export is large and we use eight names); docs/telemetry.md's
 * telemetry table lists every one, and a test checks the exported spans against it.
 */
export const ATTR_HTTP_REQUEST_METHOD = 'http.request.method';
export const ATTR_HTTP_RESPONSE_STATUS_CODE = 'http.response.status_code';
export const ATTR_URL_PATH = 'url.path';
export const ATTR_URL_QUERY = 'url.query';
export const ATTR_USER_AGENT_ORIGINAL = 'user_agent.original';
export const ATTR_SERVER_ADDRESS = 'server.address';
export const ATTR_SERVER_PORT = 'server.port';
export const ATTR_ERROR_TYPE = 'error.type';

// Kubernetes and kubectl; the k8s.* ones follow OpenTelemetry's incubating k8s conventions.
export const ATTR_K8S_CLUSTER_NAME = 'k8s.cluster.name';
export const ATTR_KUBECTL_COMMAND = 'kubectl.command';
export const ATTR_KUBECTL_SESSION = 'kubectl.session';
export const ATTR_KUBE_AUDIT_ID = 'kube.audit_id';
export const ATTR_KUBE_APF_FLOW_SCHEMA_UID = 'kube.apf.flow_schema_uid';
export const ATTR_KUBE_APF_PRIORITY_LEVEL_UID = 'kube.apf.priority_level_uid';
export const ATTR_KUBE_WARNINGS = 'kube.warnings';

// kubetrail's own.
export const ATTR_KUBETRAIL_OUTCOME = 'kubetrail.outcome';
export const ATTR_KUBETRAIL_INSECURE = 'kubetrail.insecure_skip_tls_verify';
export const ATTR_KUBETRAIL_UPGRADE = 'kubetrail.upgrade';
/** Root span: upstream connections were shared across kubectl connections (--reuse-upstream). */
export const ATTR_KUBETRAIL_UPSTREAM_SHARED = 'kubetrail.upstream.shared';
export const ATTR_KUBETRAIL_BYTES_UP = 'kubetrail.bytes_up';
export const ATTR_KUBETRAIL_BYTES_DOWN = 'kubetrail.bytes_down';

// Root (command) span summary.
export const ATTR_COMMAND_REQUESTS = 'kubectl.requests';
export const ATTR_COMMAND_DISCOVERY_REQUESTS = 'kubectl.discovery_requests';
export const ATTR_COMMAND_DISCOVERY_MS = 'kubectl.discovery_ms';
export const ATTR_COMMAND_ITEMS = 'kubectl.items';
/** Set (true) when a response was decoded only up to the scan budget: kubectl.items is a lower bound. */
export const ATTR_COMMAND_ITEMS_PARTIAL = 'kubectl.items_partial';
export const ATTR_COMMAND_PAGES = 'kubectl.pages';
export const ATTR_COMMAND_OBJECTS = 'kubectl.objects';
export const ATTR_COMMAND_BYTES = 'kubectl.bytes';
export const ATTR_COMMAND_ERRORS = 'kubectl.errors';

// The whole command (root span and its non-request children).
/** kubectl's exit code (wrap mode), OpenTelemetry's process convention. */
export const ATTR_PROCESS_EXIT_CODE = 'process.exit.code';
/** Where the root begins: `process_start` (wrap), `credential` or `first_request` (start mode). */
export const ATTR_KUBECTL_TIMED_FROM = 'kubectl.timed_from';
/** Total time requests waited in kubectl's client-side rate limiter (inferred, stages/throttle.ts). */
export const ATTR_KUBECTL_THROTTLED_MS = 'kubectl.throttled_ms';
export const ATTR_KUBECTL_CREDENTIAL_MS = 'kubectl.credential_ms';
/** Wall time no request, credential plugin or limiter explains: kubectl's own work. */
export const ATTR_KUBECTL_OWN_MS = 'kubectl.own_ms';
/** On a `client-side throttling` span: `ordinary` (QPS 5, burst 10) or `discovery` (50, 300). */
export const ATTR_KUBECTL_LIMITER = 'kubectl.limiter';
/** On a `kubectl credential` span: the exec plugin's base name only, never its arguments or output. */
export const ATTR_AUTH_EXEC_COMMAND = 'auth.exec.command';
export const ATTR_AUTH_EXEC_EXIT_CODE = 'auth.exec.exit_code';
