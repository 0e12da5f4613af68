/**
 * The listener and the forwarding path. kubectl speaks TLS to us (kubetrail's local CA); every request is
 * forwarded as it came — method, path, query, headers (hop-by-hop ones aside), body — to the cluster its
 * route names, and the answer is relayed as it comes: status, headers and body bytes unchanged, streamed
 * both ways. HTTP/1.1 upgrades (WebSocket and SPDY: exec, attach, cp, port-forward) get a dedicated upstream
 * connection and a raw tunnel; a non-101 answer is relayed verbatim so kubectl's fallback works.
 *
 * The core publishes stage events (events.ts) and never imports telemetry.
 */
import type { X509Certificate } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import type { ClientRequest, IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { constants as h2c, type ClientHttp2Stream } from 'node:http2';
import { createServer, request as httpsRequest, type Agent, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex, Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { describeError, type ErrorCode } from '../errors.ts';
import { certFingerprint, parseServerName, ROUTE_PREFIX, type ClientIdentity, type ClusterRoute, type Routes } from '../kubeconfig/rewrite.ts';
import type { LocalPki } from '../pki/local-ca.ts';
import { authAttributes } from '../stages/auth.ts';
import { isDiscovery, parseRequestInfo } from '../stages/request-info.ts';
import { PROGRESS_INTERVAL_MS, type Outcome, type RequestEnd, type RequestStart, type ResponseStart, type StageObserver } from './events.ts';
import { relay } from './relay.ts';
import { createResponseTap, type ResponseTap } from './tap.ts';
import { sendStatus, sendStatusRaw, type ProxyAnswer } from './status.ts';
import { MAX_REQUEST_HEAD_BYTES, MAX_RESPONSE_HEAD_BYTES, UpstreamPool, type H2Lease } from './upstream.ts';

export interface ProxyOptions {
  routes: Routes;
  pki: LocalPki;
  host: string;
  port: number;
  observer?: StageObserver | undefined;
  /** Called for failures inside kubetrail itself (never with a secret). */
  onInternalError?: (err: unknown) => void;
  /**
   * Control requests the core does not answer itself (`subpath` is the path after CONTROL_PREFIX, without
   * the query): return true when handled. The CLI's background kubetrail answers its wrappers here.
   */
  onControl?: (subpath: string, req: IncomingMessage, res: ServerResponse) => boolean;
}

export interface RunningProxy {
  server: Server;
  url: string;
  port: number;
  close(): Promise<void>;
}

export const CONTROL_PREFIX = '/.kubetrail/v1/';

/**
 * Header limits as the two Go ends set them, in bytes (never in lines), not Node's 16 KiB default: the
 * kube-apiserver accepts request heads up to 1 MiB (a large OIDC bearer token, a list with thousands of
 * selector terms in its query), and kubectl's client reads response heads up to 10 MiB. A larger request
 * head is answered 431, as the apiserver would; a larger response head fails the request with a 502 Status.
 * The HTTP/2 upstream connections (upstream.ts) use the same limits.
 */
export { MAX_REQUEST_HEAD_BYTES, MAX_RESPONSE_HEAD_BYTES };

/** The upstream went away after the answer's head: kubectl's connection is cut, and the span says this. */
const CLOSED_MID_RESPONSE: ProxyAnswer = { code: 502, ktCode: 'KT_ERR_UPSTREAM', message: 'kubetrail: the apiserver closed the connection mid-response' };

/** Times a bodiless request is sent again after its kept-alive upstream connection was closed under it. */
const MAX_RETRIES = 2;

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade', 'proxy-authenticate', 'proxy-authorization']);

/** Copy raw headers (order, case and duplicates kept) minus hop-by-hop ones; optionally replace Host. */
function forwardHeaders(raw: string[], opts: { keepUpgrade: boolean; host?: string; add?: Record<string, string> }): string[] {
  const drop = new Set(HOP_BY_HOP);
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]?.toLowerCase() === 'connection') {
      for (const token of (raw[i + 1] ?? '').split(',')) drop.add(token.trim().toLowerCase());
    }
  }
  if (opts.keepUpgrade) {
    drop.delete('connection');
    drop.delete('upgrade');
  }
  const out: string[] = [];
  let hostSeen = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] ?? '';
    const lower = name.toLowerCase();
    if (drop.has(lower)) continue;
    if (lower === 'host' && opts.host !== undefined) {
      if (!hostSeen) out.push(name, opts.host);
      hostSeen = true;
      continue;
    }
    if (opts.add && Object.keys(opts.add).some((k) => k.toLowerCase() === lower)) continue;
    out.push(name, raw[i + 1] ?? '');
  }
  if (opts.host !== undefined && !hostSeen) out.unshift('Host', opts.host);
  for (const [k, v] of Object.entries(opts.add ?? {})) out.push(k, v);
  return out;
}

