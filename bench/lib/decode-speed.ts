/**
 * Micro-benchmark of the decode tap alone (no sockets, no proxy): how fast `createDecoder(...).write`
 * gets through realistic response bodies, fed in fixed-size chunks as the proxy would.
 *
 *   npx node bench/lib/decode-speed.ts [--runs N] [--only substring] [--budget MB]
 *
 * Bodies: pod lists of bench/lib/pods.ts pods (~4.3 kB each; 20,000 of them is ~86 MB) as identity
 * JSON and gzip level 1 (the apiserver's BestSpeed), a kubectl page of 500, a 10-pod list (the small
 * requests of W1/W2), a JSON watch stream, a protobuf list, and ConfigMaps whose values are a few kB
 * long (long strings with escapes). MB/s is decoded (scanned) bytes per
 * second, MB = 10^6 bytes; the time is the median of N runs after two warm-up runs (`best`: the
 * fastest run, steadier than the median on a busy machine). `inflate only`
 * rows are the floor for gzip: zlib alone, without scanning. The list-20000 rows read every byte
 * (`maxScanBytes: Infinity`) except the `default budget` ones (the decoder's default, or `--budget`
 * MiB), whose MB/s is the whole body's size over the time spent, i.e. what the budget buys.
 */
import { gzipSync, constants as zc } from 'node:zlib';
import { createDecoder } from '../../src/stages/decode/index.ts';
import type { DecodeInput, DecodeResult, DecoderOptions } from '../../src/stages/decode/index.ts';
import { createInflater } from '../../src/stages/decode/inflate.ts';
import { podObject } from './pods.ts';
import { median } from './stats.ts';

const KIB = 1024;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const RUNS = Number(arg('--runs') ?? 7);
const ONLY = arg('--only');
const BUDGET_MB = arg('--budget');

// ---- bodies ---------------------------------------------------------------------------------

function listJson(count: number): Buffer {
  const parts: Buffer[] = [
    Buffer.from(`{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"${200000 + count}"},"items":[`),
  ];
  for (let i = 0; i < count; i++)
    parts.push(Buffer.from((i === 0 ? '' : ',') + JSON.stringify(podObject(`pod-${i}`, 'bench', i))));
  parts.push(Buffer.from(']}\n'));
  return Buffer.concat(parts);
}

/** ConfigMaps with a few kB of data each (config files, scripts): long strings with escapes. */
function configMapList(count: number): Buffer {
  const file = Array.from({ length: 60 }, (_, l) => `key.${l} = "value ${l}"\tpath=C:\\conf\\${l}`).join('\n');
  const items = Array.from({ length: count }, (_, i) => ({
    metadata: {
      name: `cm-${i}`,
      namespace: 'bench',
      uid: `uid-${i}`,
      resourceVersion: String(5000 + i),
      annotations: { note: 'é中😀' },
    },
    data: { 'app.conf': file, 'run.sh': `#!/bin/sh\nexec /app --id=${i} "$@"\n` },
  }));
  return Buffer.from(
    JSON.stringify({ kind: 'ConfigMapList', apiVersion: 'v1', metadata: { resourceVersion: '1' }, items }),
  );
}

function watchEvents(count: number): Buffer[] {
  const types = ['ADDED', 'MODIFIED', 'MODIFIED', 'DELETED'];
  return Array.from({ length: count }, (_, i) =>
    Buffer.from(
      JSON.stringify({
        type: types[i % types.length],
        object: { kind: 'Pod', apiVersion: 'v1', ...podObject(`pod-${i % 100}`, 'bench', i) },
      }) + '\n',
    ),
  );
}

