/**
 * RequestInfo as the apiserver derives it (apiserver/pkg/endpoints/request/requestinfo.go), enough of it for
 * authorization attributes and for routing the stand-in's handlers. See protocol.md §4.
 */

export interface RequestInfo {
  isResourceRequest: boolean;
  /** The URL path, percent-decoded. */
  path: string;
  verb: string;
  apiPrefix: string;
  apiGroup: string;
  apiVersion: string;
  namespace: string;
  resource: string;
  subresource: string;
  name: string;
  parts: string[];
}

const METHOD_VERBS: Record<string, string> = {
  POST: 'create',
  GET: 'get',
  HEAD: 'get',
  PUT: 'update',
  PATCH: 'patch',
  DELETE: 'delete',
};

/** Whether a `watch` query value asks for a watch: anything but "0" or "false"; empty counts as true. */
function truthyWatch(v: string | null): boolean {
  if (v === null) return false;
  const l = v.toLowerCase();
  return l !== '0' && l !== 'false';
}

/** `metadata.name=X` (or `==`) from a field selector, as RequestInfo derives a name since 1.31. */
export function nameFromFieldSelector(fs: string | null): string {
  if (!fs) return '';
  for (const term of fs.split(',')) {
    const m = /^\s*metadata\.name\s*(==|=)\s*(.*?)\s*$/.exec(term);
    if (m) {
      const v = m[2] ?? '';
      if (v === '' || v === '.' || v === '..' || v.includes('/') || v.includes('%')) return '';
      return v;
    }
  }
  return '';
}

export function requestInfo(method: string, url: URL): RequestInfo {
  const path = decodeURIComponentSafe(url.pathname);
  const info: RequestInfo = {
    isResourceRequest: false,
    path,
    verb: method.toLowerCase(),
    apiPrefix: '',
    apiGroup: '',
    apiVersion: '',
    namespace: '',
    resource: '',
    subresource: '',
    name: '',
    parts: [],
  };
  let parts = path.replace(/^\/+|\/+$/g, '').split('/');
  if (parts.length < 3) return info;
  const prefix = parts[0];
  if (prefix !== 'api' && prefix !== 'apis') return info;
  info.apiPrefix = prefix;
  parts = parts.slice(1);
  if (prefix === 'apis') {
    if (parts.length < 3) return info;
    info.apiGroup = parts[0] ?? '';
    parts = parts.slice(1);
  }
  info.isResourceRequest = true;
  info.apiVersion = parts[0] ?? '';
  parts = parts.slice(1);
  const first = parts[0] ?? '';
  if (first === 'watch' || first === 'proxy') {
    info.verb = first;
    parts = parts.slice(1);
  } else {
    info.verb = METHOD_VERBS[method.toUpperCase()] ?? '';
  }
  if (parts[0] === 'namespaces' && parts.length > 1) {
    info.namespace = parts[1] ?? '';
    if (parts.length > 2 && parts[2] !== 'status' && parts[2] !== 'finalize') parts = parts.slice(2);
  }
  info.parts = parts;
  if (parts.length >= 3 && info.verb !== 'proxy') info.subresource = parts[2] ?? '';
  if (parts.length >= 2) info.name = parts[1] ?? '';
  info.resource = parts[0] ?? '';
  if (info.name === '' && info.verb === 'get') {
    info.verb = truthyWatch(url.searchParams.get('watch')) ? 'watch' : 'list';
    if (info.verb === 'list' || info.verb === 'watch')
      info.name = nameFromFieldSelector(url.searchParams.get('fieldSelector'));
  }
  if (info.name === '' && info.verb === 'delete') info.verb = 'deletecollection';
  return info;
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
