import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createDecoder, decodeAttributes } from '../../../../src/stages/decode/index.ts';
import { pbBytes, pbEnvelope, pbPodList } from './fixtures.ts';

function decode(
  body: unknown,
  opts: { pods?: boolean; chunk?: number } = {},
): ReturnType<ReturnType<typeof createDecoder>['end']> {
  const d = createDecoder({
    contentType: 'application/json',
    contentEncoding: undefined,
    statusCode: 200,
    isWatch: false,
    countPodPhases: opts.pods ?? true,
  });
  const bytes = Buffer.from(JSON.stringify(body));
  const step = opts.chunk ?? bytes.length;
  for (let i = 0; i < bytes.length; i += step) d.write(bytes.subarray(i, i + step));
  return d.end();
}

const pod = (name: string, phase: string): object => ({
  metadata: { name, namespace: 'default', labels: { status: 'Running' } },
  spec: { containers: [{ name: 'c', image: 'x' }] },
  status: {
    conditions: [{ type: 'Ready', status: 'False' }],
    phase,
    containerStatuses: [{ state: { waiting: { reason: 'ContainerCreating' } } }],
  },
});

const columns = ['Name', 'Ready', 'Status', 'Restarts', 'Age'].map((name) => ({
  name,
  type: 'string',
  format: '',
  description: 'Status of it',
  priority: 0,
}));
const row = (
  name: string,
  status: string,
  object: object = { kind: 'PartialObjectMetadata', metadata: { name } },
): object => ({ cells: [name, '0/1', status, 0, '1m'], object });

describe('pod phases while decoding a pod list', () => {
  it('counts items[].status.phase in a PodList, at every split', () => {
    const list = {
      kind: 'PodList',
      apiVersion: 'v1',
      metadata: { resourceVersion: '9' },
      items: [pod('a', 'Running'), pod('b', 'Pending'), pod('c', 'Running'), pod('d', 'Succeeded')],
    };
    for (const chunk of [1, 7, 64, 100_000]) {
      const r = decode(list, { chunk });
      expect(r.podPhases, `chunk ${chunk}`).toEqual({ running: 2, pending: 1, succeeded: 1 });
      expect(r.items).toBe(4);
    }
    expect(decodeAttributes(decode(list))).toMatchObject({
      'decode.pod_phase.running': 2,
      'decode.pod_phase.pending': 1,
      'decode.pod_phase.succeeded': 1,
    });
  });

  it("reads a Table's Status column when the rows carry metadata only, and the row's object when kubectl asked for it", () => {
    const table = {
      kind: 'Table',
      apiVersion: 'meta.k8s.io/v1',
      metadata: {},
      columnDefinitions: columns,
      rows: [
        row('a', 'Running'),
        row('b', 'Pending'),
        row('c', 'ContainerCreating'),
        row('d', 'Completed'),
        row('e', 'CrashLoopBackOff'),
        row('f', 'Init:0/1'),
      ],
    };
    for (const chunk of [1, 13, 100_000])
      expect(decode(table, { chunk }).podPhases).toEqual({ running: 1, pending: 3, succeeded: 1, other: 1 });
    const withObjects = {
      ...table,
      rows: [
        row('a', 'CrashLoopBackOff', { kind: 'Pod', status: { phase: 'Running' } }),
        row('b', 'Terminating', { kind: 'Pod', status: { phase: 'Failed' } }),
      ],
    };
    expect(decode(withObjects).podPhases).toEqual({ running: 1, failed: 1 });
  });

  it('counts nothing unless asked (other lists are stepped over whole), nor in an empty list', () => {
    const list = { kind: 'PodList', apiVersion: 'v1', metadata: {}, items: [pod('a', 'Running')] };
    expect(decode(list, { pods: false }).podPhases).toBeUndefined();
    expect(decode({ kind: 'PodList', apiVersion: 'v1', metadata: {}, items: [] }).podPhases).toBeUndefined();
  });
});

/** Pages of a real pod list in protobuf, from kube-apiserver v1.33 (test/fixtures/README.md). */
const PB_PAGES = [1, 2, 3].map((n) =>
  readFileSync(new URL(`../../../fixtures/podlist-protobuf/page${n}.pb`, import.meta.url)),
);

function decodePb(
  bytes: Buffer,
  opts: { pods?: boolean; chunk?: number } = {},
): ReturnType<ReturnType<typeof createDecoder>['end']> {
  const d = createDecoder({
    contentType: 'application/vnd.kubernetes.protobuf',
    contentEncoding: undefined,
    statusCode: 200,
    isWatch: false,
    countPodPhases: opts.pods ?? true,
  });
  const step = opts.chunk ?? bytes.length;
  for (let i = 0; i < bytes.length; i += step) d.write(bytes.subarray(i, i + step));
  return d.end();
}

describe('pod phases while decoding a protobuf pod list', () => {
  it("counts each page of the real apiserver's pod list, at every split, and the pages sum to the pods it holds", () => {
    const expected = [{ succeeded: 1, failed: 1 }, { running: 2 }, { pending: 1 }];
    for (const [i, page] of PB_PAGES.entries()) {
      for (const chunk of [1, 3, 64, 100_000]) {
        const r = decodePb(page, { chunk });
        expect(r.error, `page ${i + 1} chunk ${chunk}`).toBeUndefined();
        expect(r.podPhases, `page ${i + 1} chunk ${chunk}`).toEqual(expected[i]);
      }
    }
    const sum: Record<string, number> = {};
    for (const page of PB_PAGES)
      for (const [phase, n] of Object.entries(decodePb(page).podPhases ?? {})) sum[phase] = (sum[phase] ?? 0) + n;
    expect(sum).toEqual({ running: 2, pending: 1, succeeded: 1, failed: 1 });
    // The list itself is read as before: kind, items, continue.
    expect(decodePb(PB_PAGES[0] as Buffer)).toMatchObject({ kind: 'PodList', items: 2, continue: true });
    expect(decodePb(PB_PAGES[2] as Buffer)).toMatchObject({ items: 1, continue: false });
  });

  it('counts nothing unless asked, and a pod with no status (or an empty one) is a pod without a phase', () => {
    expect(decodePb(PB_PAGES[1] as Buffer, { pods: false }).podPhases).toBeUndefined();
    expect(decodePb(PB_PAGES[1] as Buffer, { pods: false }).items).toBe(2);
    // The documented schema's fixtures: every pod Running, then one Pod with no status and one empty Pod.
    expect(decodePb(pbPodList(3)).podPhases).toEqual({ running: 3 });
    const bare = pbEnvelope(
      'v1',
      'PodList',
      Buffer.concat([pbBytes(1, pbBytes(2, '1')), pbBytes(2, pbBytes(1, pbBytes(1, 'no-status'))), pbBytes(2, '')]),
    );
    const r = decodePb(bare);
    expect(r.error).toBeUndefined();
    expect(r.items).toBe(2);
    expect(r.podPhases).toBeUndefined();
  });
});
