/**
 * A plain (not upgraded) request: route it, check the identity, forward it upstream (forward-http1.ts, or
 * forward-h2.ts for a watch), and relay the answer to kubectl as it comes, tapping the body.
 */
import type { Agent } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { describeError } from '../errors.ts';
import { isDiscovery, parseRequestInfo, type RequestInfo } from '../stages/request-info.ts';
import type { StageObserver } from './events.ts';
import { Exchange, requestFacts } from './exchange.ts';
import { sendWatchOverH2 } from './forward-h2.ts';
import { MAX_RETRIES, sendHttp1 } from './forward-http1.ts';
import { forwardHeaders, header, headBytes, type RawHeaders } from './headers.ts';
import { refuseIdentity, type PeerIdentities } from './identity.ts';
import { relay } from './relay.ts';
import { resolveTarget, type ClientIdentity, type Routes, type Target } from './routing.ts';
import { sendStatus, type ProxyAnswer } from './status.ts';
import type { UpstreamPool } from './upstream.ts';

export interface ForwardContext {
  routes: Routes;
  pool: UpstreamPool;
  peers: PeerIdentities;
  observer: StageObserver | undefined;
  internalError: (err: unknown) => void;
}

/**
 * Watches whose request head is larger than this go over HTTP/1.1, whose limits (1 MiB) are known on both
 * ends: HPACK implementations bound a single header field (nghttp2, Node's: 64 KiB) below what a large
 * label selector in :path can reach.
 */
const H2_MAX_HEAD_BYTES = 32 * 1024;

/** One forwarded request: the client's request and response, where it goes, and its exchange. */
export class HttpForward {
  readonly x: Exchange;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly target: Target;
  readonly info: RequestInfo;
  /** The key pair presented upstream: the kubeconfig's, for the certificate kubectl presented; or none. */
  readonly identity: ClientIdentity | undefined;
  /** The agent for HTTP/1.1 attempts (per cluster and identity). */
  readonly agent: Agent;
  /** The head to send upstream, as kubectl sent it (hop-by-hop headers aside, Host the apiserver's). */
  readonly headers: string[];
  /**
   * Like Go's http.Transport (kubectl's own client), a request without a body that fails on a kept-alive
   * connection before any answer came back is sent again on another connection: the apiserver (or a load
   * balancer) closed the idle connection just as the request went out, and has not seen it.
   */
  readonly replayable: boolean;
  readonly #ctx: ForwardContext;
  readonly #plainText: boolean;
  /** Abandon the upstream attempt in flight (the client went away). */
  cancel: () => void = () => undefined;

  constructor(ctx: ForwardContext, req: IncomingMessage, res: ServerResponse, x: Exchange, target: Target, identity: ClientIdentity | undefined) {
    this.#ctx = ctx;
    this.req = req;
    this.res = res;
    this.x = x;
    this.target = target;
    this.identity = identity;
    this.agent = ctx.pool.agentFor(target.route, identity);
    this.info = parseRequestInfo(x.facts.method, x.facts.path, x.facts.query);
    // Discovery documents (not /version, whose Status kubectl and kubetrail doctor do read) get the message
    // as text: see sendStatus.
    this.#plainText = isDiscovery(this.info) && x.facts.path !== '/version';
    this.headers = forwardHeaders(req.rawHeaders, { keepUpgrade: false, host: target.route.server.host, add: x.added });
    this.replayable = /^(GET|HEAD|OPTIONS)$/.test(req.method ?? '') && header(req.rawHeaders, 'transfer-encoding') === undefined && Number(header(req.rawHeaders, 'content-length') ?? 0) === 0;
  }

  get observer(): StageObserver | undefined {
    return this.#ctx.observer;
  }

  /** kubetrail answers itself (a Status), and the request ends as a proxy error. */
  answer(a: ProxyAnswer): void {
    sendStatus(this.res, a, { plainText: this.#plainText });
    this.x.finish('proxy_error', a);
  }

  /**
   * The upstream failed: before the answer's head, kubectl gets a Status saying why; after it, its
   * connection is cut so it sees a broken stream, never a truncated success.
   */
  upstreamFailed(a: ProxyAnswer): void {
    if (!this.res.headersSent) {
      this.answer(a);
    } else {
      this.res.destroy();
      this.x.finish('upstream_error', a);
    }
  }

  /**
   * Relay an answer's head and body to kubectl, tapping the body for the decode stage. False when the
   * head could not be relayed (kubectl got a 502 Status instead); the caller then drops the body.
   */
  relayResponse(status: number, statusMessage: string | undefined, raw: RawHeaders, body: Readable, sized: boolean, endsCleanly?: () => boolean): boolean {
    // A pod list is counted per phase (stages/decode): kubectl get pods' answer to "why is it Pending".
    const podList = this.info.verb === 'list' && this.info.resource === 'pods' && this.info.subresource === '';
    this.x.responded(status, raw, { isWatch: this.info.verb === 'watch', podList });
    try {
      this.res.writeHead(status, statusMessage, forwardHeaders(raw, { keepUpgrade: false }));
    } catch (err) {
      this.#ctx.internalError(err);
      body.destroy();
      this.answer({ code: 502, ktCode: 'KT_ERR_UPSTREAM', message: `kubetrail: the apiserver sent a header kubetrail cannot relay: ${describeError(err)}` });
      return false;
    }
    // A stream (no Content-Length: watches, logs -f, chunked lists) gets its head at once; a sized answer's
    // head goes out with its first body bytes, in one TLS record and one write instead of two.
    if (!sized) this.res.flushHeaders();
    relay(body, this.res, (chunk) => this.x.down(chunk), endsCleanly);
    return true;
  }

  /** Send the request upstream: a watch as an HTTP/2 stream where it fits, anything else over HTTP/1.1. */
  send(): void {
    if (this.replayable && this.info.verb === 'watch' && headBytes(this.req.rawHeaders, this.target.upstreamPath) <= H2_MAX_HEAD_BYTES) {
      sendWatchOverH2(this, this.#ctx.pool, MAX_RETRIES);
    } else {
      sendHttp1(this, MAX_RETRIES);
    }
  }
}

export function forwardRequest(ctx: ForwardContext, req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? '/';
  const socket = req.socket as TLSSocket;
  const target = resolveTarget(ctx.routes, url, socket.servername);
  if (!target) {
    sendStatus(res, {
      code: 404,
      ktCode: 'KT_ERR_NO_ROUTE',
      message: `kubetrail: no cluster route for ${url.split('?')[0]}; use the kubeconfig kubetrail wrote`,
    });
    return;
  }
  const peer = ctx.peers.of(socket);
  const refused = refuseIdentity(peer, req.rawHeaders);
  const x = new Exchange(ctx.observer, requestFacts(req, target, peer, false), { progress: true });
  const f = new HttpForward(ctx, req, res, x, target, peer.identity);
  if (refused) {
    req.resume();
    f.answer(refused);
    return;
  }
  f.send();
  // The client went away (kubectl ^C, a watch cancelled): close the upstream request too.
  res.on('close', () => {
    if (!res.writableFinished) {
      f.cancel();
      x.finish('client_abort');
    }
  });
}
