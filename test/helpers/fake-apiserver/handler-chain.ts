/**
 * What every request passes before a handler, in the apiserver's order as far as answers show it: the
 * record (`requests`), its Audit-ID, the fault set for it (faults.ts), authentication (a 401; on h2 a GOAWAY
 * after a 401 or an anonymous answer), impersonation, APF classification and authorization (a 403) (auth.ts,
 * apf.ts); then routing.ts answers, or upgrades.ts for an upgrade request.
 */
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { Duplex } from 'node:stream';
import { apfFor, type ApfTable } from './apf.ts';
import { attrsOf, tlsSocketOf, unauthorized, type Auth } from './auth.ts';
import { faultAnswer, sleep, type Faults } from './faults.ts';
import { requestInfo } from './request-info.ts';
import type { Api, ReqCtx } from './rest.ts';
import type { RecordedRequest } from './types.ts';
import { rawStatus, type UpgradeHandler } from './upgrades.ts';
import { ApiError, REASON_PHRASES, Sink, auditIdFor, errors, writeRawResponse, type AnyResponse } from './wire.ts';

export interface HandlerChainOptions {
  /** Where each request is recorded, in arrival order. */
  requests: RecordedRequest[];
  faults: Faults;
  auth: Auth;
  apf: ApfTable;
  /** Writes the error answers (and handles resources, through `route`). */
  api: Api;
  route: (ctx: ReqCtx) => Promise<void>;
  serveUpgrade: UpgradeHandler;
  /** Open answers and upgraded sockets, for `close()` to end. */
  sinks: Set<Sink>;
  sockets: Set<Duplex>;
  /** True once `close()` began: requests that wake from a fault's delay then go unanswered. */
  closing: () => boolean;
}

export interface HandlerChain {
  handleRequest: (req: IncomingMessage | Http2ServerRequest, res: AnyResponse) => Promise<void>;
  handleUpgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => Promise<void>;
}

