/**
 * The load generator: a process of its own (forked by run.ts, one job at a time over IPC), the same for
 * every path. Keep-alive agents, kubectl-like headers (User-Agent, Kubectl-Command, and a Kubectl-Session
 * that changes every 10 requests per connection, as if each were one kubectl command), bodies read and
 * counted, never parsed (watch events: only the send stamp is read).
 */
import { randomUUID } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { SENT_ANNOTATION } from './pods.ts';
import type { Job, JobResult, LargeRun, Target } from './target.ts';

const REQUESTS_PER_SESSION = 10;
const USER_AGENT = 'kubectl/v1.33.0 (linux/amd64) kubernetes/bench';

function send(m: JobResult): void {
  process.send?.(m);
}

function agentFor(t: Target, maxSockets: number): HttpAgent {
  if (t.scheme === 'http') return new HttpAgent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' });
  return new HttpsAgent({
    keepAlive: true,
    maxSockets,
    maxFreeSockets: maxSockets,
    scheduling: 'lifo',
    ca: t.ca,
    cert: t.cert,
    key: t.key,
    servername: t.servername,
    ALPNProtocols: ['http/1.1'],
  });
}

class Session {
  #id = randomUUID();
  #n = 0;
  next(): string {
    if (this.#n++ % REQUESTS_PER_SESSION === 0 && this.#n > 1) this.#id = randomUUID();
    return this.#id;
  }
}

interface Timing {
  status: number;
  ttfbMs: number;
  ttlbMs: number;
  bytes: number;
}

interface Pending {
  request: ClientRequest;
  done: Promise<Timing>;
}

function start(t: Target, agent: HttpAgent, path: string, session: string, extra: Record<string, string> = {}, onResponse?: (res: IncomingMessage) => void): Pending {
  let request: ClientRequest | undefined;
  const done = new Promise<Timing>((resolve, reject) => {
    const t0 = performance.now();
    const headers: Record<string, string> = {
      Accept: 'application/json',
      'User-Agent': USER_AGENT,
      'Kubectl-Command': 'kubectl get',
      'Kubectl-Session': session,
      ...t.headers,
      ...extra,
    };
    const opts = { agent, host: t.host, port: t.port, path: `${t.prefix}${path}`, method: 'GET', headers };
    request = (t.scheme === 'https' ? httpsRequest : httpRequest)(opts, (res) => {
      const ttfb = performance.now() - t0;
      let bytes = 0;
      if (onResponse) {
        onResponse(res);
        return;
      }
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ttfbMs: ttfb, ttlbMs: performance.now() - t0, bytes }));
      res.on('error', reject);
    });
    request.on('error', reject);
    request.end();
  });
  if (!request) throw new Error('unreachable');
  return { request, done };
}

function get(t: Target, agent: HttpAgent, path: string, session: string, extra: Record<string, string> = {}): Promise<Timing> {
  return start(t, agent, path, session, extra).done;
}

async function latency(job: Extract<Job, { type: 'latency' }>): Promise<JobResult> {
  const agent = agentFor(job.target, 1);
  const session = new Session();
  const samples: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  for (let i = 0; i < job.warmup + job.count; i++) {
    try {
      const r = await get(job.target, agent, job.path, session.next());
      if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
      if (i >= job.warmup) samples.push(r.ttlbMs);
    } catch (err) {
      errors++;
      firstError ??= String(err);
      if (errors > 20) break;
    }
  }
  agent.destroy();
  return { type: 'latency', samples, errors, firstError };
}

async function throughput(job: Extract<Job, { type: 'throughput' }>): Promise<JobResult> {
  const agent = agentFor(job.target, job.concurrency);
  const t0 = performance.now();
  const windowStart = t0 + job.warmupMs;
  const windowEnd = windowStart + job.durationMs;
  let count = 0;
  let errors = 0;
  let firstError: string | undefined;
  const samples: number[] = [];
  const startTimer = setTimeout(() => send({ type: 'window', phase: 'start' }), job.warmupMs);
  const endTimer = setTimeout(() => send({ type: 'window', phase: 'end' }), job.warmupMs + job.durationMs);
  const worker = async (): Promise<void> => {
    const session = new Session();
    while (performance.now() < windowEnd && errors < 100) {
      const s = performance.now();
      try {
        const r = await get(job.target, agent, job.path, session.next());
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
  agent.destroy();
  return { type: 'throughput', count, errors, ms: job.durationMs, samples, firstError };
}

async function large(job: Extract<Job, { type: 'large' }>): Promise<JobResult> {
  const agent = agentFor(job.target, 1);
  const session = new Session();
  const runs: LargeRun[] = [];
  let errors = 0;
  let firstError: string | undefined;
  try {
    // Open (and keep) the connection first: the measurement is the transfer, not the handshake.
    await get(job.target, agent, '/api/v1/namespaces/default/pods/pod-0', session.next());
    for (let i = 0; i < job.count; i++) {
      const r = await get(job.target, agent, job.path, session.next(), { 'Accept-Encoding': job.encoding });
      if (r.status !== 200) throw new Error(`HTTP ${r.status}`);
      runs.push(r);
    }
  } catch (err) {
    errors++;
    firstError = String(err);
  }
  agent.destroy();
  return { type: 'large', runs, errors, firstError };
}

let stopWatches: (() => JobResult) | undefined;

async function watch(job: Extract<Job, { type: 'watch' }>): Promise<JobResult> {
  const agent = agentFor(job.target, Infinity);
  const latenciesUs: number[] = [];
  const open = new Set<IncomingMessage>();
  const marker = Buffer.from(`"${SENT_ANNOTATION}":"`);
  let events = 0;
  let unparsed = 0;
  let ended = 0;
  let opened = 0;
  let responses = 0;
  let failed = 0;
  const requests = new Set<ClientRequest>();
  let firstError: string | undefined;
  const t0 = performance.now();
  // A watch counts as opened once its request is on the wire: some proxies (mitmproxy) send the response
  // head only with the first event, so waiting for it would deadlock. run.ts asks the upstream how many
  // watches it holds before it emits events.
  const openOne = (): Promise<void> =>
    new Promise<void>((resolve) => {
      const req = start(job.target, agent, job.path, randomUUID(), {}, (res) => {
        if (res.statusCode !== 200) {
          failed++;
          firstError ??= `HTTP ${res.statusCode}`;
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
      requests.add(req.request);
      req.request.once('finish', () => {
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
    while (next < job.n && performance.now() < deadline) {
      next++;
      await openOne();
    }
  };
  await Promise.all(Array.from({ length: job.openConcurrency }, opener));
  stopWatches = () => {
    const endedBefore = ended;
    for (const r of open) r.destroy();
    for (const r of requests) r.destroy();
    agent.destroy();
    return { type: 'watch-done', latenciesUs, events, unparsed, ended: endedBefore, responses, failed, firstError };
  };
  return { type: 'watch-ready', opened, failed, ms: performance.now() - t0, firstError };
}

process.on('message', (job: Job) => {
  const run = async (): Promise<JobResult> => {
    switch (job.type) {
      case 'latency':
        return latency(job);
      case 'throughput':
        return throughput(job);
      case 'large':
        return large(job);
      case 'watch':
        return watch(job);
      case 'watch-stop':
        return stopWatches?.() ?? { type: 'error', message: 'no watches' };
    }
  };
  run().then(send, (err: unknown) => send({ type: 'error', message: String(err) }));
});
process.on('disconnect', () => process.exit(0));
