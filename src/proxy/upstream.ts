/**
 * Connections to the real apiservers. TLS is verified against the cluster's CA (system roots when the
 * kubeconfig names none); verification is off only where the kubeconfig says insecure-skip-tls-verify; an
 * http(s) proxy-url is honoured with CONNECT (agents.ts). A connection opened with one user's certificate
 * is never lent to another user: everything is keyed by (cluster, identity).
 *
 * UpstreamPool makes connections of two kinds, and connection.ts chooses between them: a kubectl
 * connection's own (ownAgent, ownH2: the default, mirroring kubectl's connection and protocol), or shared
 * across kubectl connections (agentFor, h2For: --reuse-upstream, and kubetrail doctor's probes). HTTP/2
 * connections offer `h2` and `http/1.1` by ALPN and live with their streams: pinged while they carry any,
 * closed after H2_IDLE_MS without.
 */
import { connect as h2Connect, type ClientHttp2Session, type Settings } from 'node:http2';
import { Agent as HttpsAgent, type AgentOptions } from 'node:https';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import { connect as tlsConnect, createSecureContext, type ConnectionOptions, type SecureContext } from 'node:tls';
import type { Duplex } from 'node:stream';
import { socketHost } from '../net/host.ts';
import { OwnAgent, ProxiedAgent, tlsOptionsFor } from './agents.ts';
import type { ClientIdentity, ClusterRoute } from './routing.ts';

/** A connection's timing, for the request that waited for it (performance.now() values). */
export interface NewConnection {
  connectEnd: number;
  tlsEnd: number;
}

/** An HTTP/2 connection to one apiserver for one identity, and the streams it carries. */
export interface H2Lease {
  session: ClientHttp2Session;
  /** Set when this request waited for the connection's handshake; absent when it reused an open one. */
  opened?: NewConnection;
  /** Call once when the stream has closed. */
  release(): void;
  /** Take the connection out of the pool for new streams (it refused one); open streams go on. */
  retire(): void;
}

/** One kubectl connection's own HTTP/2 connection to the apiserver (UpstreamPool.ownH2). */
export interface OwnH2 {
  /** The session once up; undefined when the apiserver chose HTTP/1.1. Rejects with the connect error. */
  ready: Promise<ClientHttp2Session | undefined>;
  /** After `ready` resolved undefined: the HTTP/1.1 socket the apiserver chose, and its handshake times. */
  h1(): { socket: Duplex; timing: NewConnection } | undefined;
  /** False once a GOAWAY or a failure retired it. */
  usable(): boolean;
  /** A stream slot (with the handshake times when `waited`); undefined when the apiserver chose HTTP/1.1. */
  lease(waited: boolean): Promise<H2Lease | undefined>;
  close(): void;
}

/**
 * Streams per connection before the apiserver's SETTINGS arrive (RFC 9113 recommends allowing ≥ 100). Also
 * what kubetrail's own HTTP/2 listener advertises until the apiserver's figure is known: kube-apiserver's
 * default (--http2-max-streams-per-connection 0 means 100, k8s.io/apiserver secure_serving.go) and what
 * Go's client assumes before a server's SETTINGS.
 */
export const H2_STREAMS_BEFORE_SETTINGS = 100;
/** An HTTP/2 connection with no stream left is closed after this long (Go's transport: 90 s). */
const H2_IDLE_MS = 60_000;
/**
 * Flow-control windows. 1 MiB per stream: a burst of events crosses a 100 ms link at ~10 MB/s (HTTP/2's
 * default 64 KiB window would allow 640 kB/s; Go's transport, kubectl's own, uses 4 MiB), and a watcher
 * that reads nothing makes kubetrail buffer at most that much for it. 1 GiB per connection, as Go: a
 * watcher that stops reading holds back only its own stream, never its siblings.
 */
