/**
 * The scan budget (`DecoderOptions.maxScanBytes`): a document is read up to N decoded bytes, then
 * only counted; the result says `partial`. And `progress()`, the live counts.
 */
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { createDecoder, decodeAttributes } from '../../../../src/stages/decode/index.ts';
import type { DecodeInput } from '../../../../src/stages/decode/index.ts';
import {
  JSON_LIST,
  JSON_WATCH,
  PROTOBUF,
  decodePieces,
  decodeWhole,
  pbPodList,
  pod,
  splitAt,
  table,
  watchEvent,
  podObject,
} from './fixtures.ts';

const GZIP_LIST: DecodeInput = { ...JSON_LIST, contentEncoding: 'gzip' };
const MiB = 1024 * 1024;

/** A PodList built by hand, so we know at which byte each item starts. */
function listWithOffsets(n: number): { bytes: Buffer; starts: number[] } {
  const head = '{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"99","continue":"more"},"items":[';
  const parts = [head];
  const starts: number[] = [];
  let off = head.length;
  for (let i = 0; i < n; i++) {
    const s = (i === 0 ? '' : ',') + JSON.stringify(pod(i));
    starts.push(off + (i === 0 ? 0 : 1));
    parts.push(s);
    off += Buffer.byteLength(s);
  }
  parts.push(']}');
  return { bytes: Buffer.from(parts.join('')), starts };
}

/** Items whose first byte lies within the first `budget` bytes: what a partial read has seen. */
const itemsWithin = (starts: number[], budget: number): number => starts.filter((s) => s < budget).length;

describe('scan budget', () => {
  const { bytes, starts } = listWithOffsets(40);

  it('reads a document up to the budget, then marks it partial; bytes are still all counted', () => {
    const budget = Math.floor(bytes.length / 3);
    const r = decodeWhole(JSON_LIST, bytes, { maxScanBytes: budget });
    expect(r).toMatchObject({
      kind: 'PodList',
      apiVersion: 'v1',
      resourceVersion: '99',
      continue: true,
      items: itemsWithin(starts, budget),
      partial: true,
      scannedBytes: budget,
      bytes: bytes.length,
      decodedBytes: bytes.length, // identity: decoded size is the wire size, read or not
    });
    expect(r.items).toBeGreaterThan(0);
    expect(r.items).toBeLessThan(40);
    expect(r.error).toBeUndefined(); // stopping early is not an error, and not `truncated`
  });

  it('counts items up to the budget exactly, for budgets on and around item boundaries', () => {
    for (const s of starts.slice(1, 6)) {
      for (const budget of [s - 1, s, s + 1]) {
        const r = decodeWhole(JSON_LIST, bytes, { maxScanBytes: budget });
        expect(r.items, `budget ${budget}`).toBe(itemsWithin(starts, budget));
        expect(r.partial, `budget ${budget}`).toBe(true);
      }
    }
  });

  it('is not partial when the body fits the budget exactly; is one byte short of it', () => {
    const fits = decodeWhole(JSON_LIST, bytes, { maxScanBytes: bytes.length });
    expect(fits).toMatchObject({ items: 40 });
    expect(fits.partial).toBeUndefined();
    expect(fits.scannedBytes).toBeUndefined();
    expect(fits.error).toBeUndefined();
    const short = decodeWhole(JSON_LIST, bytes, { maxScanBytes: bytes.length - 1 });
    expect(short).toMatchObject({ items: 40, partial: true, scannedBytes: bytes.length - 1 });
    expect(short.error).toBeUndefined();
  });

  it('gives the same partial result wherever the chunks are cut', () => {
    const budget = starts[3]! + 17;
    const expected = decodeWhole(JSON_LIST, bytes, { maxScanBytes: budget });
    for (let k = 0; k <= bytes.length; k += 97) {
      for (const k2 of [budget - 1, budget, budget + 1]) {
        const r = decodePieces(JSON_LIST, splitAt(bytes, [k, k2]), { maxScanBytes: budget, now: () => 1 });
        expect(r, `split at ${k}, ${k2}`).toEqual(expected);
      }
    }
  });

  it('bounds a gzip body by decoded bytes: stops decompressing too', () => {
    // Several output windows of decompressed data (64 KiB each).
    const large = listWithOffsets(600);
    const gz = zlib.gzipSync(large.bytes, { level: 1 });
    const budget = Math.floor(large.bytes.length / 3);
    const r = decodeWhole(GZIP_LIST, gz, { maxScanBytes: budget });
    expect(r).toMatchObject({
      items: itemsWithin(large.starts, budget),
      partial: true,
      scannedBytes: budget,
      bytes: gz.length,
    });
    // Decompression stopped at the budget (give or take one output window), not at the end.
    expect(r.decodedBytes).toBeGreaterThanOrEqual(budget);
    expect(r.decodedBytes).toBeLessThan(large.bytes.length);
    expect(r.error).toBeUndefined();
  });

  it('keeps an error found before the budget, and is then not partial', () => {
    const bad = Buffer.concat([Buffer.from('{"kind":"PodList","items":[{},oops'), Buffer.alloc(1000, 0x20)]);
    const r = decodeWhole(JSON_LIST, bad, { maxScanBytes: 100 });
    expect(r.error).toBe('invalid_json');
    expect(r.partial).toBeUndefined();
  });

  it('applies by default at 16 MiB', () => {
    const item = JSON.stringify(pod(1));
    const size = Buffer.byteLength(item) + 1; // with its comma
    const count = Math.ceil((17 * MiB) / size);
    const big = Buffer.from(`{"kind":"PodList","items":[${Array.from({ length: count }, () => item).join(',')}]}`);
    const r = decodeWhole(JSON_LIST, big);
    expect(r).toMatchObject({ kind: 'PodList', partial: true, scannedBytes: 16 * MiB, bytes: big.length });
    // Items start at 27 + k * size (27 bytes of head before the first).
    expect(r.items).toBe(Math.ceil((16 * MiB - 27) / size));
  });

  it('falls back to the default for nonsense values, and Infinity means no budget', () => {
    for (const maxScanBytes of [-1, Number.NaN, 1.5]) {
      const r = decodeWhole(JSON_LIST, bytes, { maxScanBytes });
      expect(r.partial, String(maxScanBytes)).toBeUndefined();
      expect(r.items).toBe(40);
    }
    expect(decodeWhole(JSON_LIST, bytes, { maxScanBytes: Infinity }).items).toBe(40);
    expect(decodeWhole(JSON_LIST, bytes, { maxScanBytes: 0 })).toMatchObject({ partial: true, scannedBytes: 0 });
  });

  it('does not bound streams: a watch is read whole whatever the budget', () => {
    const events = Array.from({ length: 50 }, (_, i) => watchEvent('ADDED', podObject(`p${i}`, `${i}`))).join('\n');
    const r = decodeWhole(JSON_WATCH, events, { maxScanBytes: 1000 });
    expect(r.watch?.events).toBe(50);
    expect(r.partial).toBeUndefined();
  });

  it('does not bound identity protobuf (walked per field), but does bound gzip protobuf', () => {
    const pb = pbPodList(200);
    const identity = decodeWhole(PROTOBUF, pb, { maxScanBytes: 100 });
    expect(identity).toMatchObject({ kind: 'PodList', items: 200 });
    expect(identity.partial).toBeUndefined();
    const gz = decodeWhole({ ...PROTOBUF, contentEncoding: 'gzip' }, zlib.gzipSync(pb), { maxScanBytes: 1000 });
    expect(gz).toMatchObject({ kind: 'PodList', partial: true, scannedBytes: 1000 });
    expect(gz.items).toBeLessThan(200);
  });

  it('puts decode.partial and decode.scanned_bytes on the span only when partial', () => {
    const partial = decodeAttributes(decodeWhole(JSON_LIST, bytes, { maxScanBytes: 5000 }));
    expect(partial).toMatchObject({
      'decode.partial': true,
      'decode.scanned_bytes': 5000,
      'decode.bytes': bytes.length,
    });
    const whole = decodeAttributes(decodeWhole(JSON_LIST, bytes));
    expect(whole).not.toHaveProperty('decode.partial');
    expect(whole).not.toHaveProperty('decode.scanned_bytes');
  });
});

