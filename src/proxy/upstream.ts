/**
 * Connections to the real apiservers. One keep-alive pool per (cluster, client identity): a connection
 * opened with one user's certificate is never lent to another user. TLS is verified against the cluster's
 * CA (system roots when the kubeconfig names none); verification is off only where the kubeconfig says
 * insecure-skip-tls-verify. An http(s) proxy-url is honoured with CONNECT.
 */
import { Agent as HttpsAgent, type AgentOptions } from 'node:https';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect, createSecureContext, type ConnectionOptions } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { ClientIdentity, ClusterRoute } from '../kubeconfig/rewrite.ts';

export function tlsOptionsFor(route: ClusterRoute, identity: ClientIdentity | undefined): ConnectionOptions {
  const opts: ConnectionOptions = {
    rejectUnauthorized: !route.insecureSkipTlsVerify,
    // Upstream speaks HTTP/1.1 to us: the agent pools h1 connections, and upgrades need h1 anyway.
    ALPNProtocols: ['http/1.1'],
  };
  if (route.caPem && !route.insecureSkipTlsVerify) opts.ca = route.caPem;
  if (route.tlsServerName) opts.servername = route.tlsServerName;
  if (identity) {
    opts.cert = identity.certPem;
    opts.key = identity.keyPem;
  }
  return opts;
}

type OnCreate = (err: Error | null, socket?: Duplex) => void;

/** Open a TLS connection to the apiserver through an HTTP(S) CONNECT proxy. */
function connectViaProxy(proxyUrl: string, options: ConnectionOptions & { host?: string; port?: number }, oncreate: OnCreate): void {
  const proxy = new URL(proxyUrl);
  const target = `${options.host}:${options.port}`;
  const headers: Record<string, string> = { host: target };
  if (proxy.username) {
    headers['proxy-authorization'] = `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}`;
  }
  const req = (proxy.protocol === 'https:' ? httpsRequest : httpRequest)({
    host: proxy.hostname,
    port: proxy.port || (proxy.protocol === 'https:' ? 443 : 80),
    method: 'CONNECT',
    path: target,
    headers,
  });
  req.once('connect', (res, socket) => {
    if (res.statusCode !== 200) {
      socket.destroy();
      oncreate(new Error(`proxy-url ${proxy.host} answered CONNECT with ${res.statusCode}`));
      return;
    }
    const tls = tlsConnect({ ...options, socket });
    oncreate(null, tls);
  });
  req.once('error', (err) => oncreate(err));
  req.end();
}

class ProxiedAgent extends HttpsAgent {
  readonly #proxyUrl: string;

  constructor(proxyUrl: string, options: AgentOptions) {
    super(options);
    this.#proxyUrl = proxyUrl;
  }

  override createConnection(options: ConnectionOptions, oncreate: OnCreate): undefined {
    connectViaProxy(this.#proxyUrl, options, oncreate);
    return undefined;
  }
}

export class UpstreamPool {
  readonly #agents = new Map<string, HttpsAgent>();

  agentFor(route: ClusterRoute, identity: ClientIdentity | undefined, pooled = true): HttpsAgent {
    const key = `${route.id}\0${identity?.fingerprint ?? 'anonymous'}\0${pooled ? 'pool' : 'once'}`;
    let agent = this.#agents.get(key);
    if (!agent) {
      // One OpenSSL context per (cluster, identity), not per connection: given ca/cert/key, every
      // tls.connect() builds its own (~40 kB of native memory, held for a watch's whole life). Verification,
      // SNI and ALPN stay per connection; without a ca the context trusts the same default roots.
      const { ca, cert, key: privateKey, ...perConnection } = tlsOptionsFor(route, identity);
      const options: AgentOptions = {
        ...perConnection,
        secureContext: createSecureContext({ ca, cert, key: privateKey }),
        keepAlive: pooled,
        // Watches and log streams stay open for up to an hour: never time a socket out from our side.
        timeout: 0,
        scheduling: 'lifo',
      };
      agent = route.proxyUrl ? new ProxiedAgent(route.proxyUrl, options) : new HttpsAgent(options);
      this.#agents.set(key, agent);
    }
    return agent;
  }

  destroy(): void {
    for (const agent of this.#agents.values()) agent.destroy();
    this.#agents.clear();
  }
}
