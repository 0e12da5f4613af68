/**
 * RequestInfo: what kube-apiserver derives from a request's method and URL, re-implemented from
 * k8s.io/apiserver pkg/endpoints/request/requestinfo.go (1.32/1.33, factory with
 * APIPrefixes={api,apis}, GrouplessAPIPrefixes={api}, gate AuthorizeWithSelectors on).
 * Pure: strings in, plain data out. The caller strips any kubeconfig server path prefix first.
 *
 * Known divergences, all on requests the apiserver rejects anyway:
 * - A path with a malformed percent escape is kept undecoded (Go rejects the request with 400).
 * - The labelSelector is not parsed, so a malformed one does not suppress the name derived from
 *   `fieldSelector=metadata.name=X` (the apiserver then answers 400 BadRequest).
 * - A query value that is not valid UTF-8 once decoded is dropped (Go keeps the raw bytes).
 */
import { setAttr, type Attributes } from './attributes.ts';

export interface RequestInfo {
  /** True for `/api/{version}/…` and `/apis/{group}/{version}/…` with at least one more segment. */
  isResourceRequest: boolean;
  /** The percent-decoded URL path (Go's `URL.Path`). */
  path: string;
  /**
   * Resource requests: get, list, watch, create, update, patch, delete, deletecollection, proxy,
   * or '' for a method the apiserver does not map. Non-resource requests: the lower-cased method.
   */
  verb: string;
  apiPrefix: string;
  /** '' for the core group. */
  apiGroup: string;
  apiVersion: string;
  namespace: string;
  resource: string;
  subresource: string;
  name: string;
  /** Path segments from the resource on: [resource, name, subresource, …]; [] if non-resource. */
  parts: string[];
  /** First raw `fieldSelector` of a list, watch or deletecollection not addressed via `/watch/`. */
  fieldSelector: string;
  /** First raw `labelSelector`, under the same conditions as `fieldSelector`. */
  labelSelector: string;
}

const API_PREFIXES = new Set(['api', 'apis']);
const GROUPLESS_API_PREFIXES = new Set(['api']);
/** Deprecated verbs carried in the path: /api/v1/watch/pods, /api/v1/proxy/nodes/n1. */
const PATH_VERBS = new Set(['proxy', 'watch']);
const NAMESPACE_SUBRESOURCES = new Set(['status', 'finalize']);
const VERBS_WITH_SELECTORS = new Set(['list', 'watch', 'deletecollection']);
/** Case-sensitive, as in Go: `post` is not POST. A Map, so `constructor` is not a method. */
const METHOD_VERBS = new Map([
  ['POST', 'create'],
  ['GET', 'get'],
  ['HEAD', 'get'],
  ['PUT', 'update'],
  ['PATCH', 'patch'],
  ['DELETE', 'delete'],
]);

/** Returns every value of a query parameter, in order. */
type QueryValues = (key: string) => string[];

/**
 * Derives RequestInfo from a method and a URL path. `path` is the path as sent on the wire
 * (percent-encoded); if it still carries `?query` and no `query` is given, that query is used.
 * A string query is parsed as Go's `url.ParseQuery` does; a URLSearchParams is taken as is.
 */
export function parseRequestInfo(method: string, path: string, query: URLSearchParams | string = ''): RequestInfo {
  const q = path.indexOf('?');
  if (q !== -1) {
    if (query === '') query = path.slice(q + 1);
    path = path.slice(0, q);
  }
  const values: QueryValues = typeof query === 'string' ? goQueryValues(query) : (key) => query.getAll(key);

  const info: RequestInfo = {
    isResourceRequest: false,
    path: decodePath(path),
    verb: method.toLowerCase(),
    apiPrefix: '',
    apiGroup: '',
    apiVersion: '',
    namespace: '',
    resource: '',
    subresource: '',
    name: '',
    parts: [],
    fieldSelector: '',
    labelSelector: '',
  };

  let rest = splitPath(info.path);
  const prefix = rest[0] ?? '';
  if (rest.length < 3 || !API_PREFIXES.has(prefix)) return info;
  info.apiPrefix = prefix;
  rest = rest.slice(1);
  if (!GROUPLESS_API_PREFIXES.has(prefix)) {
    if (rest.length < 3) return info; // /apis/{group}/{version} is discovery
    info.apiGroup = rest[0] ?? '';
    rest = rest.slice(1);
  }
  info.isResourceRequest = true;
  info.apiVersion = rest[0] ?? '';
  rest = rest.slice(1);

  let verbViaPath = false;
  const head = rest[0] ?? '';
  if (PATH_VERBS.has(head)) {
    // The apiserver answers 500 here ("unable to determine kind and namespace"); keep what is known.
    if (rest.length < 2) return info;
    info.verb = head;
    verbViaPath = true;
    rest = rest.slice(1);
  } else {
    info.verb = METHOD_VERBS.get(method) ?? '';
  }

  if (rest[0] === 'namespaces' && rest.length > 1) {
    info.namespace = rest[1] ?? '';
    // /namespaces/{ns}/status and /finalize are subresources of the namespace itself.
    if (rest.length > 2 && !NAMESPACE_SUBRESOURCES.has(rest[2] ?? '')) rest = rest.slice(2);
  }
  info.parts = rest;
  info.resource = rest[0] ?? '';
  info.name = rest[1] ?? '';
  // proxy takes no subresource: /proxy/namespaces/ns/pods/foo/a/b keeps a/b in parts only.
  if (info.verb !== 'proxy') info.subresource = rest[2] ?? '';

  if (info.name === '' && info.verb === 'get') {
    info.verb = isWatch(values('watch')) ? 'watch' : 'list';
    info.name = nameFromListOptions(values) ?? '';
  }
  if (info.name === '' && info.verb === 'delete') info.verb = 'deletecollection';

  // AuthorizeWithSelectors (beta, on by default since 1.32): the first raw values, unparsed.
  if (!verbViaPath && VERBS_WITH_SELECTORS.has(info.verb)) {
    info.fieldSelector = values('fieldSelector')[0] ?? '';
    info.labelSelector = values('labelSelector')[0] ?? '';
  }
  return info;
}

