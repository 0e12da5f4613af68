/**
 * A request's path as the apiserver will see it. kubectl never sends dot segments or an absolute-form
 * request line, but any local process can: `/c/<id>/../../../api` must not climb out of the route into the
 * server URL's own path prefix (a Rancher-style `https://host/k8s/clusters/c-xxx`), and what goes upstream
 * is always origin-form (`/path?query`), the only form an apiserver behind a path prefix is asked for.
 * Pure: strings in, strings out.
 */

/** `url` in origin form: an absolute-form request line (`https://host/path?q`) gives its path and query; undefined for anything else that does not start with `/` (`*`, authority form). */
export function originForm(url: string): string | undefined {
  if (url.startsWith('/')) return url;
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) return undefined;
  try {
    const u = new URL(url);
    return `${u.pathname}${u.search}`;
  } catch {
    return undefined;
  }
}

/** A segment that a server decoding %2e reads as `.` or `..`. */
function dotSegment(segment: string): '.' | '..' | undefined {
  const s = segment.replace(/%2e/gi, '.');
  return s === '.' || s === '..' ? s : undefined;
}

/**
 * RFC 3986 remove_dot_segments on a rooted path, with `..` never going above the root (here: the route's
 * root): `/two/../../../api` → `/api`, `/api/./v1/` → `/api/v1/`. Percent-encoded dots count as dots, as
 * Go's URL parser (the apiserver's) decodes them. Other segments, empty ones and encoded slashes included,
 * are kept as they are.
 */
export function removeDotSegments(path: string): string {
  // The common case, every kubectl request: no segment starts with a dot.
  if (!/\/(\.|%2e)/i.test(path)) return path;
  const input = path.split('/').slice(1);
  const out: string[] = [];
  input.forEach((segment, i) => {
    const dot = dotSegment(segment);
    const last = i === input.length - 1;
    if (dot === '..') out.pop();
    if (dot === undefined) out.push(segment);
    // A trailing dot segment leaves a trailing slash (`/api/v1/..` → `/api/`), as RFC 3986 does.
    else if (last) out.push('');
  });
  return `/${out.join('/')}`;
}
