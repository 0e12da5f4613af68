/**
 * The mux: which handler answers which path and verb once a request is authenticated and authorized.
 * Non-resource paths: /version, /healthz /livez /readyz, discovery (/api, /apis, a group, a group version;
 * aggregated or legacy, with ETag and 304) and /openapi/v3 (GET and HEAD only). Resource paths go to the
 * resource handlers (rest.ts) when the group, version and resource are served. The rest get a NotFound
 * Status (under /api, a served group or /openapi/v3) or Go's text `404 page not found`. Upgrades are routed
 * by upgrades.ts.
 */
import { PROBE_PATHS } from './apf.ts';
import {
  aggregatedContentType,
  aggregatedDocument,
  DISCOVERY_NOT_ACCEPTABLE,
  etagFor,
  legacyApiVersions,
  legacyGroup,
  legacyGroupList,
  legacyResourceList,
  negotiateDiscovery,
  openapiV3GroupVersion,
  openapiV3Root,
} from './discovery.ts';
import { findResource, RESOURCES } from './resources.ts';
import { headerOf, type Api, type ReqCtx } from './rest.ts';
import { VERSIONS, versionBody, type ServerVersion } from './version.ts';
import { commonHeaders, errors, goJson, goJsonIndent, NOT_FOUND_TEXT, sortHeaders, status, writeBody } from './wire.ts';

export interface RouterOptions {
  api: Api;
  version: ServerVersion;
  /** Serve aggregated discovery when asked (the `aggregatedDiscovery` option, default true). */
  aggregatedDiscovery: boolean;
  /** `host:port` for the legacy APIVersions document (known once the server listens). */
  serverAddress: () => string;
}

function servedGroup(group: string): boolean {
  return group !== '' && RESOURCES.some((r) => r.group === group);
}

/** No handler for the path (an unknown group, a path nothing serves): Go's `http.NotFound`, not a Status. */
function notFoundText(ctx: ReqCtx): void {
  ctx.record.status = 404;
  writeBody(
    ctx.sink,
    404,
    [...commonHeaders({ auditId: ctx.auditId, apf: ctx.apf }), ['X-Content-Type-Options', 'nosniff']],
    NOT_FOUND_TEXT,
    {
      gzip: false,
      gzipThreshold: Infinity,
      contentType: 'text/plain; charset=utf-8',
    },
  );
}

function openapiHashes(): Map<string, string> {
  const m = new Map<string, string>();
  for (const r of RESOURCES) {
    const p = r.group === '' ? `api/${r.version}` : `apis/${r.group}/${r.version}`;
    m.set(p, etagFor(p).slice(1, 17));
  }
  return m;
}