/**
 * The span name of the contract: `{verb} {resource}[/{subresource}]` for resource requests
 * (`list pods`, `get pods/log`, `create pods/exec`), `{METHOD} {route}` otherwise.
 *
 * Non-resource routes are templates, never raw paths or queries, so names stay low-cardinality:
 * `/`, `/api`, `/apis`, `/version` as they are; `/api/{version}`, `/apis/{group}`,
 * `/apis/{group}/{version}`; `/openapi/v2`, `/openapi/v3`, `/openapi/v3/{path}`; known roots with
 * a tail (`/healthz/{path}`, `/metrics/{path}`, …). An unknown root yields the method alone, as
 * OpenTelemetry's HTTP conventions do when no route is known. The full path is in `url.path`.
 */
export function spanName(info: RequestInfo, method: string): string {
  if (info.isResourceRequest) {
    const verb = info.verb || normalizeMethod(method);
    if (info.resource === '') return verb;
    return info.subresource === '' ? `${verb} ${info.resource}` : `${verb} ${info.resource}/${info.subresource}`;
  }
  const route = nonResourceRoute(splitPath(info.path));
  const normalized = normalizeMethod(method);
  return route === undefined ? normalized : `${normalized} ${route}`;
}

/**
 * Discovery: `/api`, `/api/{version}`, `/apis`, `/apis/{group}`, `/apis/{group}/{version}`,
 * `/openapi` and below, `/version`. Never a resource request.
 */
export function isDiscovery(info: RequestInfo, path: string = info.path): boolean {
  if (info.isResourceRequest) return false;
  const [root, ...rest] = splitPath(path);
  switch (root) {
    case 'api':
      return rest.length <= 1;
    case 'apis':
      return rest.length <= 2;
    case 'openapi':
      return true;
    case 'version':
      return rest.length === 0;
    default:
      return false;
  }
}

/** The contract's RequestInfo attributes; empty values are omitted, `kube.discovery` is always set. */
export function requestInfoAttributes(info: RequestInfo): Attributes {
  const attrs: Attributes = {};
  setAttr(attrs, 'kube.verb', info.verb);
  setAttr(attrs, 'kube.resource', info.resource);
  setAttr(attrs, 'kube.subresource', info.subresource);
  setAttr(attrs, 'kube.name', info.name);
  setAttr(attrs, 'kube.api_group', info.apiGroup);
  setAttr(attrs, 'kube.api_version', info.apiVersion);
  setAttr(attrs, 'k8s.namespace.name', info.namespace);
  attrs['kube.discovery'] = isDiscovery(info);
  return attrs;
}

const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE']);

/** Upper-cased known HTTP method, else `_OTHER` (OpenTelemetry HTTP semantic conventions). */
export function normalizeMethod(method: string): string {
  const upper = method.toUpperCase();
  return KNOWN_METHODS.has(upper) ? upper : '_OTHER';
}

/** Roots whose tail is templated as `{path}`; any other unknown root gets no route at all. */
const NON_RESOURCE_ROOTS = new Set([
  'version',
  'healthz',
  'livez',
  'readyz',
  'metrics',
  'logs',
  'debug',
  'openid',
  '.well-known',
]);

function nonResourceRoute(parts: readonly string[]): string | undefined {
  const [root, ...rest] = parts;
  switch (root) {
    case undefined:
      return '/';
    case 'api':
      return ['/api', '/api/{version}'][rest.length];
    case 'apis':
      return ['/apis', '/apis/{group}', '/apis/{group}/{version}'][rest.length];
    case 'openapi': {
      const [version, ...tail] = rest;
      if (version === 'v2' || version === 'v3') {
        return tail.length === 0 ? `/openapi/${version}` : `/openapi/${version}/{path}`;
      }
      return rest.length === 0 ? '/openapi' : '/openapi/{path}';
    }
    default:
      if (!NON_RESOURCE_ROOTS.has(root)) return undefined;
      return rest.length === 0 ? `/${root}` : `/${root}/{path}`;
  }
}

