/**
 * Just enough Kubernetes protobuf to read what kubectl's typed clients POST (`kubectl create configmap`,
 * `kubectl create namespace` send `application/vnd.kubernetes.protobuf`): the `k8s\0` + runtime.Unknown
 * envelope and the ConfigMap, Namespace and ObjectMeta messages. Other kinds are refused with 415.
 * Zero values are dropped, as the JSON serializer's omitempty would.
 */
import type { KubeObject } from './resources.ts';
import { ApiError, status } from './wire.ts';

type FieldType = 'string' | 'bytes' | 'int64' | 'bool' | 'strmap' | 'bytesmap' | 'strings' | 'time' | Schema;
interface Schema {
  [no: number]: [string, FieldType];
}

const TIME: Schema = { 1: ['seconds', 'int64'], 2: ['nanos', 'int64'] };
const OBJECT_META: Schema = {
  1: ['name', 'string'],
  2: ['generateName', 'string'],
  3: ['namespace', 'string'],
  4: ['selfLink', 'string'],
  5: ['uid', 'string'],
  6: ['resourceVersion', 'string'],
  7: ['generation', 'int64'],
  8: ['creationTimestamp', 'time'],
  9: ['deletionTimestamp', 'time'],
  10: ['deletionGracePeriodSeconds', 'int64'],
  11: ['labels', 'strmap'],
  12: ['annotations', 'strmap'],
  14: ['finalizers', 'strings'],
};
const SCHEMAS: Record<string, Schema> = {
  ConfigMap: {
    1: ['metadata', OBJECT_META],
    2: ['data', 'strmap'],
    3: ['binaryData', 'bytesmap'],
    4: ['immutable', 'bool'],
  },
  SelfSubjectAccessReview: {
    1: ['metadata', OBJECT_META],
    2: [
      'spec',
      {
        1: [
          'resourceAttributes',
          {
            1: ['namespace', 'string'],
            2: ['verb', 'string'],
            3: ['group', 'string'],
            4: ['version', 'string'],
            5: ['resource', 'string'],
            6: ['subresource', 'string'],
            7: ['name', 'string'],
          },
        ],
        2: ['nonResourceAttributes', { 1: ['path', 'string'], 2: ['verb', 'string'] }],
      },
    ],
  },
  Namespace: {
    1: ['metadata', OBJECT_META],
    2: ['spec', { 1: ['finalizers', 'strings'] }],
    3: ['status', { 1: ['phase', 'string'] }],
  },
};

interface Raw {
  no: number;
  wire: number;
  int: bigint;
  bytes: Buffer;
}

function* readFields(buf: Buffer): Generator<Raw> {
  let off = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[off++];
      if (b === undefined) throw new Error('truncated varint');
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (off < buf.length) {
    const key = Number(varint());
    const no = key >>> 3;
    const wire = key & 7;
    if (wire === 0) yield { no, wire, int: varint(), bytes: Buffer.alloc(0) };
    else if (wire === 2) {
      const len = Number(varint());
      const bytes = buf.subarray(off, off + len);
      off += len;
      yield { no, wire, int: 0n, bytes };
    } else if (wire === 1) {
      off += 8;
    } else if (wire === 5) {
      off += 4;
    } else throw new Error(`unsupported wire type ${wire}`);
  }
}

function decodeMessage(buf: Buffer, schema: Schema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of readFields(buf)) {
    const def = schema[f.no];
    if (!def) continue;
    const [name, type] = def;
    if (type === 'string') {
      const s = f.bytes.toString('utf8');
      if (s !== '') out[name] = s;
    } else if (type === 'bytes') out[name] = f.bytes.toString('base64');
    else if (type === 'int64') {
      if (f.int !== 0n) out[name] = Number(BigInt.asIntN(64, f.int));
    } else if (type === 'bool') {
      if (f.int !== 0n) out[name] = true;
    } else if (type === 'strings') {
      const list = (out[name] ??= []) as string[];
      list.push(f.bytes.toString('utf8'));
    } else if (type === 'strmap' || type === 'bytesmap') {
      const entry = decodeMessage(f.bytes, { 1: ['k', 'string'], 2: ['v', type === 'strmap' ? 'string' : 'bytes'] });
      const m = (out[name] ??= {}) as Record<string, unknown>;
      m[typeof entry['k'] === 'string' ? entry['k'] : ''] = entry['v'] ?? '';
    } else if (type === 'time') {
      const t = decodeMessage(f.bytes, TIME);
      const secs = Number(t['seconds'] ?? 0);
      if (secs !== 0) out[name] = new Date(secs * 1000).toISOString().replace('.000Z', 'Z');
    } else {
      const m = decodeMessage(f.bytes, type);
      if (Object.keys(m).length > 0) out[name] = m;
    }
  }
  return out;
}

const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

export function decodeKubeProtobuf(body: Buffer): KubeObject {
  const refuse = (why: string): ApiError =>
    new ApiError(status(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - ${why}`));
  if (!body.subarray(0, 4).equals(MAGIC)) throw refuse('missing the k8s protobuf prefix');
  let apiVersion = '';
  let kind = '';
  let raw: Buffer = Buffer.alloc(0);
  for (const f of readFields(body.subarray(4))) {
    if (f.no === 1) {
      const tm = decodeMessage(f.bytes, { 1: ['apiVersion', 'string'], 2: ['kind', 'string'] });
      apiVersion = typeof tm['apiVersion'] === 'string' ? tm['apiVersion'] : '';
      kind = typeof tm['kind'] === 'string' ? tm['kind'] : '';
    } else if (f.no === 2) raw = f.bytes;
  }
  const schema = SCHEMAS[kind];
  if (!schema)
    throw refuse(`the fake apiserver decodes protobuf only for ${Object.keys(SCHEMAS).join(', ')} (got ${kind})`);
  const obj = decodeMessage(raw, schema);
  return { apiVersion, kind, ...obj, metadata: (obj['metadata'] ?? {}) as KubeObject['metadata'] };
}
