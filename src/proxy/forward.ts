/**
 * A plain (not upgraded) request, from kubectl over HTTP/1.1 or HTTP/2: route it, check the identity,
 * forward it upstream on the connection connection.ts chooses (forward-http1.ts or forward-h2.ts), and
 * relay the answer to kubectl as it comes, tapping the body.
 */
import type { Agent } from 'node:https';
import { constants as h2c } from 'node:http2';
import type { Readable } from 'node:stream';
import { describeError } from '../errors.ts';
import { isDiscovery, type RequestInfo } from '../stages/request-info.ts';
import type { Upstreams } from './connection.ts';
import type { StageObserver } from './events.ts';
import {
  downstreamHead,
  Exchange,
  isH2Response,
  requestFacts,
  type DownstreamHead,
  type DownstreamRequest,
  type DownstreamResponse,
} from './exchange.ts';
import { sendOverH2 } from './forward-h2.ts';
import { MAX_RETRIES, sendHttp1 } from './forward-http1.ts';
import { forwardHeaders, h2ResponseHeaders, header, headBytes, type RawHeaders } from './headers.ts';
import { refuseIdentity, upstreamRoute, type PeerIdentities } from './identity.ts';
import { relay } from './relay.ts';
import { resolveTarget, type ClientIdentity, type ClusterRoute, type Routes, type Target } from './routing.ts';
import { sendStatus, type ProxyAnswer } from './status.ts';

export interface ForwardContext {
  routes: Routes;
  peers: PeerIdentities;
  /** The upstream connections a request may use: its kubectl connection's own, or the shared pools. */
  upstreamsOf: (req: DownstreamRequest) => Upstreams;
  observer: StageObserver | undefined;
  internalError: (err: unknown) => void;
}

/**
 * Watches whose request head is larger than this go over HTTP/1.1 when kubetrail chooses the protocol
 * (--reuse-upstream), whose limits (1 MiB) are known on both ends: HPACK implementations bound a single
 * header field (nghttp2, Node's: 64 KiB) below what a large label selector in :path can reach.
 */
const H2_MAX_HEAD_BYTES = 32 * 1024;

/** One forwarded request: the client's request and response, where it goes, and its exchange. */
export class HttpForward {
  readonly x: Exchange;
  readonly req: DownstreamRequest;
  readonly res: DownstreamResponse;
  readonly head: DownstreamHead;
  readonly target: Target;
  readonly info: RequestInfo;
  readonly upstreams: Upstreams;
  /** The key pair presented upstream: the kubeconfig's, for the certificate kubectl presented; or none. */
  readonly identity: ClientIdentity | undefined;
  /** The route its upstream connection is opened for (identity.ts upstreamRoute: an anonymous request's has no proxy credentials). */
  readonly upstreamRoute: ClusterRoute;
  /** The head to send upstream, as kubectl sent it (hop-by-hop headers aside, Host the apiserver's). */
  readonly headers: string[];
  /** The request has a body to relay (HTTP/2: its HEADERS frame did not end the stream). */
  readonly hasBody: boolean;
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
  /** When an HTTP/2 attempt asked for its connection (an answer of http/1.1 hands that socket on). */
  h2AskedAt: number | undefined;

  constructor(
    ctx: ForwardContext,
    req: DownstreamRequest,
    res: DownstreamResponse,
    head: DownstreamHead,
    x: Exchange,
    target: Target,
    identity: ClientIdentity | undefined,
  ) {
    this.#ctx = ctx;
    this.req = req;
    this.res = res;
    this.head = head;
    this.x = x;
    this.target = target;
    this.identity = identity;
    this.upstreamRoute = upstreamRoute(target.route, identity, head.raw);
    this.upstreams = ctx.upstreamsOf(req);
    this.info = x.facts.info;
    // Discovery documents (not /version, whose Status kubectl and kubetrail doctor do read) get the message
    // as text: see sendStatus.
    this.#plainText = isDiscovery(this.info) && x.facts.path !== '/version';
    this.headers = forwardHeaders(head.raw, { keepUpgrade: false, host: target.route.server.host, add: x.added });
    const declaresBody =
      header(head.raw, 'transfer-encoding') !== undefined || Number(header(head.raw, 'content-length') ?? 0) !== 0;
    this.hasBody = 'stream' in req ? !req.stream.endAfterHeaders : declaresBody;
    this.replayable = /^(GET|HEAD|OPTIONS)$/.test(head.method) && !declaresBody;
  }

  get agent(): Agent {
    return this.upstreams.agentFor(this.upstreamRoute, this.identity);
  }

