/**
 * Which upstream connection carries a request (fidelity, docs/decisions.md "One upstream connection per
 * kubectl connection"). By default every kubectl connection has upstream connections of its own, in its
 * own protocol: an h2 kubectl connection gets one HTTP/2 connection per cluster, stream for stream; an
 * HTTP/1.1 one gets one HTTP/1.1 connection, request for request (and its upgrade). They open when kubectl's
 * connection first needs them and close with it, so every command pays, and shows, the connect and TLS
 * it would pay without kubetrail. With --reuse-upstream, connections are pooled per (cluster, identity)
 * across kubectl connections instead (SharedUpstreams), and the trace says so.
 */
import type { Agent } from 'node:https';
import type { ClientHttp2Session, Settings } from 'node:http2';
import type { Duplex } from 'node:stream';
import type { ClientIdentity, ClusterRoute } from './routing.ts';
import { OwnAgent } from './agents.ts';
import {
  identityKey,
  peerStreamLimit,
  type H2Lease,
  type NewConnection,
  type OwnH2,
  type UpstreamPool,
} from './upstream.ts';

export interface Upstreams {
  /** Connections are shared across kubectl connections (--reuse-upstream). */
  readonly shared: boolean;
  /**
   * A refused or unprocessed HTTP/2 stream is passed to kubectl as REFUSED_STREAM, which sends it again
   * itself (as it would to the apiserver), rather than sent again by kubetrail.
   */
  readonly mirrorsRefusals: boolean;
  /** Whether a request goes upstream as an HTTP/2 stream when the apiserver speaks h2. */
  prefersH2(isSmallWatch: boolean): boolean;
  /** A stream slot; undefined to send the request over HTTP/1.1 (the apiserver chose it). */
  h2For(route: ClusterRoute, identity: ClientIdentity | undefined): Promise<H2Lease | undefined>;
  agentFor(route: ClusterRoute, identity: ClientIdentity | undefined): Agent;
  /** The agent of an upgrade, whose connection becomes the tunnel. */
  upgradeAgentFor(route: ClusterRoute, identity: ClientIdentity | undefined): Agent;
}

/** --reuse-upstream: kubetrail's pools, per (cluster, identity), shared by every kubectl connection. */
export class SharedUpstreams implements Upstreams {
  readonly shared = true;
  readonly mirrorsRefusals = false;
  readonly #pool: UpstreamPool;

  constructor(pool: UpstreamPool) {
    this.#pool = pool;
  }

  prefersH2(isSmallWatch: boolean): boolean {
    // Watches as streams on one connection (memory: docs/decisions.md); everything else on HTTP/1.1.
    return isSmallWatch;
  }

  h2For(route: ClusterRoute, identity: ClientIdentity | undefined): Promise<H2Lease | undefined> {
    return this.#pool.h2For(route, identity);
  }

  agentFor(route: ClusterRoute, identity: ClientIdentity | undefined): Agent {
    return this.#pool.agentFor(route, identity);
  }

  upgradeAgentFor(route: ClusterRoute, identity: ClientIdentity | undefined): Agent {
    // A dedicated, never pooled connection: after a 101 it belongs to this tunnel.
    return this.#pool.agentFor(route, identity, false);
  }
}

/** Handshake times of a socket an HTTP/2 attempt opened and the apiserver answered with http/1.1. */
export const adoptedHandshakes = new WeakMap<Duplex, NewConnection>();

interface OwnH2State {
  conn: OwnH2;
  /** Set once the session is up: later streams reuse it and publish no handshake. */
  up: boolean;
}

/** One kubectl connection's own upstream connections. */
export class OwnUpstreams implements Upstreams {
  readonly shared = false;
  readonly mirrorsRefusals: boolean;
  readonly #pool: UpstreamPool;
  readonly #downstream: 'h2' | 'http/1.1';
  readonly #onUpstreamGone: () => void;
  readonly #onStreamLimit: ((maxConcurrentStreams: number) => void) | undefined;
  readonly #agents = new Map<string, Agent>();
  readonly #h2 = new Map<string, OwnH2State>();
  /** (cluster, identity) whose apiserver chose HTTP/1.1 on this connection. */
  readonly #h1Only = new Set<string>();
  /** Sockets already handed to an agent (several streams may have waited for the same answer). */
  readonly #adopted = new WeakSet<Duplex>();
  #closed = false;

