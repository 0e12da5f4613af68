/**
 * Cluster states the demo and the end-to-end tests tell their story with, made as admin on a stack
 * started with nodes (kwok): a busy namespace where most pods run and some cannot be scheduled, and a
 * namespace with many objects for big, paged lists.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { NODE_CAPACITY, type AdminClient, type ApiResponse } from './stack.ts';

async function must(res: Promise<ApiResponse>, what: string, ok: number[] = [200, 201]): Promise<ApiResponse> {
  const r = await res;
  if (!ok.includes(r.status)) throw new Error(`${what}: ${r.status} ${r.body}`);
  return r;
}

/** Creates the namespace; one that exists already is fine (the demo runs again on a running stack). */
export async function ensureNamespace(admin: AdminClient, name: string): Promise<void> {
  const body = { apiVersion: 'v1', kind: 'Namespace', metadata: { name } };
  await must(admin.request('POST', '/api/v1/namespaces', body), `create namespace ${name}`, [201, 409]);
}

export function deploymentManifest(name: string, replicas: number, cpu: string): object {
  const labels = { app: name };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, labels },
    spec: {
      replicas,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        // kwok runs no image; the name is what a real cluster would pull.
        spec: {
          containers: [{ name, image: 'registry.k8s.io/pause:3.10', resources: { requests: { cpu, memory: '16Mi' } } }],
        },
      },
    },
  };
}

export interface BusyNamespace {
  namespace: string;
  /** The Deployment whose pods all run. */
  web: { name: string; replicas: number };
  /** The Deployment whose pods ask for more CPU than any node has: Pending, with a FailedScheduling event. */
  hungry: { name: string; replicas: number; cpu: string };
}

/**
 * A Deployment of `replicas` small pods (10m CPU; the default 300 fills three 110-pod nodes to 90%) that
 * all become Running, and one of `hungry` pods each asking for more CPU than a node has, which the
 * scheduler leaves Pending. Resolves once web is fully available and every hungry pod has been refused.
 */
export async function busyNamespace(
  admin: AdminClient,
  { namespace = 'shop', replicas = 300, hungry = 4, timeoutMs = 120_000 } = {},
): Promise<BusyNamespace> {
  const out: BusyNamespace = {
    namespace,
    web: { name: 'web', replicas },
    hungry: { name: 'batch-cruncher', replicas: hungry, cpu: String(Number(NODE_CAPACITY.cpu) + 1) },
  };
  await ensureNamespace(admin, namespace);
  const deployments = `/apis/apps/v1/namespaces/${namespace}/deployments`;
  for (const [name, n, cpu] of [
    [out.web.name, replicas, '10m'],
    [out.hungry.name, hungry, out.hungry.cpu],
  ] as const) {
    await must(
      admin.request('POST', deployments, deploymentManifest(name, n, cpu)),
      `create deployment ${namespace}/${name}`,
      [201, 409],
    );
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const web = JSON.parse((await must(admin.request('GET', `${deployments}/${out.web.name}`), 'get web')).body) as {
      status?: { availableReplicas?: number };
    };
    const refused = await unschedulablePods(admin, namespace, out.hungry.name);
    if ((web.status?.availableReplicas ?? 0) >= replicas && refused >= hungry) return out;
    if (Date.now() > deadline) {
      throw new Error(
        `busy namespace ${namespace}: after ${timeoutMs / 1000}s web has ${web.status?.availableReplicas ?? 0}/${replicas} available, ${refused}/${hungry} pods refused by the scheduler`,
      );
    }
    await sleep(500);
  }
}

/** How many of the app's pods the scheduler has marked unschedulable (PodScheduled=False, Unschedulable). */
async function unschedulablePods(admin: AdminClient, namespace: string, app: string): Promise<number> {
  const res = await must(
    admin.request('GET', `/api/v1/namespaces/${namespace}/pods?labelSelector=app%3D${app}`),
    `list ${app} pods`,
  );
  const pods = (
    JSON.parse(res.body) as {
      items: { status?: { conditions?: { type: string; status: string; reason?: string }[] } }[];
    }
  ).items;
  return pods.filter((p) =>
    p.status?.conditions?.some(
      (c) => c.type === 'PodScheduled' && c.status === 'False' && c.reason === 'Unschedulable',
    ),
  ).length;
}

/** `count` ConfigMaps named `item-00000`… in the namespace (made `concurrency` at a time), for big lists. */
export async function manyObjects(
  admin: AdminClient,
  { namespace = 'inventory', count = 1000, concurrency = 16 } = {},
): Promise<void> {
  await ensureNamespace(admin, namespace);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const name = `item-${String(next++).padStart(5, '0')}`;
      const body = {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name },
        data: { sku: name, note: 'x'.repeat(200) },
      };
      await must(
        admin.request('POST', `/api/v1/namespaces/${namespace}/configmaps`, body),
        `create configmap ${namespace}/${name}`,
        [201, 409],
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}
