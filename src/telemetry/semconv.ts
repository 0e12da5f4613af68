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
export const ATTR_COMMAND_BYTES = 'kubectl.bytes';
export const ATTR_COMMAND_ERRORS = 'kubectl.errors';
