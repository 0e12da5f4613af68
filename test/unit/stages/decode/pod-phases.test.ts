import { describe, expect, it } from 'vitest';
import { createDecoder, decodeAttributes } from '../../../../src/stages/decode/index.ts';

function decode(body: unknown, opts: { pods?: boolean; chunk?: number } = {}): ReturnType<ReturnType<typeof createDecoder>['end']> {
  const d = createDecoder({ contentType: 'application/json', contentEncoding: undefined, statusCode: 200, isWatch: false, countPodPhases: opts.pods ?? true });
  const bytes = Buffer.from(JSON.stringify(body));
  const step = opts.chunk ?? bytes.length;
  for (let i = 0; i < bytes.length; i += step) d.write(bytes.subarray(i, i + step));
  return d.end();
}

const pod = (name: string, phase: string): object => ({
  metadata: { name, namespace: 'default', labels: { status: 'Running' } },
  spec: { containers: [{ name: 'c', image: 'x' }] },
  status: { conditions: [{ type: 'Ready', status: 'False' }], phase, containerStatuses: [{ state: { waiting: { reason: 'ContainerCreating' } } }] },
});

const columns = ['Name', 'Ready', 'Status', 'Restarts', 'Age'].map((name) => ({ name, type: 'string', format: '', description: 'Status of it', priority: 0 }));
const row = (name: string, status: string, object: object = { kind: 'PartialObjectMetadata', metadata: { name } }): object => ({ cells: [name, '0/1', status, 0, '1m'], object });

describe('pod phases while decoding a pod list', () => {
  it('counts items[].status.phase in a PodList, at every split', () => {
    const list = { kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: '9' }, items: [pod('a', 'Running'), pod('b', 'Pending'), pod('c', 'Running'), pod('d', 'Succeeded')] };
    for (const chunk of [1, 7, 64, 100_000]) {
      const r = decode(list, { chunk });
      expect(r.podPhases, `chunk ${chunk}`).toEqual({ running: 2, pending: 1, succeeded: 1 });
      expect(r.items).toBe(4);
    }
    expect(decodeAttributes(decode(list))).toMatchObject({ 'decode.pod_phase.running': 2, 'decode.pod_phase.pending': 1, 'decode.pod_phase.succeeded': 1 });
  });

  it("reads a Table's Status column when the rows carry metadata only, and the row's object when kubectl asked for it", () => {
    const table = { kind: 'Table', apiVersion: 'meta.k8s.io/v1', metadata: {}, columnDefinitions: columns, rows: [row('a', 'Running'), row('b', 'Pending'), row('c', 'ContainerCreating'), row('d', 'Completed'), row('e', 'CrashLoopBackOff'), row('f', 'Init:0/1')] };
    for (const chunk of [1, 13, 100_000]) expect(decode(table, { chunk }).podPhases).toEqual({ running: 1, pending: 3, succeeded: 1, other: 1 });
    const withObjects = { ...table, rows: [row('a', 'CrashLoopBackOff', { kind: 'Pod', status: { phase: 'Running' } }), row('b', 'Terminating', { kind: 'Pod', status: { phase: 'Failed' } })] };
    expect(decode(withObjects).podPhases).toEqual({ running: 1, failed: 1 });
  });

  it('counts nothing unless asked (other lists are stepped over whole), nor in an empty list', () => {
    const list = { kind: 'PodList', apiVersion: 'v1', metadata: {}, items: [pod('a', 'Running')] };
    expect(decode(list, { pods: false }).podPhases).toBeUndefined();
    expect(decode({ kind: 'PodList', apiVersion: 'v1', metadata: {}, items: [] }).podPhases).toBeUndefined();
  });
});
