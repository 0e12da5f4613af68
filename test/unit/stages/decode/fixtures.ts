/**
 * Real-shaped Kubernetes bodies for the decode tests, and helpers to feed them in pieces.
 * Shapes follow apimachinery meta/v1 (lists, Table, Status), apidiscovery v2 and core/v1.
 */
import { createDecoder } from '../../../../src/stages/decode/index.ts';
import type { DecodeInput, DecodeResult, DecoderOptions } from '../../../../src/stages/decode/index.ts';

export const JSON_LIST: DecodeInput = {
  contentType: 'application/json',
  contentEncoding: undefined,
  statusCode: 200,
  isWatch: false,
};
export const JSON_WATCH: DecodeInput = { ...JSON_LIST, isWatch: true };
export const PROTOBUF: DecodeInput = { ...JSON_LIST, contentType: 'application/vnd.kubernetes.protobuf' };
export const PROTOBUF_WATCH: DecodeInput = {
  ...JSON_LIST,
  contentType: 'application/vnd.kubernetes.protobuf;stream=watch',
  isWatch: true,
};

/** A pod as the apiserver serialises it: note the `items` keys nested inside (volumes, managedFields). */
export function pod(i: number, ns = 'default'): Record<string, unknown> {
  return {
    metadata: {
      name: `web-${i}`,
      namespace: ns,
      uid: `0000-${i}`,
      resourceVersion: String(5000 + i),
      labels: { app: 'web', items: 'not-the-list' },
      annotations: { 'example.com/note': 'quote " backslash \\ unicode \u00e9\u4e2d\ud83d\ude00 items' },
      managedFields: [
        {
          manager: 'kubectl',
          operation: 'Update',
          fieldsType: 'FieldsV1',
          fieldsV1: { 'f:spec': { 'f:volumes': { 'k:{"name":"cfg"}': { 'f:configMap': { 'f:items': {} } } } } },
        },
      ],
    },
    spec: {
      containers: [{ name: 'web', image: 'nginx:1.27', ports: [{ containerPort: 80, protocol: 'TCP' }] }],
      volumes: [
        {
          name: 'cfg',
          configMap: {
            name: 'cfg',
            items: [
              { key: 'a', path: 'a' },
              { key: 'b', path: 'b' },
            ],
          },
        },
      ],
      terminationGracePeriodSeconds: 30,
      hostNetwork: false,
      priority: -1.5e3,
    },
    status: { phase: 'Running', conditions: [{ type: 'Ready', status: 'True', lastProbeTime: null }] },
  };
}

export function podList(
  n: number,
  meta: Record<string, unknown> = { resourceVersion: '777' },
): Record<string, unknown> {
  return {
    kind: 'PodList',
    apiVersion: 'v1',
    metadata: meta,
    items: Array.from({ length: n }, (_, i) => pod(i)),
  };
}

/** kubectl get's Table (includeObject=Metadata), with a `rows` key and nested objects. */
export function table(rows: number): Record<string, unknown> {
  return {
    kind: 'Table',
    apiVersion: 'meta.k8s.io/v1',
    metadata: { resourceVersion: '4242' },
    columnDefinitions: [
      { name: 'Name', type: 'string', format: 'name', description: 'Name must be unique', priority: 0 },
      { name: 'Ready', type: 'string', format: '', description: 'items ready', priority: 0 },
    ],
    rows: Array.from({ length: rows }, (_, i) => ({
      cells: [`web-${i}`, '1/1', 0, null, true, { rows: [1, 2] }],
      object: {
        kind: 'PartialObjectMetadata',
        apiVersion: 'meta.k8s.io/v1',
        metadata: { name: `web-${i}`, namespace: 'default', resourceVersion: String(i) },
      },
    })),
  };
}

export const FORBIDDEN_MESSAGE =
  'pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default"';

export function status403(): Record<string, unknown> {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message: FORBIDDEN_MESSAGE,
    reason: 'Forbidden',
    details: { kind: 'pods' },
    code: 403,
  };
}

