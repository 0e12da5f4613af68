/**
 * The resource handlers: list (JSON, Table, PartialObjectMetadata; limit/continue), watch (JSON and Table
 * events, resume from a resourceVersion, 410 on compacted versions), get, create, update, patch, delete,
 * deletecollection, pods/log (follow), deployments/scale.
 */
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { jsonPatch, mergePatch, strategicMerge } from './patch.ts';
import { decodeKubeProtobuf } from './protobuf.ts';
import type { RequestInfo } from './request-info.ts';
import { RESOURCES, apiVersionOf, rec, type KubeObject, type ResourceDef } from './resources.ts';
import { matchFields, matchLabels, parseFieldSelector, parseLabelSelector } from './selectors.ts';
import { Store, type StoredEvent, type WatchEvent } from './store.ts';
import type { RecordedRequest, RequestAttributes, UserInfo } from './types.ts';
import {
  acceptsGzip,
  type ApiError,
  commonHeaders,
  errors,
  goJson,
  sortHeaders,
  status,
  writeBody,
  type Sink,
} from './wire.ts';

const PODS = RESOURCES.find((r) => r.name === 'pods') as ResourceDef;
const NAMESPACES = RESOURCES.find((r) => r.name === 'namespaces') as ResourceDef;

export interface ApfUids {
  flowSchemaUid: string;
  priorityLevelUid: string;
}

export interface ReqCtx {
  req: IncomingMessage | Http2ServerRequest;
  url: URL;
  info: RequestInfo;
  auditId: string;
  apf: ApfUids | undefined;
  user: UserInfo;
  sink: Sink;
  record: RecordedRequest;
  body: Buffer;
}

type Target =
  | { kind: 'json' }
  | { kind: 'yaml' }
  | { kind: 'table'; version: string }
  | { kind: 'partial'; version: string; list: boolean };

/** Pick the representation from `Accept` as the apiserver's negotiation does (first acceptable range). */
export function negotiate(accept: string | undefined): Target {
  if (accept === undefined || accept.trim() === '') return { kind: 'json' };
  for (const range of accept.split(',')) {
    const [typeRaw, ...rest] = range.split(';').map((s) => s.trim());
    const type = (typeRaw ?? '').toLowerCase();
    const params = new Map<string, string>();
    for (const p of rest) {
      const eq = p.indexOf('=');
      if (eq > 0) params.set(p.slice(0, eq).trim(), p.slice(eq + 1).trim());
    }
    const as = params.get('as');
    const g = params.get('g');
    const v = params.get('v') ?? '';
    if (type !== 'application/json' && type !== '*/*' && type !== 'application/*' && type !== 'application/yaml')
      continue;
    if (as === undefined) return type === 'application/yaml' ? { kind: 'yaml' } : { kind: 'json' };
    if (g !== 'meta.k8s.io' || (v !== 'v1' && v !== 'v1beta1')) continue;
    if (as === 'Table') return { kind: 'table', version: v };
    if (as === 'PartialObjectMetadata') return { kind: 'partial', version: v, list: false };
    if (as === 'PartialObjectMetadataList') return { kind: 'partial', version: v, list: true };
  }
  throw errors.notAcceptable(
    'only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io',
  );
}

interface ContinueToken {
  rv: number;
  start: string;
}

function encodeContinue(rv: number, start: string): string {
  return Buffer.from(JSON.stringify({ v: 'meta.k8s.io/v1', rv, start })).toString('base64url');
}

