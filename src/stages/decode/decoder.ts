/**
 * The decode tap: the proxy forwards each response chunk to kubectl untouched and, in the same
 * call, lets a Decoder look at it. The decoder picks a reader from the response headers, removes
 * the Content-Encoding on the fly when there is one, and keeps only bounded state.
 *
 *   const d = createDecoder({ contentType, contentEncoding, statusCode, isWatch });
 *   res.on('data', (chunk) => { client.write(chunk); d.write(chunk); });
 *   res.on('end', () => publish(d.end()));   // or d.abort() when the stream was cut
 *
 * A document is read up to `DecoderOptions.maxScanBytes` decoded bytes (see types.ts); past that the
 * decoder only counts bytes and the result is marked `partial`.
 */
import { Collector, F_API_VERSION, F_KIND, F_REMAINING, F_RV } from './collector.ts';
import { normalizeContentType, parseContentEncoding, parseMediaType, selectFormat } from './content-type.ts';
import { createInflater, type Inflater } from './inflate.ts';
import { JsonScanner } from './json-scanner.ts';
import { ProtobufScanner } from './protobuf-scanner.ts';
import type { DecodeErrorCode, DecodeInput, DecodeProgress, DecodeResult, Decoder, DecoderOptions } from './types.ts';

const DEFAULT_MAX_WATCH_RECORDS = 100;
/** See `DecoderOptions.maxScanBytes` for why 16 MiB. */
export const DEFAULT_MAX_SCAN_BYTES = 16 * 1024 * 1024;
const NEWLINE = 0x0a;

/** Counts lines of a text body (pod logs). */
class LineCounter {
  newlines = 0;
  last = -1;

  write(buf: Uint8Array): void {
    if (buf.length === 0) return;
    const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    let i = b.indexOf(NEWLINE);
    while (i !== -1) {
      this.newlines++;
      i = b.indexOf(NEWLINE, i + 1);
    }
    this.last = b[b.length - 1] ?? -1;
  }

  lines(): number {
    return this.newlines + (this.last !== -1 && this.last !== NEWLINE ? 1 : 0);
  }
}

