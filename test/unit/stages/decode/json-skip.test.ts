/**
 * The parts of a JSON body nothing is read from (list items, an event's spec and status) are
 * stepped over quickly: these tests pin that doing so changes nothing that is reported, whatever
 * the content of the items and wherever the chunks are cut.
 */
import { describe, expect, it } from 'vitest';
import type { DecodeResult } from '../../../../src/stages/decode/index.ts';
import {
  JSON_LIST,
  JSON_WATCH,
  decodePieces,
  decodeWhole,
  expectSplitInvariant,
  randomSplit,
  rng,
} from './fixtures.ts';

/** Strings that end in every awkward way: escaped quotes and backslashes, \u escapes, UTF-8. */
const TRICKY = [
  'plain',
  'quote " inside',
  'backslash \\ inside',
  'ends in a backslash \\',
  'ends in two backslashes \\\\',
  'backslash then quote \\"',
  '\\"\\\\\\"',
  'é 中 😀 multi-byte',
  '\u0000\u001f\u007f control characters, escaped by JSON.stringify',
  '\ud83d\ude00 surrogate pair',
  'brackets ] } [ { and "},{" inside a string',
  // Long enough for the long-string path, with escapes near its start, middle and end.
  `${'x'.repeat(45)}\\"${'y'.repeat(100)}"\\\\${'z'.repeat(300)}\\`,
  '"'.repeat(70),
  '\\'.repeat(71),
  'é中😀'.repeat(40),
];

/** An item with every kind of value, nested, including keys the scanner looks for elsewhere. */
function item(i: number): Record<string, unknown> {
  return {
    metadata: { name: `item-${i}`, resourceVersion: String(i), labels: { items: 'x', kind: 'NotAList' } },
    strings: TRICKY,
    numbers: [0, -0, 1, -1, 3.25, -1.5e-7, 6.02e23, 2 ** 53, -(2 ** 60), 1e300],
    literals: [true, false, null],
    nested: { a: [[], {}, [[{}]], { b: { c: [1, [2, [3, { d: TRICKY[1] }]]] } }], items: [1, 2, 3], rows: [] },
    [TRICKY[2]!]: { [TRICKY[7]!]: 'keys can be tricky too' },
  };
}

function list(n: number): Record<string, unknown> {
  return {
    kind: 'WidgetList',
    apiVersion: 'example.com/v1',
    metadata: { resourceVersion: '42', continue: 'c"o\\n', remainingItemCount: 5 },
    items: Array.from({ length: n }, (_, i) => item(i)),
  };
}

// Hand-written rather than JSON.stringify'd: raw \u escapes, exponents and whitespace everywhere.
const HANDWRITTEN =
  ' {\n  "kind" : "Widget\\u004cist" ,\t"items" : [ { "a" : "\\u00e9\\ud83d\\ude00\\"\\\\" , "b" : [ 1.5E+3 , -0.25e-2 , 0 ] } ,' +
  '\r\n {"n":{"m":[{"k":"v"},[],{}]},"t":true,"f":false,"z":null} , "string item é" , 12 , [ ] , { } ] ,' +
  ' "metadata" : { "resourceVersion" : "7" } , "apiVersion":"v1" } \n';

