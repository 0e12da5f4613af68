/**
 * IPv6 literals in URLs: `[::1]:8443` in a URL or an address, `::1` for a socket. One place for the
 * brackets, put on and taken off.
 *
 * Node built-ins only: the wrapped command's fast path imports it (eslint.config.js FAST_PATH).
 */

/** A host as it stands in a URL or `host:port`: an IPv6 literal in brackets. */
export function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** A URL's hostname as a socket takes it: an IPv6 literal without its brackets. */
export function socketHost(hostname: string): string {
  return hostname.replace(/^\[|\]$/g, '');
}
