/**
 * URL userinfo (`http://user:password@host`) is a credential: a URL kubetrail prints (the OTLP endpoint in a
 * warning, a trace link, doctor's findings, the background log) shows `***@` in its place, as a proxy-url
 * is shown by its origin. Node built-ins only: the wrapped command's fast path may import it.
 */

/** `url` with any userinfo replaced by `***`; a string that does not parse as a URL is cleaned textually. */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url.replace(/\/\/[^/?#\s]*@/g, '//***@');
  }
  if (u.username === '' && u.password === '') return url;
  // Rebuilt from the parts, not through u.href, so the rest reads as the user wrote it (a trailing slash kept or not).
  const rest = url.slice(url.indexOf('@', url.indexOf('//') + 2) + 1);
  return `${u.protocol}//***@${rest}`;
}

/** Every `scheme://userinfo@` in a line of text (an error message that quotes a URL) with `***` for the userinfo. */
export function redactUserinfo(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^/?#\s@]*@/gi, '$1***@');
}

/** `url` without its userinfo, and the userinfo as a Basic authorization value (for a request that needs it). */
export function splitUserinfo(url: string): { url: string; authorization: string | undefined } {
  const u = new URL(url);
  if (u.username === '' && u.password === '') return { url, authorization: undefined };
  const authorization = `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}`;
  u.username = '';
  u.password = '';
  return { url: u.href, authorization };
}
