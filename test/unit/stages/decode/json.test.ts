import { describe, expect, it } from 'vitest';
import { createDecoder } from '../../../../src/stages/decode/index.ts';
import type { DecodeResult } from '../../../../src/stages/decode/index.ts';
import {
  FORBIDDEN_MESSAGE,
  JSON_LIST,
  decodePieces,
  decodeWhole,
  discovery,
  expectSplitInvariant,
  podList,
  randomSplit,
  rng,
  status403,
  table,
} from './fixtures.ts';

const body = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

describe('JSON documents', () => {
  it('counts the items of a PodList, not the `items` keys nested inside the pods', () => {
    const r = decodeWhole(JSON_LIST, body(podList(3)));
    expect(r).toMatchObject({
      format: 'json',
      kind: 'PodList',
      apiVersion: 'v1',
      items: 3,
      resourceVersion: '777',
      continue: false,
    });
    expect(r.error).toBeUndefined();
    expect(r.remainingItems).toBeUndefined();
    expect(r.status).toBeUndefined();
  });

  it('reads a continue page: continue as a boolean, never the token, and remainingItemCount', () => {
    const token = 'eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTIzNDUsInN0YXJ0Ijoid2ViLTQ5OVx1MDAwMCJ9';
    const r = decodeWhole(
      JSON_LIST,
      body(podList(2, { resourceVersion: '12345', continue: token, remainingItemCount: 1500 })),
    );
    expect(r).toMatchObject({ items: 2, resourceVersion: '12345', continue: true, remainingItems: 1500 });
    expect(JSON.stringify(r)).not.toContain(token);
    expect(JSON.stringify(r)).not.toContain(token.slice(0, 8));
  });

  it('treats an empty continue as no continue', () => {
    const r = decodeWhole(JSON_LIST, body(podList(1, { resourceVersion: '1', continue: '' })));
    expect(r.continue).toBe(false);
  });

  it('counts Table rows as items, ignoring `rows` keys inside cells', () => {
    const r = decodeWhole(JSON_LIST, body(table(4)));
    expect(r).toMatchObject({ kind: 'Table', apiVersion: 'meta.k8s.io/v1', items: 4, resourceVersion: '4242' });
  });

  it('reads a 403 Status: reason, code and the message (for rbac), and counts no items', () => {
    const r = decodeWhole({ ...JSON_LIST, statusCode: 403 }, body(status403()));
    expect(r.kind).toBe('Status');
    expect(r.status).toEqual({ reason: 'Forbidden', code: 403, message: FORBIDDEN_MESSAGE });
    expect(r.items).toBeUndefined();
    expect(r.continue).toBeUndefined();
  });

  it('reads aggregated discovery (APIGroupDiscoveryList) with its content type parameters', () => {
    const r = decodeWhole(
      { ...JSON_LIST, contentType: 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList' },
      body(discovery()),
    );
    expect(r).toMatchObject({
      kind: 'APIGroupDiscoveryList',
      apiVersion: 'apidiscovery.k8s.io/v2',
      items: 2,
      contentType: 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList',
    });
  });

  it('reads a single object: kind and its own resourceVersion, no items', () => {
    const r = decodeWhole(
      JSON_LIST,
      body({ kind: 'Pod', apiVersion: 'v1', metadata: { name: 'x', resourceVersion: '9' } }),
    );
    expect(r).toMatchObject({ kind: 'Pod', resourceVersion: '9' });
    expect(r.items).toBeUndefined();
  });

  it('accepts documents without kind (/version) and empty or null lists', () => {
    expect(decodeWhole(JSON_LIST, body({ major: '1', minor: '32', gitVersion: 'v1.32.5' }))).toMatchObject({
      format: 'json',
    });
    expect(decodeWhole(JSON_LIST, body({ major: '1' })).error).toBeUndefined();
    expect(decodeWhole(JSON_LIST, '{"kind":"PodList","items":[]}').items).toBe(0);
    expect(decodeWhole(JSON_LIST, '{"kind":"PodList","items":null}').items).toBe(0);
    expect(decodeWhole(JSON_LIST, '[1,2,3]').items).toBeUndefined();
    expect(decodeWhole(JSON_LIST, '42').error).toBeUndefined();
    expect(decodeWhole(JSON_LIST, '').error).toBeUndefined();
  });

  it('is not fooled by key order, whitespace or pretty printing', () => {
    const pretty = JSON.stringify(
      { items: [{ kind: 'X', items: [1] }, {}], metadata: { continue: 'abc', resourceVersion: '5' }, kind: 'PodList' },
      null,
      '\t',
    ).replace(/:/g, ' :\r\n ');
    expect(decodeWhole(JSON_LIST, pretty)).toMatchObject({
      kind: 'PodList',
      items: 2,
      continue: true,
      resourceVersion: '5',
    });
  });

  it('only reads the top level: nested kind, metadata and items do not leak up', () => {
    const r = decodeWhole(
      JSON_LIST,
      body({
        apiVersion: 'v1',
        spec: { kind: 'Nested', metadata: { resourceVersion: 'nested' }, items: [1, 2, 3, 4, 5] },
        items: [{ metadata: { resourceVersion: 'item' } }],
      }),
    );
    expect(r.kind).toBeUndefined();
    expect(r.resourceVersion).toBeUndefined();
    expect(r.items).toBe(1);
  });

  it('ignores fields of the wrong type: objects where strings belong, objects where lists belong', () => {
    const r = decodeWhole(
      JSON_LIST,
      body({ kind: { kind: 'Inner', items: [1, 2] }, metadata: 'x', items: { a: 1, b: 2 }, code: '403' }),
    );
    expect(r.kind).toBeUndefined();
    expect(r.items).toBeUndefined();
    expect(r.resourceVersion).toBeUndefined();
    expect(r.error).toBeUndefined();
  });

  it('decodes escapes in captured strings: \\" \\\\ \\/ \\n and \\uXXXX with surrogate pairs', () => {
    const r = decodeWhole(
      JSON_LIST,
      '{"k\\u0069nd":"Sta\\u0074us","message":"a\\"b\\\\c\\/d\\ne \\u00e9 \\u4e2d \\ud83d\\ude00 \\ud800x","code":403}',
    );
    expect(r.kind).toBe('Status');
    expect(r.status?.message).toBe('a"b\\c/d\ne é 中 😀 \ufffdx');
    // Lone surrogates at the end, before another escape, and a lone low one.
    const lone = decodeWhole(JSON_LIST, '{"kind":"Status","reason":"\\ud83d\\n\\ude00","message":"x\\udbff"}');
    expect(lone.status).toEqual({ reason: '\ufffd\n\ufffd', message: 'x\ufffd' });
  });

  it('caps the Status message at 1 KiB without splitting a character', () => {
    const message = 'é'.repeat(2000); // 2 bytes each
    const r = decodeWhole(JSON_LIST, body({ kind: 'Status', message, reason: 'Forbidden', code: 403 }));
    expect(Buffer.byteLength(r.status?.message ?? '')).toBe(1024);
    expect(r.status?.message).toBe('é'.repeat(512));
    expect(r.status?.reason).toBe('Forbidden');
  });

  it('keeps only a prefix of an overlong kind and skips overlong keys without confusion', () => {
    const r = decodeWhole(JSON_LIST, body({ ['kind'.repeat(50)]: 'no', kind: 'K'.repeat(1000), items: [1] }));
    expect(r.kind).toBe('K'.repeat(256));
    expect(r.items).toBe(1);
  });

  it.each([
    ['HTML error page', '<html><body>502 Bad Gateway</body></html>'],
    ['bare word', 'nope'],
    ['bad literal', '{"kind":"PodList","items":[tru]}'],
    ['bad number', '{"code":01}'],
    ['bad number sign', '{"code":-}'],
    ['bad escape', '{"kind":"a\\x"}'],
    ['bad unicode escape', '{"kind":"\\u12G4"}'],
    ['raw control character', '{"kind":"a\u0001b"}'],
    ['missing colon', '{"kind" "PodList"}'],
    ['unquoted key', '{kind:"PodList"}'],
    ['trailing comma', '{"items":[1,2,],"kind":"PodList"}'],
    ['mismatched brackets', '{"items":[1,2}'],
    ['trailing data', '{"kind":"PodList"} {"kind":"PodList"}'],
  ])('flags garbage as invalid_json: %s', (_name, text) => {
    const r = decodeWhole(JSON_LIST, text);
    expect(r.error).toBe('invalid_json');
    expect(r.bytes).toBe(Buffer.byteLength(text));
  });

  it('keeps what it read before the garbage', () => {
    const r = decodeWhole(JSON_LIST, '{"kind":"PodList","apiVersion":"v1","items":[{},{}, oops');
    expect(r).toMatchObject({ kind: 'PodList', apiVersion: 'v1', items: 2, error: 'invalid_json' });
  });

  it('flags a body that ends mid-document as truncated, at every cut point', () => {
    const full = body(podList(2));
    for (let cut = 1; cut < full.length - 1; cut++) {
      const r = decodeWhole(JSON_LIST, full.subarray(0, cut));
      expect(r.error, `cut at ${cut}`).toBe('truncated');
    }
    // `{}` then the closing bracket: the last byte is what completes the document.
    expect(decodeWhole(JSON_LIST, full.subarray(0, full.length - 1)).error).toBe('truncated');
  });

  it('does not call an aborted stream truncated, and says it was aborted', () => {
    const d = createDecoder(JSON_LIST);
    d.write(body(podList(2)).subarray(0, 200));
    const r = d.abort();
    expect(r.aborted).toBe(true);
    expect(r.error).toBeUndefined();
    expect(r.kind).toBe('PodList');
  });

  it('stops at depth 512 with depth_exceeded, and accepts 512', () => {
    expect(decodeWhole(JSON_LIST, '['.repeat(512) + ']'.repeat(512)).error).toBeUndefined();
    const r = decodeWhole(JSON_LIST, '{"kind":"Deep","x":' + '['.repeat(600) + ']'.repeat(600) + '}');
    expect(r.error).toBe('depth_exceeded');
    expect(r.kind).toBe('Deep');
  });
});

describe('JSON chunking: any byte can be a chunk boundary', () => {
  const same = (expected: DecodeResult) => (r: DecodeResult, how: string) => expect(r, how).toEqual(expected);

  it.each([
    ['PodList', body(podList(2, { resourceVersion: '9', continue: 'tok', remainingItemCount: 7 }))],
    ['Table', body(table(2))],
    ['Status', body(status403())],
    ['escapes', Buffer.from('{"kind":"\\u0053tatus","message":"\\ud83d\\ude00\\"\\\\x","code":-4.5e+2,"reason":"R"}')],
    ['discovery', body(discovery())],
  ])('%s decodes the same split at every offset and byte by byte', (_name, bytes) => {
    const whole = decodeWhole(JSON_LIST, bytes);
    expect(whole.error).toBeUndefined();
    expectSplitInvariant(JSON_LIST, bytes, same(whole));
  });

  it('a 500-pod list decodes the same under random multi-way splits', () => {
    const bytes = body(podList(500, { resourceVersion: '1', continue: 'x', remainingItemCount: 3 }));
    const next = rng(42);
    for (let round = 0; round < 30; round++) {
      const r = decodePieces(JSON_LIST, randomSplit(bytes, 1 + Math.floor(next() * 400), next));
      expect(r).toMatchObject({ items: 500, continue: true, remainingItems: 3, resourceVersion: '1', kind: 'PodList' });
      expect(r.error).toBeUndefined();
    }
  });

  it('does not keep or modify the chunks it is given', () => {
    const bytes = body(podList(3));
    const copy = Buffer.from(bytes);
    const d = createDecoder(JSON_LIST);
    for (let i = 0; i < bytes.length; i += 7) d.write(bytes.subarray(i, i + 7));
    expect(bytes.equals(copy)).toBe(true);
    // Scribbling over the buffer after write() must not change what was decoded.
    bytes.fill(0x20);
    expect(d.end()).toMatchObject({ kind: 'PodList', items: 3, resourceVersion: '777' });
  });
});