/** The storage layer's `invalid continue token: continue key is not valid: <Go's decode error>` (400). */
function decodeContinue(token: string): ContinueToken {
  const invalid = (why: string): ApiError =>
    errors.badRequest(`invalid continue token: continue key is not valid: ${why}`);
  const bad = /[^A-Za-z0-9_-]/.exec(token);
  if (bad) throw invalid(`illegal base64 data at input byte ${bad.index}`);
  const bytes = Buffer.from(token, 'base64url');
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    // encoding/json's message names the first byte it choked on; close enough for the first one.
    const b = bytes[0] ?? 0;
    const c = b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\u${b.toString(16).padStart(4, '0')}`;
    throw invalid(
      bytes.length === 0 ? 'unexpected end of JSON input' : `invalid character '${c}' looking for beginning of value`,
    );
  }
  const o = rec(parsed);
  if (o['v'] !== 'meta.k8s.io/v1' || typeof o['rv'] !== 'number' || typeof o['start'] !== 'string') {
    throw invalid('incorrect encoded start resourceVersion (version meta.k8s.io/v1)');
  }
  return { rv: o['rv'], start: o['start'] };
}

interface LogLine {
  t: number;
  text: string;
}

interface PodLog {
  lines: LogLine[];
  followers: Set<(l: LogLine | null) => void>;
}

const rfc3339Nano = (ms: number): string => new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');

export interface ApiOptions {
  /** For SelfSubjectAccessReview (`kubectl auth can-i`). */
  authorize: (user: UserInfo, a: RequestAttributes) => { allowed: boolean; reason?: string };
  gzipThreshold: number;
  /** The WatchList feature gate (sendInitialEvents): off by default in 1.33, where it is a 422. */
  watchList: boolean;
  bookmarkIntervalMs: number | undefined;
  logFollow: { intervalMs: number; count?: number; line?: (i: number, pod: string) => string } | undefined;
}

export class Api {
  readonly store: Store;
  private readonly opts: ApiOptions;
  private readonly logs = new Map<string, PodLog>();
  /** Open long-running answers (watches, log follows) and how to end each. */
  readonly watches = new Set<() => void>();
  readonly follows = new Set<() => void>();

  constructor(store: Store, opts: ApiOptions) {
    this.store = store;
    this.opts = opts;
  }

  // ---- responses -------------------------------------------------------------------------------

  private base(ctx: ReqCtx, cacheControl?: string): [string, string][] {
    return commonHeaders({ auditId: ctx.auditId, apf: ctx.apf, cacheControl });
  }

  send(ctx: ReqCtx, code: number, obj: unknown, target: Target = { kind: 'json' }): void {
    const yaml = target.kind === 'yaml';
    const body = yaml ? stringifyYaml(obj) : goJson(obj);
    ctx.record.status = code;
    writeBody(ctx.sink, code, this.base(ctx), body, {
      gzip: acceptsGzip(ctx.req.headers),
      gzipThreshold: this.opts.gzipThreshold,
      contentType: yaml ? 'application/yaml' : 'application/json',
    });
  }

  sendError(ctx: ReqCtx, err: ApiError, extraHeaders: [string, string][] = []): void {
    ctx.record.status = err.status.code ?? 500;
    const h = [...this.base(ctx), ...extraHeaders, ...Object.entries(err.headers)];
    writeBody(ctx.sink, err.status.code ?? 500, h, goJson(err.status), {
      gzip: false,
      gzipThreshold: this.opts.gzipThreshold,
      contentType: 'application/json',
    });
  }

  // ---- conversions -----------------------------------------------------------------------------

  private tableOf(
    r: ResourceDef,
    objs: KubeObject[],
    meta: Record<string, unknown>,
    version: string,
    includeObject: string,
    headers: boolean,
  ): Record<string, unknown> {
    const now = Date.now();
    const rows = objs.map((o) => {
      const row: Record<string, unknown> = { cells: r.cells(o, now) };
      const conds = r.conditions?.(o);
      if (conds) row['conditions'] = conds;
      if (includeObject === 'Object') row['object'] = o;
      else if (includeObject === 'Metadata' || includeObject === '') {
        row['object'] = { kind: 'PartialObjectMetadata', apiVersion: `meta.k8s.io/${version}`, metadata: o.metadata };
      }
      return row;
    });
    return {
      kind: 'Table',
      apiVersion: `meta.k8s.io/${version}`,
      metadata: meta,
      columnDefinitions: headers ? r.columns : null,
      rows,
    };
  }

  private includeObject(ctx: ReqCtx): string {
    const v = ctx.url.searchParams.get('includeObject') ?? '';
    if (v !== '' && v !== 'None' && v !== 'Metadata' && v !== 'Object') {
      throw errors.badRequest(`unrecognized includeObject value: "${v}"`);
    }
    return v;
  }

  /** A `<Kind>List`: its items carry no kind or apiVersion (the server's list encoding drops them). */
  private listOf(r: ResourceDef, items: KubeObject[], meta: Record<string, unknown>): Record<string, unknown> {
    const bare = items.map((o) => {
      const { kind: _kind, apiVersion: _apiVersion, ...rest } = o;
      return rest;
    });
    return { kind: `${r.kind}List`, apiVersion: apiVersionOf(r), metadata: meta, items: bare };
  }

  // ---- verbs -----------------------------------------------------------------------------------

  async handle(ctx: ReqCtx, r: ResourceDef): Promise<void> {
    const { info } = ctx;
    const ns = r.namespaced ? info.namespace : '';
    if (info.subresource !== '') {
      await this.subresource(ctx, r, ns);
      return;
    }
    switch (info.verb) {
      case 'list':
        this.list(ctx, r, ns);
        return;
      case 'watch':
        this.watch(ctx, r, ns);
        return;
      case 'get':
        this.get(ctx, r, ns);
        return;
      case 'create':
        if (r.name === 'selfsubjectaccessreviews') this.accessReview(ctx);
        else this.create(ctx, r, ns);
        return;
      case 'update':
        this.update(ctx, r, ns);
        return;
      case 'patch':
        this.patch(ctx, r, ns);
        return;
      case 'delete':
        this.delete(ctx, r, ns);
        return;
      case 'deletecollection':
        this.deleteCollection(ctx, r, ns);
        return;
      default:
        throw errors.methodNotAllowed();
    }
  }

  private filtered(ctx: ReqCtx, r: ResourceDef, ns: string): { key: string; obj: KubeObject }[] {
    const q = ctx.url.searchParams;
    const labels = parseLabelSelector(q.get('labelSelector'));
    const fields = parseFieldSelector(q.get('fieldSelector'), r);
    return this.store
      .list(r, ns)
      .filter((e) => matchLabels(labels, e.obj.metadata.labels) && matchFields(fields, r, e.obj));
  }

  private list(ctx: ReqCtx, r: ResourceDef, ns: string): void {
    const q = ctx.url.searchParams;
    const target = negotiate(headerOf(ctx.req, 'accept'));
    const includeObject = target.kind === 'table' ? this.includeObject(ctx) : '';
    const limitRaw = q.get('limit');
    const limit = limitRaw === null ? 0 : Number(limitRaw);
    if (!Number.isInteger(limit) || limit < 0)
      throw errors.badRequest(`strconv.ParseInt: parsing "${limitRaw ?? ''}": invalid syntax`);
    const cont = q.get('continue');
    const selectors = (q.get('labelSelector') ?? '') !== '' || (q.get('fieldSelector') ?? '') !== '';
    let all = this.filtered(ctx, r, ns);
    // Continue keys are relative to the listed prefix: `name` in a namespace, `ns/name` across them.
    const rel = (key: string): string => (ns !== '' && key.startsWith(`${ns}/`) ? key.slice(ns.length + 1) : key);
    let rv = this.store.resourceVersion;
    if (cont !== null && cont !== '') {
      const tok = decodeContinue(cont);
      if (tok.rv < this.store.compactedRv) {
        // The Status carries a fresh token (rv -1: "continue from now, inconsistently").
        throw errors.expired(
          'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.',
          encodeContinue(-1, tok.start),
        );
      }
      rv = tok.rv;
      all = all.filter((e) => rel(e.key) >= tok.start);
    }
    const meta: Record<string, unknown> = { resourceVersion: String(rv) };
    let page = all;
    if (limit > 0 && all.length > limit) {
      page = all.slice(0, limit);
      const lastKey = page[page.length - 1]?.key ?? '';
      meta['continue'] = encodeContinue(rv, `${rel(lastKey)}\u0000`);
      if (!selectors) meta['remainingItemCount'] = all.length - limit;
    }
    const items = page.map((e) => e.obj);
    if (target.kind === 'table') this.send(ctx, 200, this.tableOf(r, items, meta, target.version, includeObject, true));
    else if (target.kind === 'partial') {
      if (!target.list)
        throw errors.notAcceptable(
          `you requested PartialObjectMetadata, but the requested object is a list (*core.${r.kind}List)`,
        );
      this.send(ctx, 200, {
        kind: 'PartialObjectMetadataList',
        apiVersion: `meta.k8s.io/${target.version}`,
        metadata: meta,
        items: items.map((o) => ({
          kind: 'PartialObjectMetadata',
          apiVersion: `meta.k8s.io/${target.version}`,
          metadata: o.metadata,
        })),
      });
    } else this.send(ctx, 200, this.listOf(r, items, meta), target);
  }

  private watch(ctx: ReqCtx, r: ResourceDef, ns: string): void {
    const q = ctx.url.searchParams;
    const target = negotiate(headerOf(ctx.req, 'accept'));
    const includeObject = target.kind === 'table' ? this.includeObject(ctx) : '';
    const labels = parseLabelSelector(q.get('labelSelector'));
    const fields = parseFieldSelector(q.get('fieldSelector'), r);
    const rvParam = q.get('resourceVersion') ?? '';
    if (q.has('sendInitialEvents') && !this.opts.watchList) {
      throw errors.invalid(
        'ListOptions',
        '',
        'sendInitialEvents',
        'FieldValueForbidden',
        'Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled',
        'meta.k8s.io',
      );
    }
    const sendInitial = q.get('sendInitialEvents') === 'true';
    const bookmarks = q.get('allowWatchBookmarks') === 'true';
    const timeoutSeconds = Number(q.get('timeoutSeconds') ?? '0');
    if (rvParam !== '' && rvParam !== '0' && !/^\d+$/.test(rvParam))
      throw errors.badRequest(`resourceVersion: Invalid value: "${rvParam}": must be a number`);

    const sink = ctx.sink;
    ctx.record.status = 200;
    sink.head(200, sortHeaders([...this.base(ctx), ['Content-Type', 'application/json']]), { flush: true });

    let tableHeaders = true;
    let lastRv = 0;
    const encode = (type: string, obj: KubeObject | Record<string, unknown>): string => {
      let out: unknown = obj;
      if (target.kind === 'table' && (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED')) {
        const o = obj as KubeObject;
        out = this.tableOf(
          r,
          [o],
          { resourceVersion: o.metadata.resourceVersion ?? '' },
          target.version,
          includeObject,
          tableHeaders,
        );
        tableHeaders = false;
      } else if (target.kind === 'partial' && type !== 'ERROR') {
        out = {
          kind: 'PartialObjectMetadata',
          apiVersion: `meta.k8s.io/${target.version}`,
          metadata: (obj as KubeObject).metadata,
        };
      }
      return goJson({ type, object: out });
    };
    const matches = (ev: StoredEvent): boolean => {
      if (ev.resource !== r.name) return false;
      if (ev.type === 'ERROR' || ev.type === 'BOOKMARK') return true;
      if (r.namespaced && ns !== '' && ev.namespace !== ns) return false;
      const o = ev.object as KubeObject;
      return matchLabels(labels, o.metadata.labels) && matchFields(fields, r, o);
    };
    const emit = (ev: StoredEvent): void => {
      if (!matches(ev)) return;
      if (ev.type !== 'ERROR' && ev.type !== 'BOOKMARK') {
        if (ev.rv <= lastRv) return;
        lastRv = ev.rv;
      }
      sink.write(encode(ev.type, ev.object));
    };
    const end = (): void => {
      cleanup();
      sink.end();
    };
    const bookmarkObj = (rv: number, initialEnd: boolean): Record<string, unknown> => {
      const metadata: Record<string, unknown> = { resourceVersion: String(rv), creationTimestamp: null };
      if (initialEnd) metadata['annotations'] = { 'k8s.io/initial-events-end': 'true' };
      return { kind: r.kind, apiVersion: apiVersionOf(r), metadata };
    };

    if (rvParam === '' || rvParam === '0' || sendInitial) {
      for (const e of this.store.list(r, ns)) {
        if (!matchLabels(labels, e.obj.metadata.labels) || !matchFields(fields, r, e.obj)) continue;
        sink.write(encode('ADDED', e.obj));
      }
      lastRv = this.store.resourceVersion;
      if (sendInitial && bookmarks) sink.write(encode('BOOKMARK', bookmarkObj(lastRv, true)));
    } else {
      const from = Number(rvParam);
      const history = this.store.eventsSince(r.name, from);
      if (history === undefined) {
        const st = status(410, 'Expired', `too old resource version: ${from} (${this.store.compactedRv})`);
        sink.write(goJson({ type: 'ERROR', object: st }));
        sink.end();
        return;
      }
      lastRv = from;
      for (const ev of history) emit(ev);
    }
    const unsubscribe = this.store.subscribe(emit);
    const timers: NodeJS.Timeout[] = [];
    if (timeoutSeconds > 0) timers.push(setTimeout(end, timeoutSeconds * 1000));
    if (bookmarks && this.opts.bookmarkIntervalMs !== undefined) {
      timers.push(
        setInterval(
          () => sink.write(encode('BOOKMARK', bookmarkObj(this.store.resourceVersion, false))),
          this.opts.bookmarkIntervalMs,
        ),
      );
    }
    const cleanup = (): void => {
      unsubscribe();
      for (const t of timers) clearTimeout(t);
      this.watches.delete(end);
    };
    this.watches.add(end);
    sink.onClose(cleanup);
  }

  private get(ctx: ReqCtx, r: ResourceDef, ns: string): void {
    const obj = this.store.get(r, ns, ctx.info.name);
    if (!obj) throw errors.notFound(r.name, ctx.info.name, r.group);
    const target = negotiate(headerOf(ctx.req, 'accept'));
    if (target.kind === 'table') {
      const includeObject = this.includeObject(ctx);
      this.send(
        ctx,
        200,
        this.tableOf(
          r,
          [obj],
          { resourceVersion: obj.metadata.resourceVersion ?? '' },
          target.version,
          includeObject,
          true,
        ),
      );
    } else if (target.kind === 'partial') {
      this.send(ctx, 200, {
        kind: 'PartialObjectMetadata',
        apiVersion: `meta.k8s.io/${target.version}`,
        metadata: obj.metadata,
      });
    } else this.send(ctx, 200, obj, target);
  }

  private parseBody(ctx: ReqCtx): unknown {
    const ct = (headerOf(ctx.req, 'content-type') ?? 'application/json').split(';')[0]?.trim() ?? '';
    if (ct === 'application/vnd.kubernetes.protobuf') return decodeKubeProtobuf(ctx.body);
    const text = ctx.body.toString('utf8');
    try {
      if (ct === 'application/yaml' || ct === 'application/apply-patch+yaml') return parseYaml(text) as unknown;
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw errors.badRequest(`couldn't get version/kind; json parse error: ${(err as Error).message}`);
    }
  }

  private dryRun(ctx: ReqCtx): boolean {
    return ctx.url.searchParams.getAll('dryRun').includes('All');
  }

  private requireNamespace(r: ResourceDef, ns: string): void {
    if (r.namespaced && !this.store.get(NAMESPACES, '', ns)) throw errors.notFound('namespaces', ns);
  }

  private create(ctx: ReqCtx, r: ResourceDef, ns: string): void {
    const body = rec(this.parseBody(ctx));
    const obj = body as unknown as KubeObject;
    obj.metadata = rec(obj.metadata);
    if (r.namespaced) {
      const bodyNs = obj.metadata.namespace;
      if (bodyNs !== undefined && bodyNs !== '' && bodyNs !== ns) {
        throw errors.badRequest(
          'the namespace of the provided object does not match the namespace sent on the request',
        );
      }
    }
    if ((obj.metadata.name ?? '') === '' && (obj.metadata.generateName ?? '') === '') {
      throw errors.invalid(
        r.kind,
        '',
        'metadata.name',
        'FieldValueRequired',
        'Required value: name or generateName is required',
      );
    }
    this.requireNamespace(r, ns);
    const created = this.store.create(r, ns, obj, { dryRun: this.dryRun(ctx) });
    this.send(ctx, 201, created);
  }

  /** `kubectl auth can-i`: evaluate the caller's own access with the server's policy. */
  private accessReview(ctx: ReqCtx): void {
    const review = rec(this.parseBody(ctx));
    const spec = rec(review['spec']);
    const ra = spec['resourceAttributes'] === undefined ? undefined : rec(spec['resourceAttributes']);
    const na = rec(spec['nonResourceAttributes']);
    const s = (v: unknown): string => (typeof v === 'string' ? v : '');
    const attrs: RequestAttributes = ra
      ? {
          verb: s(ra['verb']),
          isResourceRequest: true,
          path: '',
          apiGroup: s(ra['group']),
          apiVersion: s(ra['version']),
          resource: s(ra['resource']),
          subresource: s(ra['subresource']),
          namespace: s(ra['namespace']),
          name: s(ra['name']),
        }
      : {
          verb: s(na['verb']),
          isResourceRequest: false,
          path: s(na['path']),
          apiGroup: '',
          apiVersion: '',
          resource: '',
          subresource: '',
          namespace: '',
          name: '',
        };
    const d = this.opts.authorize(ctx.user, attrs);
    const st: Record<string, unknown> = { allowed: d.allowed };
    if (d.reason !== undefined && d.reason !== '') st['reason'] = d.reason;
    const metadata = { ...rec(review['metadata']), creationTimestamp: null };
    this.send(ctx, 201, {
      kind: 'SelfSubjectAccessReview',
      apiVersion: 'authorization.k8s.io/v1',
      metadata,
      spec,
      status: st,
    });
  }

  private update(ctx: ReqCtx, r: ResourceDef, ns: string): void {
    const obj = rec(this.parseBody(ctx)) as unknown as KubeObject;
    obj.metadata = rec(obj.metadata);
    if ((obj.metadata.name ?? ctx.info.name) !== ctx.info.name) {
      throw errors.badRequest(
        'the name of the object (' +
          String(obj.metadata.name) +
          ') does not match the name on the URL (' +
          ctx.info.name +
          ')',
      );
    }
    const updated = this.store.update(r, ns, ctx.info.name, obj, { dryRun: this.dryRun(ctx) });
    this.send(ctx, 200, updated);
  }

  private patch(ctx: ReqCtx, r: ResourceDef, ns: string): void {
    const ct = (headerOf(ctx.req, 'content-type') ?? '').split(';')[0]?.trim() ?? '';
    const patch = this.parseBody(ctx);
    const current = this.store.get(r, ns, ctx.info.name);
    const dry = this.dryRun(ctx);
    if (ct === 'application/apply-patch+yaml') {
      if ((ctx.url.searchParams.get('fieldManager') ?? '') === '') {
        throw errors.invalid(
          'PatchOptions',
          '',
          'fieldManager',
          'FieldValueRequired',
          'Required value: is required for apply patch',
          'meta.k8s.io',
        );
      }
      if (!current) {
        this.requireNamespace(r, ns);
        const obj = rec(patch) as unknown as KubeObject;
        obj.metadata = { ...rec(obj.metadata), name: ctx.info.name };
        this.send(ctx, 201, this.store.create(r, ns, obj, { dryRun: dry }));
        return;
      }
    }
    if (!current) throw errors.notFound(r.name, ctx.info.name, r.group);
    let next: unknown;
    switch (ct) {
      case 'application/merge-patch+json':
        next = mergePatch(current, patch);
        break;
      case 'application/strategic-merge-patch+json':
      case 'application/apply-patch+yaml':
        next = strategicMerge(current, patch);
        break;
      case 'application/json-patch+json':
        next = jsonPatch(current, patch);
        break;
      default:
        throw errors.unsupportedMediaType(ct);
    }
    const obj = rec(next) as unknown as KubeObject;
    obj.metadata = rec(obj.metadata);
    // A patch does not carry a precondition unless it names a resourceVersion itself.
    if (rec(rec(patch)['metadata'])['resourceVersion'] === undefined)
      obj.metadata.resourceVersion = current.metadata.resourceVersion;
    this.send(ctx, 200, this.store.update(r, ns, ctx.info.name, obj, { dryRun: dry }));
  }

  private deleteOptions(ctx: ReqCtx): { uid?: string; dryRun: boolean } {
    let uid: string | undefined;
    let dry = this.dryRun(ctx);
    if (ctx.body.length > 0) {
      const o = rec(this.parseBody(ctx));
      const pre = rec(o['preconditions']);
      if (typeof pre['uid'] === 'string') uid = pre['uid'];
      if (Array.isArray(o['dryRun']) && o['dryRun'].includes('All')) dry = true;
    }
    return uid === undefined ? { dryRun: dry } : { uid, dryRun: dry };
  }

  /** Delete and also what the namespace controller would (instantly): everything inside a namespace. */
  removeObject(r: ResourceDef, ns: string, name: string, opts: { uid?: string; dryRun?: boolean } = {}): KubeObject {
    const gone = this.store.delete(r, ns, name, opts);
    if (opts.dryRun) return gone;
    if (r.name === 'namespaces') {
      for (const other of RESOURCES) {
        if (!other.namespaced) continue;
        for (const e of this.store.list(other, name)) this.store.delete(other, name, e.obj.metadata.name ?? '');
      }
    }
    if (r.name === 'pods') {
      const log = this.logs.get(Store.key(ns, name));
      if (log) {
        for (const f of log.followers) f(null);
        this.logs.delete(Store.key(ns, name));
      }
    }
    return gone;
  }

  private delete(ctx: ReqCtx, r: ResourceDef, ns: string): void {
    const gone = this.removeObject(r, ns, ctx.info.name, this.deleteOptions(ctx));
    if (r.deleteReturnsObject) {
      this.send(ctx, 200, gone);
      return;
    }
    const details: Record<string, string> = { name: ctx.info.name };
    if (r.group !== '') details['group'] = r.group;
    details['kind'] = r.name;
    details['uid'] = gone.metadata.uid ?? '';
    this.send(ctx, 200, { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Success', details });
  }

  private deleteCollection(ctx: ReqCtx, r: ResourceDef, ns: string): void {
    const opts = this.deleteOptions(ctx);
    const gone = this.filtered(ctx, r, ns).map((e) =>
      this.removeObject(r, e.obj.metadata.namespace ?? '', e.obj.metadata.name ?? '', opts),
    );
    this.send(ctx, 200, this.listOf(r, gone, { resourceVersion: String(this.store.resourceVersion) }));
  }

  // ---- subresources ----------------------------------------------------------------------------

  private async subresource(ctx: ReqCtx, r: ResourceDef, ns: string): Promise<void> {
    const sub = ctx.info.subresource;
    if (!r.subresources.some((s) => s.name === sub)) throw errors.pathNotFound();
    if (r.name === 'pods' && sub === 'log' && ctx.info.verb === 'get') {
      await this.podLog(ctx, ns);
      return;
    }
    if (r.name === 'pods' && (sub === 'exec' || sub === 'attach' || sub === 'portforward')) {
      // The apiserver locates the container and the node before it looks at the request's protocol.
      streamTarget(this.store, ns, ctx.info.name, sub, ctx.url.searchParams);
      throw errors.badRequest('Upgrade request required');
    }
    if (sub === 'status') {
      if (ctx.info.verb === 'get') this.get(ctx, r, ns);
      else if (ctx.info.verb === 'patch') this.patch(ctx, r, ns);
      else if (ctx.info.verb === 'update') this.update(ctx, r, ns);
      else throw errors.methodNotAllowed();
      return;
    }
    if (r.name === 'deployments' && sub === 'scale') {
      this.scale(ctx, r, ns);
      return;
    }
    throw errors.methodNotAllowed();
  }

  private scale(ctx: ReqCtx, r: ResourceDef, ns: string): void {
    const obj = this.store.get(r, ns, ctx.info.name);
    if (!obj) throw errors.notFound(r.name, ctx.info.name, r.group);
    const scaleOf = (o: KubeObject): Record<string, unknown> => {
      const replicas = rec(o['spec'])['replicas'] ?? 1;
      const sel = rec(rec(rec(o['spec'])['selector'])['matchLabels']);
      const m = o.metadata;
      return {
        kind: 'Scale',
        apiVersion: 'autoscaling/v1',
        metadata: {
          name: m.name,
          namespace: m.namespace,
          uid: m.uid,
          resourceVersion: m.resourceVersion,
          creationTimestamp: m.creationTimestamp,
        },
        spec: { replicas },
        status: {
          replicas: rec(o['status'])['replicas'] ?? 0,
          selector: Object.entries(sel)
            .map(([k, v]) => `${k}=${String(v)}`)
            .join(','),
        },
      };
    };
    if (ctx.info.verb === 'get') {
      this.send(ctx, 200, scaleOf(obj));
      return;
    }
    if (ctx.info.verb !== 'patch' && ctx.info.verb !== 'update') throw errors.methodNotAllowed();
    const body = rec(this.parseBody(ctx));
    const ct = (headerOf(ctx.req, 'content-type') ?? '').split(';')[0]?.trim() ?? '';
    const next =
      ctx.info.verb === 'update'
        ? body
        : rec(ct === 'application/json-patch+json' ? jsonPatch(scaleOf(obj), body) : mergePatch(scaleOf(obj), body));
    const replicas = rec(next['spec'])['replicas'];
    if (typeof replicas === 'number') {
      const spec = rec(obj['spec']);
      spec['replicas'] = replicas;
      obj['spec'] = spec;
    }
    const updated = this.store.update(r, ns, ctx.info.name, obj, { dryRun: this.dryRun(ctx) });
    this.send(ctx, 200, scaleOf(updated));
  }

  private podLog(ctx: ReqCtx, ns: string): Promise<void> {
    const pod = this.store.get(PODS, ns, ctx.info.name);
    if (!pod) throw errors.notFound('pods', ctx.info.name);
    const q = ctx.url.searchParams;
    const containers = ((rec(pod['spec'])['containers'] as unknown[] | undefined) ?? []).map((c) =>
      String(rec(c)['name']),
    );
    let container = q.get('container') ?? '';
    if (container === '') {
      if (containers.length === 1) container = containers[0] ?? '';
      else
        throw errors.badRequest(
          `a container name must be specified for pod ${ctx.info.name}, choose one of: [${containers.join(' ')}]`,
        );
    } else if (!containers.includes(container)) {
      throw errors.badRequest(`container ${container} is not valid for pod ${ctx.info.name}`);
    }
    if (q.get('previous') === 'true') {
      throw errors.badRequest(`previous terminated container "${container}" in pod "${ctx.info.name}" not found`);
    }
    const sink = ctx.sink;
    // Long-running: no APF headers; an unscheduled pod has no log location, hence 204 No Content.
    if ((rec(pod['spec'])['nodeName'] ?? '') === '') {
      ctx.record.status = 204;
      sink.head(204, sortHeaders(commonHeaders({ auditId: ctx.auditId })));
      sink.end();
      return Promise.resolve();
    }
    const key = Store.key(ns, ctx.info.name);
    const log = this.podLogState(key);
    const timestamps = q.get('timestamps') === 'true';
    const fmt = (l: LogLine): string => (timestamps ? `${rfc3339Nano(l.t)} ${l.text}` : l.text);
    let lines = log.lines;
    const tail = q.get('tailLines');
    if (tail !== null && Number(tail) >= 0) lines = lines.slice(Math.max(0, lines.length - Number(tail)));
    let budget = q.get('limitBytes') === null ? Infinity : Number(q.get('limitBytes'));
    ctx.record.status = 200;
    sink.head(200, sortHeaders([...commonHeaders({ auditId: ctx.auditId }), ['Content-Type', 'text/plain']]), {
      flush: true,
    });
    const out = (l: LogLine): boolean => {
      if (budget <= 0) return false;
      let s = Buffer.from(fmt(l));
      if (s.length > budget) s = s.subarray(0, budget);
      budget -= s.length;
      sink.write(s);
      return budget > 0;
    };
    for (const l of lines) if (!out(l)) break;
    if (q.get('follow') !== 'true' || budget <= 0) {
      sink.end();
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      let generated = 0;
      let timer: NodeJS.Timeout | undefined;
      const finish = (): void => {
        log.followers.delete(onLine);
        if (timer) clearInterval(timer);
        this.follows.delete(finish);
        sink.end();
        resolve();
      };
      const onLine = (l: LogLine | null): void => {
        if (l === null || !out(l)) finish();
      };
      log.followers.add(onLine);
      this.follows.add(finish);
      sink.onClose(finish);
      const lf = this.opts.logFollow;
      if (lf) {
        timer = setInterval(() => {
          generated++;
          const text = lf.line ? lf.line(generated, ctx.info.name) : `${ctx.info.name} line ${generated}`;
          this.appendLog(ns, ctx.info.name, text, { only: onLine });
          if (lf.count !== undefined && generated >= lf.count) finish();
        }, lf.intervalMs);
      }
    });
  }

  private podLogState(key: string): PodLog {
    let log = this.logs.get(key);
    if (!log) {
      log = { lines: [], followers: new Set() };
      this.logs.set(key, log);
    }
    return log;
  }

  setLogs(ns: string, pod: string, lines: string[]): void {
    const log = this.podLogState(Store.key(ns, pod));
    const t = Date.now();
    log.lines = lines.map((text) => ({ t, text: text.endsWith('\n') ? text : `${text}\n` }));
  }

  /** Add a line; followers get it at once. `only`: deliver to one follower without storing (generated lines). */
  appendLog(ns: string, pod: string, text: string, opts: { only?: (l: LogLine) => void } = {}): void {
    const log = this.podLogState(Store.key(ns, pod));
    const l = { t: Date.now(), text: text.endsWith('\n') ? text : `${text}\n` };
    if (opts.only) {
      opts.only(l);
      return;
    }
    log.lines.push(l);
    for (const f of log.followers) f(l);
  }

  emit(resource: string, ev: WatchEvent): void {
    this.store.inject(resource, ev);
  }
}

