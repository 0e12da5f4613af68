import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { createDecoder } from '../../../../src/stages/decode/index.ts';
import { JSON_LIST, decodePieces, decodeWhole, podList, randomSplit, rng } from './fixtures.ts';

const GZIP_LIST = { ...JSON_LIST, contentEncoding: 'gzip' };
const plain = Buffer.from(JSON.stringify(podList(300, { resourceVersion: '88', continue: 'next' })));
const gz = zlib.gzipSync(plain);

describe('gzip Content-Encoding', () => {
  it('decodes a gzip-compressed PodList and reports wire and decoded bytes', () => {
    const r = decodeWhole(GZIP_LIST, gz);
    expect(r).toMatchObject({
      kind: 'PodList',
      items: 300,
      resourceVersion: '88',
      continue: true,
      contentEncoding: 'gzip',
      bytes: gz.length,
      decodedBytes: plain.length,
    });
    expect(r.error).toBeUndefined();
  });

  it('decodes the same under random splits of the compressed bytes, down to single bytes', () => {
    const next = rng(11);
    for (let round = 0; round < 10; round++) {
      const r = decodePieces(GZIP_LIST, randomSplit(gz, Math.floor(next() * 500), next));
      expect(r).toMatchObject({ items: 300, decodedBytes: plain.length, bytes: gz.length });
      expect(r.error).toBeUndefined();
    }
    const bytewise = decodePieces(
      GZIP_LIST,
      Array.from(gz.subarray(0, 4000), (b) => Uint8Array.of(b)),
    );
    const rest = createDecoder(GZIP_LIST);
    for (const b of gz) rest.write(Uint8Array.of(b));
    expect(rest.end()).toMatchObject({ items: 300, decodedBytes: plain.length });
    expect(bytewise.error).toBe('truncated');
  });

  it('reads concatenated gzip members (RFC 1952 allows several)', () => {
    const half = plain.length >> 1;
    const twoMembers = Buffer.concat([zlib.gzipSync(plain.subarray(0, half)), zlib.gzipSync(plain.subarray(half))]);
    expect(decodeWhole(GZIP_LIST, twoMembers)).toMatchObject({ items: 300, decodedBytes: plain.length });
  });

  it('accepts x-gzip and deflate', () => {
    expect(decodeWhole({ ...JSON_LIST, contentEncoding: 'x-gzip' }, gz).items).toBe(300);
    expect(decodeWhole({ ...JSON_LIST, contentEncoding: 'deflate' }, zlib.deflateSync(plain)).items).toBe(300);
  });

  it('flags a corrupt stream as gzip_error and keeps counting wire bytes', () => {
    const badCrc = Buffer.from(gz);
    badCrc.writeUInt32LE(badCrc.readUInt32LE(gz.length - 8) ^ 0xffff, gz.length - 8); // the trailer's CRC-32
    const r = decodePieces(GZIP_LIST, randomSplit(badCrc, 50, rng(5)));
    expect(r.error).toBe('gzip_error');
    expect(r.bytes).toBe(gz.length);
    // What was decompressed before the damage was read (zlib discards the output of the call that fails).
    expect(r).toMatchObject({ kind: 'PodList', resourceVersion: '88' });
    expect(r.decodedBytes).toBeGreaterThan(plain.length / 2);

    const garbage = decodeWhole(GZIP_LIST, 'not gzip at all');
    expect(garbage).toMatchObject({ error: 'gzip_error', bytes: 15, decodedBytes: 0 });
  });

  it('flags a gzip stream that ends early as truncated (even at a JSON-complete point)', () => {
    expect(decodeWhole(GZIP_LIST, gz.subarray(0, gz.length >> 1)).error).toBe('truncated');
    // All the JSON is there, only the gzip trailer (CRC, size) is missing.
    expect(decodeWhole(GZIP_LIST, gz.subarray(0, gz.length - 4))).toMatchObject({ items: 300, error: 'truncated' });
  });

  it('stops decompressing once the content is known to be invalid', () => {
    const html = zlib.gzipSync(Buffer.from('<html>' + 'x'.repeat(8 * 1024 * 1024)));
    const d = createDecoder(GZIP_LIST);
    for (let i = 0; i < html.length; i += 1024) d.write(html.subarray(i, i + 1024));
    const r = d.end();
    expect(r).toMatchObject({ error: 'invalid_json', bytes: html.length });
    expect(r.decodedBytes).toBeLessThanOrEqual(64 * 1024); // one output window, not 8 MiB
  });

  it('an aborted gzip stream is not an error', () => {
    const d = createDecoder(GZIP_LIST);
    d.write(gz.subarray(0, gz.length >> 1));
    expect(d.abort()).toMatchObject({ aborted: true, kind: 'PodList' });
    expect(d.end().error).toBeUndefined(); // idempotent: the first outcome stands
  });

  it('reports an encoding it cannot remove, without guessing', () => {
    const r = decodeWhole({ ...JSON_LIST, contentEncoding: 'br' }, zlib.brotliCompressSync(plain));
    expect(r).toMatchObject({ error: 'unsupported_encoding', contentEncoding: 'br', bytes: expect.any(Number) });
    expect(r.decodedBytes).toBeUndefined();
    expect(r.kind).toBeUndefined();
  });

  it('streams a decompression bomb through in bounded memory', async () => {
    // 512 MiB of JSON whitespace-free string inside a list, ~0.5 MiB compressed.
    const payload = 512 * 1024 * 1024;
    const block = Buffer.alloc(1024 * 1024, 0x61);
    function* source(): Generator<Buffer> {
      yield Buffer.from('{"kind":"PodList","items":[{"a":"');
      for (let i = 0; i < payload / block.length; i++) yield block;
      yield Buffer.from('"}]}');
    }
    const bomb = await buffer(Readable.from(source()).pipe(zlib.createGzip({ level: 9 })));
    expect(bomb.length).toBeLessThan(2 * 1024 * 1024);

    // No scan budget: the whole bomb is decompressed and scanned (the default stops at 16 MiB).
    const d = createDecoder(GZIP_LIST, { maxScanBytes: Infinity });
    const before = process.memoryUsage();
    let peakExternal = 0;
    for (let i = 0; i < bomb.length; i += 16 * 1024) {
      d.write(bomb.subarray(i, i + 16 * 1024));
      if (i % (256 * 1024) === 0) {
        const m = process.memoryUsage();
        peakExternal = Math.max(peakExternal, m.arrayBuffers - before.arrayBuffers);
      }
    }
    const r = d.end();
    expect(r).toMatchObject({ items: 1, kind: 'PodList' });
    expect(r.error).toBeUndefined();
    expect(r.decodedBytes).toBe(payload + 37);
    // Decompressed data never accumulates: a few windows at most, nowhere near 512 MiB.
    expect(peakExternal).toBeLessThan(32 * 1024 * 1024);
    expect(d.stateSize()).toBeLessThan(128 * 1024);
  }, 60_000);
});