/**
 * Watches whose request head is larger than this go over HTTP/1.1, whose limits (1 MiB) are known on both
 * ends: HPACK implementations bound a single header field (nghttp2, Node's: 64 KiB) below what a large
 * label selector in :path can reach.
 */
const H2_MAX_HEAD_BYTES = 32 * 1024;

function headBytes(raw: string[], path: string): number {
  let n = path.length;
  for (const h of raw) n += h.length;
  return n;
}

/**
 * Headers HTTP/2 forbids (RFC 9113 §8.2.2) that forwardHeaders leaves in (it drops the hop-by-hop ones:
 * Connection, Keep-Alive, TE, Upgrade...); Host becomes :authority.
 */
const NOT_ON_H2 = new Set(['host', 'transfer-encoding', 'http2-settings']);

/** kubectl's request head, as forwardHeaders makes it for HTTP/1.1, as an HTTP/2 request head. */
function h2RequestHeaders(raw: string[], method: string, path: string): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':method': method, ':path': path };
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    if (name === 'host') out[':authority'] = value;
    if (NOT_ON_H2.has(name)) continue;
    const prev = out[name];
    out[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [String(prev), value];
  }
  return out;
}

/** An HTTP/2 answer's headers as a raw list (for a Node without the raw list on 'response'). */
function h2RawHeaders(h: IncomingHttpHeaders): string[] {
  const out: string[] = [];
  for (const [name, value] of Object.entries(h)) {
    if (name.startsWith(':') || value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) out.push(name, String(v));
  }
  return out;
}

function header(raw: string[], name: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === name) return raw[i + 1];
  return undefined;
}

function headerAll(raw: string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === name) out.push(raw[i + 1] ?? '');
  return out;
}

function responseFacts(status: number, raw: string[]): ResponseStart {
  return {
    t: performance.now(),
    statusCode: status,
    contentType: header(raw, 'content-type'),
    contentEncoding: header(raw, 'content-encoding'),
    auditId: header(raw, 'audit-id'),
    flowSchemaUid: header(raw, 'x-kubernetes-pf-flowschema-uid'),
    priorityLevelUid: header(raw, 'x-kubernetes-pf-prioritylevel-uid'),
    retryAfter: header(raw, 'retry-after'),
    warnings: headerAll(raw, 'warning'),
  };
}

interface Target {
  route: ClusterRoute;
  path: string;
  query: string;
  /** Path and query to send upstream, with the server URL's own path prefix. */
  upstreamPath: string;
}

function resolveTarget(routes: Routes, url: string, servername: string | false | undefined): Target | undefined {
  if (!url.startsWith(ROUTE_PREFIX)) {
    // A server-relative request (kubectl get --raw, OpenAPI v3 serverRelativeURL): route by SNI and
    // forward the path as kubectl sent it, as it would reach the apiserver without kubetrail.
    const id = parseServerName(servername)?.routeId;
    const route = id === undefined ? undefined : routes.clusters.get(id);
    if (!route) return undefined;
    const q = url.indexOf('?');
    return { route, path: q === -1 ? url : url.slice(0, q), query: q === -1 ? '' : url.slice(q + 1), upstreamPath: url };
  }
  const q = url.indexOf('?');
  const pathPart = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q + 1);
  const rest = pathPart.slice(ROUTE_PREFIX.length);
  const slash = rest.indexOf('/');
  const id = slash === -1 ? rest : rest.slice(0, slash);
  const route = routes.clusters.get(id);
  if (!route) return undefined;
  const path = slash === -1 ? '/' : rest.slice(slash);
  const base = route.server.pathname.replace(/\/+$/, '');
  return { route, path, query, upstreamPath: `${base}${path}${q === -1 ? '' : `?${query}`}` };
}

