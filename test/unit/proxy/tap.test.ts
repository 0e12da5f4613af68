/**
 * The response tap (src/proxy/tap.ts): forward first, observe after. While a response's chunks keep
 * coming the tap only queues them (kubectl already has them); it decodes when the response ends, or a
 * short delay after a chunk, and the end event's facts are those of the whole body. What waits is bounded.
 */
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  createResponseTap,
  DECODE_DELAY_MS,
  decodesSettled,
  deferredDecodeBytes,
  MAX_DEFERRED_BYTES,
} from '../../../src/proxy/tap.ts';

const pod = (i: number): string =>
  JSON.stringify({
    metadata: { name: `pod-${i}`, namespace: 'default', resourceVersion: String(i) },
    status: { phase: i % 3 === 0 ? 'Pending' : 'Running' },
  });
const list = (n: number): Buffer =>
  Buffer.from(
    `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"7"},"items":[${Array.from({ length: n }, (_, i) => pod(i)).join(',')}]}`,
  );
const chunks = (b: Buffer, size: number): Buffer[] =>
  Array.from({ length: Math.ceil(b.length / size) }, (_, i) => b.subarray(i * size, (i + 1) * size));
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('response tap', () => {
  it('does no decoding while the chunks of a list are relayed, decodes a little later, and ends with the whole body', async () => {
    const body = gzipSync(list(2000));
    const tap = createResponseTap({
      statusCode: 200,
      contentType: 'application/json',
      contentEncoding: 'gzip',
      isWatch: false,
      podList: true,
    });
    const parts = chunks(body, 4096);
    // One chunk per loop turn, as a busy relay delivers them: nothing decoded yet.
    for (const c of parts.slice(0, -1)) {
      tap.write(c);
      await turn();
    }
    expect(tap.progress().items).toBe(0);
    expect(deferredDecodeBytes()).toBe(body.length - (parts.at(-1)?.length ?? 0));
    // The waiting chunks are decoded a short delay after the first of them.
    await new Promise((resolve) => setTimeout(resolve, DECODE_DELAY_MS + 20));
    expect(tap.progress().items).toBeGreaterThan(0);
    expect(deferredDecodeBytes()).toBe(0);
    tap.write(parts.at(-1) as Buffer);
    const { decode } = tap.finish(true);
    expect(decode).toMatchObject({
      kind: 'PodList',
      items: 2000,
      bytes: body.length,
      resourceVersion: '7',
      podPhases: { pending: 667, running: 1333 },
    });
    expect(decode?.error).toBeUndefined();
    expect(deferredDecodeBytes()).toBe(0);
  });

  it('decodes at once past the bound on waiting bytes, so memory stays bounded', () => {
    const body = list(Math.ceil((MAX_DEFERRED_BYTES * 1.5) / 100));
    const tap = createResponseTap({
      statusCode: 200,
      contentType: 'application/json',
      contentEncoding: undefined,
      isWatch: false,
    });
    let max = 0;
    for (const c of chunks(body, 64 * 1024)) {
      tap.write(c);
      max = Math.max(max, deferredDecodeBytes());
    }
    expect(max).toBeLessThanOrEqual(MAX_DEFERRED_BYTES);
    expect(tap.progress().items).toBeGreaterThan(0);
    expect(tap.finish(true).decode).toMatchObject({
      kind: 'PodList',
      items: Math.ceil((MAX_DEFERRED_BYTES * 1.5) / 100),
    });
    expect(deferredDecodeBytes()).toBe(0);
  });

  it('stamps watch events with the time their chunk was relayed, not the time it was decoded', async () => {
    const tap = createResponseTap({
      statusCode: 200,
      contentType: 'application/json',
      contentEncoding: undefined,
      isWatch: true,
    });
    const relayedAt = performance.now();
    tap.write(Buffer.from('{"type":"ADDED","object":{"kind":"Pod","metadata":{"name":"a","resourceVersion":"1"}}}\n'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    const { decode } = tap.finish(false);
    const at = decode?.watch?.records[0]?.atMs;
    expect(decode?.watch?.events).toBe(1);
    expect(at).toBeDefined();
    expect((at as number) - relayedAt).toBeLessThan(20);
  });
});

describe('settle: what waits at a response’s end is decoded in slices', () => {
  it('decodes one slice per loop turn, then calls back with every chunk decoded', async () => {
    const body = gzipSync(list(2000));
    const tap = createResponseTap(
      { statusCode: 200, contentType: 'application/json', contentEncoding: 'gzip', isWatch: false, podList: true },
      // A slice of 0 ms: one chunk per slice, so the count of turns is the count of chunks.
      { sliceMs: 0 },
    );
    const parts = chunks(body, 1024);
    for (const c of parts) tap.write(c);
    let settled = false;
    tap.settle(() => (settled = true));
    expect(settled).toBe(false);
    expect(deferredDecodeBytes()).toBe(body.length - (parts[0]?.length ?? 0));
    let turns = 0;
    while (!settled) {
      await turn();
      turns++;
    }
    expect(turns).toBeGreaterThanOrEqual(parts.length - 1);
    expect(deferredDecodeBytes()).toBe(0);
    await decodesSettled();
    expect(tap.finish(true).decode).toMatchObject({ kind: 'PodList', items: 2000, bytes: body.length });
  });

  it('decodesSettled() resolves only once every settling response is done', async () => {
    const tap = createResponseTap(
      { statusCode: 200, contentType: 'application/json', contentEncoding: undefined, isWatch: false },
      { sliceMs: 0 },
    );
    for (const c of chunks(list(500), 512)) tap.write(c);
    let settled = false;
    tap.settle(() => (settled = true));
    await decodesSettled();
    expect(settled).toBe(true);
  });
});