/**
 * What the apiserver checks for exec/attach/portforward before it dials the kubelet (`streamLocation`):
 * the pod, the container (not for portforward), and that the pod has a node.
 */
export function streamTarget(
  store: Store,
  ns: string,
  name: string,
  sub: string,
  q: URLSearchParams,
): { pod: KubeObject; container: string } {
  const pod = store.get(PODS, ns, name);
  if (!pod) throw errors.notFound('pods', name);
  const spec = rec(pod['spec']);
  const containers = ((spec['containers'] as { name?: string }[] | undefined) ?? []).map((c) => c.name ?? '');
  let container = q.get('container') ?? '';
  if (sub !== 'portforward') {
    if (container === '') {
      if (containers.length === 1) container = containers[0] ?? '';
      else if (containers.length === 0) throw errors.badRequest(`a container name must be specified for pod ${name}`);
      else
        throw errors.badRequest(
          `a container name must be specified for pod ${name}, choose one of: [${containers.join(' ')}]`,
        );
    } else if (!containers.includes(container)) {
      throw errors.badRequest(`container ${container} is not valid for pod ${name}`);
    }
  }
  if (typeof spec['nodeName'] !== 'string' || spec['nodeName'] === '') {
    throw errors.badRequest(`pod ${name} does not have a host assigned`);
  }
  return { pod, container };
}

export function headerOf(req: IncomingMessage | Http2ServerRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}