interface PeerIdentity {
  presented: X509Certificate | undefined;
  identity: ClientIdentity | undefined;
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

export async function startProxy(opts: ProxyOptions): Promise<RunningProxy> {
  const pool = new UpstreamPool();
  const observer = opts.observer;
  const internalError = opts.onInternalError ?? (() => undefined);
  const peers = new WeakMap<object, PeerIdentity>();
  const openSockets = new Set<Duplex>();

  /** The request to the apiserver, as kubectl sent it (method, path, headers), on the given agent. */
  function upstreamRequest(agent: Agent, facts: RequestStart, target: Target, headers: OutgoingHttpHeaders): ClientRequest {
    const up = httpsRequest({
      agent,
      host: facts.upstream.host,
      port: facts.upstream.port,
      method: facts.method,
      path: target.upstreamPath,
      headers,
      setHost: false,
      maxHeaderSize: MAX_RESPONSE_HEAD_BYTES,
    });
    // Node keeps only the first 2,000 header lines by default and drops the rest silently; Go counts
    // bytes, not lines. The byte limit above bounds the head.
    up.maxHeadersCount = 0;
    return up;
  }

  /** Publish the connect and TLS times of a new upstream connection once its handshake is done. */
  function timeNewConnection(socket: Duplex, id: string, t: number): void {
    let connectEnd: number | undefined;
    socket.once('connect', () => (connectEnd = performance.now()));
    socket.once('secureConnect', () => observer?.onUpstreamConnected(id, { t, reused: false, connectEnd: connectEnd ?? t, tlsEnd: performance.now() }));
  }

  function peerOf(socket: Socket): PeerIdentity {
    let peer = peers.get(socket);
    if (!peer) {
      const presented = (socket as TLSSocket).getPeerX509Certificate?.();
      // A presented certificate maps to a kubeconfig key pair only when its bytes are identical; the TLS
      // handshake has already proved the client holds that certificate's private key.
      const identity = presented ? opts.routes.identities.get(certFingerprint(presented.raw)) : undefined;
      peer = { presented, identity };
      peers.set(socket, peer);
    }
    return peer;
  }

  /** Why this request cannot be forwarded with the identity it has, if it cannot. */
  function refuseIdentity(peer: PeerIdentity, raw: string[]): ProxyAnswer | undefined {
    if (!peer.presented || peer.identity || header(raw, 'authorization') !== undefined) return undefined;
    return {
      code: 401,
      ktCode: 'KT_ERR_CLIENT_CERT',
      message: `kubetrail: the client certificate (${peer.presented.subject.replace(/\n/g, ', ')}) is not one the kubeconfig holds a key for, so kubetrail cannot present it to the apiserver`,
    };
  }

  function startFacts(req: IncomingMessage, t: Target, peer: PeerIdentity, upgrade: boolean): RequestStart {
    const raw = req.rawHeaders;
    const subject = peer.presented ? parseSubject(peer.presented.subject) : undefined;
    return {
      id: randomUUID(),
      startedAt: Date.now(),
      t0: performance.now(),
      method: req.method ?? 'GET',
      path: t.path,
      query: t.query,
      cluster: t.route.name,
      upstream: { host: t.route.server.hostname.replace(/^\[|\]$/g, ''), port: Number(t.route.server.port || 443) },
      upgrade,
      userAgent: header(raw, 'user-agent'),
      kubectlCommand: header(raw, 'kubectl-command'),
      kubectlSession: header(raw, 'kubectl-session'),
      commandTag: parseServerName((req.socket as TLSSocket).servername)?.tag,
      clientAuditId: header(raw, 'audit-id'),
      auth: authAttributes({
        authorization: header(raw, 'authorization'),
        clientCert: subject,
        clientCertForwarded: peer.identity !== undefined,
        impersonateUser: header(raw, 'impersonate-user'),
        impersonateGroups: headerAll(raw, 'impersonate-group'),
        impersonateUid: header(raw, 'impersonate-uid'),
      }),
      insecure: t.route.insecureSkipTlsVerify,
    };
  }

  function upstreamFailure(err: unknown, route: ClusterRoute): ProxyAnswer {
    const e = err as NodeJS.ErrnoException;
    const tls = typeof e.code === 'string' && /CERT|SELF_SIGNED|ALTNAME|HOSTNAME|ISSUER|VERIFY|SIGNATURE|SSL|TLS/.test(e.code);
    const ktCode: ErrorCode = tls ? 'KT_ERR_UPSTREAM_TLS' : 'KT_ERR_UPSTREAM';
    // Node's own advice ("try running Node.js with --use-system-ca") is no help to a kubetrail user.
    const detail = `${e.code ? `${e.code}: ` : ''}${describeError(err).replace(/; if the root CA is installed locally.*$/, '')}`;
    if (typeof e.code === 'string' && e.code.startsWith('HPE_')) {
      // Node's HTTP parser: the apiserver (or something in its place) answered, but not in HTTP/1.1.
      return { code: 502, ktCode, message: `kubetrail: the kube-apiserver at ${route.server.origin} sent a malformed HTTP response: ${detail}` };
    }
    const what = tls ? 'TLS verification of' : 'cannot reach';
    return { code: 502, ktCode, message: `kubetrail: ${what} the kube-apiserver at ${route.server.origin} failed: ${detail}` };
  }

  function handleControl(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '').split('?')[0] ?? '';
    if (path === `${CONTROL_PREFIX}info`) {
      const body = JSON.stringify({ kubetrail: true, pid: process.pid });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    if (path.startsWith(`${CONTROL_PREFIX}routes/`)) {
      const id = decodeURIComponent(path.slice(`${CONTROL_PREFIX}routes/`.length));
      res.writeHead(opts.routes.clusters.has(id) ? 204 : 404);
      res.end();
      return;
    }
    if (opts.onControl?.(path.slice(CONTROL_PREFIX.length), req, res)) return;
    res.writeHead(404);
    res.end();
  }

  function onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    if (url.startsWith(CONTROL_PREFIX)) {
      handleControl(req, res);
      return;
    }
    const target = resolveTarget(opts.routes, url, (req.socket as TLSSocket).servername ?? undefined);
    if (!target) {
      sendStatus(res, {
        code: 404,
        ktCode: 'KT_ERR_NO_ROUTE',
        message: `kubetrail: no cluster route for ${url.split('?')[0]}; use the kubeconfig kubetrail wrote`,
      });
      return;
    }
    const peer = peerOf(req.socket);
    const refused = refuseIdentity(peer, req.rawHeaders);
    const facts = startFacts(req, target, peer, false);
    const id = facts.id;
    const added = observer?.onRequestStart(facts);

    let ended = false;
    let bytesUp = 0;
    let bytesDown = 0;
    let requestSent: number | undefined;
    let tap: ResponseTap | undefined;
    const finish = (outcome: Outcome, error?: ProxyAnswer): void => {
      if (ended) return;
      ended = true;
      const ev: RequestEnd = { t: performance.now(), outcome, bytesDown, bytesUp, ...tap?.finish(outcome === 'complete') };
      if (requestSent !== undefined) ev.requestSent = requestSent;
      if (error) ev.error = { code: error.ktCode, message: error.message };
      observer?.onRequestEnd(id, ev);
    };
    // Discovery documents (not /version, whose Status kubectl and kubetrail doctor do read) get the message
    // as text: see sendStatus.
    const info = parseRequestInfo(facts.method, facts.path, facts.query);
    const plainText = isDiscovery(info) && facts.path !== '/version';
    const answer = (a: ProxyAnswer): void => {
      sendStatus(res, a, { plainText });
      finish('proxy_error', a);
    };
    /**
     * The upstream failed: before the answer's head, kubectl gets a Status saying why; after it, its
     * connection is cut so it sees a broken stream, never a truncated success.
     */
    const upstreamFailed = (a: ProxyAnswer): void => {
      if (!res.headersSent) {
        answer(a);
      } else {
        res.destroy();
        finish('upstream_error', a);
      }
    };

    if (refused) {
      req.resume();
      answer(refused);
      return;
    }

    const { route } = target;
    const agent = pool.agentFor(route, peer.identity);
    const headers = forwardHeaders(req.rawHeaders, { keepUpgrade: false, host: route.server.host, add: added }) as unknown as OutgoingHttpHeaders;
    // Like Go's http.Transport (kubectl's own client), a request without a body that fails on a kept-alive
    // connection before any answer came back is sent again on another connection: the apiserver (or a load
    // balancer) closed the idle connection just as the request went out, and has not seen it.
    const replayable = /^(GET|HEAD|OPTIONS)$/.test(req.method ?? '') && header(req.rawHeaders, 'transfer-encoding') === undefined && Number(header(req.rawHeaders, 'content-length') ?? 0) === 0;
    let up: ClientRequest | undefined;

    /**
     * Relay an answer's head and body to kubectl, tapping the body for the decode stage. False when the
     * head could not be relayed (kubectl got a 502 Status instead); the caller then drops the body.
     */
    const relayResponse = (status: number, statusMessage: string | undefined, raw: string[], body: Readable, sized: boolean, endsCleanly?: () => boolean): boolean => {
      if (observer) {
        const rs = responseFacts(status, raw);
        observer.onResponseStart(id, rs);
        tap = createResponseTap({ ...rs, isWatch: info.verb === 'watch' });
      }
      try {
        res.writeHead(status, statusMessage, forwardHeaders(raw, { keepUpgrade: false }) as unknown as OutgoingHttpHeaders);
      } catch (err) {
        internalError(err);
        body.destroy();
        answer({ code: 502, ktCode: 'KT_ERR_UPSTREAM', message: `kubetrail: the apiserver sent a header kubetrail cannot relay: ${describeError(err)}` });
        return false;
      }
      // A stream (no Content-Length: watches, logs -f, chunked lists) gets its head at once; a sized answer's
      // head goes out with its first body bytes, in one TLS record and one write instead of two.
      if (!sized) res.flushHeaders();
      const onProgress = observer?.onProgress ? observer.onProgress.bind(observer) : undefined;
      let lastProgress = performance.now();
      relay(body, res, (chunk) => {
        bytesDown += chunk.length;
        tap?.write(chunk);
        if (onProgress && tap) {
          const now = performance.now();
          if (now - lastProgress >= PROGRESS_INTERVAL_MS) {
            lastProgress = now;
            onProgress(id, { t: now, bytesDown, ...tap.progress() });
          }
        }
      }, endsCleanly);
      return true;
    };

    const send = (retriesLeft: number): void => {
      const attempt = upstreamRequest(agent, facts, target, headers);
      up = attempt;
      // A reused connection is published with the answer (or the final failure), so a retried attempt
      // publishes only the connection that carried the request.
      let reusedAt: number | undefined;
      const publishReused = (): void => {
        if (reusedAt !== undefined) observer?.onUpstreamConnected(id, { t: reusedAt, reused: true });
        reusedAt = undefined;
      };
      attempt.on('socket', (socket) => {
        const t = performance.now();
        if (attempt.reusedSocket) {
          reusedAt = t;
          return;
        }
        timeNewConnection(socket, id, t);
      });
      attempt.on('finish', () => (requestSent = performance.now()));

      attempt.on('error', (err: NodeJS.ErrnoException) => {
        if (ended) return;
        if (!res.headersSent && retriesLeft > 0 && attempt.reusedSocket && replayable && req.readableEnded && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) {
          send(retriesLeft - 1);
          return;
        }
        publishReused();
        upstreamFailed(upstreamFailure(err, route));
      });

      attempt.on('response', (upRes) => {
        publishReused();
        if (!relayResponse(upRes.statusCode ?? 502, upRes.statusMessage, upRes.rawHeaders, upRes, upRes.headers['content-length'] !== undefined)) return;
        upRes.on('end', () => finish('complete'));
        upRes.on('error', (err) => {
          res.destroy();
          finish('upstream_error', upstreamFailure(err, route));
        });
        upRes.on('aborted', () => {
          res.destroy();
          finish('upstream_error', CLOSED_MID_RESPONSE);
        });
      });

      if (retriesLeft < MAX_RETRIES) attempt.end();
      else relay(req, attempt, (chunk) => (bytesUp += chunk.length));
    };

    /** A watch as a stream on the identity's HTTP/2 connection to the apiserver (see upstream.ts). */
    const sendH2 = (lease: H2Lease, askedAt: number, retriesLeft: number): void => {
      const o = lease.opened;
      // Published once, for the attempt that carried the request (as on HTTP/1.1): at the answer, or at the
      // final failure; a refused attempt that is sent again publishes nothing.
      let published = false;
      const publishConnected = (): void => {
        if (published) return;
        published = true;
        observer?.onUpstreamConnected(
          id,
          o ? { t: askedAt, reused: false, connectEnd: Math.max(o.connectEnd, askedAt), tlsEnd: Math.max(o.tlsEnd, askedAt), protocol: 'h2' } : { t: askedAt, reused: true, protocol: 'h2' },
        );
      };
      let stream: ClientHttp2Stream;
      try {
        stream = lease.session.request(h2RequestHeaders(headers as unknown as string[], facts.method, target.upstreamPath), { endStream: true });
      } catch (err) {
        lease.release();
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ERR_HTTP2_INVALID_SESSION' || code === 'ERR_HTTP2_GOAWAY_SESSION' || code === 'ERR_HTTP2_OUT_OF_STREAMS') {
          // The connection went away between the lease and the request: another one.
          lease.retire();
          if (retriesLeft > 0) viaH2(retriesLeft - 1);
          else answer(upstreamFailure(err, route));
        } else {
          // A head HTTP/2 cannot carry as kubectl sent it (a repeated single-value header such as
          // User-Agent): HTTP/1.1 forwards it exactly, and the connection stays for everyone else.
          send(MAX_RETRIES);
        }
        return;
      }
      cancel = () => stream.close(h2c.NGHTTP2_CANCEL);
      requestSent = performance.now();
      let answered = false;
      let retried = false;
      /**
       * A stream the apiserver refused (REFUSED_STREAM: it never processed it) or that a GOAWAY left
       * unprocessed is sent again on another connection, as Go's transport does; kubetrail also takes the
       * refusing connection out of the pool for new streams (its open streams go on).
       */
      const retryUnprocessed = (err?: NodeJS.ErrnoException): boolean => {
        if (answered || retried || retriesLeft === 0) return retried;
        if (stream.rstCode !== h2c.NGHTTP2_REFUSED_STREAM && err?.code !== 'ERR_HTTP2_GOAWAY_SESSION') return false;
        retried = true;
        lease.retire();
        viaH2(retriesLeft - 1);
        return true;
      };
      stream.on('response', (h, _flags, rawHeaders?: string[]) => {
        answered = true;
        if (ended) return;
        publishConnected();
        const raw = rawHeaders ? rawHeaders.slice() : h2RawHeaders(h);
        // The pseudo-header leads the raw list; it is not a header to relay.
        if (raw[0] === ':status') raw.splice(0, 2);
        // A stream whose connection died ends its readable side as well, reset (CANCEL) rather than
        // finished: that is a cut, as a closed HTTP/1.1 connection mid-body would be.
        const endsCleanly = (): boolean => !stream.rstCode;
        if (!relayResponse(Number(h[':status'] ?? 502), undefined, raw, stream, h['content-length'] !== undefined, endsCleanly)) return;
        stream.on('end', () => {
          if (endsCleanly()) finish('complete');
          else finish('upstream_error', CLOSED_MID_RESPONSE);
        });
      });
      stream.on('error', (err: NodeJS.ErrnoException) => {
        if (ended || retryUnprocessed(err)) return;
        publishConnected();
        upstreamFailed(upstreamFailure(err, route));
      });
      stream.on('close', () => {
        lease.release();
        if (ended || retryUnprocessed()) return;
        publishConnected();
        // Reset without an error code Node reports (NO_ERROR, CANCEL), or the connection went away.
        if (!answered) {
          answer({ code: 502, ktCode: 'KT_ERR_UPSTREAM', message: 'kubetrail: the apiserver closed the stream before answering' });
        } else if (!stream.readableEnded) {
          res.destroy();
          finish('upstream_error', CLOSED_MID_RESPONSE);
        }
      });
    };