export function discovery(): Record<string, unknown> {
  const resource = (name: string, kind: string): Record<string, unknown> => ({
    resource: name,
    responseKind: { group: '', version: 'v1', kind },
    scope: 'Namespaced',
    singularResource: name.slice(0, -1),
    verbs: ['create', 'delete', 'get', 'list', 'watch'],
  });
  return {
    kind: 'APIGroupDiscoveryList',
    apiVersion: 'apidiscovery.k8s.io/v2',
    metadata: {},
    items: [
      {
        metadata: { creationTimestamp: null },
        versions: [
          {
            version: 'v1',
            resources: [resource('pods', 'Pod'), resource('services', 'Service')],
            freshness: 'Current',
          },
        ],
      },
      {
        metadata: { name: 'apps', creationTimestamp: null },
        versions: [{ version: 'v1', resources: [resource('deployments', 'Deployment')], freshness: 'Current' }],
      },
    ],
  };
}

export function watchEvent(type: string, object: Record<string, unknown>): string {
  return JSON.stringify({ type, object });
}

export function podObject(name: string, rv: string, ns = 'default'): Record<string, unknown> {
  return { kind: 'Pod', apiVersion: 'v1', ...pod(0, ns), metadata: { name, namespace: ns, resourceVersion: rv } };
}

// ---- feeding ------------------------------------------------------------------------------

/** Deterministic PRNG (mulberry32) so random splits are reproducible. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIXED_CLOCK: DecoderOptions = { now: () => 1 };

/** Decode `body` written as the given pieces (each a fresh copy, so no aliasing helps). */
export function decodePieces(
  input: DecodeInput,
  pieces: Uint8Array[],
  options: DecoderOptions = FIXED_CLOCK,
): DecodeResult {
  const d = createDecoder(input, options);
  for (const p of pieces) d.write(Buffer.from(p));
  return d.end();
}

export function decodeWhole(input: DecodeInput, body: Uint8Array | string, options?: DecoderOptions): DecodeResult {
  return decodePieces(input, [typeof body === 'string' ? Buffer.from(body) : body], options);
}

export function splitAt(body: Uint8Array, offsets: number[]): Uint8Array[] {
  const pieces: Uint8Array[] = [];
  let prev = 0;
  for (const o of [...offsets].sort((x, y) => x - y)) {
    pieces.push(body.subarray(prev, o));
    prev = o;
  }
  pieces.push(body.subarray(prev));
  return pieces;
}

export function randomSplit(body: Uint8Array, cuts: number, next: () => number): Uint8Array[] {
  return splitAt(
    body,
    Array.from({ length: cuts }, () => Math.floor(next() * (body.length + 1))),
  );
}

/**
 * Decode `body` split in two at every offset, and one byte at a time, and check every result
 * equals the one-piece result. Returns the one-piece result.
 */
export function expectSplitInvariant(
  input: DecodeInput,
  body: Uint8Array,
  check: (r: DecodeResult, how: string) => void,
): DecodeResult {
  const whole = decodeWhole(input, body);
  check(whole, 'whole');
  for (let k = 0; k <= body.length; k++) check(decodePieces(input, splitAt(body, [k])), `split at ${k}`);
  check(
    decodePieces(
      input,
      Array.from(body, (b) => Uint8Array.of(b)),
    ),
    'byte by byte',
  );
  return whole;
}

// ---- protobuf, by hand from the wire format -----------------------------------------------

export function varint(v: number | bigint): Buffer {
  let x = BigInt(v);
  if (x < 0n) x += 1n << 64n; // int64 two's complement, as protobuf encodes negatives
  const out: number[] = [];
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x !== 0n) b |= 0x80;
    out.push(b);
  } while (x !== 0n);
  return Buffer.from(out);
}

export function pbBytes(field: number, data: Uint8Array | string): Buffer {
  const b = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
  return Buffer.concat([varint(field * 8 + 2), varint(b.length), b]);
}

