/**
 * The HTTP/1.1 agents that open kubetrail's TLS connections to an apiserver, with the options a route and
 * an identity give them: the cluster's CA (or the system roots), tls-server-name, the client certificate
 * kubectl proved it holds, and an http(s) proxy-url's CONNECT. UpstreamPool (upstream.ts) decides which
 * agent a request gets; this file only knows how a connection is made.
 */
import { Agent as HttpsAgent, type AgentOptions } from 'node:https';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { ClientIdentity, ClusterRoute } from './routing.ts';

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
function connectViaProxy(
  proxyUrl: string,
  options: ConnectionOptions & { host?: string; port?: number },
  oncreate: OnCreate,
): void {
  const proxy = new URL(proxyUrl);
  const target = `${options.host}:${options.port}`;
  const headers: Record<string, string> = { host: target };
  if (proxy.username) {
    headers['proxy-authorization'] =
      `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}`;
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

/**
 * An own connection's HTTP/1.1 agent. `adopt` gives it a socket already connected (an HTTP/2 attempt the
 * apiserver answered with http/1.1): its first request goes over that one instead of a new connection.
 */
export class OwnAgent extends HttpsAgent {
  #spare: Duplex | undefined;

  adopt(socket: Duplex): void {
    this.#spare = socket;
  }

  override createConnection(options: ConnectionOptions, oncreate: OnCreate): Duplex | undefined {
    const spare = this.#spare;
    this.#spare = undefined;
    if (spare && !spare.destroyed) {
      oncreate(null, spare);
      return undefined;
    }
    return super.createConnection(options, oncreate) as Duplex | undefined;
  }

  override destroy(): void {
    this.#spare?.destroy();
    this.#spare = undefined;
    super.destroy();
  }
}

/** An agent whose connections go through the route's proxy-url (CONNECT), TLS inside the tunnel. */
export class ProxiedAgent extends HttpsAgent {
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
