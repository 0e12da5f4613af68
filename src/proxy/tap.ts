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
 * forwarding core, its decoding behind it. Only the order changes: the work is the same, on the same
 * thread (a decoder in a worker thread would need a copy of every chunk, and the end event would always
 * have to wait for it).
 */
import { createDecoder, type Decoder } from '../stages/decode/index.ts';
import { STATUS_BODY_CAP, type RequestEnd } from './events.ts';

export interface ResponseTap {
  write(chunk: Buffer): void;
  /** Items and watch events decoded so far (cheap; for live progress). */
  progress(): { items: number; watchEvents: number };
  /** Bytes relayed and waiting for the decoder. */
  pending(): number;
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

/** Bytes relayed and not yet decoded, all responses together (for tests and the bench). */
export function deferredDecodeBytes(): number {
  return deferredBytes;
}

export function createResponseTap(res: {
  statusCode: number;
  contentType: string | undefined;
  contentEncoding: string | undefined;
  isWatch: boolean;
  podList?: boolean;
}): ResponseTap {
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

  const drain = (): void => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    for (let i = 0; i < queue.length; i++) {
      chunkTime = times[i] ?? performance.now();
      decoder.write(queue[i] as Buffer);
    }
    deferredBytes -= queuedBytes;
    queue.length = 0;
    times.length = 0;
    queuedBytes = 0;
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
    finish(complete) {
      drain();
      const out: Pick<RequestEnd, 'decode' | 'statusBody'> = { decode: complete ? decoder.end() : decoder.abort() };
      if (captureStatus) out.statusBody = Buffer.concat(status).toString('utf8');
      return out;
    },
  };
}
