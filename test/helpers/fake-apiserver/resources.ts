/**
 * The resources the stand-in serves: their discovery entries, the Table columns the apiserver's printers
 * give them (pkg/printers/internalversion/printers.go, always in wide form on the server), and the defaults
 * the apiserver fills in on create.
 */
import { randomUUID } from 'node:crypto';

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string | null;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
  [key: string]: unknown;
}

export interface ColumnDefinition {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

export interface SubresourceDef {
  name: string;
  kind: string;
  group?: string;
  version?: string;
  verbs: string[];
}

export interface ResourceDef {
  group: string;
  version: string;
  /** Plural, lower-case: the path segment. */
  name: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  verbs: string[];
  shortNames: string[];
  categories: string[];
  storageVersionHash: string;
  subresources: SubresourceDef[];
  columns: ColumnDefinition[];
  cells(obj: KubeObject, now: number): unknown[];
  /** Row conditions (completed pods). */
  conditions?(obj: KubeObject): { type: string; status: string; reason: string; message: string }[] | undefined;
  /** Fill in what the apiserver defaults on create. */
  defaults?(obj: KubeObject): void;
  /** Pods answer DELETE with the object; most resources with a Success Status. */
  deleteReturnsObject: boolean;
  /** Field selectors the resource supports beyond metadata.name / metadata.namespace. */
  fieldLabels: Record<string, (obj: KubeObject) => string>;
}

export function apiVersionOf(r: { group: string; version: string }): string {
  return r.group === '' ? r.version : `${r.group}/${r.version}`;
}

const NAME_DESC =
  'Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names';
const AGE_DESC =
  'CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata';

function col(
  name: string,
  type: string,
  description: string,
  opts: { format?: string; priority?: number } = {},
): ColumnDefinition {
  return { name, type, format: opts.format ?? '', description, priority: opts.priority ?? 0 };
}

const nameCol = col('Name', 'string', NAME_DESC, { format: 'name' });
const ageCol = col('Age', 'string', AGE_DESC);

/** `duration.HumanDuration` from apimachinery. */
export function humanDuration(ms: number): string {
  const seconds = Math.trunc(ms / 1000);
  if (seconds < -1) return '<invalid>';
  if (seconds < 0) return '0s';
  if (seconds < 60 * 2) return `${seconds}s`;
  const minutes = Math.trunc(ms / 60_000);
  if (minutes < 10) {
    const s = seconds % 60;
    return s === 0 ? `${minutes}m` : `${minutes}m${s}s`;
  }
  if (minutes < 60 * 3) return `${minutes}m`;
  const hours = Math.trunc(ms / 3_600_000);
  if (hours < 8) {
    const m = minutes % 60;
    return m === 0 ? `${hours}h` : `${hours}h${m}m`;
  }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    const h = hours % 24;
    return h === 0 ? `${Math.trunc(hours / 24)}d` : `${Math.trunc(hours / 24)}d${h}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.trunc(hours / 24)}d`;
  if (hours < 24 * 365 * 8) {
    const dy = Math.trunc(hours / 24) % 365;
    const y = Math.trunc(hours / 24 / 365);
    return dy === 0 ? `${y}y` : `${y}y${dy}d`;
  }
  return `${Math.trunc(hours / 24 / 365)}y`;
}

function since(ts: unknown, now: number): string {
  if (typeof ts !== 'string' || ts === '') return '<unknown>';
  return humanDuration(now - Date.parse(ts));
}

export function rec(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

export function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function num(v: unknown): number {
  return typeof v === 'number' ? v : 0;
}

/** `printPod`, without init containers: Ready, Status, Restarts as `kubectl get pods` shows them. */
function podCells(pod: KubeObject, now: number): unknown[] {
  const spec = rec(pod['spec']);
  const st = rec(pod['status']);
  const containers = arr(spec['containers']);
  let reason = str(st['phase']);
  if (str(st['reason']) !== '') reason = str(st['reason']);
  for (const c of arr(st['conditions'])) {
    const cond = rec(c);
    if (cond['type'] === 'PodScheduled' && cond['reason'] === 'SchedulingGated') reason = 'SchedulingGated';
  }
  let restarts = 0;
  let ready = 0;
  let lastRestart = 0;
  let hasRunning = false;
  const statuses = arr(st['containerStatuses']);
  for (let i = statuses.length - 1; i >= 0; i--) {
    const cs = rec(statuses[i]);
    restarts += num(cs['restartCount']);
    const lastTerm = rec(rec(cs['lastState'])['terminated']);
    const finished = Date.parse(str(lastTerm['finishedAt']));
    if (!Number.isNaN(finished) && finished > lastRestart) lastRestart = finished;
    const state = rec(cs['state']);
    const waiting = state['waiting'] === undefined ? undefined : rec(state['waiting']);
    const terminated = state['terminated'] === undefined ? undefined : rec(state['terminated']);
    if (waiting && str(waiting['reason']) !== '') reason = str(waiting['reason']);
    else if (terminated && str(terminated['reason']) !== '') reason = str(terminated['reason']);
    else if (terminated) {
      reason =
        num(terminated['signal']) !== 0
          ? `Signal:${num(terminated['signal'])}`
          : `ExitCode:${num(terminated['exitCode'])}`;
    } else if (cs['ready'] === true && state['running'] !== undefined) {
      hasRunning = true;
      ready++;
    }
  }
  if (reason === 'Completed' && hasRunning) {
    const readyCond = arr(st['conditions']).some((c) => rec(c)['type'] === 'Ready' && rec(c)['status'] === 'True');
    reason = readyCond ? 'Running' : 'NotReady';
  }
  const phase = str(st['phase']);
  if (pod.metadata.deletionTimestamp !== undefined) {
    if (str(st['reason']) === 'NodeLost') reason = 'Unknown';
    else if (phase !== 'Succeeded' && phase !== 'Failed') reason = 'Terminating';
  }
  const restartsStr =
    restarts !== 0 && lastRestart > 0 ? `${restarts} (${humanDuration(now - lastRestart)} ago)` : String(restarts);
  const podIPs = arr(st['podIPs']);
  const podIP = str(rec(podIPs[0])['ip']) || '<none>';
  const gates = arr(spec['readinessGates']);
  let gatesStr = '<none>';
  if (gates.length > 0) {
    let t = 0;
    for (const g of gates) {
      const want = rec(g)['conditionType'];
      const cond = arr(st['conditions'])
        .map(rec)
        .find((c) => c['type'] === want);
      if (cond?.['status'] === 'True') t++;
    }
    gatesStr = `${t}/${gates.length}`;
  }
  return [
    pod.metadata.name ?? '',
    `${ready}/${containers.length}`,
    reason,
    restartsStr,
    since(pod.metadata.creationTimestamp, now),
    podIP,
    str(spec['nodeName']) || '<none>',
    str(st['nominatedNodeName']) || '<none>',
    gatesStr,
  ];
}

function imagePullPolicy(image: string): string {
  const last = image.split('/').pop() ?? image;
  if (last.includes('@')) return 'IfNotPresent';
  const tag = last.includes(':') ? last.slice(last.indexOf(':') + 1) : 'latest';
  return tag === 'latest' ? 'Always' : 'IfNotPresent';
}

/** What the apiserver's defaulting adds to a Pod on create (a subset that kubectl output relies on). */
function podDefaults(pod: KubeObject): void {
  const spec = rec(pod['spec']);
  pod['spec'] = spec;
  for (const c of arr(spec['containers'])) {
    const ctr = rec(c);
    ctr['resources'] ??= {};
    ctr['terminationMessagePath'] ??= '/dev/termination-log';
    ctr['terminationMessagePolicy'] ??= 'File';
    ctr['imagePullPolicy'] ??= imagePullPolicy(str(ctr['image']));
  }
  spec['restartPolicy'] ??= 'Always';
  spec['terminationGracePeriodSeconds'] ??= 30;
  spec['dnsPolicy'] ??= 'ClusterFirst';
  spec['securityContext'] ??= {};
  spec['schedulerName'] ??= 'default-scheduler';
  spec['enableServiceLinks'] ??= true;
  spec['preemptionPolicy'] ??= 'PreemptLowerPriority';
  spec['priority'] ??= 0;
  if (pod['status'] === undefined || Object.keys(rec(pod['status'])).length === 0) {
    pod['status'] = { phase: 'Pending', qosClass: 'BestEffort' };
  }
}

const CORE_POD_SUBRESOURCES: SubresourceDef[] = [
  { name: 'attach', kind: 'PodAttachOptions', verbs: ['create', 'get'] },
  { name: 'binding', kind: 'Binding', verbs: ['create'] },
  { name: 'ephemeralcontainers', kind: 'Pod', verbs: ['get', 'patch', 'update'] },
  { name: 'eviction', kind: 'Eviction', group: 'policy', version: 'v1', verbs: ['create'] },
  { name: 'exec', kind: 'PodExecOptions', verbs: ['create', 'get'] },
  { name: 'log', kind: 'Pod', verbs: ['get'] },
  { name: 'portforward', kind: 'PodPortForwardOptions', verbs: ['create', 'get'] },
  { name: 'proxy', kind: 'PodProxyOptions', verbs: ['create', 'delete', 'get', 'patch', 'update'] },
  { name: 'resize', kind: 'Pod', verbs: ['get', 'patch', 'update'] },
  { name: 'status', kind: 'Pod', verbs: ['get', 'patch', 'update'] },
];

const ALL_VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];

export const RESOURCES: ResourceDef[] = [
  {
    group: '',
    version: 'v1',
    name: 'configmaps',
    singular: 'configmap',
    kind: 'ConfigMap',
    namespaced: true,
    verbs: ALL_VERBS,
    shortNames: ['cm'],
    categories: [],
    storageVersionHash: 'qFsyl6wFWjQ=',
    subresources: [],
    columns: [
      nameCol,
      col(
        'Data',
        'string',
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.",
      ),
      ageCol,
    ],
    cells: (o, now) => [
      o.metadata.name ?? '',
      Object.keys(rec(o['data'])).length + Object.keys(rec(o['binaryData'])).length,
      since(o.metadata.creationTimestamp, now),
    ],
    deleteReturnsObject: false,
    fieldLabels: {},
  },
  {
    group: '',
    version: 'v1',
    name: 'namespaces',
    singular: 'namespace',
    kind: 'Namespace',
    namespaced: false,
    verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
    shortNames: ['ns'],
    categories: [],
    storageVersionHash: 'Q3oi5N2YM8M=',
    subresources: [
      { name: 'finalize', kind: 'Namespace', verbs: ['update'] },
      { name: 'status', kind: 'Namespace', verbs: ['get', 'patch', 'update'] },
    ],
    columns: [nameCol, col('Status', 'string', 'The status of the namespace'), ageCol],
    cells: (o, now) => [
      o.metadata.name ?? '',
      str(rec(o['status'])['phase']),
      since(o.metadata.creationTimestamp, now),
    ],
    defaults: (o) => {
      o['spec'] ??= { finalizers: ['kubernetes'] };
      o['status'] ??= { phase: 'Active' };
      o.metadata.labels = { ...(o.metadata.labels ?? {}), 'kubernetes.io/metadata.name': o.metadata.name ?? '' };
    },
    deleteReturnsObject: true,
    fieldLabels: { 'status.phase': (o) => str(rec(o['status'])['phase']) },
  },
  {
    group: '',
    version: 'v1',
    name: 'pods',
    singular: 'pod',
    kind: 'Pod',
    namespaced: true,
    verbs: ALL_VERBS,
    shortNames: ['po'],
    categories: ['all'],
    storageVersionHash: 'xPOwRZ+Yhw8=',
    subresources: CORE_POD_SUBRESOURCES,
    columns: [
      nameCol,
      col('Ready', 'string', 'The aggregate readiness state of this pod for accepting traffic.'),
      col('Status', 'string', 'The aggregate status of the containers in this pod.'),
      col(
        'Restarts',
        'string',
        'The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.',
      ),
      ageCol,
      col(
        'IP',
        'string',
        'podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.',
        { priority: 1 },
      ),
      col(
        'Node',
        'string',
        'NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename',
        { priority: 1 },
      ),
      col(
        'Nominated Node',
        'string',
        'nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.',
        { priority: 1 },
      ),
      col(
        'Readiness Gates',
        'string',
        'If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to "True" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates',
        { priority: 1 },
      ),
    ],
    cells: podCells,
    conditions: (o) => {
      const phase = str(rec(o['status'])['phase']);
      if (phase === 'Succeeded')
        return [
          { type: 'Completed', status: 'True', reason: 'Succeeded', message: 'The pod has completed successfully.' },
        ];
      if (phase === 'Failed')
        return [{ type: 'Completed', status: 'True', reason: 'Failed', message: 'The pod failed.' }];
      return undefined;
    },
    defaults: podDefaults,
    deleteReturnsObject: true,
    fieldLabels: {
      'spec.nodeName': (o) => str(rec(o['spec'])['nodeName']),
      'spec.restartPolicy': (o) => str(rec(o['spec'])['restartPolicy']),
      'spec.schedulerName': (o) => str(rec(o['spec'])['schedulerName']),
      'spec.serviceAccountName': (o) => str(rec(o['spec'])['serviceAccountName']),
      'status.phase': (o) => str(rec(o['status'])['phase']),
      'status.podIP': (o) => str(rec(o['status'])['podIP']),
      'status.nominatedNodeName': (o) => str(rec(o['status'])['nominatedNodeName']),
    },
  },
  {
    group: 'apps',
    version: 'v1',
    name: 'deployments',
    singular: 'deployment',
    kind: 'Deployment',
    namespaced: true,
    verbs: ALL_VERBS,
    shortNames: ['deploy'],
    categories: ['all'],
    storageVersionHash: '8aSe+NMegvE=',
    subresources: [
      { name: 'scale', kind: 'Scale', group: 'autoscaling', version: 'v1', verbs: ['get', 'patch', 'update'] },
      { name: 'status', kind: 'Deployment', verbs: ['get', 'patch', 'update'] },
    ],
    columns: [
      nameCol,
      col('Ready', 'string', 'Number of the pod with ready state'),
      col(
        'Up-to-date',
        'string',
        'Total number of non-terminating pods targeted by this deployment that have the desired template spec.',
      ),
      col(
        'Available',
        'string',
        'Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.',
      ),
      ageCol,
      col('Containers', 'string', 'Names of each container in the template.', { priority: 1 }),
      col('Images', 'string', 'Images referenced by each container in the template.', { priority: 1 }),
      col(
        'Selector',
        'string',
        'Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.',
        { priority: 1 },
      ),
    ],
    cells: (o, now) => {
      const spec = rec(o['spec']);
      const st = rec(o['status']);
      const tmplSpec = rec(rec(spec['template'])['spec']);
      const containers = arr(tmplSpec['containers']).map(rec);
      const sel = rec(rec(spec['selector'])['matchLabels']);
      return [
        o.metadata.name ?? '',
        `${num(st['readyReplicas'])}/${typeof spec['replicas'] === 'number' ? spec['replicas'] : 1}`,
        num(st['updatedReplicas']),
        num(st['availableReplicas']),
        since(o.metadata.creationTimestamp, now),
        containers.map((c) => str(c['name'])).join(','),
        containers.map((c) => str(c['image'])).join(','),
        Object.entries(sel)
          .map(([k, v]) => `${k}=${str(v)}`)
          .join(',') || '<none>',
      ];
    },
    defaults: (o) => {
      const spec = rec(o['spec']);
      o['spec'] = spec;
      spec['replicas'] ??= 1;
      spec['revisionHistoryLimit'] ??= 10;
      spec['progressDeadlineSeconds'] ??= 600;
      spec['strategy'] ??= { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: '25%', maxSurge: '25%' } };
      o['metadata'].generation = 1;
      o['status'] ??= {};
    },
    deleteReturnsObject: false,
    fieldLabels: {},
  },
];

