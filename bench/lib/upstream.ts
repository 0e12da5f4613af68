/**
 * The bench's stand-in apiserver, a process of its own (forked by run.ts, driven over IPC).
 *
 * Purpose-built rather than test/helpers/fake-apiserver: the bench needs lists of any size (20,000 pods,
 * 200 MB) served at wire speed from precomputed bodies (identity and gzip, gzip only above 128 KiB as the
 * real apiserver does), and 1,000 watches whose events it emits at a controlled rate, each stamped with
 * CLOCK_MONOTONIC at the moment it is written, so the load generator can measure delivery latency. It
 * verifies client certificates against the bench CA and answers 401 without one, like the apiserver.
 * Like the apiserver it offers ALPN h2 and http/1.1 on one port (100 streams per h2 connection, as
 * kube-apiserver's default --http2-max-streams-per-connection 0 means): each client speaks what it negotiates (kubetrail mirrors its client's protocol,
 * kubectl proxy and mitmproxy choose h2, nginx HTTP/1.1). It counts the connections it accepts and holds,
 * by ALPN protocol, so the bench can report how many upstream connections each path opened.
 *
 *   GET /api/v1/namespaces/default/pods/pod-<i>      one pod (~4.3 kB, Content-Length)
 *   GET /api/v1/namespaces/default/pods              a small list: 10 pods (~43 kB, Content-Length)
 *   GET /api/v1/namespaces/bench-n<N>/pods           N pods, chunked; gzip if asked and > 128 KiB
 *   GET /api/v1/namespaces/default/pods?watch=1      a watch: events when the parent says `emit`
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { gzipSync, constants as zc } from 'node:zlib';
import { sendUnasked, serveParent } from './child.ts';
import { podObject, SENT_ANNOTATION } from './pods.ts';

export interface UpstreamConfig {
  certFile: string;
  keyFile: string;
  caFile: string;
  /** Hold each single-pod answer this long (ms; 0 = none): an apiserver's think time for workload 1. */
  delayMs?: number;
}

export type ToUpstream =
  | { type: 'prepare'; counts: number[] }
  | { type: 'emit'; rate: number; durationMs: number }
  | { type: 'watches' }
  | { type: 'conns' }
  | { type: 'stop' };

export type FromUpstream =
  | { type: 'ready'; port: number; podBytes: number }
  | { type: 'prepared'; sizes: { count: number; identity: number; gzip: number }[] }
  | { type: 'emitted'; sent: number; watches: number; backpressured: number }
  | { type: 'watches'; count: number }
  /** TLS connections accepted since start and open now, by the protocol ALPN chose. */
  | { type: 'conns'; accepted: Record<string, number>; open: Record<string, number> };

const GZIP_MIN = 128 * 1024;
const CHUNK = 64 * 1024;
const SMALL_LIST = 10;

function listBody(count: number, namespace: string): Buffer {
  const parts: Buffer[] = [
    Buffer.from(`{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"${200000 + count}"},"items":[`),
  ];
  for (let i = 0; i < count; i++)
    parts.push(Buffer.from((i === 0 ? '' : ',') + JSON.stringify(podObject(`pod-${i}`, namespace, i))));
  parts.push(Buffer.from(']}\n'));
  return Buffer.concat(parts);
}

