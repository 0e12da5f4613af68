/**
 * What the proxy observes of a response body as it relays it: the decode stage's streaming tap, and the
 * first bytes of a failed JSON answer (a Status) for the rbac stage. Observes only; never alters a chunk.
 *
 * Forward first, observe after: relay.ts hands each chunk to kubectl before the tap sees it, and the tap
 * only queues it. The decoder (inflate + scan, the observer's largest per-byte cost) runs when the
 * response ends (`finish` decodes what is left before the `end` event is published, so the trace loses
 * nothing; when much is left, exchange.ts publishes that event once the body's last bytes are with the
 * OS, not merely queued for kubectl), or DECODE_DELAY_MS after the oldest waiting chunk (a watch or a
 * slow stream is decoded as it goes; each chunk keeps the time it was relayed), or at once when the
 * waiting bytes of all responses together pass MAX_DEFERRED_BYTES, so memory stays bounded whatever the
 * number of connections. A list relayed within that delay and bound goes to kubectl at the speed of the
 * forwarding core, its decoding behind it. What is left at a response's end is decoded in slices of
 * DECODE_SLICE_MS (settle), so a large list's decoding never holds another request back for longer than a
 * slice. Only the order changes: the work is the same, on the same thread (a decoder in a worker thread
 * would need a copy of every chunk, and the end event would always have to wait for it).
 */
import { createDecoder, type Decoder } from '../stages/decode/index.ts';
import { STATUS_BODY_CAP, type RequestEnd } from './events.ts';

export interface ResponseTap {
  write(chunk: Buffer): void;
  /** Items and watch events decoded so far (cheap; for live progress). */
  progress(): { items: number; watchEvents: number };
  /** Bytes relayed and waiting for the decoder. */
  pending(): number;
  /**
   * Decode what waits in slices of at most DECODE_SLICE_MS, the event loop serving other connections
   * between them, then call `done` (the response has ended: nothing more is written).
   */
  settle(done: () => void): void;
  /** The facts for the `end` event; `complete` ends the decoder, anything else aborts it. */
  finish(complete: boolean): Pick<RequestEnd, 'decode' | 'statusBody'>;
}

/**
 * Relayed bytes waiting for the decoder, all responses together. 8 MiB: a gzip list of ~3 MB on the wire
 * (86 MB decoded) is relayed whole before it is inflated; an 86 MB identity list has its first 8 MiB
 * relayed ahead of the scan (the scan reads 16 MiB, decode's budget).
 */
export const MAX_DEFERRED_BYTES = 8 * 1024 * 1024;
let deferredBytes = 0;
/** A waiting chunk is decoded at the latest this long after it was relayed (live progress, watch events). */
export const DECODE_DELAY_MS = 1000;

/**
 * A response's remaining decoding runs in slices of about this long (settle), so that a large list's
 * decode (30-100 ms of inflate + scan for 20,000 pods) holds no other request back for more than a slice:
 * before, the next request on any connection waited for the whole of it (#18, W3: TTFB 30 ms vs 4).
 */
export const DECODE_SLICE_MS = 4;
/** Responses whose decoding is being settled in slices; and who waits for there being none. */
let settling = 0;
let idleWaiters: (() => void)[] = [];

/** Bytes relayed and not yet decoded, all responses together (for tests and the bench). */
export function deferredDecodeBytes(): number {
  return deferredBytes;
}

/** Resolves once no response's decoding is being settled in slices (the proxy's close() waits for it). */
export function decodesSettled(): Promise<void> {
  if (settling === 0) return Promise.resolve();
  return new Promise((resolve) => idleWaiters.push(resolve));
}

export function createResponseTap(
  res: {
    statusCode: number;
    contentType: string | undefined;
    contentEncoding: string | undefined;
    isWatch: boolean;
    podList?: boolean;
  },
  opts: { sliceMs?: number } = {},
): ResponseTap {
  const sliceMs = opts.sliceMs ?? DECODE_SLICE_MS;
  // A chunk's watch events are stamped with the time the chunk was relayed, not the time it was decoded.
  let chunkTime = 0;
  const decoder: Decoder = createDecoder(
    {
      contentType: res.contentType,
      contentEncoding: res.contentEncoding,
      statusCode: res.statusCode,
      isWatch: res.isWatch,
      countPodPhases: res.podList === true,
    },
    { now: () => chunkTime },
  );
  const captureStatus =
    res.statusCode >= 400 && res.contentType?.includes('json') === true && res.contentEncoding === undefined;
  const status: Buffer[] = [];
  let statusLen = 0;

  const queue: Buffer[] = [];
  const times: number[] = [];
  let queuedBytes = 0;
  let timer: NodeJS.Timeout | undefined;

  /** Decodes the oldest waiting chunk. */
  const decodeOne = (): void => {
    const chunk = queue.shift() as Buffer;
    chunkTime = times.shift() ?? performance.now();
    queuedBytes -= chunk.length;
    deferredBytes -= chunk.length;
    decoder.write(chunk);
  };
  const stopTimer = (): void => {
    if (timer) clearTimeout(timer);
    timer = undefined;
  };
  const drain = (): void => {
    stopTimer();
    while (queue.length > 0) decodeOne();
  };

  return {
    write(chunk) {
      if (captureStatus && statusLen < STATUS_BODY_CAP) {
        const part = chunk.subarray(0, STATUS_BODY_CAP - statusLen);
        status.push(Buffer.from(part));
        statusLen += part.length;
      }
      const now = performance.now();
      if (queue.length === 0 && decoder.done()) {
        // Nothing more is read (budget spent, opaque body): counting a chunk costs nothing to defer.
        chunkTime = now;
        decoder.write(chunk);
        return;
      }
      queue.push(chunk);
      times.push(now);
      queuedBytes += chunk.length;
      deferredBytes += chunk.length;
      if (deferredBytes > MAX_DEFERRED_BYTES) drain();
      else if (!timer) timer = setTimeout(drain, DECODE_DELAY_MS).unref();
    },
    progress() {
      return decoder.progress();
    },
    pending: () => queuedBytes,
    settle(done) {
      stopTimer();
      settling++;
      const slice = (): void => {
        const until = performance.now() + sliceMs;
        while (queue.length > 0) {
          decodeOne();
          if (performance.now() >= until) break;
        }
        if (queue.length > 0) {
          setImmediate(slice);
          return;
        }
        settling--;
        done();
        if (settling === 0) {
          const waiters = idleWaiters;
          idleWaiters = [];
          for (const w of waiters) w();
        }
      };
      slice();
    },
    finish(complete) {
      drain();
      const out: Pick<RequestEnd, 'decode' | 'statusBody'> = { decode: complete ? decoder.end() : decoder.abort() };
      if (captureStatus) out.statusBody = Buffer.concat(status).toString('utf8');
      return out;
    },
  };
}