RESOURCES.push({
  group: 'authorization.k8s.io',
  version: 'v1',
  name: 'selfsubjectaccessreviews',
  singular: 'selfsubjectaccessreview',
  kind: 'SelfSubjectAccessReview',
  namespaced: false,
  verbs: ['create'],
  shortNames: [],
  categories: [],
  storageVersionHash: '',
  subresources: [],
  columns: [nameCol, ageCol],
  cells: (o, now) => [o.metadata.name ?? '', since(o.metadata.creationTimestamp, now)],
  deleteReturnsObject: false,
  fieldLabels: {},
});

export function findResource(group: string, version: string, name: string): ResourceDef | undefined {
  return RESOURCES.find((r) => r.group === group && r.version === version && r.name === name);
}

export function resourceForKind(kind: string): ResourceDef | undefined {
  return RESOURCES.find((r) => r.kind === kind);
}

/** Keys of ObjectMeta in Go struct order, so objects we re-serialize read like the server's. */
const META_ORDER = [
  'name',
  'generateName',
  'namespace',
  'selfLink',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'labels',
  'annotations',
  'ownerReferences',
  'finalizers',
  'managedFields',
];

const TOP_ORDER = ['kind', 'apiVersion', 'metadata', 'spec', 'data', 'binaryData', 'immutable', 'status'];