function main(): void {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as UpstreamConfig;
  const delayMs = cfg.delayMs ?? 0;

  const podBodies = new Map<string, Buffer>();
  const pod = (name: string): Buffer => {
    let b = podBodies.get(name);
    if (!b) {
      const i = Number(/(\d+)$/.exec(name)?.[1] ?? 0);
      b = Buffer.from(JSON.stringify(podObject(name, 'default', i)));
      podBodies.set(name, b);
    }
    return b;
  };
  const small = listBody(SMALL_LIST, 'default');
  const large = new Map<number, { identity: Buffer; gzip: Buffer }>();
  const largeFor = (count: number): { identity: Buffer; gzip: Buffer } => {
    let l = large.get(count);
    if (!l) {
      const identity = listBody(count, `bench-n${count}`);
      // The apiserver compresses at gzip level 1 (BestSpeed).
      l = { identity, gzip: gzipSync(identity, { level: zc.Z_BEST_SPEED }) };
      large.set(count, l);
    }
    return l;
  };

  const watchPod = podObject('pod-w', 'default', 7);
  ((watchPod.metadata as Record<string, unknown>).annotations as Record<string, string>)[SENT_ANNOTATION] = '__SENT__';
  const [eventHead, eventTail] = JSON.stringify({ type: 'MODIFIED', object: watchPod }).split('__SENT__') as [
    string,
    string,
  ];
  const watches = new Set<ServerResponse | Http2ServerResponse>();

  const common = (res: ServerResponse, contentType = 'application/json'): void => {
    res.setHeader('Audit-Id', '00000000-0000-4000-8000-000000000000');
    res.setHeader('Cache-Control', 'no-cache, private');
    res.setHeader('Content-Type', contentType);
    res.setHeader('X-Kubernetes-Pf-Flowschema-Uid', '11111111-2222-4333-8444-555555555555');
    res.setHeader('X-Kubernetes-Pf-Prioritylevel-Uid', '66666666-7777-4888-8999-000000000000');
  };

  const streamBody = (res: ServerResponse, body: Buffer): void => {
    let off = 0;
    const pump = (): void => {
      while (off < body.length) {
        const end = Math.min(body.length, off + CHUNK);
        const ok = res.write(body.subarray(off, end));
        off = end;
        if (!ok) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
  };

  const handle = (req0: IncomingMessage | Http2ServerRequest, res0: ServerResponse | Http2ServerResponse): void => {
    const h2 = req0.httpVersion === '2.0';
    // Node's compatibility API gives h2 requests the same methods this handler uses.
    const req = req0 as IncomingMessage;
    const res = res0 as ServerResponse;
    const socket = req.socket as TLSSocket;
    if (!socket.authorized) {
      const body = JSON.stringify({
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: 'Unauthorized',
        reason: 'Unauthorized',
        code: 401,
      });
      common(res);
      res.writeHead(401, { 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const url = new URL(req.url ?? '/', 'https://upstream');
    const watch = url.searchParams.get('watch');
    let m: RegExpExecArray | null;
    if ((watch === '1' || watch === 'true') && url.pathname === '/api/v1/namespaces/default/pods') {
      common(res);
      // HTTP/2 frames the body itself (and forbids the header); on HTTP/1.1 a watch is chunked.
      if (h2) (res0 as Http2ServerResponse).writeHead(200);
      else res.writeHead(200, { 'Transfer-Encoding': 'chunked' }).flushHeaders();
      watches.add(res0);
      res.on('close', () => watches.delete(res0));
      return;
    }
    if ((m = /^\/api\/v1\/namespaces\/default\/pods\/([a-z0-9-]+)$/.exec(url.pathname))) {
      const body = pod(m[1] ?? 'pod-0');
      const answer = (): void => {
        common(res);
        res.writeHead(200, { 'Content-Length': body.length });
        res.end(body);
      };
      if (delayMs > 0) setTimeout(answer, delayMs);
      else answer();
      return;
    }
    if (url.pathname === '/api/v1/namespaces/default/pods') {
      common(res);
      res.writeHead(200, { 'Content-Length': small.length });
      res.end(small);
      return;
    }
    if ((m = /^\/api\/v1\/namespaces\/bench-n(\d+)\/pods$/.exec(url.pathname))) {
      const l = largeFor(Number(m[1]));
      const gzip = /\bgzip\b/.test(req.headers['accept-encoding'] ?? '') && l.identity.length > GZIP_MIN;
      common(res);
      // Chunked on HTTP/1.1; HTTP/2 (kubectl proxy, a Go client, negotiates it) frames the body itself.
      const framing = h2 ? {} : { 'Transfer-Encoding': 'chunked' };
      res.writeHead(200, gzip ? { 'Content-Encoding': 'gzip', ...framing } : framing);
      streamBody(res, gzip ? l.gzip : l.identity);
      return;
    }
    if (url.pathname === '/version') {
      const body = JSON.stringify({ major: '1', minor: '33', gitVersion: 'v1.33.0-bench' });
      common(res);
      res.writeHead(200, { 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
      return;
    }
    const body = JSON.stringify({
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'not found',
      reason: 'NotFound',
      code: 404,
    });
    common(res);
    res.writeHead(404, { 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  };

  const server = createSecureServer(
    {
      cert: readFileSync(cfg.certFile),
      key: readFileSync(cfg.keyFile),
      ca: readFileSync(cfg.caFile),
      requestCert: true,
      rejectUnauthorized: false,
      allowHTTP1: true,
      // kube-apiserver's default: --http2-max-streams-per-connection 0 means 100 (k8s.io/apiserver
      // secure_serving.go; 1,000 is only aggregated apiservers' recommended option). A client-go client
      // spreads 1,000 watches over 10 connections.
      settings: { maxConcurrentStreams: 100 },
      maxSessionMemory: 256,
    },
    handle,
  );
  // The HTTP/1.1 side reads these from the server object, as https.Server would.
  Object.assign(server, { keepAliveTimeout: 120_000, headersTimeout: 60_000, requestTimeout: 0 });
  const sessions = new Set<Http2Session>();
  server.on('session', (s: Http2Session) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  server.on('clientError', (_e: Error, s: { destroy(): void }) => s.destroy());
  const accepted: Record<string, number> = {};
  const open: Record<string, number> = {};
  server.on('secureConnection', (socket: TLSSocket) => {
    const proto = socket.alpnProtocol || 'none';
    accepted[proto] = (accepted[proto] ?? 0) + 1;
    open[proto] = (open[proto] ?? 0) + 1;
    socket.once('close', () => (open[proto] = (open[proto] ?? 1) - 1));
  });

  const emit = (rate: number, durationMs: number): Promise<FromUpstream> =>
    new Promise((resolve) => {
      const list = [...watches];
      let sent = 0;
      let backpressured = 0;
      let next = 0;
      const t0 = performance.now();
      const tick = (): void => {
        const elapsed = performance.now() - t0;
        const due = Math.floor((Math.min(elapsed, durationMs) * rate) / 1000);
        while (sent < due && list.length > 0) {
          const res = list[next % list.length] as ServerResponse | undefined;
          next++;
          sent++;
          if (!res || res.writableEnded || (res as { destroyed?: boolean }).destroyed) continue;
          if (!res.write(`${eventHead}${process.hrtime.bigint()}${eventTail}\n`)) backpressured++;
        }
        if (elapsed >= durationMs) {
          clearInterval(timer);
          resolve({ type: 'emitted', sent, watches: list.length, backpressured });
        }
      };
      const timer = setInterval(tick, 2);
    });

  serveParent<ToUpstream, FromUpstream>(async (msg) => {
    switch (msg.type) {
      case 'prepare':
        return {
          type: 'prepared',
          sizes: msg.counts.map((count) => ({
            count,
            identity: largeFor(count).identity.length,
            gzip: largeFor(count).gzip.length,
          })),
        };
      case 'emit':
        return emit(msg.rate, msg.durationMs);
      case 'watches':
        return { type: 'watches', count: watches.size };
      case 'conns':
        return { type: 'conns', accepted: { ...accepted }, open: { ...open } };
      case 'stop':
        for (const w of watches) {
          if ('stream' in w) w.stream.destroy();
          else w.destroy();
        }
        for (const s of sessions) s.destroy();
        server.close(() => process.exit(0));
        setTimeout(() => process.exit(0), 2000).unref();
        return undefined;
    }
  });

  server.listen(0, '127.0.0.1', () => {
    sendUnasked<FromUpstream>({
      type: 'ready',
      port: (server.address() as AddressInfo).port,
      podBytes: pod('pod-0').length,
    });
  });
}

main();
