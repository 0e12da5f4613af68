/**
 * The load generator: a process of its own (forked by run.ts, one job at a time over IPC, each numbered and
 * cancelled if its caller stops waiting: bench/lib/jobs.ts), the same for
 * every path. Over HTTP/1.1 keep-alive agents or one HTTP/2 connection (bench/lib/client.ts), as each job
 * asks; kubectl-like headers (User-Agent, Kubectl-Command, and a Kubectl-Session
 * that changes every 10 requests per connection, as if each were one kubectl command), bodies read and
 * counted, never parsed (watch events: only the send stamp is read).
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { serveParent } from './child.ts';
import { createClient, type Client, type OnResponse, type Pending, type Timing } from './client.ts';
import type { JobContext } from './jobs.ts';
import { SENT_ANNOTATION } from './pods.ts';
import type { Job, JobResult, Target } from './target.ts';

const REQUESTS_PER_SESSION = 10;
const USER_AGENT = 'kubectl/v1.33.0 (linux/amd64) kubernetes/bench';

type Ctx = JobContext<JobResult>;

/** A cancelled job stops at once: its client's connections (and so its requests in flight) are destroyed. */
function closeOnAbort(ctx: Ctx, client: Client): void {
  if (ctx.signal.aborted) client.close();
  else ctx.signal.addEventListener('abort', () => client.close(), { once: true });
}

