/**
 * The two protocols kubectl speaks to an apiserver, for suites that run once per protocol (#13: kubetrail
 * mirrors kubectl's protocol upstream, so every transparency, fault and security promise must hold on both).
 *
 * `h2` is what kubectl chooses by itself against a server that offers it (the apiserver, kubetrail);
 * `http/1.1` is what it speaks with client-go's DISABLE_HTTP2 set, as behind a proxy or load balancer
 * without h2. Upgrades (exec, attach, port-forward) are HTTP/1.1 connections of their own either way.
 */
export type Protocol = 'h2' | 'http/1.1';

export const PROTOCOLS: readonly Protocol[] = ['h2', 'http/1.1'];

/** kubectl's environment for the protocol (client-go reads DISABLE_HTTP2 when it builds its transport). */
export function protocolEnv(protocol: Protocol): Record<string, string> {
  return protocol === 'h2' ? {} : { DISABLE_HTTP2: '1' };
}

/** Node's `httpVersion` for requests the apiserver receives in that protocol. */
export function httpVersionOf(protocol: Protocol): string {
  return protocol === 'h2' ? '2.0' : '1.1';
}

/** client-go logs that it honoured DISABLE_HTTP2 (a klog info line on every run, direct and through alike). */
export function withoutH2Notice(stderr: string): string {
  return stderr.replace(/^I\d{4} [^\n]* HTTP2 has been explicitly disabled\n/gm, '');
}