    /** Send the watch over HTTP/2, or over HTTP/1.1 when the apiserver does not speak h2. */
    const viaH2 = (retriesLeft: number): void => {
      const askedAt = performance.now();
      pool.h2For(route, peer.identity).then(
        (lease) => {
          if (ended) lease?.release();
          else if (lease) sendH2(lease, askedAt, retriesLeft);
          else send(MAX_RETRIES);
        },
        (err: unknown) => {
          if (!ended) answer(upstreamFailure(err, route));
        },
      );
    };

    let cancel = (): void => {
      up?.destroy();
    };
    if (replayable && info.verb === 'watch' && headBytes(req.rawHeaders, target.upstreamPath) <= H2_MAX_HEAD_BYTES) {
      viaH2(MAX_RETRIES);
    } else {
      send(MAX_RETRIES);
    }

    // The client went away (kubectl ^C, a watch cancelled): close the upstream request too.
    res.on('close', () => {
      if (!res.writableFinished) {
        cancel();
        finish('client_abort');
      }
    });
  }

  function onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const url = req.url ?? '/';
    const target = resolveTarget(opts.routes, url, (req.socket as TLSSocket).servername ?? undefined);
    if (!target) {
      sendStatusRaw(socket, { code: 404, ktCode: 'KT_ERR_NO_ROUTE', message: `kubetrail: no cluster route for ${url.split('?')[0]}` });
      return;
    }
    const peer = peerOf(req.socket);
    const facts = startFacts(req, target, peer, true);
    const id = facts.id;
    const added = observer?.onRequestStart(facts);
    let ended = false;
    let bytesUp = head.length;
    let bytesDown = 0;
    let tap: ResponseTap | undefined;
    const finish = (outcome: Outcome, error?: ProxyAnswer): void => {
      if (ended) return;
      ended = true;
      const ev: RequestEnd = { t: performance.now(), outcome, bytesDown, bytesUp, ...tap?.finish(outcome === 'complete') };
      if (error) ev.error = { code: error.ktCode, message: error.message };
      observer?.onRequestEnd(id, ev);
    };
    const responseStart = (status: number, raw: string[]): void => {
      if (!observer) return;
      const rs = responseFacts(status, raw);
      observer.onResponseStart(id, rs);
      // A 101 tunnel is counted, not decoded (opaque); a refused upgrade's Status body is decoded as usual.
      tap = createResponseTap({ ...rs, contentType: status === 101 ? undefined : rs.contentType, isWatch: false });
    };
    const refused = refuseIdentity(peer, req.rawHeaders);
    if (refused) {
      sendStatusRaw(socket, refused);
      finish('proxy_error', refused);
      return;
    }
    const { route } = target;
    openSockets.add(socket);
    socket.on('close', () => openSockets.delete(socket));
    // A dedicated, never pooled connection: after a 101 it belongs to this tunnel.
    const up = upstreamRequest(
      pool.agentFor(route, peer.identity, false),
      facts,
      target,
      forwardHeaders(req.rawHeaders, { keepUpgrade: true, host: route.server.host, add: added }) as unknown as OutgoingHttpHeaders,
    );
    up.on('socket', (s) => timeNewConnection(s, id, performance.now()));
    const headLines = (status: number, message: string | undefined, raw: string[]): string => {
      let s = `HTTP/1.1 ${status} ${message ?? ''}\r\n`;
      for (let i = 0; i < raw.length; i += 2) s += `${raw[i]}: ${raw[i + 1]}\r\n`;
      return `${s}\r\n`;
    };

    socket.on('close', () => {
      up.destroy();
      finish(bytesDown > 0 ? 'complete' : 'client_abort');
    });
    up.on('error', (err) => {
      if (ended) return;
      const a = upstreamFailure(err, route);
      if (socket.writable) sendStatusRaw(socket, a);
      finish('upstream_error', a);
    });
    up.on('upgrade', (upRes, upSocket, upHead) => {
      responseStart(upRes.statusCode ?? 101, upRes.rawHeaders);
      upSocket.on('error', () => socket.destroy());
      const headBytes = headLines(upRes.statusCode ?? 101, upRes.statusMessage, upRes.rawHeaders);
      bytesDown += upHead.length;
      tap?.write(upHead);
      socket.write(headBytes);
      if (upHead.length > 0) socket.write(upHead);
      if (head.length > 0) upSocket.write(head);
      relay(upSocket, socket, (c) => {
        bytesDown += c.length;
        tap?.write(c);
      });
      relay(socket, upSocket, (c) => (bytesUp += c.length));
      upSocket.on('close', () => {
        socket.destroy();
        finish('complete');
      });
      socket.on('close', () => upSocket.destroy());
    });
    up.on('response', (upRes) => {
      // Not upgraded (old server, forbidden, pod without a node...): relay the answer verbatim, then close,
      // so kubectl reads the apiserver's own error or falls back from WebSocket to SPDY.
      responseStart(upRes.statusCode ?? 502, upRes.rawHeaders);
      const chunked = /chunked/i.test(header(upRes.rawHeaders, 'transfer-encoding') ?? '');
      socket.write(headLines(upRes.statusCode ?? 502, upRes.statusMessage, upRes.rawHeaders));
      upRes.on('data', (c: Buffer) => {
        bytesDown += c.length;
        tap?.write(c);
        socket.write(chunked ? Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n')]) : c);
      });
      upRes.on('end', () => {
        socket.end(chunked ? '0\r\n\r\n' : undefined);
        finish('complete');
      });
      upRes.on('error', () => socket.destroy());
    });
    up.end();
  }

  const server = createServer(
    {
      key: opts.pki.serverKeyPem,
      cert: opts.pki.serverCertPem,
      // Ask for a client certificate (kubectl sends the kubeconfig's), but let the handshake succeed
      // without one: a token user presents none. Whether a certificate is used upstream is decided per
      // request against the kubeconfig's own certificates, never against a CA.
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
      // On loopback, classic key exchange: the post-quantum hybrid Node 24's OpenSSL prefers costs ~10 kB
      // more per connection (1,000 watches: 10 MB) and protects nothing that leaves the machine.
      ...(isLoopbackHost(opts.host) ? { ecdhCurve: 'X25519:P-256' } : {}),
      keepAliveTimeout: 60_000,
      headersTimeout: 60_000,
      requestTimeout: 0,
      maxHeaderSize: MAX_REQUEST_HEAD_BYTES,
    },
    (req, res) => {
      try {
        onRequest(req, res);
      } catch (err) {
        internalError(err);
        sendStatus(res, { code: 502, ktCode: 'KT_ERR_UPSTREAM', message: `kubetrail: internal error: ${describeError(err)}` });
      }
    },
  );
  // As for responses: the byte limit (maxHeaderSize) bounds a request head, not Node's 2,000-line default.
  server.maxHeadersCount = 0;
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    try {
      onUpgrade(req, socket, head);
    } catch (err) {
      internalError(err);
      socket.destroy();
    }
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket));
  server.on('tlsClientError', () => undefined);

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', internalError);
  const port = (server.address() as AddressInfo).port;
  const hostForUrl = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    server,
    port,
    url: `https://${hostForUrl}:${port}`,
    // Resolves once the listener and every connection are closed, upgraded tunnels included (the server does
    // not track those): by then every request has published its `end`, so a caller that flushes telemetry
    // next has every span.
    close: async () => {
      const closed = [new Promise<void>((resolve) => server.close(() => resolve()))];
      for (const s of openSockets) if (!s.closed) closed.push(new Promise<void>((resolve) => s.once('close', () => resolve())));
      server.closeAllConnections();
      for (const s of openSockets) s.destroy();
      pool.destroy();
      await Promise.all(closed);
    },
  };
}