function splitPath(path: string): string[] {
  const trimmed = path.replace(/^\/+|\/+$/g, '');
  return trimmed === '' ? [] : trimmed.split('/');
}

/** Go's URL.Path: every %XX decoded, %2F included (it then splits as a segment). */
function decodePath(raw: string): string {
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** Go's `url.ParseQuery`: `&`-separated; pairs containing `;` or bad escapes are skipped. */
function goQueryValues(raw: string): QueryValues {
  const map = new Map<string, string[]>();
  for (const pair of raw.split('&')) {
    if (pair === '' || pair.includes(';')) continue;
    const eq = pair.indexOf('=');
    const key = queryUnescape(eq === -1 ? pair : pair.slice(0, eq));
    const value = queryUnescape(eq === -1 ? '' : pair.slice(eq + 1));
    if (key === undefined || value === undefined) continue;
    const list = map.get(key);
    if (list) list.push(value);
    else map.set(key, [value]);
  }
  return (key) => map.get(key) ?? [];
}

function queryUnescape(s: string): string | undefined {
  try {
    return decodeURIComponent(s.replaceAll('+', ' '));
  } catch {
    return undefined;
  }
}

/** runtime.Convert_Slice_string_To_bool: the first value, anything but "0" or "false" is true. */
function isWatch(values: readonly string[]): boolean {
  const first = values[0];
  return first !== undefined && first !== '0' && first.toLowerCase() !== 'false';
}

/**
 * The name a collection GET addresses through `fieldSelector=metadata.name=X` (1.31+), or
 * undefined. As upstream, only when the ListOptions decode succeeds (integer `limit` and
 * `timeoutSeconds`, a parseable field selector) and X is a valid path segment.
 */
function nameFromListOptions(values: QueryValues): string | undefined {
  if (!isInt64Param(values('limit')) || !isInt64Param(values('timeoutSeconds'))) return undefined;
  const selector = values('fieldSelector')[0];
  if (selector === undefined) return undefined;
  const name = exactFieldMatch(selector, 'metadata.name');
  if (name === undefined || name === '.' || name === '..' || /[/%]/.test(name)) return undefined;
  return name;
}

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

/** Absent, or a first value strconv.ParseInt(v, 10, 64) accepts. */
function isInt64Param(values: readonly string[]): boolean {
  const first = values[0];
  if (first === undefined) return true;
  if (!/^[+-]?\d+$/.test(first)) return false;
  const n = BigInt(first);
  return n >= INT64_MIN && n <= INT64_MAX;
}

/**
 * fields.ParseSelector followed by RequiresExactMatch(field): terms split on unescaped commas and
 * sorted; the first `field=v` or `field==v` wins. undefined if there is no such term or the
 * selector does not parse.
 */
function exactFieldMatch(selector: string, field: string): string | undefined {
  let match: string | undefined;
  for (const term of splitTerms(selector).sort()) {
    if (term === '') continue;
    const split = splitTerm(term);
    if (!split) return undefined;
    const [lhs, op, rhs] = split;
    const value = unescapeFieldValue(rhs);
    if (value === undefined) return undefined;
    if (match === undefined && op !== '!=' && lhs === field) match = value;
  }
  return match;
}

const TERM_OPERATORS = ['!=', '==', '='];

/** Splits at the first operator; the left side has no escaping. */
function splitTerm(term: string): [lhs: string, op: string, rhs: string] | undefined {
  for (let i = 0; i < term.length; i++) {
    const op = TERM_OPERATORS.find((o) => term.startsWith(o, i));
    if (op !== undefined) return [term.slice(0, i), op, term.slice(i + op.length)];
  }
  return undefined;
}

/** Splits on commas not escaped by a backslash; escapes stay in the terms. */
function splitTerms(selector: string): string[] {
  if (selector === '') return [];
  const terms: string[] = [];
  let start = 0;
  let escaped = false;
  for (let i = 0; i < selector.length; i++) {
    const c = selector[i];
    if (escaped) escaped = false;
    else if (c === '\\') escaped = true;
    else if (c === ',') {
      terms.push(selector.slice(start, i));
      start = i + 1;
    }
  }
  terms.push(selector.slice(start));
  return terms;
}

/** fields.UnescapeValue: `\\`, `\,`, `\=` only; a bare `,` or `=` or another escape is an error. */
function unescapeFieldValue(s: string): string | undefined {
  let out = '';
  let escaped = false;
  for (const c of s) {
    if (escaped) {
      if (c !== '\\' && c !== ',' && c !== '=') return undefined;
      out += c;
      escaped = false;
    } else if (c === '\\') escaped = true;
    else if (c === ',' || c === '=') return undefined;
    else out += c;
  }
  return escaped ? undefined : out;
}
