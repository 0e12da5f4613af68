import { describe, expect, it } from 'vitest';
import { createDecoder } from '../../../../src/stages/decode/index.ts';
import {
  JSON_WATCH,
  decodePieces,
  decodeWhole,
  expectSplitInvariant,
  podObject,
  randomSplit,
  rng,
  status403,
  watchEvent,
} from './fixtures.ts';

/** What `kubectl get pods -w` receives: Table events with one row each. */
function tableEvent(type: string, name: string, rv: string): string {
  return watchEvent(type, {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion: rv },
    columnDefinitions: null,
    rows: [
      {
        cells: [name, '0/1', 'Pending', 0, '0s'],
        object: {
          kind: 'PartialObjectMetadata',
          apiVersion: 'meta.k8s.io/v1',
          metadata: { name, namespace: 'default', resourceVersion: rv, labels: { rows: 'x' } },
        },
      },
    ],
  });
}

const MIXED = [
  watchEvent('ADDED', podObject('web-0', '101')),
  watchEvent('MODIFIED', podObject('web-0', '102')),
  watchEvent('BOOKMARK', { kind: 'Pod', apiVersion: 'v1', metadata: { resourceVersion: '103' } }),
  watchEvent('DELETED', podObject('web-1', '104', 'kube-system')),
  watchEvent('ERROR', {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: 'too old resource version: 1 (100)',
    reason: 'Expired',
    code: 410,
  }),
];
const MIXED_STREAM = Buffer.from(MIXED.map((e) => e + '\n').join(''));

const MIXED_RECORDS = [
  { type: 'ADDED', kind: 'Pod', name: 'web-0', namespace: 'default', resourceVersion: '101', atMs: 1 },
  { type: 'MODIFIED', kind: 'Pod', name: 'web-0', namespace: 'default', resourceVersion: '102', atMs: 1 },
  { type: 'BOOKMARK', kind: 'Pod', resourceVersion: '103', atMs: 1 },
  { type: 'DELETED', kind: 'Pod', name: 'web-1', namespace: 'kube-system', resourceVersion: '104', atMs: 1 },
  { type: 'ERROR', kind: 'Status', code: 410, reason: 'Expired', atMs: 1 },
];

