/**
 * Which kubeconfig identity a kubectl connection proved. A presented client certificate maps to a
 * kubeconfig key pair only when its bytes are identical; the TLS handshake has already proved the client
 * holds that certificate's private key. Nothing else ever selects a key pair to present upstream.
 */
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { header, type RawHeaders } from './headers.ts';
import { certFingerprint, type ClientIdentity, type ClusterRoute, type Routes } from './routing.ts';
import type { ProxyAnswer } from './status.ts';

export interface PeerIdentity {
  presented: X509Certificate | undefined;
  identity: ClientIdentity | undefined;
}

/** The identity each client connection proved, computed once per connection. */
export class PeerIdentities {
  readonly #routes: Routes;
  readonly #peers = new WeakMap<object, PeerIdentity>();

  constructor(routes: Routes) {
    this.#routes = routes;
  }

  of(socket: TLSSocket): PeerIdentity {
    let peer = this.#peers.get(socket);
    if (!peer) {
      const presented = socket.getPeerX509Certificate?.();
      const identity = presented ? this.#identityOf(certFingerprint(presented.raw)) : undefined;
      peer = { presented, identity };
      this.#peers.set(socket, peer);
    }
    return peer;
  }

  /** A certificate no identity matches may be a rotated one: the files are checked again, then it is looked up again. */
  #identityOf(fingerprint: string): ClientIdentity | undefined {
    const known = this.#routes.identities.get(fingerprint);
    if (known) return known;
    this.#routes.refreshIdentities?.();
    return this.#routes.identities.get(fingerprint);
  }
}

/** Why a request cannot be forwarded with the identity it has, if it cannot. */
export function refuseIdentity(peer: PeerIdentity, raw: RawHeaders): ProxyAnswer | undefined {
  if (!peer.presented || peer.identity || header(raw, 'authorization') !== undefined) return undefined;
  return {
    code: 401,
    ktCode: 'KT_ERR_CLIENT_CERT',
    message: `kubetrail: the client certificate (${peer.presented.subject.replace(/\n/g, ', ')}) is not one the kubeconfig holds a key for, so kubetrail cannot present it to the apiserver`,
  };
}

/** Neither a client certificate kubetrail holds a key for nor an Authorization header: an anonymous request. */
export function carriesNoCredential(identity: ClientIdentity | undefined, raw: RawHeaders): boolean {
  return identity === undefined && header(raw, 'authorization') === undefined;
}

/** Each route's variant without the proxy-url's userinfo, made once (its id keys its own connections). */
const bareRoutes = new WeakMap<ClusterRoute, ClusterRoute>();

/**
 * The route a request's upstream connection is opened for: an anonymous request (carriesNoCredential)
 * goes through the cluster's proxy-url without the proxy's userinfo, unless a kubeconfig user of the
 * cluster is itself anonymous (ClusterRoute.anonymousUser): any local process can send one, and must not
 * spend the kubeconfig's proxy credentials. The variant has its own id, so its connections are never
 * shared with the credentialed ones.
 */
export function upstreamRoute(
  route: ClusterRoute,
  identity: ClientIdentity | undefined,
  raw: RawHeaders,
): ClusterRoute {
  if (route.proxyUrl === undefined || route.anonymousUser || !carriesNoCredential(identity, raw)) return route;
  const proxy = new URL(route.proxyUrl);
  if (!proxy.username && !proxy.password) return route;
  let bare = bareRoutes.get(route);
  if (!bare) {
    proxy.username = '';
    proxy.password = '';
    bare = { ...route, id: `${route.id}\0anonymous-proxy`, proxyUrl: proxy.href };
    bareRoutes.set(route, bare);
  }
  return bare;
}