describe('progress()', () => {
  it('is zero before anything is read', () => {
    expect(createDecoder(JSON_LIST).progress()).toEqual({ items: 0, watchEvents: 0 });
    expect(createDecoder(JSON_WATCH).progress()).toEqual({ items: 0, watchEvents: 0 });
  });

  it('counts list items as they arrive, and ends at the result', () => {
    const { bytes, starts } = listWithOffsets(25);
    const d = createDecoder(JSON_LIST);
    for (let off = 0; off < bytes.length; off += 500) {
      const end = Math.min(bytes.length, off + 500);
      d.write(bytes.subarray(off, end));
      expect(d.progress(), `after ${end} bytes`).toEqual({ items: itemsWithin(starts, end), watchEvents: 0 });
    }
    const r = d.end();
    expect(d.progress()).toEqual({ items: r.items, watchEvents: 0 });
  });

  it('counts Table rows', () => {
    const bytes = Buffer.from(JSON.stringify(table(7)));
    const d = createDecoder(JSON_LIST);
    d.write(bytes);
    expect(d.progress().items).toBe(7);
  });

  it('counts completed watch events, not one still arriving', () => {
    const ev = Buffer.from(watchEvent('MODIFIED', podObject('p', '1')) + '\n');
    const d = createDecoder(JSON_WATCH);
    d.write(ev);
    d.write(ev);
    d.write(ev.subarray(0, ev.length - 3));
    expect(d.progress()).toEqual({ items: 0, watchEvents: 2 });
    d.write(ev.subarray(ev.length - 3));
    expect(d.progress()).toEqual({ items: 0, watchEvents: 3 });
    expect(d.abort().watch?.events).toBe(3);
  });

  it('stops at the scan budget', () => {
    const { bytes, starts } = listWithOffsets(25);
    const d = createDecoder(JSON_LIST, { maxScanBytes: starts[10]! });
    d.write(bytes);
    expect(d.progress().items).toBe(10);
    expect(d.end()).toMatchObject({ items: 10, partial: true });
  });
});