class Session {
  #id = randomUUID();
  #n = 0;
  next(): string {
    if (this.#n++ % REQUESTS_PER_SESSION === 0 && this.#n > 1) this.#id = randomUUID();
    return this.#id;
  }
}

function start(
  t: Target,
  client: Client,
  path: string,
  session: string,
  extra: Record<string, string> = {},
  onResponse?: OnResponse,
): Pending {
  const headers: Record<string, string> = {
    Accept: 'application/json',
    'User-Agent': USER_AGENT,
    'Kubectl-Command': 'kubectl get',
    'Kubectl-Session': session,
    ...t.headers,
    ...extra,
  };
  return client.request(path, headers, onResponse);
}

function get(
  t: Target,
  client: Client,
  path: string,
  session: string,
  extra: Record<string, string> = {},
): Promise<Timing> {
  return start(t, client, path, session, extra).done;
}

async function latency(job: Extract<Job, { type: 'latency' }>, ctx: Ctx): Promise<JobResult> {
  const client = createClient(job.target, job.proto, 1);
  closeOnAbort(ctx, client);
  const session = new Session();
  const samples: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  for (let i = 0; i < job.warmup + job.count && !ctx.signal.aborted; i++) {
    try {
      const r = await get(job.target, client, job.path, session.next());
      if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
      if (i >= job.warmup) samples.push(r.ttlbMs);
    } catch (err) {
      errors++;
      firstError ??= String(err);
      if (errors > 20) break;
    }
  }
  client.close();
  return { type: 'latency', samples, errors, conns: client.connections(), firstError };
}

async function throughput(job: Extract<Job, { type: 'throughput' }>, ctx: Ctx): Promise<JobResult> {
  // HTTP/1.1: one connection per concurrent request; h2: all of them as streams of one connection.
  const client = createClient(job.target, job.proto, job.concurrency);
  closeOnAbort(ctx, client);
  const t0 = performance.now();
  const windowStart = t0 + job.warmupMs;
  const windowEnd = windowStart + job.durationMs;
  let count = 0;
  let errors = 0;
  let firstError: string | undefined;
  const samples: number[] = [];
  const startTimer = setTimeout(() => ctx.emit({ type: 'window', phase: 'start' }), job.warmupMs);
  const endTimer = setTimeout(() => ctx.emit({ type: 'window', phase: 'end' }), job.warmupMs + job.durationMs);
  const worker = async (): Promise<void> => {
    const session = new Session();
    while (performance.now() < windowEnd && errors < 100 && !ctx.signal.aborted) {
      const s = performance.now();
      try {
        const r = await get(job.target, client, job.path, session.next());
        if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
        const e = performance.now();
        // Completions inside the window count; latency only for requests wholly inside it.
        if (e >= windowStart && e <= windowEnd) {
          count++;
          if (s >= windowStart) samples.push(e - s);
        }
      } catch (err) {
        errors++;
        firstError ??= String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, worker));
  clearTimeout(startTimer);
  clearTimeout(endTimer);
  client.close();
  return { type: 'throughput', count, errors, ms: job.durationMs, samples, conns: client.connections(), firstError };
}

async function large(job: Extract<Job, { type: 'large' }>, ctx: Ctx): Promise<JobResult> {
  const client = createClient(job.target, job.proto, 1);
  closeOnAbort(ctx, client);
  const session = new Session();
  const runs: Timing[] = [];
  let errors = 0;
  let firstError: string | undefined;
  try {
    // Open (and keep) the connection first: the measurement is the transfer, not the handshake.
    await get(job.target, client, '/api/v1/namespaces/default/pods/pod-0', session.next());
    for (let i = 0; i < job.count && !ctx.signal.aborted; i++) {
      const r = await get(job.target, client, job.path, session.next(), { 'Accept-Encoding': job.encoding });
      if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
      runs.push(r);
    }
  } catch (err) {
    errors++;
    firstError = String(err);
  }
  client.close();
  return { type: 'large', runs, errors, conns: client.connections(), firstError };
}

let stopWatches: (() => JobResult) | undefined;

async function watch(job: Extract<Job, { type: 'watch' }>, ctx: Ctx): Promise<JobResult> {
  // h2: every watch a stream of one connection, as kubectl (client-go) opens them; HTTP/1.1: a connection each.
  const client = createClient(job.target, job.proto, Infinity);
  closeOnAbort(ctx, client);
  const latenciesUs: number[] = [];
  const open = new Set<Readable>();
  const marker = Buffer.from(`"${SENT_ANNOTATION}":"`);
  let events = 0;
  let unparsed = 0;
  let ended = 0;
  let opened = 0;
  let responses = 0;
  let failed = 0;
  const requests = new Set<Pending>();
  let firstError: string | undefined;
  const t0 = performance.now();
  // A watch counts as opened once its request is on the wire: some proxies (mitmproxy) send the response
  // head only with the first event, so waiting for it would deadlock. run.ts asks the upstream how many
  // watches it holds before it emits events.
  const openOne = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const req = start(job.target, client, job.path, randomUUID(), {}, (status, res) => {
        if (status !== 200) {
          failed++;
          firstError ??= `HTTP ${status}`;
          res.resume();
          return;
        }
        responses++;
        open.add(res);
        let pending: Buffer | undefined;
        res.on('data', (chunk: Buffer) => {
          const now = process.hrtime.bigint();
          let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
          let nl = buf.indexOf(0x0a);
          while (nl !== -1) {
            const line = buf.subarray(0, nl);
            events++;
            const at = line.indexOf(marker);
            if (at === -1) {
              unparsed++;
            } else {
              const start = at + marker.length;
              const end = line.indexOf(0x22, start);
              const sent = BigInt(line.subarray(start, end).toString('latin1'));
              latenciesUs.push(Number(now - sent) / 1000);
            }
            buf = buf.subarray(nl + 1);
            nl = buf.indexOf(0x0a);
          }
          pending = buf.length > 0 ? Buffer.from(buf) : undefined;
        });
        res.on('error', () => undefined);
        res.on('close', () => {
          open.delete(res);
          ended++;
        });
      });
      requests.add(req);
      void req.sent.then(() => {
        opened++;
        resolve();
      });
      req.done.catch((err: unknown) => {
        failed++;
        firstError ??= String(err);
        resolve();
      });
    });
  let next = 0;
  const deadline = t0 + job.timeoutMs;
  const opener = async (): Promise<void> => {
    while (next < job.n && performance.now() < deadline && !ctx.signal.aborted) {
      next++;
      await openOne();
    }
  };
  await Promise.all(Array.from({ length: job.openConcurrency }, opener));
  stopWatches = () => {
    const endedBefore = ended;
    for (const r of open) r.destroy();
    for (const r of requests) r.destroy();
    client.close();
    return { type: 'watch-done', latenciesUs, events, unparsed, ended: endedBefore, responses, failed, firstError };
  };
  return { type: 'watch-ready', opened, failed, ms: performance.now() - t0, conns: client.connections(), firstError };
}

serveParent<Job, JobResult>(async (job, ctx) => {
  switch (job.type) {
    case 'latency':
      return latency(job, ctx);
    case 'throughput':
      return throughput(job, ctx);
    case 'large':
      return large(job, ctx);
    case 'watch':
      return watch(job, ctx);
    case 'watch-stop':
      return stopWatches?.() ?? { type: 'error', message: 'no watches' };
  }
});