export function canonical(obj: KubeObject): KubeObject {
  const meta: ObjectMeta = {};
  for (const k of META_ORDER) if (obj.metadata[k] !== undefined) meta[k] = obj.metadata[k];
  for (const [k, v] of Object.entries(obj.metadata)) if (!(k in meta) && v !== undefined) meta[k] = v;
  const out: Record<string, unknown> = {};
  for (const k of TOP_ORDER)
    if (k === 'metadata') out[k] = meta;
    else if (obj[k] !== undefined) out[k] = obj[k];
  for (const [k, v] of Object.entries(obj)) if (!(k in out) && v !== undefined) out[k] = v;
  // kind/apiVersion first as the server writes them.
  return out as KubeObject;
}

export interface PodOptions {
  namespace?: string;
  labels?: Record<string, string>;
  /** Container names; default one container named "app". */
  containers?: string[];
  image?: string;
  /** Default "Running" (scheduled on node `fake-node`, all containers ready). */
  phase?: 'Running' | 'Pending' | 'Succeeded' | 'Failed';
  /** Empty string: not scheduled (exec/attach/port-forward then fail like a real apiserver's). */
  nodeName?: string;
  restarts?: number;
  /** Seconds since creation; default 60. */
  ageSeconds?: number;
  annotations?: Record<string, string>;
}

