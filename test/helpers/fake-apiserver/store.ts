/**
 * In-memory object storage with etcd-like resource versions: one global counter, a bounded event history
 * for watches that resume from a resourceVersion, and compaction to make old versions expire (410).
 */
import { canonical, newUid, rec, type KubeObject, type ResourceDef } from './resources.ts';
import { errors } from './wire.ts';

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchEvent {
  type: WatchEventType;
  object: KubeObject | Record<string, unknown>;
}

export interface StoredEvent extends WatchEvent {
  rv: number;
  resource: string;
  namespace: string;
}

export type Listener = (ev: StoredEvent) => void;

const nowIso = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');

function deepClone<T>(v: T): T {
  return structuredClone(v);
}

export class Store {
  private rvCounter: number;
  /** resource name → key (`ns/name` or `name`) → object */
  private readonly data = new Map<string, Map<string, KubeObject>>();
  private readonly history: StoredEvent[] = [];
  private readonly historyLimit: number;
  private readonly listeners = new Set<Listener>();
  /** Resource versions at or below this one are compacted: watches and continue tokens from them get 410. */
  compactedRv = 0;

  constructor(opts: { startRv?: number; historyLimit?: number } = {}) {
    this.rvCounter = opts.startRv ?? 1000;
    this.historyLimit = opts.historyLimit ?? 10_000;
  }

  get resourceVersion(): number {
    return this.rvCounter;
  }

  private bucket(resource: string): Map<string, KubeObject> {
    let b = this.data.get(resource);
    if (!b) {
      b = new Map();
      this.data.set(resource, b);
    }
    return b;
  }

  static key(namespace: string, name: string): string {
    return namespace === '' ? name : `${namespace}/${name}`;
  }

  get(r: ResourceDef, namespace: string, name: string): KubeObject | undefined {
    const o = this.bucket(r.name).get(Store.key(r.namespaced ? namespace : '', name));
    return o ? deepClone(o) : undefined;
  }

  /** Objects sorted by their storage key (what etcd range reads return), optionally in one namespace. */
  list(r: ResourceDef, namespace: string): { key: string; obj: KubeObject }[] {
    const out: { key: string; obj: KubeObject }[] = [];
    for (const [k, o] of this.bucket(r.name)) {
      if (r.namespaced && namespace !== '' && o.metadata.namespace !== namespace) continue;
      out.push({ key: k, obj: deepClone(o) });
    }
    out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return out;
  }

  create(r: ResourceDef, namespace: string, input: KubeObject, opts: { dryRun?: boolean } = {}): KubeObject {
    const obj = deepClone(input);
    obj.metadata = { ...rec(obj.metadata) };
    const meta = obj.metadata;
    if ((meta.name ?? '') === '' && (meta.generateName ?? '') !== '') {
      meta.name = `${meta.generateName}${Math.random().toString(36).slice(2, 7)}`;
    }
    const name = meta.name ?? '';
    if (r.namespaced) meta.namespace = namespace;
    else delete meta.namespace;
    const key = Store.key(r.namespaced ? namespace : '', name);
    const b = this.bucket(r.name);
    if (b.has(key)) throw errors.alreadyExists(r.name, name, r.group);
    meta.uid = newUid();
    meta.creationTimestamp ??= nowIso();
    delete meta.resourceVersion;
    obj.apiVersion = r.group === '' ? r.version : `${r.group}/${r.version}`;
    obj.kind = r.kind;
    r.defaults?.(obj);
    if (opts.dryRun) return canonical(obj);
    meta.resourceVersion = String(++this.rvCounter);
    const stored = canonical(obj);
    b.set(key, stored);
    this.record({
      type: 'ADDED',
      object: stored,
      rv: this.rvCounter,
      resource: r.name,
      namespace: meta.namespace ?? '',
    });
    return deepClone(stored);
  }

