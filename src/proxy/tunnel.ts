/**
 * HTTP/1.1 upgrades (exec, attach, cp, port-forward; WebSocket GET or SPDY POST). The request goes to the
 * apiserver on a dedicated, never pooled connection; a 101 turns both connections into a raw tunnel until
 * either side closes. Any other answer is relayed verbatim, then the connection closed, so kubectl falls
 * back (WebSocket → SPDY) or prints the apiserver's own error.
 */
import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { downstreamHead, Exchange, requestFacts } from './exchange.ts';
import type { ForwardContext } from './forward.ts';
import { timeNewConnection, upstreamRequest } from './forward-http1.ts';
import { forwardHeaders, header, responseHead, type RawHeaders } from './headers.ts';
import { refuseIdentity, upstreamRoute } from './identity.ts';
import { relay } from './relay.ts';
import { resolveTarget } from './routing.ts';
import { sendStatusRaw, upstreamFailure } from './status.ts';

export function forwardUpgrade(ctx: ForwardContext, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  socket.on('error', () => socket.destroy());
  const dh = downstreamHead(req);
  const url = dh.url;
  const target = resolveTarget(ctx.routes, url, dh.socket.servername);
  if (!target) {
    sendStatusRaw(socket, {
      code: 404,
      ktCode: 'KT_ERR_NO_ROUTE',
      message: `kubetrail: no cluster route for ${url.split('?')[0]}`,
    });
    return;
  }
  const peer = ctx.peers.of(dh.socket);
  const upstreams = ctx.upstreamsOf(req);
  const x = new Exchange(
    ctx.observer,
    requestFacts(dh, target, peer, { upgrade: true, upstreamShared: upstreams.shared, observer: ctx.observer }),
    { progress: false },
  );
  x.bytesUp = head.length;
  const refused = refuseIdentity(peer, dh.raw);
  if (refused) {
    sendStatusRaw(socket, refused);
    x.finish('proxy_error', refused);
    return;
  }
  const { route } = target;
  // A connection no other request uses: after a 101 it belongs to this tunnel.
  const up = upstreamRequest(
    upstreams.upgradeAgentFor(upstreamRoute(route, peer.identity, dh.raw), peer.identity),
    x,
    target.upstreamPath,
    forwardHeaders(dh.raw, { keepUpgrade: true, host: route.server.host, add: x.added }),
  );
  up.on('socket', (s) => timeNewConnection(s, x, performance.now()));

  socket.on('close', () => {
    up.destroy();
    x.finish(x.bytesDown > 0 ? 'complete' : 'client_abort');
  });
  up.on('error', (err) => {
    if (x.ended) return;
    const a = upstreamFailure(err, route);
    if (socket.writable) sendStatusRaw(socket, a);
    x.finish('upstream_error', a);
  });
  up.on('upgrade', (upRes, upSocket, upHead) => {
    // A 101 tunnel is counted, not decoded (opaque).
    x.responded(upRes.statusCode ?? 101, withAuditId(upRes.rawHeaders, sentAuditId(x, dh.raw)), {
      isWatch: false,
      opaque: upRes.statusCode === 101,
    });
    upSocket.on('error', () => socket.destroy());
    socket.write(responseHead(upRes.statusCode ?? 101, upRes.statusMessage, upRes.rawHeaders));
    if (upHead.length > 0) socket.write(upHead);
    x.down(upHead);
    if (head.length > 0) upSocket.write(head);
    relay(upSocket, socket, (c) => x.down(c));
    relay(socket, upSocket, (c) => (x.bytesUp += c.length));
    upSocket.on('close', () => {
      socket.destroy();
      x.finish('complete');
    });
    socket.on('close', () => upSocket.destroy());
  });
  up.on('response', (upRes) => {
    // Not upgraded (old server, forbidden, pod without a node...): relay the answer verbatim, then close,
    // so kubectl reads the apiserver's own error or falls back from WebSocket to SPDY.
    x.responded(upRes.statusCode ?? 502, upRes.rawHeaders, { isWatch: false });
    const chunked = /chunked/i.test(header(upRes.rawHeaders, 'transfer-encoding') ?? '');
    socket.write(responseHead(upRes.statusCode ?? 502, upRes.statusMessage, upRes.rawHeaders));
    upRes.on('data', (c: Buffer) => {
      x.down(c);
      socket.write(chunked ? Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from('\r\n')]) : c);
    });
    upRes.on('end', () => {
      socket.end(chunked ? '0\r\n\r\n' : undefined);
      x.finish('complete');
    });
    upRes.on('error', () => socket.destroy());
  });
  up.end();
}

/** The Audit-ID the request went upstream with: the one kubetrail added, else the client's own. */
function sentAuditId(x: Exchange, clientRaw: RawHeaders): string | undefined {
  const added = Object.entries(x.added ?? {}).find(([name]) => name.toLowerCase() === 'audit-id')?.[1];
  return added ?? header(clientRaw, 'audit-id');
}

/**
 * The headers the stages read from a 101 (never the bytes relayed: those stay the apiserver's). The
 * apiserver answers an upgrade with the kubelet's 101 (SPDY), or its stream translator's (WebSocket),
 * and neither carries the Audit-Id its other answers do; its audit ID is still the request's Audit-ID,
 * which kube-apiserver's audit filter adopts. So the span names that one rather than none.
 */
function withAuditId(raw: RawHeaders, sent: string | undefined): RawHeaders {
  if (sent === undefined || header(raw, 'audit-id') !== undefined) return raw;
  return [...raw, 'Audit-Id', sent];
}
