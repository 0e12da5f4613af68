import { describe, expect, it } from 'vitest';
import { createDecoder } from '../../../../src/stages/decode/index.ts';
import {
  FORBIDDEN_MESSAGE,
  K8S_MAGIC,
  PROTOBUF,
  PROTOBUF_WATCH,
  decodePieces,
  decodeWhole,
  expectSplitInvariant,
  pbBytes,
  pbEnvelope,
  pbPod,
  pbPodList,
  pbStatus,
  pbVarint,
  pbWatchFrame,
  randomSplit,
  rng,
} from './fixtures.ts';

describe('protobuf documents (k8s\\0 + runtime.Unknown)', () => {
  it('reads kind and apiVersion from the envelope and counts list items', () => {
    const r = decodeWhole(PROTOBUF, pbPodList(3));
    expect(r).toMatchObject({
      format: 'protobuf',
      contentType: 'application/vnd.kubernetes.protobuf',
      kind: 'PodList',
      apiVersion: 'v1',
      items: 3,
      resourceVersion: '777',
      continue: false,
    });
    expect(r.error).toBeUndefined();
  });

  it('reads ListMeta continue (as a boolean) and remainingItemCount', () => {
    const r = decodeWhole(PROTOBUF, pbPodList(2, { rv: '12', cont: 'opaque-token', remaining: 300000 }));
    expect(r).toMatchObject({ items: 2, resourceVersion: '12', continue: true, remainingItems: 300000 });
    expect(JSON.stringify(r)).not.toContain('opaque-token');
  });

  it('an empty list has 0 items', () => {
    expect(decodeWhole(PROTOBUF, pbPodList(0)).items).toBe(0);
  });

  it('reads a Status: reason, code and message', () => {
    const r = decodeWhole(
      { ...PROTOBUF, statusCode: 403 },
      pbEnvelope('v1', 'Status', pbStatus(403, 'Forbidden', FORBIDDEN_MESSAGE)),
    );
    expect(r.kind).toBe('Status');
    expect(r.status).toEqual({ reason: 'Forbidden', code: 403, message: FORBIDDEN_MESSAGE });
  });

  it('reads a single object: its metadata.resourceVersion, and no items', () => {
    const r = decodeWhole(PROTOBUF, pbEnvelope('v1', 'Pod', pbPod('web-0', '5000')));
    expect(r).toMatchObject({ kind: 'Pod', apiVersion: 'v1', resourceVersion: '5000' });
    expect(r.items).toBeUndefined();
  });

  it('tolerates a *List kind whose payload is not a ListMeta list (soft guess), without an error', () => {
    // APIResourceList-like: field 1 is a string, not a ListMeta; field 2 repeated.
    const raw = Buffer.concat([pbBytes(1, 'v1'), pbBytes(2, pbBytes(1, 'pods'))]);
    const r = decodeWhole(PROTOBUF, pbEnvelope('v1', 'WidgetList', raw));
    expect(r.kind).toBe('WidgetList');
    expect(r.error).toBeUndefined();
    // The walker gave up on `raw` and read the envelope fields after it.
    const after = Buffer.concat([pbEnvelope('v1', 'WidgetList', Buffer.from([0xff, 0xff])), pbVarint(5, 1)]);
    expect(decodeWhole(PROTOBUF, after).error).toBeUndefined();
  });

  it('skips fields it does not know, of every wire type', () => {
    const raw = Buffer.concat([
      pbVarint(9, 1n << 62n),
      Buffer.from([0x51, 1, 2, 3, 4, 5, 6, 7, 8]), // field 10, fixed64
      Buffer.from([0x5d, 1, 2, 3, 4]), // field 11, fixed32
      pbBytes(1, pbBytes(2, '55')),
      pbBytes(2, pbPod('a', '1')),
    ]);
    expect(decodeWhole(PROTOBUF, pbEnvelope('v1', 'PodList', raw))).toMatchObject({ items: 1, resourceVersion: '55' });
  });

  it.each([
    ['JSON sent as protobuf', Buffer.from('{"kind":"PodList"}')],
    ['wrong magic', Buffer.concat([Buffer.from('k8s\x01'), pbBytes(1, '')])],
    ['group wire type', Buffer.concat([K8S_MAGIC, Buffer.from([0x0b])])],
    ['field number 0', Buffer.concat([K8S_MAGIC, Buffer.from([0x02, 0x00])])],
    ['length past a message end', Buffer.concat([K8S_MAGIC, pbBytes(1, Buffer.from([0x0a, 0x09, 0x41]))])],
    ['overlong varint', Buffer.concat([K8S_MAGIC, Buffer.from([0x08]), Buffer.alloc(11, 0xff)])],
  ])('flags an invalid envelope: %s', (_name, bytes) => {
    expect(decodeWhole(PROTOBUF, bytes).error).toBe('invalid_protobuf');
  });

  it('flags a body cut short as truncated at every cut, but not an aborted one', () => {
    const full = pbPodList(2, { rv: '1', cont: 'c', remaining: 5 });
    // Protobuf has no end marker: a cut between two top-level fields of runtime.Unknown leaves a
    // valid message. Those are the only cuts that cannot be told apart from a complete body.
    const typeMeta = pbBytes(1, Buffer.concat([pbBytes(1, 'v1'), pbBytes(2, 'PodList')]));
    const raw = full.length - K8S_MAGIC.length - typeMeta.length - 4; // fields 3 and 4 are 2 bytes each
    const fieldEnds = new Set([4, 4 + typeMeta.length, 4 + typeMeta.length + raw, full.length - 2]);
    for (let cut = 1; cut < full.length; cut++) {
      const expected = fieldEnds.has(cut) ? undefined : 'truncated';
      expect(decodeWhole(PROTOBUF, full.subarray(0, cut)).error, `cut at ${cut}`).toBe(expected);
    }
    const d = createDecoder(PROTOBUF);
    d.write(full.subarray(0, 40));
    expect(d.abort()).toMatchObject({ aborted: true, kind: 'PodList' });
  });

  it('decodes the same at every split point and byte by byte', () => {
    const full = pbPodList(3, { rv: '9', cont: 'more', remaining: 1 });
    const whole = decodeWhole(PROTOBUF, full);
    expect(whole).toMatchObject({ items: 3, continue: true, remainingItems: 1 });
    expectSplitInvariant(PROTOBUF, full, (r, how) => expect(r, how).toEqual(whole));
    const status = pbEnvelope('v1', 'Status', pbStatus(401, 'Unauthorized', 'Unauthorized'));
    expectSplitInvariant(PROTOBUF, status, (r, how) =>
      expect(r.status, how).toEqual({ reason: 'Unauthorized', code: 401, message: 'Unauthorized' }),
    );
  });

  it('counts thousands of items under random splits', () => {
    const full = pbPodList(5000, { rv: '3' });
    const next = rng(3);
    for (let round = 0; round < 10; round++) {
      const r = decodePieces(PROTOBUF, randomSplit(full, Math.floor(next() * 2000), next));
      expect(r).toMatchObject({ items: 5000, resourceVersion: '3' });
    }
  });
});