const H2_STREAM_WINDOW = 1 << 20;
const H2_CONNECTION_WINDOW = 1 << 30;
/** A connection carrying streams is pinged this often; no answer within H2_PING_TIMEOUT_MS kills it (client-go: 30 s / 15 s). */
const H2_PING_EVERY_MS = 30_000;
const H2_PING_TIMEOUT_MS = 15_000;
/**
 * Header limits as the two Go ends set them, in bytes (never in lines), not Node's 16 KiB default: the
 * kube-apiserver accepts request heads up to 1 MiB (a large OIDC bearer token, a list with thousands of
 * selector terms in its query), and kubectl's client reads response heads up to 10 MiB. A larger request
 * head is answered 431, as the apiserver would; a larger response head fails the request with a 502 Status.
 * The listener (server.ts) and the HTTP/2 upstream connections use them alike: HTTP/2's defaults (64 KiB
 * both ways, 128 header lines) would fail a watch HTTP/1.1 carries.
 */
export const MAX_REQUEST_HEAD_BYTES = 1 << 20;
export const MAX_RESPONSE_HEAD_BYTES = 10 << 20;

interface H2Conn {
  ready: Promise<{ session: ClientHttp2Session; timing: NewConnection } | undefined>;
  /** The apiserver chose HTTP/1.1 on an own connection: its socket, handed to the owner's agent. */
  h1?: { socket: Duplex; timing: NewConnection };
  session?: ClientHttp2Session;
  active: number;
  usable: boolean;
  idle?: NodeJS.Timeout;
  retire: () => void;
  /** Destroy the connection, whatever its state (the pool is shutting down). */
  kill: () => void;
}

export class UpstreamPool {
  readonly #agents = new Map<string, HttpsAgent>();
  readonly #contexts = new Map<string, SecureContext>();
  readonly #h2 = new Map<string, H2Conn[]>();
  /** (cluster, identity) pairs whose apiserver chose HTTP/1.1 when offered h2. */
  readonly #h1Only = new Set<string>();
  /** Every HTTP/2 connection not yet closed, pooled or retired (destroy() ends them all). */
  readonly #allH2 = new Set<H2Conn>();
  #destroyed = false;