const iso = (ms: number): string => new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');

/** A realistic Pod object for seeding (`uid`, `resourceVersion` are set when it is stored). */
export function makePod(name: string, o: PodOptions = {}): KubeObject {
  const created = Date.now() - (o.ageSeconds ?? 60) * 1000;
  const phase = o.phase ?? 'Running';
  const nodeName = o.nodeName ?? (phase === 'Pending' ? '' : 'fake-node');
  const names = o.containers ?? ['app'];
  const image = o.image ?? 'registry.k8s.io/pause:3.10';
  const running = phase === 'Running';
  const metadata: ObjectMeta = { name, namespace: o.namespace ?? 'default', creationTimestamp: iso(created) };
  if (o.labels) metadata.labels = o.labels;
  if (o.annotations) metadata.annotations = o.annotations;
  const spec: Record<string, unknown> = {
    containers: names.map((n) => ({
      name: n,
      image,
      resources: {},
      terminationMessagePath: '/dev/termination-log',
      terminationMessagePolicy: 'File',
      imagePullPolicy: imagePullPolicy(image),
    })),
    restartPolicy: 'Always',
    terminationGracePeriodSeconds: 30,
    dnsPolicy: 'ClusterFirst',
    securityContext: {},
    schedulerName: 'default-scheduler',
    enableServiceLinks: true,
    preemptionPolicy: 'PreemptLowerPriority',
    priority: 0,
  };
  if (nodeName !== '') spec['nodeName'] = nodeName;
  const status: Record<string, unknown> = { phase };
  if (nodeName !== '') {
    const t = iso(created + 1000);
    status['conditions'] = [
      {
        type: 'PodReadyToStartContainers',
        status: running ? 'True' : 'False',
        lastProbeTime: null,
        lastTransitionTime: t,
      },
      { type: 'Initialized', status: 'True', lastProbeTime: null, lastTransitionTime: t },
      { type: 'Ready', status: running ? 'True' : 'False', lastProbeTime: null, lastTransitionTime: t },
      { type: 'ContainersReady', status: running ? 'True' : 'False', lastProbeTime: null, lastTransitionTime: t },
      { type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: iso(created) },
    ];
    status['hostIP'] = '10.0.0.10';
    status['hostIPs'] = [{ ip: '10.0.0.10' }];
    status['podIP'] = `10.244.0.${(hash(name) % 250) + 2}`;
    status['podIPs'] = [{ ip: status['podIP'] }];
    status['startTime'] = iso(created + 1000);
    status['containerStatuses'] = names.map((n, i) => ({
      name: n,
      state:
        phase === 'Succeeded' || phase === 'Failed'
          ? {
              terminated: {
                exitCode: phase === 'Succeeded' ? 0 : 1,
                reason: phase === 'Succeeded' ? 'Completed' : 'Error',
                startedAt: t,
                finishedAt: iso(created + 5000),
              },
            }
          : running
            ? { running: { startedAt: t } }
            : { waiting: { reason: 'ContainerCreating' } },
      lastState: {},
      ready: running,
      restartCount: i === 0 ? (o.restarts ?? 0) : 0,
      image,
      imageID: `${image.split(':')[0] ?? image}@sha256:${'0'.repeat(64)}`,
      containerID: `containerd://${hash(`${name}/${n}`).toString(16).padStart(8, '0').repeat(8)}`,
      started: running,
    }));
  }
  status['qosClass'] = 'BestEffort';
  return { apiVersion: 'v1', kind: 'Pod', metadata, spec, status };
}

export function makeConfigMap(name: string, data: Record<string, string>, namespace = 'default'): KubeObject {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data };
}

export function makeNamespace(name: string): KubeObject {
  return { apiVersion: 'v1', kind: 'Namespace', metadata: { name } };
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}

export function newUid(): string {
  return randomUUID();
}
