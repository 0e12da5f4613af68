/**
 * doctor's one HTTP client: a single request (GET or POST) that never throws, answering with the status,
 * the first 64 KiB of the body and the time it took, or why there was no answer. node:http(s), as the
 * exporter and kubectl send: fetch() would refuse ports browsers block (6000, 6665-6669, ...).
 */
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import { performance } from 'node:perf_hooks';
import { describeWithoutNodeAdvice, isTlsErrorCode } from '../../errors.ts';

/** One HTTP answer, or why there was none (`code`: the socket's error code, `TIMEOUT`, or `ERROR`). */
export type Probe =
  | { kind: 'answer'; status: number; ms: number; body: string; headers: IncomingMessage['headers'] }
  | { kind: 'error'; code: string; message: string; ms: number; tls: boolean };

const BODY_KEPT = 64 * 1024;
const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export interface ProbeOptions {
  method?: 'GET' | 'POST';
  headers?: OutgoingHttpHeaders;
  body?: string;
  timeoutMs: number;
}

/**
 * `target`: a URL (http: or https:, its userinfo sent as Basic auth), or https options (agent, CA, SNI,
 * client certificate) for an apiserver. A GET to a URL follows redirects, as a browser opening it would.
 */
export function probe(target: URL | RequestOptions, opts: ProbeOptions, redirects = 0): Promise<Probe> {
  const t0 = performance.now();
  const ms = (): number => Math.round((performance.now() - t0) * 10) / 10;
  const method = opts.method ?? 'GET';
  const headers: OutgoingHttpHeaders = {
    ...opts.headers,
    ...(opts.body !== undefined ? { 'content-length': Buffer.byteLength(opts.body) } : {}),
  };
  return new Promise((resolve) => {
    let settled = false;
    const done = (p: Probe | Promise<Probe>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(p);
    };
    const failure = (err: unknown): Probe => {
      const code = (err as NodeJS.ErrnoException).code ?? 'ERROR';
      return { kind: 'error', code, message: describeWithoutNodeAdvice(err), ms: ms(), tls: isTlsErrorCode(code) };
    };
    const onResponse = (res: IncomingMessage): void => {
      const location = res.headers.location;
      if (
        target instanceof URL &&
        method === 'GET' &&
        location &&
        REDIRECTS.has(res.statusCode ?? 0) &&
        redirects < MAX_REDIRECTS
      ) {
        res.resume();
        done(probe(new URL(location, target), opts, redirects + 1));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size <= BODY_KEPT) chunks.push(c);
      });
      res.on('end', () =>
        done({
          kind: 'answer',
          status: res.statusCode ?? 0,
          ms: ms(),
          body: Buffer.concat(chunks).toString('utf8'),
          headers: res.headers,
        }),
      );
      res.on('error', (err) => done(failure(err)));
    };
    let req;
    try {
      req =
        target instanceof URL
          ? (target.protocol === 'https:' ? httpsRequest : httpRequest)(
              target,
              { method, headers, agent: false },
              onResponse,
            )
          : httpsRequest({ ...target, method, headers: { ...target.headers, ...headers } }, onResponse);
    } catch (err) {
      resolve(failure(err));
      return;
    }
    const timer = setTimeout(() => {
      done({
        kind: 'error',
        code: 'TIMEOUT',
        message: `no answer within ${opts.timeoutMs / 1000}s`,
        ms: ms(),
        tls: false,
      });
      req.destroy();
    }, opts.timeoutMs);
    req.on('error', (err) => done(failure(err)));
    req.end(opts.body);
  });
}
