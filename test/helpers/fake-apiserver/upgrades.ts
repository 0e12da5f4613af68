/**
 * Upgrade requests, once authorized: which streaming server answers them (pods/exec and pods/attach, or
 * pods/portforward; over WebSocket or SPDY/3.1, as the `websocket` and `spdy` options allow), after the
 * apiserver's own checks (the pod, its container, a node), and the raw HTTP/1.1 answers of an upgrade that
 * gets no 101.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { RequestInfo } from './request-info.ts';
import { streamTarget } from './rest.ts';
import type { Store } from './store.ts';
import {
  chooseWsExecProtocol,
  defaultExec,
  defaultPortForward,
  negotiateSpdy,
  negotiateSpdyExec,
  PORTFORWARD_WS_PROTOCOL,
  serveSpdyExec,
  serveSpdyPortForward,
  serveWebSocketExec,
  serveWebSocketPortForward,
  spdyProtocols,
} from './streaming.ts';
import type { FakeApiserverOptions, RecordedRequest } from './types.ts';
import { isWebSocketRequest, offeredProtocols } from './websocket.ts';
import { commonHeaders, errors, goJson, REASON_PHRASES, sortHeaders, writeRawResponse, type ApiError } from './wire.ts';

/** A Status answer on the raw socket (no APF headers: upgrades are long-running). */
export function rawStatus(
  socket: Duplex,
  auditId: string,
  err: ApiError,
  rr: RecordedRequest,
  extra: [string, string][] = [],
): void {
  const code = err.status.code ?? 500;
  rr.status = code;
  const h = sortHeaders([...commonHeaders({ auditId }), ['Content-Type', 'application/json'], ...extra]);
  writeRawResponse(socket, code, REASON_PHRASES[code] ?? 'Error', h, goJson(err.status));
}

/** A text answer on the raw socket, as `http.Error` writes the stream handshake's refusals. */
function rawText(socket: Duplex, code: number, text: string, rr: RecordedRequest): void {
  rr.status = code;
  writeRawResponse(
    socket,
    code,
    REASON_PHRASES[code] ?? 'Error',
    [
      ['Content-Type', 'text/plain; charset=utf-8'],
      ['X-Content-Type-Options', 'nosniff'],
    ],
    `${text}\n`,
  );
}

export interface UpgradeOptions extends Pick<FakeApiserverOptions, 'websocket' | 'spdy' | 'exec' | 'portForward'> {
  store: Store;
  /** Register how to stop an upgraded connection on `close()`; returns the unregistration. */
  track: (stop: () => void) => () => void;
}

/** Serves an authorized upgrade request, or throws an `ApiError` for the caller to answer. */
export type UpgradeHandler = (
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  info: RequestInfo,
  rr: RecordedRequest,
) => void;

export function createUpgradeRouter(o: UpgradeOptions): UpgradeHandler {
  return (req: IncomingMessage, socket: Duplex, head: Buffer, info: RequestInfo, rr: RecordedRequest): void => {
    const sub = info.subresource;
    if (!(
      info.apiPrefix === 'api' &&
      info.resource === 'pods' &&
      (sub === 'exec' || sub === 'attach' || sub === 'portforward')
    )) {
      throw errors.badRequest('Upgrade request not supported');
    }
    const q = new URL(req.url ?? '/', 'https://fake.invalid').searchParams;
    const { pod, container } = streamTarget(o.store, info.namespace, info.name, sub, q);
    const ws = isWebSocketRequest(req);
    const spdy = String(req.headers.upgrade ?? '').toLowerCase() === 'spdy/3.1';
    if (ws && o.websocket === false) {
      // What an apiserver without the stream translator relays from a kubelet that cannot speak v5.
      rr.status = 403;
      socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
      return;
    }
    if (spdy && o.spdy === false)
      throw errors.badRequest('unable to upgrade connection: SPDY/3.1 upgrades are disabled on this server');
    if (!ws && !spdy) throw errors.badRequest('Upgrade request required');
    if (sub === 'portforward') {
      const pf = { namespace: info.namespace, pod: info.name, podUid: pod.metadata.uid ?? '' };
      const handler = o.portForward ?? defaultPortForward;
      if (ws) {
        if (!offeredProtocols(req).includes(PORTFORWARD_WS_PROTOCOL)) {
          rawText(socket, 400, 'unable to upgrade: no tunneling spdy protocols provided', rr);
          return;
        }
        rr.status = 101;
        serveWebSocketPortForward(req, socket, head, pf, handler, o.track);
        return;
      }
      const p = negotiateSpdy(req, ['portforward.k8s.io']);
      if (p === undefined) {
        rawText(
          socket,
          403,
          `unable to upgrade: unable to negotiate protocol: client supports [${spdyProtocols(req).join(' ')}], server accepts [portforward.k8s.io]`,
          rr,
        );
        return;
      }
      rr.status = 101;
      serveSpdyPortForward(socket, head, pf, handler, o.track);
      return;
    }
    const flag = (name: string): boolean => {
      const val = q.get(name);
      return val === 'true' || val === '1';
    };
    const exec = {
      subresource: sub === 'attach' ? ('attach' as const) : ('exec' as const),
      namespace: info.namespace,
      pod: info.name,
      container,
      command: sub === 'exec' ? q.getAll('command') : [],
      stdin: flag('stdin'),
      stdout: flag('stdout'),
      stderr: flag('stderr'),
      tty: flag('tty'),
    };
    if (exec.tty) exec.stderr = false;
    if (!exec.stdin && !exec.stdout && !exec.stderr)
      throw errors.badRequest('you must specify at least 1 of stdin, stdout, stderr');
    const handler = o.exec ?? defaultExec;
    if (ws) {
      const protocol = chooseWsExecProtocol(req);
      if (protocol === undefined) {
        rr.status = 403;
        socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
        return;
      }
      rr.status = 101;
      serveWebSocketExec(req, socket, head, exec, protocol, handler, o.track);
      return;
    }
    const protocol = negotiateSpdyExec(req);
    if (protocol === undefined) {
      rawText(
        socket,
        403,
        `unable to upgrade: unable to negotiate protocol: client supports [${spdyProtocols(req).join(' ')}], server accepts [v4.channel.k8s.io v3.channel.k8s.io v2.channel.k8s.io channel.k8s.io]`,
        rr,
      );
      return;
    }
    rr.status = 101;
    serveSpdyExec(socket, head, exec, protocol, handler, o.track);
  };
}