  /**
   * One OpenSSL context per (cluster, identity), not per connection: given ca/cert/key, every
   * tls.connect() builds its own (~40 kB of native memory, held for a watch's whole life). Verification,
   * SNI and ALPN stay per connection; without a ca the context trusts the same default roots.
   */
  #contextFor(
    route: ClusterRoute,
    identity: ClientIdentity | undefined,
  ): { secureContext: SecureContext; perConnection: ConnectionOptions } {
    const { ca, cert, key: privateKey, ...perConnection } = tlsOptionsFor(route, identity);
    const key = identityKey(route, identity);
    let secureContext = this.#contexts.get(key);
    if (!secureContext) {
      secureContext = createSecureContext({ ca, cert, key: privateKey });
      this.#contexts.set(key, secureContext);
    }
    return { secureContext, perConnection };
  }

  agentFor(route: ClusterRoute, identity: ClientIdentity | undefined, pooled = true): HttpsAgent {
    const key = `${identityKey(route, identity)}\0${pooled ? 'pool' : 'once'}`;
    let agent = this.#agents.get(key);
    if (!agent) {
      const { secureContext, perConnection } = this.#contextFor(route, identity);
      const options: AgentOptions = {
        ...perConnection,
        secureContext,
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

  /**
   * A stream slot on an HTTP/2 connection to the route's apiserver for this identity, opening one when
   * none has room. Resolves undefined when the apiserver does not speak h2 (or the route goes through a
   * proxy-url): send the request over HTTP/1.1 then. Rejects with the connection's error (refused, TLS...),
   * which the caller reports as it would an HTTP/1.1 connection's.
   */
  async h2For(route: ClusterRoute, identity: ClientIdentity | undefined): Promise<H2Lease | undefined> {
    const key = identityKey(route, identity);
    if (route.proxyUrl || this.#h1Only.has(key) || this.#destroyed) return undefined;
    let conns = this.#h2.get(key);
    if (!conns) this.#h2.set(key, (conns = []));
    let conn = conns.find((c) => c.usable && c.active < streamLimit(c.session));
    let waited = false;
    if (!conn) {
      conn = this.#openH2(key, route, identity);
      conns.push(conn);
      waited = true;
    } else if (!conn.session) {
      waited = true;
    }
    conn.active++;
    if (conn.idle) clearTimeout(conn.idle);
    conn.idle = undefined;
    const c = conn;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      c.active--;
      if (c.active > 0 || !c.session) return;
      if (c.usable) {
        // Out of the pool first: a closing connection must never be handed out.
        c.idle = setTimeout(() => c.retire(), H2_IDLE_MS);
        c.idle.unref();
      } else {
        c.session.close();
      }
    };
    let ready: Awaited<H2Conn['ready']>;
    try {
      ready = await c.ready;
    } catch (err) {
      release();
      throw err;
    }
    if (!ready) {
      release();
      return undefined;
    }
    const lease: H2Lease = { session: ready.session, release, retire: c.retire };
    if (waited) lease.opened = ready.timing;
    return lease;
  }

  #openH2(key: string, route: ClusterRoute, identity: ClientIdentity | undefined, own = false): H2Conn {
    const conn: H2Conn = {
      active: 0,
      usable: true,
      ready: Promise.resolve(undefined),
      retire: () => undefined,
      kill: () => undefined,
    };
    this.#allH2.add(conn);
    let ping: NodeJS.Timeout | undefined;
    const drop = (): void => {
      conn.usable = false;
      if (conn.idle) clearTimeout(conn.idle);
      const list = this.#h2.get(key);
      const i = list?.indexOf(conn) ?? -1;
      if (list && i !== -1) list.splice(i, 1);
      // Retired with no stream left: nothing will ever use it again.
      if (conn.active === 0) conn.session?.close();
    };
    conn.retire = drop;
    const gone = (): void => {
      drop();
      if (ping) clearInterval(ping);
      this.#allH2.delete(conn);
    };
    conn.ready = new Promise((resolve, reject) => {
      const { secureContext, perConnection } = this.#contextFor(route, identity);
      const host = socketHost(route.server.hostname);
      const port = Number(route.server.port || 443);
      let connectEnd: number | undefined;
      // SNI and the name checked: tls-server-name, else the server URL's host name (never an IP), as the
      // HTTP/1.1 agent derives it from the Host header.
      const servername = perConnection.servername ?? (isIP(host) ? undefined : host);
      const socket = tlsConnect({
        ...perConnection,
        ...(servername ? { servername } : {}),
        secureContext,
        host,
        port,
        ALPNProtocols: ['h2', 'http/1.1'],
      });
      socket.setNoDelay(true); // as Go's dialer does, and as upstreamRequest() sets on every HTTP/1.1 socket
      conn.kill = () => socket.destroy();
      socket.once('connect', () => (connectEnd = performance.now()));
      const beforeSession = (err: Error): void => {
        gone();
        reject(err);
      };
      socket.once('error', beforeSession);
      socket.once('close', () => this.#allH2.delete(conn));
      socket.once('secureConnect', () => {
        const tlsEnd = performance.now();
        if (this.#destroyed) {
          gone();
          socket.destroy();
          resolve(undefined);
          return;
        }
        if (socket.alpnProtocol !== 'h2') {
          // This apiserver (or a load balancer in front of it) chose HTTP/1.1: remember, and use the agent.
          // An own connection is not thrown away: kubectl's requests go over it as HTTP/1.1 (see OwnUpstream).
          if (!own) this.#h1Only.add(key);
          gone();
          socket.off('error', beforeSession);
          if (own) conn.h1 = { socket, timing: { connectEnd: connectEnd ?? tlsEnd, tlsEnd } };
          else socket.destroy();
          resolve(undefined);
          return;
        }
        const session = h2Connect(route.server.origin, {
          createConnection: () => socket,
          maxHeaderListPairs: 1 << 20,
          maxSendHeaderBlockLength: MAX_REQUEST_HEAD_BYTES,
          maxSessionMemory: 256,
          settings: {
            enablePush: false,
            initialWindowSize: H2_STREAM_WINDOW,
            maxHeaderListSize: MAX_RESPONSE_HEAD_BYTES,
          },
        });
        session.once('connect', () => session.setLocalWindowSize(H2_CONNECTION_WINDOW));
        conn.session = session;
        conn.kill = () => session.destroy();
        // From here the session owns the socket's errors (it destroys itself with them).
        socket.off('error', beforeSession);
        session.on('error', () => gone());
        session.on('goaway', () => drop());
        session.on('close', () => gone());
        // A connection that died silently (a NAT or LB dropped it) would hang every watch on it: ping it
        // while it carries streams, as client-go does, and kill it when no answer comes.
        ping = setInterval(() => {
          if (conn.active === 0 || session.destroyed) return;
          const timer = setTimeout(
            () => session.destroy(new Error('the apiserver did not answer an HTTP/2 ping')),
            H2_PING_TIMEOUT_MS,
          );
          timer.unref();
          const sent = session.ping((err) => {
            clearTimeout(timer);
            if (err && !session.destroyed) session.destroy(err);
          });
          if (!sent) clearTimeout(timer);
        }, H2_PING_EVERY_MS);
        ping.unref();
        resolve({ session, timing: { connectEnd: connectEnd ?? tlsEnd, tlsEnd } });
      });
    });
    conn.ready.catch(() => undefined);
    return conn;
  }

  /**
   * An HTTP/1.1 agent of one kubectl connection's own (fidelity: never lent to another connection). It
   * keeps its connection alive between that connection's requests; the owner destroys it when kubectl's
   * connection closes. The TLS context is the (cluster, identity)'s shared one.
   */
  ownAgent(route: ClusterRoute, identity: ClientIdentity | undefined): HttpsAgent {
    const { secureContext, perConnection } = this.#contextFor(route, identity);
    const options: AgentOptions = { ...perConnection, secureContext, keepAlive: true, timeout: 0, scheduling: 'lifo' };
    return route.proxyUrl ? new ProxiedAgent(route.proxyUrl, options) : new OwnAgent(options);
  }

  /**
   * An HTTP/2 connection of one kubectl connection's own, opened now, never pooled: resolves a lease
   * factory once it is up, undefined when the apiserver chose HTTP/1.1 (then `h1` holds that socket).
   */
  ownH2(route: ClusterRoute, identity: ClientIdentity | undefined): OwnH2 | undefined {
    if (route.proxyUrl || this.#destroyed) return undefined;
    const conn = this.#openH2(identityKey(route, identity), route, identity, true);
    return {
      ready: conn.ready.then((r) => r?.session),
      h1: () => conn.h1,
      usable: () => conn.usable,
      lease: async (waited: boolean) => {
        conn.active++;
        const ready = await conn.ready.catch((err: unknown) => {
          conn.active--;
          throw err;
        });
        if (!ready) {
          conn.active--;
          return undefined;
        }
        let released = false;
        const lease: H2Lease = {
          session: ready.session,
          release: () => {
            if (released) return;
            released = true;
            conn.active--;
          },
          retire: conn.retire,
        };
        if (waited) lease.opened = ready.timing;
        return lease;
      },
      close: () => conn.kill(),
    };
  }

  destroy(): void {
    for (const agent of this.#agents.values()) agent.destroy();
    this.#agents.clear();
    this.#destroyed = true;
    for (const c of [...this.#allH2]) c.kill();
    this.#allH2.clear();
    this.#h2.clear();
  }
}

/** What connections are keyed by: a connection opened with one identity is never lent to another. */
export function identityKey(route: ClusterRoute, identity: ClientIdentity | undefined): string {
  return `${route.id}\0${identity?.fingerprint ?? 'anonymous'}`;
}

function streamLimit(session: ClientHttp2Session | undefined): number {
  return (session && peerStreamLimit(session.remoteSettings)) ?? H2_STREAMS_BEFORE_SETTINGS;
}

/**
 * The stream limit a peer's SETTINGS set, or undefined while it has set none: before its SETTINGS arrive,
 * and for a SETTINGS frame without that parameter, Node reports the protocol's "unlimited" default.
 */
export function peerStreamLimit(settings: Settings): number | undefined {
  const n = settings.maxConcurrentStreams;
  return n === undefined || n >= 0xffffffff ? undefined : n;
}