export function createDecoder(input: DecodeInput, options: DecoderOptions = {}): Decoder {
  const mediaType = parseMediaType(input.contentType);
  const format = selectFormat(mediaType, input);
  const encoding = parseContentEncoding(input.contentEncoding);
  const now = options.now ?? ((): number => performance.now());
  const maxRecords = options.maxWatchRecords;
  const collector = new Collector(
    maxRecords !== undefined && Number.isSafeInteger(maxRecords) && maxRecords >= 0
      ? maxRecords
      : DEFAULT_MAX_WATCH_RECORDS,
  );

  let json: JsonScanner | undefined;
  let proto: ProtobufScanner | undefined;
  let text: LineCounter | undefined;
  switch (format) {
    case 'json':
    case 'json-watch':
      json = new JsonScanner(collector, format === 'json-watch', now, input.countPodPhases === true);
      break;
    case 'protobuf':
    case 'protobuf-watch':
      proto = new ProtobufScanner(collector, format === 'protobuf-watch', now, input.countPodPhases === true);
      break;
    case 'text':
      text = new LineCounter();
      break;
    case 'opaque':
      break;
  }
  const reads = format !== 'opaque';
  // The budget bounds per-byte work: JSON scanning and decompression. Streams are not bounded.
  const bounded = format === 'json' || (format === 'protobuf' && encoding.coding !== 'identity');
  const maxScan = options.maxScanBytes;
  const budget = !bounded
    ? Infinity
    : maxScan !== undefined && (Number.isSafeInteger(maxScan) || maxScan === Infinity) && maxScan >= 0
      ? maxScan
      : DEFAULT_MAX_SCAN_BYTES;

  let bytes = 0;
  let decodedBytes = 0;
  /** Decoded bytes handed to the scanner (less than decodedBytes only once the budget ran out). */
  let scannedBytes = 0;
  let partial = false;
  let error: DecodeErrorCode | undefined;
  /** Set once nothing more is read (an error, or nothing to read): bytes are still counted. */
  let stopped = !reads;
  let result: DecodeResult | undefined;

  const fail = (code: DecodeErrorCode): void => {
    error ??= code;
    stopped = true;
  };

  const feed = (whole: Uint8Array): void => {
    decodedBytes += whole.length;
    const room = budget - scannedBytes;
    const cut = whole.length > room;
    const buf = cut ? whole.subarray(0, room) : whole;
    scannedBytes += buf.length;
    read(buf);
    if (cut && !stopped) {
      partial = true;
      stopped = true;
    }
  };

  const read = (buf: Uint8Array): void => {
    if (json !== undefined) {
      json.write(buf);
      if (json.error !== undefined) fail(json.error);
    } else if (proto !== undefined) {
      proto.write(buf);
      if (proto.error !== undefined) fail(proto.error);
    } else {
      text?.write(buf);
    }
  };

  let inflater: Inflater | undefined;
  if (reads && encoding.coding !== 'identity') {
    if (encoding.coding === 'unsupported') {
      fail('unsupported_encoding');
    } else {
      try {
        inflater = createInflater(encoding.coding, (out) => {
          if (!stopped) feed(out);
          return !stopped;
        });
      } catch {
        inflater = undefined;
      }
      if (inflater === undefined) fail('unsupported_encoding');
    }
  }

  const finish = (aborted: boolean): DecodeResult => {
    if (result !== undefined) return result;
    try {
      if (!stopped && inflater !== undefined && !aborted) {
        const e = inflater.finish();
        if (e !== undefined) fail(e);
      }
      if (!stopped) {
        json?.finish(aborted);
        proto?.finish(aborted);
        const e = json?.error ?? proto?.error;
        if (e !== undefined) fail(e);
      }
    } catch {
      fail('internal_error');
    }
    inflater?.close();
    result = buildResult(aborted);
    return result;
  };

  const buildResult = (aborted: boolean): DecodeResult => {
    const r: DecodeResult = { format, bytes, aborted };
    // Without a Content-Encoding nothing changes; with one, it is what was decompressed (so far).
    if (encoding.coding === 'identity') r.decodedBytes = bytes;
    else if (inflater !== undefined) r.decodedBytes = decodedBytes;
    const contentType = normalizeContentType(mediaType);
    if (contentType !== undefined) r.contentType = contentType;
    if (encoding.normalized !== undefined) r.contentEncoding = encoding.normalized;
    if (format === 'json' || format === 'protobuf') {
      const kind = collector.str[F_KIND];
      if (kind !== undefined) r.kind = kind;
      const apiVersion = collector.str[F_API_VERSION];
      if (apiVersion !== undefined) r.apiVersion = apiVersion;
      const rv = collector.str[F_RV];
      if (rv !== undefined) r.resourceVersion = rv;
      const items = kind === 'Table' || collector.items < 0 ? collector.rows : collector.items;
      if (items >= 0) {
        r.items = items;
        r.continue = collector.continueNonEmpty;
      }
      const remaining = collector.num[F_REMAINING];
      if (remaining !== undefined) r.remainingItems = remaining;
      const status = collector.status();
      if (status !== undefined) r.status = status;
      if (input.countPodPhases === true && collector.phases.size > 0)
        r.podPhases = Object.fromEntries(collector.phases);
    } else if (format === 'json-watch' || format === 'protobuf-watch') {
      r.watch = collector.watchSummary();
    } else if (text !== undefined) {
      r.lines = text.lines();
    }
    if (error !== undefined) r.error = error;
    if (partial) {
      r.partial = true;
      r.scannedBytes = scannedBytes;
    }
    return r;
  };

  return {
    write(chunk: Uint8Array): void {
      if (result !== undefined) return;
      bytes += chunk.length;
      if (stopped) return;
      try {
        if (inflater !== undefined) {
          const e = inflater.push(chunk);
          if (e !== undefined) fail(e === 'truncated' ? 'gzip_error' : e);
          // Nothing more will be read: give the native engine back now, not at end().
          if (stopped) inflater.close();
        } else {
          feed(chunk);
        }
      } catch {
        fail('internal_error');
      }
    },
    end: () => finish(false),
    abort: () => finish(true),
    progress(): DecodeProgress {
      const items = collector.str[F_KIND] === 'Table' || collector.items < 0 ? collector.rows : collector.items;
      return { items: items > 0 ? items : 0, watchEvents: collector.events };
    },
    done: () => stopped || result !== undefined,
    stateSize(): number {
      const scanner = json?.stateSize() ?? proto?.stateSize() ?? 16;
      return scanner + collector.size() + (inflater !== undefined ? 64 * 1024 : 0) + 256;
    },
  };
}
