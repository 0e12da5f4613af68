/**
 * Discovery documents: aggregated (`apidiscovery.k8s.io/v2`, `APIGroupDiscoveryList`) for clients that ask
 * for it in `Accept`, and the legacy `APIVersions` / `APIGroupList` / `APIResourceList` otherwise.
 */
import { createHash } from 'node:crypto';
import { RESOURCES, type ResourceDef } from './resources.ts';

export type DiscoveryFormat = 'v2' | 'v2beta1' | 'legacy';

/**
 * The format the apiserver negotiates: the first media range in `Accept` that it serves. kubectl lists v2,
 * then v2beta1, then plain JSON. 1.33 no longer serves v2beta1 (removed with 1.33). `undefined`: nothing
 * acceptable (406).
 */
export function negotiateDiscovery(
  accept: string | undefined,
  aggregated: boolean,
  v2beta1 = true,
): DiscoveryFormat | undefined {
  if (accept === undefined || accept.trim() === '') return 'legacy';
  for (const range of accept.split(',')) {
    const params = new Map<string, string>();
    const [type, ...rest] = range.split(';').map((s) => s.trim());
    for (const p of rest) {
      const eq = p.indexOf('=');
      if (eq > 0) params.set(p.slice(0, eq).trim(), p.slice(eq + 1).trim());
    }
    if (
      type === 'application/json' &&
      params.get('g') === 'apidiscovery.k8s.io' &&
      params.get('as') === 'APIGroupDiscoveryList'
    ) {
      const v = params.get('v');
      if (aggregated && (v === 'v2' || (v === 'v2beta1' && v2beta1))) return v;
      continue;
    }
    if (type === 'application/json' || type === '*/*' || type === 'application/*') return 'legacy';
  }
  return aggregated ? undefined : 'legacy';
}

/** The 406 the discovery handlers answer (written indented, like `WriteRawJSON`). */
export const DISCOVERY_NOT_ACCEPTABLE =
  'only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf';

export function aggregatedContentType(f: 'v2' | 'v2beta1'): string {
  return `application/json;g=apidiscovery.k8s.io;v=${f};as=APIGroupDiscoveryList`;
}

function resourceDiscovery(r: ResourceDef): Record<string, unknown> {
  const out: Record<string, unknown> = {
    resource: r.name,
    // The group and version are left empty when they are the resource's own (only a subresource whose kind
    // lives elsewhere, e.g. autoscaling/v1 Scale, names them).
    responseKind: { group: '', version: '', kind: r.kind },
    scope: r.namespaced ? 'Namespaced' : 'Cluster',
    singularResource: r.singular,
    verbs: r.verbs,
  };
  if (r.shortNames.length > 0) out['shortNames'] = r.shortNames;
  if (r.categories.length > 0) out['categories'] = r.categories;
  if (r.subresources.length > 0) {
    out['subresources'] = r.subresources.map((s) => ({
      subresource: s.name,
      responseKind: { group: s.group ?? '', version: s.version ?? '', kind: s.kind },
      verbs: s.verbs,
    }));
  }
  return out;
}

function groupsOf(core: boolean): Map<string, ResourceDef[]> {
  const groups = new Map<string, ResourceDef[]>();
  for (const r of RESOURCES) {
    if ((r.group === '') !== core) continue;
    const list = groups.get(r.group) ?? [];
    list.push(r);
    groups.set(r.group, list);
  }
  return groups;
}

/** `/api` (core) or `/apis` (named groups) as an APIGroupDiscoveryList. */
export function aggregatedDocument(core: boolean, f: 'v2' | 'v2beta1'): Record<string, unknown> {
  const items: Record<string, unknown>[] = [];
  for (const [group, resources] of groupsOf(core)) {
    const metadata: Record<string, unknown> =
      group === '' ? { creationTimestamp: null } : { name: group, creationTimestamp: null };
    items.push({
      metadata,
      versions: [{ version: 'v1', resources: resources.map(resourceDiscovery), freshness: 'Current' }],
    });
  }
  return { kind: 'APIGroupDiscoveryList', apiVersion: `apidiscovery.k8s.io/${f}`, metadata: {}, items };
}

/** The ETag the aggregated handler sets: the quoted upper-case hex SHA-512 of the serialized document. */
export function etagFor(body: string): string {
  return `"${createHash('sha512').update(body).digest('hex').toUpperCase()}"`;
}