export function pbVarint(field: number, v: number | bigint): Buffer {
  return Buffer.concat([varint(field * 8), varint(v)]);
}

export function pbFixed64(field: number): Buffer {
  return Buffer.concat([varint(field * 8 + 1), Buffer.alloc(8, 0xab)]);
}

export function pbFixed32(field: number): Buffer {
  return Buffer.concat([varint(field * 8 + 5), Buffer.alloc(4, 0xcd)]);
}

export const K8S_MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

/** ObjectMeta { 1 name, 3 namespace, 5 uid, 6 resourceVersion, 11 labels (map entries) }. */
export function pbObjectMeta(name: string, ns: string, rv: string): Buffer {
  return Buffer.concat([
    pbBytes(1, name),
    pbBytes(3, ns),
    pbBytes(5, `uid-${name}`),
    pbBytes(6, rv),
    pbVarint(7, 3), // generation
    pbBytes(11, Buffer.concat([pbBytes(1, 'app'), pbBytes(2, 'web')])),
  ]);
}

/** A Pod { 1 metadata, 2 spec, 3 status } with a spec big enough to cross chunk boundaries. */
export function pbPod(name: string, rv: string, ns = 'default'): Buffer {
  const container = Buffer.concat([pbBytes(1, 'web'), pbBytes(2, 'nginx:1.27'), pbFixed64(99), pbFixed32(98)]);
  return Buffer.concat([
    pbBytes(1, pbObjectMeta(name, ns, rv)),
    pbBytes(2, Buffer.concat([pbBytes(2, container), pbBytes(6, 'Always')])),
    pbBytes(3, pbBytes(1, 'Running')),
  ]);
}

/** `k8s\0` + runtime.Unknown { 1 TypeMeta{1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType }. */
export function pbEnvelope(apiVersion: string, kind: string, raw: Uint8Array): Buffer {
  return Buffer.concat([
    K8S_MAGIC,
    pbBytes(1, Buffer.concat([pbBytes(1, apiVersion), pbBytes(2, kind)])),
    pbBytes(2, raw),
    pbBytes(3, ''),
    pbBytes(4, ''),
  ]);
}

/** PodList { 1 ListMeta{2 rv, 3 continue, 4 remainingItemCount}, 2 repeated Pod }. */
export function pbPodList(n: number, meta: { rv?: string; cont?: string; remaining?: number } = { rv: '777' }): Buffer {
  const lm: Buffer[] = [];
  if (meta.rv !== undefined) lm.push(pbBytes(2, meta.rv));
  if (meta.cont !== undefined) lm.push(pbBytes(3, meta.cont));
  if (meta.remaining !== undefined) lm.push(pbVarint(4, meta.remaining));
  const items = Array.from({ length: n }, (_, i) => pbBytes(2, pbPod(`web-${i}`, String(5000 + i))));
  return pbEnvelope('v1', 'PodList', Buffer.concat([pbBytes(1, Buffer.concat(lm)), ...items]));
}

/** Status { 1 ListMeta, 2 status, 3 message, 4 reason, 5 details, 6 code }. */
export function pbStatus(code: number, reason: string, message: string): Buffer {
  return Buffer.concat([
    pbBytes(1, ''),
    pbBytes(2, 'Failure'),
    pbBytes(3, message),
    pbBytes(4, reason),
    pbBytes(5, pbBytes(2, 'pods')),
    pbVarint(6, code),
  ]);
}

/** One protobuf watch frame: 4-byte big-endian length + WatchEvent { 1 type, 2 RawExtension{1 raw} }. */
export function pbWatchFrame(type: string, apiVersion: string, kind: string, raw: Uint8Array): Buffer {
  const obj = pbEnvelope(apiVersion, kind, raw);
  const ev = Buffer.concat([pbBytes(1, type), pbBytes(2, pbBytes(1, obj))]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(ev.length);
  return Buffer.concat([len, ev]);
}