const clientErrorsAnswered = new WeakSet<Duplex>();

/**
 * A request kubetrail cannot parse gets the answer the apiserver (Go's net/http) gives: 431 for a head over
 * the limit, 408 for a head that never completes, 400 for anything else malformed; then, like Go, a FIN
 * and half a second of discarding what the client still sends before closing, so that the client reads
 * the answer instead of a reset. A connection that failed below HTTP (reset, TLS) is simply closed.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (clientErrorsAnswered.has(socket)) return;
  clientErrorsAnswered.add(socket);
  const code = err.code ?? '';
  const status = code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : code.startsWith('HPE_') ? '400 Bad Request' : undefined;
  if (status === undefined || !socket.writable) {
    socket.destroy();
    return;
  }
  socket.on('error', () => socket.destroy());
  socket.end(`HTTP/1.1 ${status}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n${status}`);
  socket.resume();
  setTimeout(() => socket.destroy(), 500).unref();
}

/** `CN=alice\nO=dev\nO=ops` → { commonName, organizations }. */
function parseSubject(subject: string): { commonName: string | undefined; organizations: string[] } {
  let commonName: string | undefined;
  const organizations: string[] = [];
  for (const line of subject.split('\n')) {
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    if (key === 'CN') commonName = value;
    else if (key === 'O') organizations.push(value);
  }
  return { commonName, organizations };
}
