/**
 * Pods shaped like a real cluster's (a Deployment's pod: labels, owner, managedFields, two containers with
 * env, probes and resources, status with conditions): about 4.3 kB of JSON each, so 20,000 of them make a
 * list of tens of MB, as on a real cluster.
 */

/** Watch events carry the CLOCK_MONOTONIC ns at which the upstream wrote them. */
export const SENT_ANNOTATION = 'bench.kubetrail.dev/sent-ns';

export interface PodJson {
  [key: string]: unknown;
}

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, '0').slice(-width);
}

/** A pod's spec and labels, as one would create it (also used to fill the real apiserver). */
export function podManifest(name: string, namespace: string, i: number): PodJson {
  const app = `svc-${i % 50}`;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace,
      labels: {
        app,
        'app.kubernetes.io/name': app,
        'app.kubernetes.io/part-of': 'bench',
        'pod-template-hash': `7d${hex(i * 2654435761, 8)}`,
      },
      annotations: {
        'kubectl.kubernetes.io/restartedAt': '2025-11-24T08:00:00Z',
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': '9090',
      },
    },
    spec: {
      containers: [
        {
          name: 'app',
          image: `registry.example.com/bench/${app}:1.${i % 7}.${i % 13}`,
          imagePullPolicy: 'IfNotPresent',
          args: ['--listen=:8080', '--metrics=:9090', `--shard=${i % 16}`, '--log-level=info'],
          ports: [
            { name: 'http', containerPort: 8080, protocol: 'TCP' },
            { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
          ],
          env: [
            { name: 'POD_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
            { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' } } },
            { name: 'GOMAXPROCS', value: '2' },
            { name: 'UPSTREAM_URL', value: `http://svc-${(i + 1) % 50}.${namespace}.svc.cluster.local:8080` },
          ],
          resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '256Mi' } },
          readinessProbe: {
            httpGet: { path: '/readyz', port: 'http', scheme: 'HTTP' },
            periodSeconds: 10,
            timeoutSeconds: 1,
            successThreshold: 1,
            failureThreshold: 3,
          },
          livenessProbe: {
            httpGet: { path: '/livez', port: 'http', scheme: 'HTTP' },
            periodSeconds: 10,
            timeoutSeconds: 1,
            successThreshold: 1,
            failureThreshold: 3,
          },
          volumeMounts: [{ name: 'config', mountPath: '/etc/app', readOnly: true }],
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
        },
        {
          name: 'sidecar',
          image: 'registry.example.com/bench/log-shipper:2.4.1',
          imagePullPolicy: 'IfNotPresent',
          resources: { requests: { cpu: '10m', memory: '32Mi' } },
          terminationMessagePath: '/dev/termination-log',
          terminationMessagePolicy: 'File',
        },
      ],
      volumes: [{ name: 'config', configMap: { name: `${app}-config`, defaultMode: 420 } }],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: 'default',
      securityContext: {},
      schedulerName: 'default-scheduler',
      tolerations: [
        { key: 'node.kubernetes.io/not-ready', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
        { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 300 },
      ],
    },
  };
}

/** The pod as an apiserver returns it: server-set metadata, managedFields and status added. */
export function podObject(name: string, namespace: string, i: number): PodJson {
  const m = podManifest(name, namespace, i);
  const meta = m.metadata as Record<string, unknown>;
  const hash = (meta.labels as Record<string, string>)['pod-template-hash'] ?? '';
  Object.assign(meta, {
    generateName: `${hash}-`,
    uid: `${hex(i, 8)}-1c2d-4e5f-8a9b-${hex(i * 7919, 12)}`,
    resourceVersion: String(100000 + i),
    creationTimestamp: '2025-11-24T08:00:00Z',
    ownerReferences: [
      {
        apiVersion: 'apps/v1',
        kind: 'ReplicaSet',
        name: `svc-${i % 50}-${hash}`,
        uid: `${hex(i % 50, 8)}-aaaa-4bbb-8ccc-000000000000`,
        controller: true,
        blockOwnerDeletion: true,
      },
    ],
    managedFields: [
      {
        manager: 'kube-controller-manager',
        operation: 'Update',
        apiVersion: 'v1',
        time: '2025-11-24T08:00:00Z',
        fieldsType: 'FieldsV1',
        fieldsV1: {
          'f:metadata': { 'f:generateName': {}, 'f:labels': { '.': {}, 'f:app': {} }, 'f:ownerReferences': {} },
          'f:spec': { 'f:containers': {} },
        },
      },
    ],
  });
  const spec = m.spec as Record<string, unknown>;
  spec.nodeName = `node-${i % 20}`;
  m.status = {
    phase: 'Running',
    conditions: [
      { type: 'Initialized', status: 'True', lastProbeTime: null, lastTransitionTime: '2025-11-24T08:00:01Z' },
      { type: 'Ready', status: 'True', lastProbeTime: null, lastTransitionTime: '2025-11-24T08:00:05Z' },
      { type: 'ContainersReady', status: 'True', lastProbeTime: null, lastTransitionTime: '2025-11-24T08:00:05Z' },
      { type: 'PodScheduled', status: 'True', lastProbeTime: null, lastTransitionTime: '2025-11-24T08:00:00Z' },
    ],
    hostIP: `10.0.${i % 20}.1`,
    podIP: `10.244.${(i >> 8) & 255}.${i & 255}`,
    podIPs: [{ ip: `10.244.${(i >> 8) & 255}.${i & 255}` }],
    startTime: '2025-11-24T08:00:00Z',
    qosClass: 'Burstable',
    containerStatuses: [
      {
        name: 'app',
        ready: true,
        restartCount: 0,
        started: true,
        image: `registry.example.com/bench/svc-${i % 50}:1.0`,
        imageID: `registry.example.com/bench/svc@sha256:${hex(i, 8).repeat(8)}`,
        containerID: `containerd://${hex(i * 31, 8).repeat(8)}`,
        state: { running: { startedAt: '2025-11-24T08:00:03Z' } },
        lastState: {},
      },
      {
        name: 'sidecar',
        ready: true,
        restartCount: 0,
        started: true,
        image: 'registry.example.com/bench/log-shipper:2.4.1',
        imageID: `registry.example.com/bench/log-shipper@sha256:${'ab'.repeat(32)}`,
        containerID: `containerd://${hex(i * 37, 8).repeat(8)}`,
        state: { running: { startedAt: '2025-11-24T08:00:03Z' } },
        lastState: {},
      },
    ],
  };
  return m;
}