  update(
    r: ResourceDef,
    namespace: string,
    name: string,
    next: KubeObject,
    opts: { dryRun?: boolean } = {},
  ): KubeObject {
    const key = Store.key(r.namespaced ? namespace : '', name);
    const b = this.bucket(r.name);
    const prev = b.get(key);
    if (!prev) throw errors.notFound(r.name, name, r.group);
    const obj = deepClone(next);
    obj.metadata = { ...rec(obj.metadata) };
    const want = obj.metadata.resourceVersion;
    if (want !== undefined && want !== '' && want !== prev.metadata.resourceVersion) {
      throw errors.conflict(
        r.name,
        name,
        'the object has been modified; please apply your changes to the latest version and try again',
        r.group,
      );
    }
    // Immutable server-owned fields.
    obj.metadata.uid = prev.metadata.uid;
    obj.metadata.creationTimestamp = prev.metadata.creationTimestamp;
    obj.metadata.name = name;
    if (r.namespaced) obj.metadata.namespace = namespace;
    obj.apiVersion = prev.apiVersion;
    obj.kind = prev.kind;
    if (typeof prev.metadata.generation === 'number' && JSON.stringify(prev['spec']) !== JSON.stringify(obj['spec'])) {
      obj.metadata.generation = prev.metadata.generation + 1;
    }
    if (opts.dryRun) return canonical(obj);
    obj.metadata.resourceVersion = String(++this.rvCounter);
    const stored = canonical(obj);
    b.set(key, stored);
    this.record({
      type: 'MODIFIED',
      object: stored,
      rv: this.rvCounter,
      resource: r.name,
      namespace: obj.metadata.namespace ?? '',
    });
    return deepClone(stored);
  }

  delete(r: ResourceDef, namespace: string, name: string, opts: { dryRun?: boolean; uid?: string } = {}): KubeObject {
    const key = Store.key(r.namespaced ? namespace : '', name);
    const b = this.bucket(r.name);
    const prev = b.get(key);
    if (!prev) throw errors.notFound(r.name, name, r.group);
    if (opts.uid !== undefined && opts.uid !== prev.metadata.uid) {
      throw errors.conflict(
        r.name,
        name,
        `Precondition failed: UID in precondition: ${opts.uid}, UID in object meta: ${prev.metadata.uid ?? ''}`,
        r.group,
      );
    }
    if (opts.dryRun) return deepClone(prev);
    b.delete(key);
    const gone = deepClone(prev);
    gone.metadata.resourceVersion = String(++this.rvCounter);
    this.record({
      type: 'DELETED',
      object: gone,
      rv: this.rvCounter,
      resource: r.name,
      namespace: gone.metadata.namespace ?? '',
    });
    return deepClone(gone);
  }

  /** Hand an arbitrary event to watchers (and history) without touching stored objects. */
  inject(resource: string, ev: WatchEvent): void {
    const meta = rec(rec(ev.object)['metadata']);
    let rv = Number(meta['resourceVersion']);
    if (!Number.isFinite(rv) || rv <= 0) rv = ev.type === 'ERROR' ? this.rvCounter : ++this.rvCounter;
    else if (rv > this.rvCounter) this.rvCounter = rv;
    this.record({ ...ev, rv, resource, namespace: typeof meta['namespace'] === 'string' ? meta['namespace'] : '' });
  }

  private record(ev: StoredEvent): void {
    if (ev.type !== 'ERROR' && ev.type !== 'BOOKMARK') {
      this.history.push(ev);
      if (this.history.length > this.historyLimit) {
        const dropped = this.history.shift();
        if (dropped) this.compactedRv = Math.max(this.compactedRv, dropped.rv);
      }
    }
    for (const l of this.listeners) l(ev);
  }

  /** Events after `rv` for a resource, or `undefined` when `rv` is compacted away. */
  eventsSince(resource: string, rv: number): StoredEvent[] | undefined {
    if (rv < this.compactedRv) return undefined;
    return this.history.filter((e) => e.resource === resource && e.rv > rv);
  }

  /** Forget history up to now: watches and continue tokens from older versions get 410 Gone. */
  compact(): number {
    this.compactedRv = this.rvCounter;
    this.history.length = 0;
    return this.compactedRv;
  }

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
}