// Protobuf, by hand from the wire format (field numbers of core/v1 and meta/v1).
function varint(v: number): Buffer {
  const out: number[] = [];
  do {
    let b = v % 128;
    v = Math.floor(v / 128);
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return Buffer.from(out);
}
const pb = (field: number, data: Buffer | string): Buffer => {
  const b = typeof data === 'string' ? Buffer.from(data) : data;
  return Buffer.concat([varint(field * 8 + 2), varint(b.length), b]);
};
const pbv = (field: number, v: number): Buffer => Buffer.concat([varint(field * 8), varint(v)]);

/** A pod of roughly the JSON pod's size: real ObjectMeta, spec/status as nested fields. */
function pbPod(i: number): Buffer {
  const p = podObject(`pod-${i}`, 'bench', i);
  const meta = p.metadata as Record<string, string>;
  const labels = Object.entries(meta.labels as unknown as Record<string, string>).map(([k, v]) =>
    pb(11, Buffer.concat([pb(1, k), pb(2, v)])),
  );
  const objectMeta = Buffer.concat([
    pb(1, meta.name ?? ''),
    pb(3, 'bench'),
    pb(5, meta.uid ?? ''),
    pb(6, meta.resourceVersion ?? ''),
    pbv(7, 1),
    ...labels,
  ]);
  // The rest of the pod: nested messages of strings, the way protobuf carries it (no key names).
  const strings = (o: unknown): Buffer[] => {
    if (typeof o === 'string') return [pb(1, o)];
    if (typeof o === 'number' || typeof o === 'boolean') return [pbv(2, Number(o))];
    if (o === null || typeof o !== 'object') return [];
    return [pb(3, Buffer.concat(Object.values(o).flatMap(strings)))];
  };
  return Buffer.concat([
    pb(1, objectMeta),
    pb(2, Buffer.concat(strings(p.spec))),
    pb(3, Buffer.concat(strings(p.status))),
  ]);
}

function pbList(count: number): Buffer {
  const items = Array.from({ length: count }, (_, i) => pb(2, pbPod(i)));
  const raw = Buffer.concat([pb(1, pb(2, String(200000 + count))), ...items]);
  return Buffer.concat([
    Buffer.from([0x6b, 0x38, 0x73, 0x00]),
    pb(1, Buffer.concat([pb(1, 'v1'), pb(2, 'PodList')])),
    pb(2, raw),
    pb(3, ''),
    pb(4, ''),
  ]);
}

function chunks(body: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o < body.length; o += size) out.push(body.subarray(o, o + size));
  return out;
}

// ---- cases ----------------------------------------------------------------------------------

const JSON_IN: DecodeInput = {
  contentType: 'application/json',
  contentEncoding: undefined,
  statusCode: 200,
  isWatch: false,
};
const GZIP_IN: DecodeInput = { ...JSON_IN, contentEncoding: 'gzip' };
const WATCH_IN: DecodeInput = { ...JSON_IN, isWatch: true };
const PB_IN: DecodeInput = { ...JSON_IN, contentType: 'application/vnd.kubernetes.protobuf' };

interface Case {
  name: string;
  /** Bytes scanned per body (decoded bytes). */
  scanned: number;
  /** Bodies per timed run (small bodies are repeated to get a measurable time). */
  repeat: number;
  run(): string;
}

const describe = (r: DecodeResult): string => {
  const parts = [`items=${r.items ?? '-'}`];
  if (r.watch !== undefined) parts.push(`events=${r.watch.events}`);
  if (r.error !== undefined) parts.push(`error=${r.error}`);
  if (r.partial === true) parts.push(`partial: read ${r.scannedBytes ?? '?'} B`);
  return parts.join(' ');
};

function decodeCase(
  name: string,
  input: DecodeInput,
  pieces: Buffer[],
  scanned: number,
  repeat = 1,
  options: DecoderOptions = {},
): Case {
  return {
    name,
    scanned,
    repeat,
    run(): string {
      let r: DecodeResult | undefined;
      for (let k = 0; k < repeat; k++) {
        const d = createDecoder(input, options);
        for (const p of pieces) d.write(p);
        r = d.end();
      }
      return r === undefined ? '' : describe(r);
    },
  };
}

function inflateCase(name: string, pieces: Buffer[], scanned: number): Case {
  return {
    name,
    scanned,
    repeat: 1,
    run(): string {
      let out = 0;
      const inf = createInflater('gzip', (b) => {
        out += b.length;
        return true;
      });
      if (inf === undefined) return 'no inflater';
      for (const p of pieces) inf.push(p);
      inf.finish();
      inf.close();
      return `out=${out}`;
    },
  };
}