  /**
   * `onUpstreamGone`: an own HTTP/2 connection got a GOAWAY or died; kubectl's connection is closed the
   * same way (gracefully), so that kubectl, as it would, opens a new one for its next requests.
   * `onStreamLimit`: the apiserver's SETTINGS_MAX_CONCURRENT_STREAMS on an own HTTP/2 connection, as it
   * arrives, so kubectl's connection can be given the same limit (and kubectl opens another connection
   * where it would have directly).
   */
  constructor(
    pool: UpstreamPool,
    downstream: 'h2' | 'http/1.1',
    onUpstreamGone: () => void,
    onStreamLimit?: (maxConcurrentStreams: number) => void,
  ) {
    this.#pool = pool;
    this.#downstream = downstream;
    this.#onUpstreamGone = onUpstreamGone;
    this.#onStreamLimit = onStreamLimit;
    this.mirrorsRefusals = downstream === 'h2';
  }

  prefersH2(): boolean {
    return this.#downstream === 'h2';
  }

  async h2For(route: ClusterRoute, identity: ClientIdentity | undefined): Promise<H2Lease | undefined> {
    const key = identityKey(route, identity);
    if (this.#closed || this.#h1Only.has(key)) return undefined;
    let state = this.#h2.get(key);
    if (!state || !state.conn.usable()) {
      const conn = this.#pool.ownH2(route, identity);
      if (!conn) return undefined;
      const s: OwnH2State = { conn, up: false };
      state = s;
      this.#h2.set(key, s);
      conn.ready.then(
        (session) => {
          if (session) {
            s.up = true;
            this.#watch(session, s);
          }
        },
        () => undefined,
      );
    }
    const lease = await state.conn.lease(!state.up);
    // Adopted before the caller sends over HTTP/1.1: its request must find the socket in the agent.
    if (!lease) this.#adopt(key, route, identity, state.conn);
    return lease;
  }

  /** The apiserver chose HTTP/1.1: this connection's agent takes the socket for its first request. */
  #adopt(key: string, route: ClusterRoute, identity: ClientIdentity | undefined, conn: OwnH2): void {
    this.#h1Only.add(key);
    const h1 = conn.h1();
    if (!h1 || this.#adopted.has(h1.socket)) return;
    this.#adopted.add(h1.socket);
    if (this.#closed) {
      h1.socket.destroy();
      return;
    }
    adoptedHandshakes.set(h1.socket, h1.timing);
    const agent = this.agentFor(route, identity);
    if (agent instanceof OwnAgent) agent.adopt(h1.socket);
    else h1.socket.destroy();
  }

  #watch(session: ClientHttp2Session, s: OwnH2State): void {
    const gone = (): void => {
      if (!this.#closed && s.conn === this.#current(s)) this.#onUpstreamGone();
    };
    session.once('goaway', gone);
    session.once('close', gone);
    const limit = this.#onStreamLimit;
    if (limit)
      session.on('remoteSettings', (settings: Settings) => {
        const n = peerStreamLimit(settings);
        if (!this.#closed && s.conn === this.#current(s) && n !== undefined) limit(n);
      });
  }

  /** The state's connection if it is still the one in use for its (cluster, identity). */
  #current(s: OwnH2State): OwnH2 | undefined {
    for (const v of this.#h2.values()) if (v === s) return v.conn;
    return undefined;
  }

  agentFor(route: ClusterRoute, identity: ClientIdentity | undefined): Agent {
    const key = identityKey(route, identity);
    let agent = this.#agents.get(key);
    if (!agent) {
      agent = this.#pool.ownAgent(route, identity);
      this.#agents.set(key, agent);
    }
    return agent;
  }

  upgradeAgentFor(route: ClusterRoute, identity: ClientIdentity | undefined): Agent {
    // kubectl sends an upgrade on a connection of its own: this connection's agent opens the one it becomes.
    return this.agentFor(route, identity);
  }

  /** kubectl's connection closed: so do its upstream connections. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const a of this.#agents.values()) a.destroy();
    for (const s of this.#h2.values()) s.conn.close();
    this.#agents.clear();
    this.#h2.clear();
  }
}