describe('JSON: stepping over what is not read', () => {
  it('reports the same for items full of escapes, UTF-8, numbers and nesting as JSON.parse sees', () => {
    const bytes = Buffer.from(JSON.stringify(list(3)));
    const r = decodeWhole(JSON_LIST, bytes);
    expect(r).toMatchObject({
      kind: 'WidgetList',
      apiVersion: 'example.com/v1',
      items: 3,
      resourceVersion: '42',
      continue: true,
      remainingItems: 5,
      decodedBytes: bytes.length,
    });
    expect(r.error).toBeUndefined();
    expect(r.partial).toBeUndefined();
  });

  it('decodes such a list the same split at every byte offset and byte by byte', () => {
    const bytes = Buffer.from(JSON.stringify(list(2)));
    const whole = expectSplitInvariant(JSON_LIST, bytes, (r: DecodeResult, how: string) =>
      expect(r, how).toMatchObject({ items: 2, kind: 'WidgetList', resourceVersion: '42', continue: true }),
    );
    expect(whole.error).toBeUndefined();
  });

  it('decodes hand-written JSON (whitespace, \\u escapes, exponents) the same at every offset', () => {
    const bytes = Buffer.from(HANDWRITTEN);
    JSON.parse(HANDWRITTEN); // the fixture itself is valid JSON
    const whole = expectSplitInvariant(JSON_LIST, bytes, (r: DecodeResult, how: string) =>
      expect(r, how).toMatchObject({ kind: 'WidgetList', apiVersion: 'v1', items: 6, resourceVersion: '7' }),
    );
    expect(whole.error).toBeUndefined();
  });

  it('decodes a 200-item list the same under random multi-way splits', () => {
    const bytes = Buffer.from(JSON.stringify(list(200)));
    const next = rng(7);
    const expected = decodeWhole(JSON_LIST, bytes);
    expect(expected.items).toBe(200);
    for (let round = 0; round < 20; round++) {
      expect(decodePieces(JSON_LIST, randomSplit(bytes, 1 + Math.floor(next() * 3000), next))).toEqual(expected);
    }
  });

  it('reads watch events whose objects are full of tricky values, at every offset', () => {
    const ev = (type: string, i: number): string =>
      JSON.stringify({
        type,
        object: { kind: 'Widget', ...item(i), metadata: { name: `w-${i}`, namespace: 'ns', resourceVersion: `${i}` } },
      });
    const bytes = Buffer.from(`${ev('ADDED', 1)}\n${ev('MODIFIED', 2)}\n`);
    expectSplitInvariant(JSON_WATCH, bytes, (r: DecodeResult, how: string) => {
      expect(r.error, how).toBeUndefined();
      expect(r.watch, how).toMatchObject({ events: 2, added: 1, modified: 1 });
      expect(
        r.watch?.records.map((x) => [x.type, x.kind, x.name, x.namespace, x.resourceVersion]),
        how,
      ).toEqual([
        ['ADDED', 'Widget', 'w-1', 'ns', '1'],
        ['MODIFIED', 'Widget', 'w-2', 'ns', '2'],
      ]);
    });
  });

  it.each([
    ['mismatched brackets inside an item', '{"kind":"L","items":[{"a":[1,2}]}'],
    ['a closing bracket too many inside an item', '{"kind":"L","items":[{"a":1}}]}'],
    ['binary bytes inside an item', '{"kind":"L","items":[{"a":\u0001}]}'],
    ['non-ASCII outside a string inside an item', '{"kind":"L","items":[{"a":é}]}'],
    ['a stray character inside an item', '{"kind":"L","items":[{"a":<b>}]}'],
  ])('still flags invalid_json for %s', (_name, text) => {
    const r = decodeWhole(JSON_LIST, text);
    expect(r.error).toBe('invalid_json');
    expect(r.kind).toBe('L');
  });

  it('flags an item cut short as truncated, at every cut inside the item', () => {
    const bytes = Buffer.from(JSON.stringify(list(1)));
    const start = bytes.indexOf('"items":[') + 9;
    for (let cut = start + 1; cut < bytes.length - 2; cut++) {
      expect(decodeWhole(JSON_LIST, bytes.subarray(0, cut)).error, `cut at ${cut}`).toBe('truncated');
    }
  });

  it('applies the depth limit inside items too', () => {
    const deep = (n: number): string => `{"kind":"L","items":[${'['.repeat(n)}${']'.repeat(n)}]}`;
    // The top-level object and the items array are two levels.
    expect(decodeWhole(JSON_LIST, deep(510)).error).toBeUndefined();
    expect(decodeWhole(JSON_LIST, deep(511)).error).toBe('depth_exceeded');
  });
});