describe('JSON watch streams', () => {
  it('counts events per type and records each one', () => {
    const r = decodeWhole(JSON_WATCH, MIXED_STREAM);
    expect(r.format).toBe('json-watch');
    expect(r.error).toBeUndefined();
    expect(r.watch).toEqual({
      events: 5,
      added: 1,
      modified: 1,
      deleted: 1,
      bookmark: 1,
      error: 1,
      other: 0,
      records: MIXED_RECORDS,
      dropped: 0,
    });
    // A watch is not a document: no list fields.
    expect(r.kind).toBeUndefined();
    expect(r.items).toBeUndefined();
  });

  it('gives the same answer for every split point and byte by byte', () => {
    expectSplitInvariant(JSON_WATCH, MIXED_STREAM, (r, how) => {
      expect(r.watch?.records, how).toEqual(MIXED_RECORDS);
      expect(r.error, how).toBeUndefined();
    });
  });

  it('does not need newlines between events, and tolerates any whitespace', () => {
    const r = decodeWhole(JSON_WATCH, MIXED.join('') + ' \r\n\t' + MIXED[0]!);
    expect(r.watch?.events).toBe(6);
    expect(r.watch?.added).toBe(2);
  });

  it('takes the name of a Table watch event from its row, like kubectl get -w', () => {
    const stream = [tableEvent('ADDED', 'web-0', '7'), tableEvent('DELETED', 'web-0', '8')].join('\n');
    const r = decodeWhole(JSON_WATCH, stream);
    expect(r.watch?.records).toEqual([
      { type: 'ADDED', kind: 'Table', name: 'web-0', namespace: 'default', resourceVersion: '7', atMs: 1 },
      { type: 'DELETED', kind: 'Table', name: 'web-0', namespace: 'default', resourceVersion: '8', atMs: 1 },
    ]);
  });

  it('takes the first row when a Table event carries several', () => {
    const two = JSON.parse(tableEvent('ADDED', 'first', '1')) as { object: { rows: unknown[] } };
    const second = JSON.parse(tableEvent('ADDED', 'second', '2')) as { object: { rows: unknown[] } };
    two.object.rows.push(...second.object.rows);
    expect(decodeWhole(JSON_WATCH, JSON.stringify(two)).watch?.records[0]).toMatchObject({
      name: 'first',
      resourceVersion: '1',
    });
  });

  it('reads fields whatever their order inside the event', () => {
    const r = decodeWhole(
      JSON_WATCH,
      '{"object":{"metadata":{"resourceVersion":"5","namespace":"n","name":"a"},"kind":"Pod"},"type":"DELETED"}',
    );
    expect(r.watch?.records).toEqual([
      { type: 'DELETED', kind: 'Pod', name: 'a', namespace: 'n', resourceVersion: '5', atMs: 1 },
    ]);
  });

  it('does not take names from deeper objects (ownerReferences, nested metadata)', () => {
    const r = decodeWhole(
      JSON_WATCH,
      watchEvent('ADDED', {
        kind: 'Pod',
        spec: { metadata: { name: 'nested' } },
        metadata: { ownerReferences: [{ name: 'owner' }], labels: { name: 'label' } },
      }),
    );
    expect(r.watch?.records[0]).toEqual({ type: 'ADDED', kind: 'Pod', atMs: 1 });
  });

  it('stamps each event with the clock reading of the write that completed it', () => {
    let t = 1000;
    const d = createDecoder(JSON_WATCH, { now: () => t });
    const [a, b] = [Buffer.from(MIXED[0]! + '\n'), Buffer.from(MIXED[1]! + '\n')];
    d.write(a.subarray(0, 10));
    t = 2000;
    d.write(a.subarray(10)); // completes event 1
    t = 3000;
    d.write(b);
    const r = d.end();
    expect(r.watch?.records.map((e) => e.atMs)).toEqual([2000, 3000]);
  });

  it('keeps at most maxWatchRecords records and counts the rest as dropped', () => {
    const stream = Array.from({ length: 250 }, (_, i) => watchEvent('MODIFIED', podObject(`p${i}`, String(i)))).join(
      '\n',
    );
    const r = decodeWhole(JSON_WATCH, stream);
    expect(r.watch).toMatchObject({ events: 250, modified: 250, dropped: 150 });
    expect(r.watch?.records).toHaveLength(100);
    expect(r.watch?.records[99]?.name).toBe('p99');
    const small = decodeWhole(JSON_WATCH, stream, { maxWatchRecords: 3, now: () => 1 });
    expect(small.watch?.records.map((e) => e.name)).toEqual(['p0', 'p1', 'p2']);
    expect(small.watch?.dropped).toBe(247);
  });

  it('counts unknown event types as other', () => {
    const r = decodeWhole(JSON_WATCH, watchEvent('SURPRISE', {}) + watchEvent('ADDED', {}));
    expect(r.watch).toMatchObject({ events: 2, other: 1, added: 1 });
  });

  it('many events per chunk and events across chunks, under random splits', () => {
    const events = Array.from({ length: 300 }, (_, i) =>
      watchEvent(['ADDED', 'MODIFIED', 'DELETED'][i % 3]!, podObject(`p${i}`, String(i))),
    );
    const stream = Buffer.from(events.join('\n') + '\n');
    const next = rng(7);
    for (let round = 0; round < 20; round++) {
      const r = decodePieces(JSON_WATCH, randomSplit(stream, Math.floor(next() * 600), next));
      expect(r.watch).toMatchObject({ events: 300, added: 100, modified: 100, deleted: 100, dropped: 200 });
      expect(r.watch?.records[42]).toMatchObject({ type: 'ADDED', name: 'p42', resourceVersion: '42' });
      expect(r.error).toBeUndefined();
    }
  });

  it('an aborted watch (client hung up mid-event) is not an error; the partial event is not counted', () => {
    const d = createDecoder(JSON_WATCH);
    d.write(MIXED_STREAM.subarray(0, MIXED_STREAM.indexOf('MODIFIED') + 20));
    const r = d.abort();
    expect(r).toMatchObject({ aborted: true, watch: { events: 1, added: 1 } });
    expect(r.error).toBeUndefined();
  });

  it('a stream the server ends mid-event is truncated', () => {
    const r = decodeWhole(JSON_WATCH, MIXED_STREAM.subarray(0, MIXED_STREAM.length - 5));
    expect(r.error).toBe('truncated');
    expect(r.watch?.events).toBe(4);
  });

  it('an empty watch (no events before the end) is fine', () => {
    expect(decodeWhole(JSON_WATCH, '')).toMatchObject({ watch: { events: 0 } });
    expect(decodeWhole(JSON_WATCH, '\n\n').error).toBeUndefined();
  });

  it('flags non-object values and garbage between events', () => {
    expect(decodeWhole(JSON_WATCH, MIXED[0]! + '\n42\n').error).toBe('invalid_json');
    expect(decodeWhole(JSON_WATCH, MIXED[0]! + '\n<html>').error).toBe('invalid_json');
  });

  it('a refused watch (403) is one Status document, not a stream', () => {
    const r = decodeWhole({ ...JSON_WATCH, statusCode: 403 }, JSON.stringify(status403()));
    expect(r.format).toBe('json');
    expect(r.status).toMatchObject({ reason: 'Forbidden', code: 403 });
    expect(r.watch).toBeUndefined();
  });
});