describe('protobuf watch streams (4-byte length frames of WatchEvent)', () => {
  const frames = [
    pbWatchFrame('ADDED', 'v1', 'Pod', pbPod('web-0', '101')),
    pbWatchFrame('MODIFIED', 'v1', 'Pod', pbPod('web-0', '102')),
    pbWatchFrame('DELETED', 'v1', 'Pod', pbPod('web-1', '103', 'kube-system')),
    pbWatchFrame('ERROR', 'v1', 'Status', pbStatus(410, 'Expired', 'too old resource version')),
  ];
  const stream = Buffer.concat(frames);
  const records = [
    { type: 'ADDED', kind: 'Pod', name: 'web-0', namespace: 'default', resourceVersion: '101', atMs: 1 },
    { type: 'MODIFIED', kind: 'Pod', name: 'web-0', namespace: 'default', resourceVersion: '102', atMs: 1 },
    { type: 'DELETED', kind: 'Pod', name: 'web-1', namespace: 'kube-system', resourceVersion: '103', atMs: 1 },
    { type: 'ERROR', kind: 'Status', code: 410, reason: 'Expired', atMs: 1 },
  ];

  it('counts frames per type and records each event', () => {
    const r = decodeWhole(PROTOBUF_WATCH, stream);
    expect(r.format).toBe('protobuf-watch');
    expect(r.watch).toMatchObject({ events: 4, added: 1, modified: 1, deleted: 1, error: 1, records });
    expect(r.error).toBeUndefined();
  });

  it('decodes the same at every split point and byte by byte', () => {
    expectSplitInvariant(PROTOBUF_WATCH, stream, (r, how) => {
      expect(r.watch?.records, how).toEqual(records);
      expect(r.error, how).toBeUndefined();
    });
  });

  it('is selected by ;stream=watch even when the request was not flagged as a watch', () => {
    expect(decodeWhole({ ...PROTOBUF_WATCH, isWatch: false }, stream).watch?.events).toBe(4);
  });

  it('an object without the k8s\\0 prefix is skipped, the event still counted', () => {
    const ev = Buffer.concat([pbBytes(1, 'ADDED'), pbBytes(2, pbBytes(1, '{"kind":"Pod"}'))]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(ev.length);
    const r = decodeWhole(PROTOBUF_WATCH, Buffer.concat([len, ev, frames[0]!]));
    expect(r.watch?.records).toEqual([{ type: 'ADDED', atMs: 1 }, records[0]]);
    expect(r.error).toBeUndefined();
  });

  it('a stream cut inside a frame is truncated; aborted it is not', () => {
    expect(decodeWhole(PROTOBUF_WATCH, stream.subarray(0, stream.length - 3))).toMatchObject({
      error: 'truncated',
      watch: { events: 3 },
    });
    const d = createDecoder(PROTOBUF_WATCH);
    d.write(stream.subarray(0, stream.length - 3));
    const r = d.abort();
    expect(r.error).toBeUndefined();
    expect(r.watch?.events).toBe(3);
  });
});