export function legacyApiVersions(serverAddress: string): Record<string, unknown> {
  return {
    kind: 'APIVersions',
    versions: ['v1'],
    serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress }],
  };
}

function groupEntry(group: string): Record<string, unknown> {
  const gv = { groupVersion: `${group}/v1`, version: 'v1' };
  return { name: group, versions: [gv], preferredVersion: gv };
}

export function legacyGroupList(): Record<string, unknown> {
  return { kind: 'APIGroupList', apiVersion: 'v1', groups: [...groupsOf(false).keys()].map(groupEntry) };
}

export function legacyGroup(group: string): Record<string, unknown> | undefined {
  if (!groupsOf(false).has(group)) return undefined;
  return { kind: 'APIGroup', apiVersion: 'v1', ...groupEntry(group) };
}

/** `/api/v1` or `/apis/<group>/v1`: an APIResourceList with subresources as `pods/log` entries. */
export function legacyResourceList(group: string, version: string): Record<string, unknown> | undefined {
  const resources = RESOURCES.filter((r) => r.group === group && r.version === version);
  if (resources.length === 0) return undefined;
  const entries: Record<string, unknown>[] = [];
  for (const r of [...resources].sort((a, b) => a.name.localeCompare(b.name))) {
    const e: Record<string, unknown> = {
      name: r.name,
      singularName: r.singular,
      namespaced: r.namespaced,
      kind: r.kind,
      verbs: r.verbs,
    };
    if (r.shortNames.length > 0) e['shortNames'] = r.shortNames;
    if (r.categories.length > 0) e['categories'] = r.categories;
    e['storageVersionHash'] = r.storageVersionHash;
    entries.push(e);
    for (const s of r.subresources) {
      const se: Record<string, unknown> = { name: `${r.name}/${s.name}`, singularName: '', namespaced: r.namespaced };
      if (s.group !== undefined) se['group'] = s.group;
      if (s.version !== undefined) se['version'] = s.version;
      se['kind'] = s.kind;
      se['verbs'] = s.verbs;
      entries.push(se);
    }
  }
  // The core list has no apiVersion; named groups' lists do (an old asymmetry of the real server).
  const head: Record<string, unknown> =
    group === '' ? { kind: 'APIResourceList' } : { kind: 'APIResourceList', apiVersion: 'v1' };
  return { ...head, groupVersion: group === '' ? version : `${group}/${version}`, resources: entries };
}

/**
 * A minimal OpenAPI v3 so that `kubectl apply`/`create` find `fieldValidation` supported (server-side
 * validation) instead of failing client-side validation for want of a schema.
 */
export function openapiV3Root(hashes: Map<string, string>): Record<string, unknown> {
  const paths: Record<string, unknown> = {};
  for (const [gvPath, hash] of hashes) paths[gvPath] = { serverRelativeURL: `/openapi/v3/${gvPath}?hash=${hash}` };
  return { paths };
}

export function openapiV3GroupVersion(
  group: string,
  version: string,
  kubeVersion: string,
): Record<string, unknown> | undefined {
  const resources = RESOURCES.filter((r) => r.group === group && r.version === version);
  if (resources.length === 0) return undefined;
  const prefix = group === '' ? `/api/${version}` : `/apis/${group}/${version}`;
  const paths: Record<string, unknown> = {};
  const fieldValidation = {
    name: 'fieldValidation',
    in: 'query',
    description:
      'fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields.',
    schema: { type: 'string', uniqueItems: true },
  };
  for (const r of resources) {
    const gvk = { group, version, kind: r.kind };
    const item = r.namespaced ? `${prefix}/namespaces/{namespace}/${r.name}/{name}` : `${prefix}/${r.name}/{name}`;
    const coll = r.namespaced ? `${prefix}/namespaces/{namespace}/${r.name}` : `${prefix}/${r.name}`;
    const op = (id: string) => ({
      operationId: id,
      parameters: [fieldValidation],
      responses: {},
      'x-kubernetes-action': id.startsWith('patch') ? 'patch' : 'post',
      'x-kubernetes-group-version-kind': gvk,
    });
    paths[item] = { patch: op(`patch${r.kind}`) };
    paths[coll] = { post: op(`create${r.kind}`) };
  }
  return { openapi: '3.0.0', info: { title: 'Kubernetes', version: kubeVersion }, paths, components: { schemas: {} } };
}