  /** kubetrail answers itself (a Status), and the request ends as a proxy error. */
  answer(a: ProxyAnswer): void {
    sendStatus(this.res, a, { plainText: this.#plainText });
    this.x.finish('proxy_error', a);
  }

  /**
   * Break kubectl's response so it sees a failure, never a truncated success: on HTTP/1.1 the connection
   * is cut; on HTTP/2 the stream is reset (with the apiserver's own code, when it reset its stream).
   */
  cut(code?: number): void {
    const res = this.res;
    if (isH2Response(res)) {
      if (!res.stream.destroyed) res.stream.close(code || h2c.NGHTTP2_INTERNAL_ERROR);
    } else {
      res.destroy();
    }
  }

  /**
   * kubectl is gone (its stream or connection closed): an upstream failure that follows is the teardown of
   * kubectl's own connection (connection.ts closes it with kubectl's), so the request ends as kubectl's abort.
   */
  get clientGone(): boolean {
    const res = this.res;
    return isH2Response(res) ? res.stream.destroyed : res.destroyed || this.head.socket.destroyed;
  }

  /** The code kubectl reset its HTTP/2 stream with, if it did. */
  get clientResetCode(): number | undefined {
    return isH2Response(this.res) ? this.res.stream.rstCode : undefined;
  }

  /**
   * The upstream failed: before the answer's head, kubectl gets a Status saying why; after it, its
   * response is cut so it sees a broken stream, never a truncated success.
   */
  upstreamFailed(a: ProxyAnswer): void {
    if (this.clientGone) {
      this.x.finish('client_abort');
    } else if (!this.res.headersSent) {
      this.answer(a);
    } else {
      this.cut();
      this.x.finish('upstream_error', a);
    }
  }

  /**
   * Relay an answer's head and body to kubectl, tapping the body for the decode stage. False when the
   * head could not be relayed (kubectl got a 502 Status instead); the caller then drops the body.
   * `cutWith`: the code to reset kubectl's stream with when the body does not end cleanly.
   */
  relayResponse(
    status: number,
    statusMessage: string | undefined,
    raw: RawHeaders,
    body: Readable,
    sized: boolean,
    endsCleanly?: () => boolean,
    cutWith?: () => number | undefined,
  ): boolean {
    // A pod list is counted per phase (stages/decode): kubectl get pods' answer to "why is it Pending".
    const podList = this.info.verb === 'list' && this.info.resource === 'pods' && this.info.subresource === '';
    const res = this.res;
    this.x.responded(status, raw, { isWatch: this.info.verb === 'watch', podList, client: res });
    try {
      const headers = forwardHeaders(raw, { keepUpgrade: false });
      if (isH2Response(res)) {
        // HTTP/2 has no reason phrase, and Node would add a Date the apiserver did not send.
        res.sendDate = false;
        res.writeHead(status, h2ResponseHeaders(headers));
      } else {
        res.writeHead(status, statusMessage, headers);
      }
    } catch (err) {
      this.#ctx.internalError(err);
      body.destroy();
      this.answer({
        code: 502,
        ktCode: 'KT_ERR_UPSTREAM',
        message: `kubetrail: the apiserver sent a header kubetrail cannot relay: ${describeError(err)}`,
      });
      return false;
    }
    // A stream (no Content-Length: watches, logs -f, chunked lists) gets its head at once; a sized answer's
    // head goes out with its first body bytes, in one TLS record and one write instead of two.
    // (HTTP/2's writeHead sends the head at once.)
    if (!sized && !isH2Response(res)) res.flushHeaders();
    relay(
      body,
      res,
      (chunk) => this.x.down(chunk),
      endsCleanly,
      () => this.cut(cutWith?.()),
    );
    return true;
  }

  /** Send the request upstream, in the protocol connection.ts chooses for it. */
  send(): void {
    const smallWatch =
      this.replayable &&
      this.info.verb === 'watch' &&
      headBytes(this.head.raw, this.target.upstreamPath) <= H2_MAX_HEAD_BYTES;
    if (this.upstreams.prefersH2(smallWatch)) sendOverH2(this, MAX_RETRIES);
    else sendHttp1(this, MAX_RETRIES);
  }
}

export function forwardRequest(ctx: ForwardContext, req: DownstreamRequest, res: DownstreamResponse): void {
  const head = downstreamHead(req);
  const target = resolveTarget(ctx.routes, head.url, head.socket.servername);
  if (!target) {
    sendStatus(res, {
      code: 404,
      ktCode: 'KT_ERR_NO_ROUTE',
      message: `kubetrail: no cluster route for ${head.url.split('?')[0]}; use the kubeconfig kubetrail wrote`,
    });
    return;
  }
  const peer = ctx.peers.of(head.socket);
  const refused = refuseIdentity(peer, head.raw);
  const upstreamShared = ctx.upstreamsOf(req).shared;
  const x = new Exchange(
    ctx.observer,
    requestFacts(head, target, peer, { upgrade: false, upstreamShared, observer: ctx.observer }),
    { progress: true },
  );
  const f = new HttpForward(ctx, req, res, head, x, target, peer.identity);
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