function main(): void {
  const t0 = performance.now();
  const big = listJson(20_000);
  const bigGz = gzipSync(big, { level: zc.Z_BEST_SPEED });
  const page = listJson(500);
  const small = listJson(10);
  const events = watchEvents(2_000);
  const watchBytes = events.reduce((s, e) => s + e.length, 0);
  const pbBig = pbList(20_000);
  const cms = configMapList(2_000);
  console.log(
    `bodies built in ${(performance.now() - t0).toFixed(0)} ms: list-20000 ${big.length} B (gzip ${bigGz.length} B), ` +
      `list-500 ${page.length} B, list-10 ${small.length} B, watch ${events.length} events ${watchBytes} B, pb-list-20000 ${pbBig.length} B, configmaps-2000 ${cms.length} B`,
  );
  // Scan rows read every byte (no budget); `default budget` rows use the decoder's default (or --budget).
  const unbounded: DecoderOptions = { maxScanBytes: Infinity };
  const budgeted: DecoderOptions =
    BUDGET_MB === undefined ? {} : { maxScanBytes: Math.round(Number(BUDGET_MB) * 2 ** 20) };

  const cases: Case[] = [
    decodeCase('json list-20000 identity, 64 KiB chunks', JSON_IN, chunks(big, 64 * KIB), big.length, 1, unbounded),
    decodeCase('json list-20000 identity, 16 KiB chunks', JSON_IN, chunks(big, 16 * KIB), big.length, 1, unbounded),
    decodeCase('json list-20000 gzip, 64 KiB wire chunks', GZIP_IN, chunks(bigGz, 64 * KIB), big.length, 1, unbounded),
    inflateCase('inflate only list-20000 gzip (floor)', chunks(bigGz, 64 * KIB), big.length),
    decodeCase('json list-20000 identity, default budget', JSON_IN, chunks(big, 64 * KIB), big.length, 1, budgeted),
    decodeCase('json list-20000 gzip, default budget', GZIP_IN, chunks(bigGz, 64 * KIB), big.length, 1, budgeted),
    decodeCase('json configmaps-2000 (long strings), 64 KiB', JSON_IN, chunks(cms, 64 * KIB), cms.length, 1, unbounded),
    decodeCase('json list-500 identity, 64 KiB chunks', JSON_IN, chunks(page, 64 * KIB), page.length, 10, budgeted),
    decodeCase('json list-10 identity (one chunk) x1000', JSON_IN, [small], small.length, 1000, budgeted),
    decodeCase('json watch 2000 events, one write per event', WATCH_IN, events, watchBytes, 1, budgeted),
    decodeCase('protobuf list-20000, 64 KiB chunks', PB_IN, chunks(pbBig, 64 * KIB), pbBig.length, 1, budgeted),
  ];

  console.log(`median of ${RUNS} runs (after 2 warm-up runs); MB = 1e6 bytes of decoded body\n`);
  console.log(`${'body'.padEnd(48)} ${'ms/body'.padStart(10)} ${'MB/s'.padStart(8)} ${'best'.padStart(8)}  result`);
  for (const c of cases) {
    if (ONLY !== undefined && !c.name.includes(ONLY)) continue;
    c.run();
    c.run();
    const times: number[] = [];
    let out = '';
    for (let k = 0; k < RUNS; k++) {
      const s = performance.now();
      out = c.run();
      times.push((performance.now() - s) / c.repeat);
    }
    const ms = median(times);
    const best = Math.min(...times);
    const mbps = (t: number): string => (c.scanned / 1e6 / (t / 1000)).toFixed(0);
    console.log(
      `${c.name.padEnd(48)} ${ms.toFixed(ms < 1 ? 4 : 2).padStart(10)} ${mbps(ms).padStart(8)} ${mbps(best).padStart(8)}  ${out}`,
    );
  }
}

main();
