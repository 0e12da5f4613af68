import { describe, expect, it } from 'vitest';
import { createDecoder, decodeAttributes, watchEventSpanEvents } from '../../../../src/stages/decode/index.ts';
import type { DecodeInput, DecodeResult } from '../../../../src/stages/decode/index.ts';
import { JSON_LIST, decodeWhole, podList, rng, status403, watchEvent, podObject } from './fixtures.ts';

const input = (contentType: string | undefined, extra: Partial<DecodeInput> = {}): DecodeInput => ({
  ...JSON_LIST,
  contentType,
  ...extra,
});

describe('choosing a reader from the headers', () => {
  it.each<[string | undefined, Partial<DecodeInput>, DecodeResult['format'], string | undefined]>([
    ['application/json', {}, 'json', 'application/json'],
    ['Application/JSON; charset=utf-8', {}, 'json', 'application/json'],
    ['application/json;as=Table;v=v1;g=meta.k8s.io', {}, 'json', 'application/json;as=Table;v=v1;g=meta.k8s.io'],
    ['application/merge-patch+json', {}, 'json', 'application/merge-patch+json'],
    ['application/json', { isWatch: true }, 'json-watch', 'application/json'],
    ['application/json', { isWatch: true, statusCode: 410 }, 'json', 'application/json'],
    ['application/vnd.kubernetes.protobuf', {}, 'protobuf', 'application/vnd.kubernetes.protobuf'],
    [
      'application/vnd.kubernetes.protobuf;stream=watch',
      { isWatch: true },
      'protobuf-watch',
      'application/vnd.kubernetes.protobuf;stream=watch',
    ],
    ['text/plain; charset=utf-8', {}, 'text', 'text/plain'],
    ['application/octet-stream', {}, 'opaque', 'application/octet-stream'],
    ['application/com.github.proto-openapi.spec.v2@v1.0+protobuf', {}, 'opaque', undefined],
    ['application/cbor-seq', { isWatch: true }, 'opaque', 'application/cbor-seq'],
    [undefined, {}, 'opaque', undefined],
    ['garbage', {}, 'opaque', undefined],
  ])('%s %o → %s', (contentType, extra, format, normalized) => {
    const r = createDecoder(input(contentType, extra)).end();
    expect(r.format).toBe(format);
    expect(r.contentType).toBe(normalized);
  });
});

describe('text and opaque bodies', () => {
  it('counts log lines across chunks, including a last unterminated line', () => {
    const d = createDecoder(input('text/plain'));
    const pieces = ['2025-01-01 start\nsecond', ' line\n', '', 'third\n\nfifth no newline'];
    for (const piece of pieces) d.write(Buffer.from(piece));
    expect(d.end()).toMatchObject({ format: 'text', lines: 5, bytes: pieces.join('').length });
    expect(decodeWhole(input('text/plain'), 'a\nb\n').lines).toBe(2);
    expect(decodeWhole(input('text/plain'), '').lines).toBe(0);
  });

  it('counts the bytes of anything else, without an error', () => {
    const r = decodeWhole(input('application/octet-stream'), Buffer.from([0, 1, 2, 0xff]));
    expect(r).toEqual({
      format: 'opaque',
      contentType: 'application/octet-stream',
      bytes: 4,
      decodedBytes: 4,
      aborted: false,
    });
    const gz = decodeWhole(input('application/octet-stream', { contentEncoding: 'gzip' }), 'zzz');
    expect(gz).toMatchObject({ bytes: 3, contentEncoding: 'gzip' });
    expect(gz.decodedBytes).toBeUndefined();
    expect(gz.error).toBeUndefined();
  });
});

