import { describe, expect, it } from 'vitest';
import { renderTraceTree, treeSpans, type OtlpTrace } from '../../../src/report/trace-tree.ts';

const T = '0af7651916cd43dd8448eb211c80319c';
const ns = (ms: number): string => String(BigInt(1_700_000_000_000) * 1_000_000n + BigInt(Math.round(ms * 1e6)));
const span = (
  id: string,
  parent: string | undefined,
  name: string,
  from: number,
  to: number,
  attributes: { key: string; value: { intValue?: string; stringValue?: string } }[] = [],
) => ({
  traceId: T,
  spanId: id,
  parentSpanId: parent,
  name,
  startTimeUnixNano: ns(from),
  endTimeUnixNano: ns(to),
  attributes,
});
const resource = (name: string) => ({ attributes: [{ key: 'service.name', value: { stringValue: name } }] });

describe('the span tree of `kubetrail show`', () => {
  it("draws kubetrail's, the apiserver's and etcd's spans nested, in start order, with service and duration", () => {
    const trace: OtlpTrace = {
      resourceSpans: [
        {
          resource: resource('kubetrail'),
          scopeSpans: [
            {
              spans: [
                span('00000000000000b2', '00000000000000a1', 'list pods', 20, 32, [
                  { key: 'http.response.status_code', value: { intValue: '200' } },
                ]),
                span('00000000000000a1', undefined, 'kubectl get', 0, 40),
                span('00000000000000c3', '00000000000000b2', 'upstream', 20, 31),
                span('00000000000000b1', '00000000000000a1', 'GET /api', 2, 15, [
                  { key: 'http.response.status_code', value: { intValue: '200' } },
                ]),
              ],
            },
          ],
        },
        // Jaeger's API v3 gives ids in base64, and each service its own resource.
        {
          resource: resource('apiserver'),
          scopeSpans: [
            {
              spans: [
                {
                  ...span('', '', 'GET /api/v1/namespaces/default/pods', 21, 30),
                  spanId: Buffer.from('00000000000000d4', 'hex').toString('base64'),
                  parentSpanId: Buffer.from('00000000000000c3', 'hex').toString('base64'),
                },
              ],
            },
          ],
        },
        {
          resource: resource('etcd'),
          scopeSpans: [{ spans: [span('00000000000000e5', '00000000000000d4', 'etcdserverpb.KV/Range', 22, 22.2)] }],
        },
      ],
    };
    expect(renderTraceTree(treeSpans(trace))).toEqual([
      'kubectl get [kubetrail] 40.0ms',
      '  GET /api [kubetrail] 13.0ms 200',
      '  list pods [kubetrail] 12.0ms 200',
      '    upstream [kubetrail] 11.0ms',
      '      GET /api/v1/namespaces/default/pods [apiserver] 9.0ms',
      '        etcdserverpb.KV/Range [etcd] 0.2ms',
    ]);
  });

  it('a span whose parent is not in the trace (a link, not a child) still shows, as a tree of its own', () => {
    const trace: OtlpTrace = {
      resourceSpans: [
        {
          resource: resource('apiserver'),
          scopeSpans: [{ spans: [span('00000000000000f6', '1111111111111111', 'GET', 1, 2)] }],
        },
      ],
    };
    expect(renderTraceTree(treeSpans(trace))).toEqual(['GET [apiserver] 1.0ms']);
  });
});