export function createHandlerChain(o: HandlerChainOptions): HandlerChain {
  const { requests, faults, apf, api, route, serveUpgrade, sinks, sockets } = o;
  const { authenticate, impersonate, decide } = o.auth;

  const record = (
    req: IncomingMessage | Http2ServerRequest,
    url: URL,
    upgrade: boolean,
    auditId: string,
  ): RecordedRequest => {
    const sock = tlsSocketOf(req);
    const query: Record<string, string[]> = {};
    for (const [k, val] of url.searchParams) (query[k] ??= []).push(val);
    const rr: RecordedRequest = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      path: url.pathname,
      query,
      headers: { ...req.headers },
      rawHeaders: [...req.rawHeaders],
      httpVersion: req.httpVersion,
      alpn: sock.alpnProtocol ?? false,
      sni: typeof sock.servername === 'string' && sock.servername !== '' ? sock.servername : false,
      upgrade,
      auditId,
      time: Date.now(),
    };
    requests.push(rr);
    return rr;
  };

  /** An ordinary request: its body is read (and recorded) before a fault's delay or answer. */
  const handleRequest = async (req: IncomingMessage | Http2ServerRequest, res: AnyResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'https://fake.invalid');
    const auditId = auditIdFor(req.headers);
    const rr = record(req, url, false, auditId);
    const fault = faults.take(req.method ?? 'GET', req.url ?? '/');
    const sink = new Sink(res, { resetAfterBytes: fault?.resetAfterBytes, hangAfterHeaders: fault?.hangAfterHeaders });
    sink.onHead = (code, headers) => {
      rr.status = code;
      rr.responseHeaders = headers;
    };
    sinks.add(sink);
    sink.onClose(() => sinks.delete(sink));
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    if (body.length > 0) {
      rr.rawBody = body;
      rr.body = body.toString('utf8');
    }
    if (fault?.delayHeadersMs !== undefined) await sleep(fault.delayHeadersMs);
    if (o.closing() || sink.closed) return;
    if (fault?.dropConnection) {
      sink.reset();
      return;
    }
    if (fault?.status !== undefined) {
      const a = faultAnswer(fault, auditId);
      rr.status = a.code;
      sink.head(a.code, a.headers);
      sink.end(a.body);
      return;
    }
    const info = requestInfo(req.method ?? 'GET', url);
    const goAwayAfter = (): void => {
      // `Connection: close` on h2 makes Go send GOAWAY with the answer. Closing the session while this
      // stream is still open sends the GOAWAY at once and lets the answer complete; closing it after the
      // answer ('finish') destroyed a session with no open streams before the GOAWAY left.
      if ('stream' in req) req.stream.session?.close();
    };
    const auth = authenticate(req);
    const ctxBase = { req, url, info, auditId, sink, record: rr, body };
    if (auth === 'unauthorized' || auth.user === undefined) {
      goAwayAfter();
      const ctx: ReqCtx = { ...ctxBase, apf: undefined, user: { name: '', groups: [] } };
      api.sendError(ctx, unauthorized());
      return;
    }
    if (auth.certCN !== undefined) rr.clientCertCN = auth.certCN;
    if (auth.user.name === 'system:anonymous') goAwayAfter();
    const user = impersonate(req, auth.user);
    if (user instanceof ApiError) {
      const ctx: ReqCtx = { ...ctxBase, apf: undefined, user: auth.user };
      api.sendError(ctx, user, user.status.code === 403 ? [['X-Content-Type-Options', 'nosniff']] : []);
      return;
    }
    rr.user = user.name;
    const ctx: ReqCtx = { ...ctxBase, apf: apfFor(apf, user, info), user };
    try {
      const denied = decide(user, attrsOf(info));
      if (denied) {
        api.sendError(ctx, denied, [['X-Content-Type-Options', 'nosniff']]);
        return;
      }
      await route(ctx);
    } catch (err) {
      if (sink.headersSent) {
        sink.end();
        return;
      }
      api.sendError(
        ctx,
        err instanceof ApiError ? err : errors.internal(err instanceof Error ? err.message : String(err)),
      );
    }
  };

  /** An HTTP/1.1 upgrade: only delay, status and drop faults apply; refusals go on the raw socket. */
  const handleUpgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    socket.on('error', () => undefined);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const url = new URL(req.url ?? '/', 'https://fake.invalid');
    const auditId = auditIdFor(req.headers);
    const rr = record(req, url, true, auditId);
    const fault = faults.take(req.method ?? 'GET', req.url ?? '/');
    if (fault?.delayHeadersMs !== undefined) await sleep(fault.delayHeadersMs);
    if (o.closing()) {
      socket.destroy();
      return;
    }
    if (fault?.dropConnection) {
      socket.destroy();
      return;
    }
    if (fault?.status !== undefined) {
      const a = faultAnswer(fault, auditId);
      rr.status = a.code;
      writeRawResponse(socket, a.code, REASON_PHRASES[a.code] ?? 'Error', a.headers, a.body);
      return;
    }
    const info = requestInfo(req.method ?? 'GET', url);
    const auth = authenticate(req);
    if (auth === 'unauthorized' || auth.user === undefined) {
      rawStatus(socket, auditId, unauthorized(), rr);
      return;
    }
    if (auth.certCN !== undefined) rr.clientCertCN = auth.certCN;
    const user = impersonate(req, auth.user);
    if (user instanceof ApiError) {
      rawStatus(socket, auditId, user, rr, [['X-Content-Type-Options', 'nosniff']]);
      return;
    }
    rr.user = user.name;
    const denied = decide(user, attrsOf(info));
    if (denied) {
      rawStatus(socket, auditId, denied, rr, [['X-Content-Type-Options', 'nosniff']]);
      return;
    }
    try {
      serveUpgrade(req, socket, head, info, rr);
    } catch (err) {
      rawStatus(socket, auditId, err instanceof ApiError ? err : errors.internal(String(err)), rr);
    }
  };

  return { handleRequest, handleUpgrade };
}