/** The handler for an authorized request; it throws an `ApiError` for the caller to answer. */
export function createRouter(o: RouterOptions): (ctx: ReqCtx) => Promise<void> {
  const gitVersion = VERSIONS[o.version].gitVersion;

  const nonResource = (ctx: ReqCtx): void => {
    const method = ctx.req.method ?? 'GET';
    const path = ctx.info.path.replace(/\/+$/, '') || '/';
    if (method !== 'GET' && method !== 'HEAD') throw errors.methodNotAllowed();
    const json = (
      code: number,
      obj: unknown,
      contentType = 'application/json',
      extra: [string, string][] = [],
      cacheControl?: string,
    ): void => {
      ctx.record.status = code;
      writeBody(
        ctx.sink,
        code,
        [...commonHeaders({ auditId: ctx.auditId, apf: ctx.apf, cacheControl }), ...extra],
        typeof obj === 'string' ? obj : goJson(obj),
        {
          gzip: false,
          gzipThreshold: Infinity,
          contentType,
        },
      );
    };
    if (path === '/version') {
      json(200, goJsonIndent(versionBody(o.version)));
      return;
    }
    if (PROBE_PATHS.test(path)) {
      const verbose = ctx.url.searchParams.has('verbose');
      const name = path.split('/')[1] ?? 'healthz';
      const text = verbose ? `[+]ping ok\n[+]log ok\n[+]etcd ok\n${name} check passed\n` : 'ok';
      json(200, text, 'text/plain; charset=utf-8', [['X-Content-Type-Options', 'nosniff']]);
      return;
    }
    if (path === '/api' || path === '/apis') {
      // 1.33 dropped apidiscovery.k8s.io/v2beta1.
      const f = negotiateDiscovery(headerOf(ctx.req, 'accept'), o.aggregatedDiscovery, o.version !== '1.33');
      if (f === undefined) {
        json(406, goJsonIndent(status(406, 'NotAcceptable', DISCOVERY_NOT_ACCEPTABLE)));
        return;
      }
      if (f === 'legacy') {
        json(200, path === '/api' ? legacyApiVersions(o.serverAddress()) : legacyGroupList());
        return;
      }
      const body = goJson(aggregatedDocument(path === '/api', f));
      const etag = etagFor(body);
      const extra: [string, string][] = [
        ['Etag', etag],
        ['Vary', 'Accept'],
      ];
      if (headerOf(ctx.req, 'if-none-match') === etag) {
        ctx.record.status = 304;
        ctx.sink.head(
          304,
          sortHeaders([...commonHeaders({ auditId: ctx.auditId, apf: ctx.apf, cacheControl: 'public' }), ...extra]),
        );
        ctx.sink.end();
        return;
      }
      json(200, body, aggregatedContentType(f), extra, 'public');
      return;
    }
    const gv = /^\/api\/(v1)$/.exec(path) ?? /^\/apis\/([^/]+)\/([^/]+)$/.exec(path);
    if (gv) {
      const doc = path.startsWith('/api/')
        ? legacyResourceList('', gv[1] ?? '')
        : legacyResourceList(gv[1] ?? '', gv[2] ?? '');
      if (doc) {
        json(200, doc);
        return;
      }
    }
    const g = /^\/apis\/([^/]+)$/.exec(path);
    if (g) {
      const doc = legacyGroup(g[1] ?? '');
      if (doc) {
        json(200, doc);
        return;
      }
    }
    if (path === '/openapi/v3') {
      json(200, openapiV3Root(openapiHashes()));
      return;
    }
    const oa = /^\/openapi\/v3\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))$/.exec(path);
    if (oa) {
      const doc =
        oa[1] !== undefined
          ? openapiV3GroupVersion('', oa[1], gitVersion)
          : openapiV3GroupVersion(oa[2] ?? '', oa[3] ?? '', gitVersion);
      if (doc) {
        json(200, doc, 'application/json', [], 'public, immutable');
        return;
      }
    }
    // The /api handler and a served group's handler answer a Status; the mux answers the rest in text.
    const parts = path.split('/').filter((p) => p !== '');
    if (
      parts[0] === 'api' ||
      (parts[0] === 'apis' && parts.length >= 3 && servedGroup(parts[1] ?? '')) ||
      (parts[0] === 'openapi' && parts[1] === 'v3')
    ) {
      throw errors.pathNotFound();
    }
    notFoundText(ctx);
  };

  return async (ctx: ReqCtx): Promise<void> => {
    const info = ctx.info;
    if (!info.isResourceRequest) {
      nonResource(ctx);
      return;
    }
    const r = findResource(info.apiGroup, info.apiVersion, info.resource);
    if (!r && info.apiPrefix === 'apis' && !servedGroup(info.apiGroup)) {
      notFoundText(ctx);
      return;
    }
    if (!r || (info.apiPrefix === 'api') !== (r.group === '')) throw errors.pathNotFound();
    if (r.namespaced && info.namespace === '' && info.name !== '' && info.verb !== 'list' && info.verb !== 'watch')
      throw errors.pathNotFound();
    await o.api.handle(ctx, r);
  };
}