describe('the Decoder contract', () => {
  it('accepts plain Uint8Array chunks and empty chunks', () => {
    const d = createDecoder(JSON_LIST);
    const bytes = new TextEncoder().encode(JSON.stringify(podList(2)));
    d.write(new Uint8Array(0));
    d.write(bytes.subarray(0, 10));
    d.write(new Uint8Array(0));
    d.write(bytes.subarray(10));
    expect(d.end()).toMatchObject({ items: 2, bytes: bytes.length });
  });

  it('end() and abort() are idempotent and writes after the end are ignored', () => {
    const d = createDecoder(JSON_LIST);
    const bytes = Buffer.from(JSON.stringify(podList(1)));
    d.write(bytes);
    const first = d.end();
    d.write(Buffer.from('garbage'));
    expect(d.end()).toBe(first);
    expect(d.abort()).toBe(first);
    expect(first).toMatchObject({ aborted: false, bytes: bytes.length, items: 1 });
    expect(first.error).toBeUndefined();
  });

  it('never throws, whatever the bytes', () => {
    const next = rng(99);
    const types = [
      'application/json',
      'application/vnd.kubernetes.protobuf',
      'application/vnd.kubernetes.protobuf;stream=watch',
      'text/plain',
    ];
    for (let round = 0; round < 400; round++) {
      const d = createDecoder(
        input(types[round % types.length], {
          isWatch: round % 3 === 0,
          contentEncoding: round % 7 === 0 ? 'gzip' : undefined,
        }),
      );
      for (let c = 0; c < 5; c++) {
        const chunk = Buffer.alloc(Math.floor(next() * 300));
        for (let i = 0; i < chunk.length; i++) chunk[i] = Math.floor(next() * 256);
        if (round % 2 === 0 && c === 0) chunk.write('k8s\0', 0, 'latin1');
        expect(() => d.write(chunk)).not.toThrow();
      }
      expect(() => (round % 5 === 0 ? d.abort() : d.end())).not.toThrow();
    }
  });

  it('a tiny, fixed state for any body size (no inflater)', () => {
    const d = createDecoder(JSON_LIST);
    const base = d.stateSize();
    expect(base).toBeLessThan(8 * 1024);
    d.write(Buffer.from(JSON.stringify(podList(200))));
    expect(d.stateSize()).toBeLessThan(base + 1024);
  });
});

describe('decodeAttributes', () => {
  it('maps a list to the decode.* attributes of the telemetry contract', () => {
    const r = decodeWhole(
      { ...JSON_LIST, contentType: 'application/json;charset=utf-8' },
      JSON.stringify(podList(2, { resourceVersion: '10', continue: 'secret-token', remainingItemCount: 8 })),
    );
    const attrs = decodeAttributes(r);
    expect(attrs).toEqual({
      'decode.format': 'json',
      'decode.content_type': 'application/json',
      'decode.bytes': r.bytes,
      'decode.decoded_bytes': r.bytes,
      'decode.kind': 'PodList',
      'decode.api_version': 'v1',
      'decode.items': 2,
      'decode.resource_version': '10',
      'decode.continue': true,
      'decode.remaining_items': 8,
    });
    expect(JSON.stringify(attrs)).not.toContain('secret-token');
  });

  it('puts Status reason and code on the span, never the message', () => {
    const attrs = decodeAttributes(decodeWhole({ ...JSON_LIST, statusCode: 403 }, JSON.stringify(status403())));
    expect(attrs).toMatchObject({
      'decode.kind': 'Status',
      'decode.status.reason': 'Forbidden',
      'decode.status.code': 403,
    });
    expect(JSON.stringify(attrs)).not.toContain('forbidden: User');
  });

  it('watch counts (zeros included), dropped events, errors and aborts', () => {
    const stream = Array.from({ length: 3 }, (_, i) => watchEvent('ADDED', podObject(`p${i}`, `${i}`))).join('\n');
    const d = createDecoder({ ...JSON_LIST, isWatch: true }, { maxWatchRecords: 1, now: () => 5 });
    d.write(Buffer.from(stream + '\n{"type":"MODI'));
    const r = d.abort();
    expect(decodeAttributes(r)).toEqual({
      'decode.format': 'json-watch',
      'decode.content_type': 'application/json',
      'decode.bytes': r.bytes,
      'decode.decoded_bytes': r.bytes,
      'decode.watch.events': 3,
      'decode.watch.added': 3,
      'decode.watch.modified': 0,
      'decode.watch.deleted': 0,
      'decode.watch.bookmark': 0,
      'decode.watch.error': 0,
      'decode.watch.events_dropped': 2,
      'decode.aborted': true,
    });
    expect(watchEventSpanEvents(r)).toEqual([
      {
        name: 'watch.event',
        atMs: 5,
        attributes: {
          'decode.watch.event.type': 'ADDED',
          'decode.watch.event.kind': 'Pod',
          'decode.watch.event.name': 'p0',
          'decode.watch.event.namespace': 'default',
          'decode.watch.event.resource_version': '0',
        },
      },
    ]);
  });

  it('lines, encodings and errors', () => {
    expect(decodeAttributes(decodeWhole(input('text/plain'), 'a\nb'))).toMatchObject({ 'decode.lines': 2 });
    expect(decodeAttributes(decodeWhole({ ...JSON_LIST, contentEncoding: 'br' }, 'x'))).toMatchObject({
      'decode.content_encoding': 'br',
      'decode.error': 'unsupported_encoding',
    });
    expect(decodeAttributes(decodeWhole(JSON_LIST, '{"kind":'))).toMatchObject({ 'decode.error': 'truncated' });
  });
});
