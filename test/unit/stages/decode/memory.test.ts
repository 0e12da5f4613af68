/**
 * The decoder's memory must not grow with the body. These tests stream bodies far larger than
 * anything the decoder could get away with holding, generated chunk by chunk into one reused
 * buffer (so the body never exists whole, and a decoder that kept a chunk would see it change).
 */
import { describe, expect, it } from 'vitest';
import { createDecoder } from '../../../../src/stages/decode/index.ts';
import { JSON_LIST, JSON_WATCH, pod, podObject, watchEvent } from './fixtures.ts';

const MiB = 1024 * 1024;

/** Emits `head`, then items from `item(i)` joined by `sep`, then `tail`, in fixed-size chunks. */
class ChunkedBody {
  private readonly chunkSize: number;
  private readonly target: number;
  private readonly item: (i: number) => Buffer;
  private readonly sep: Buffer;
  private readonly tail: Buffer;
  private readonly out: Buffer;
  private segment: Buffer;
  private segPos = 0;
  private index = 0;
  private done = false;
  items = 0;
  bytes = 0;

  constructor(chunkSize: number, target: number, head: Buffer, item: (i: number) => Buffer, sep: Buffer, tail: Buffer) {
    this.chunkSize = chunkSize;
    this.target = target;
    this.item = item;
    this.sep = sep;
    this.tail = tail;
    this.out = Buffer.allocUnsafe(chunkSize);
    this.segment = head;
  }

  private nextSegment(): Buffer | undefined {
    if (this.done) return undefined;
    if (this.bytes >= this.target) {
      this.done = true;
      return this.tail;
    }
    const body = this.item(this.index);
    const seg = this.index === 0 ? body : Buffer.concat([this.sep, body]);
    this.index++;
    this.items++;
    return seg;
  }

  /** The next chunk (a view of the one reused buffer), or undefined at the end. */
  next(): Buffer | undefined {
    let fill = 0;
    while (fill < this.chunkSize) {
      if (this.segPos === this.segment.length) {
        const s = this.nextSegment();
        if (s === undefined) break;
        this.segment = s;
        this.segPos = 0;
      }
      const k = Math.min(this.segment.length - this.segPos, this.chunkSize - fill);
      this.segment.copy(this.out, fill, this.segPos, this.segPos + k);
      this.segPos += k;
      fill += k;
    }
    this.bytes += fill;
    return fill === 0 ? undefined : this.out.subarray(0, fill);
  }
}

describe('bounded memory', () => {
  it('streams a 200 MiB PodList with constant decoder state and flat heap', () => {
    // A few distinct pods so boundaries fall everywhere; each has nested `items` keys.
    const variants = Array.from({ length: 7 }, (_, v) => Buffer.from(JSON.stringify(pod(v * 1000 + 17))));
    const body = new ChunkedBody(
      65_521, // odd size: chunk boundaries drift through every position of the items
      200 * MiB,
      Buffer.from(
        '{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"31337","continue":"tok","remainingItemCount":9},"items":[',
      ),
      (i) => variants[i % variants.length]!,
      Buffer.from(','),
      Buffer.from(']}'),
    );
    // No scan budget, so every byte is scanned (the default stops reading a document at 16 MiB).
    const d = createDecoder(JSON_LIST, { maxScanBytes: Infinity });
    const initialState = d.stateSize();
    const heap0 = process.memoryUsage().heapUsed;
    let maxHeapGrowth = 0;
    let maxState = 0;
    let chunks = 0;
    const t0 = performance.now();
    for (let chunk = body.next(); chunk !== undefined; chunk = body.next()) {
      d.write(chunk);
      if (++chunks % 256 === 0) {
        maxHeapGrowth = Math.max(maxHeapGrowth, process.memoryUsage().heapUsed - heap0);
        maxState = Math.max(maxState, d.stateSize());
      }
    }
    const r = d.end();
    const seconds = (performance.now() - t0) / 1000;
    console.log(
      `decode: ${(body.bytes / MiB).toFixed(0)} MiB JSON list, ${body.items} items, ` +
        `${(body.bytes / MiB / seconds).toFixed(0)} MiB/s (generation included), ` +
        `state ${maxState} B, heap growth ${(maxHeapGrowth / MiB).toFixed(1)} MiB`,
    );

    expect(body.bytes).toBeGreaterThan(200 * MiB);
    expect(r).toMatchObject({
      kind: 'PodList',
      items: body.items,
      resourceVersion: '31337',
      continue: true,
      remainingItems: 9,
      bytes: body.bytes,
      decodedBytes: body.bytes,
    });
    expect(r.error).toBeUndefined();
    expect(maxState).toBeLessThan(8 * 1024);
    expect(maxState).toBeLessThanOrEqual(initialState + 512);
    // Generous: garbage from the generator comes and goes; 200 MiB retained would be obvious.
    expect(maxHeapGrowth).toBeLessThan(48 * MiB);
  }, 120_000);

  it('streams 64 MiB of watch events: records capped, state bounded', () => {
    const events = Array.from({ length: 5 }, (_, v) =>
      Buffer.from(watchEvent(['ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK', 'MODIFIED'][v]!, podObject(`p${v}`, `${v}`))),
    );
    const body = new ChunkedBody(
      16_411,
      64 * MiB,
      Buffer.alloc(0),
      (i) => events[i % 5]!,
      Buffer.from('\n'),
      Buffer.from('\n'),
    );
    const d = createDecoder(JSON_WATCH);
    let maxState = 0;
    let chunks = 0;
    for (let chunk = body.next(); chunk !== undefined; chunk = body.next()) {
      d.write(chunk);
      if (++chunks % 128 === 0) maxState = Math.max(maxState, d.stateSize());
    }
    const r = d.end();
    expect(r.watch?.events).toBe(body.items);
    expect(r.watch?.modified).toBe(
      2 * Math.floor(body.items / 5) + (body.items % 5 > 1 ? 1 : 0) + (body.items % 5 > 4 ? 1 : 0),
    );
    expect(r.watch?.records).toHaveLength(100);
    expect(r.watch?.dropped).toBe(body.items - 100);
    // 100 records of a few dozen bytes each, plus fixed buffers; it stopped growing at record 100.
    expect(maxState).toBeLessThan(48 * 1024);
    expect(Math.abs(d.stateSize() - maxState)).toBeLessThan(64);
  }, 60_000);
});
