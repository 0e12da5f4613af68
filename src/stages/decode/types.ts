/**
 * Public types of the decode tap. Plain data only: a DecodeResult can be logged, cloned, sent over
 * a channel or turned into span attributes by `decodeAttributes` without touching the decoder.
 */

/** What the proxy knows about a response when its head arrives. */
export interface DecodeInput {
  /** The response `Content-Type` header, verbatim (parameters included). */
  contentType: string | undefined;
  /** The response `Content-Encoding` header, verbatim. */
  contentEncoding: string | undefined;
  /** HTTP status code. A watch answered with a status outside 2xx is decoded as one document. */
  statusCode: number;
  /** True when the request was a watch (RequestInfo verb `watch`). */
  isWatch: boolean;
  /**
   * The request listed pods: count them per phase (JSON lists and Tables, protobuf lists; `DecodeResult.podPhases`).
   * Off otherwise, so other lists' items are still stepped over whole.
   */
  countPodPhases?: boolean;
}

export interface DecoderOptions {
  /** Per-event records kept for a watch stream; later events are only counted. Default 100. */
  maxWatchRecords?: number;
  /**
   * Clock for `WatchEventRecord.atMs`. Default `performance.now`, the proxy's monotonic clock
   * (the same clock as the `t` fields of the proxy's stage events).
   */
  now?: () => number;
  /**
   * Scan budget: decoded bytes read per response before the decoder stops reading it. It bounds
   * the per-byte work on one response — scanning JSON and removing a Content-Encoding — so a huge
   * list (and gzip, where one wire byte is ~26 decoded bytes) costs at most this much CPU. Past it
   * the bytes are still counted but no longer read, and the result says `partial`. Applies to JSON
   * documents and to protobuf documents with a Content-Encoding; not to streams (watch, logs), whose
   * cost is per event over time, nor to identity protobuf, which is walked per field, not per byte.
   * Default 16 MiB: every 500-item page kubectl asks for is read whole up to ~33 kB per object, and
   * reading it costs ~20-30 ms of CPU (see bench/lib/decode-speed.ts). `Infinity`: no budget.
   */
  maxScanBytes?: number;
}

/**
 * How the body was read, decided from the headers alone:
 * - `json`: one JSON document (object, list, Table, Status, discovery)
 * - `json-watch`: a stream of JSON watch events
 * - `protobuf`: `k8s\0` + runtime.Unknown
 * - `protobuf-watch`: 4-byte big-endian length frames of WatchEvent
 * - `text`: text/plain (logs); only lines are counted
 * - `opaque`: anything else; only bytes are counted
 */
export type DecodeFormat = 'json' | 'json-watch' | 'protobuf' | 'protobuf-watch' | 'text' | 'opaque';

/**
 * Why a body could not be (fully) decoded. The bytes still passed through untouched; fields
 * captured before the problem are kept in the result.
 * - `invalid_json` / `invalid_protobuf`: the body does not follow the format its Content-Type names
 * - `gzip_error`: the Content-Encoding stream is corrupt
 * - `unsupported_encoding`: a Content-Encoding we do not decompress (br, zstd, ...)
 * - `depth_exceeded`: JSON nested deeper than 512 containers
 * - `truncated`: the body ended (`end()`) in the middle of a value, frame or gzip member
 * - `internal_error`: a bug in the decoder; it stopped decoding instead of throwing
 */
export type DecodeErrorCode =
  | 'invalid_json'
  | 'invalid_protobuf'
  | 'gzip_error'
  | 'unsupported_encoding'
  | 'depth_exceeded'
  | 'truncated'
  | 'internal_error';

/** A Status body (kind `Status`), or the Status inside a watch ERROR event. */
export interface DecodedStatus {
  reason?: string;
  /** Capped at 1 KiB of UTF-8. For the rbac stage; never put on the decode span. */
  message?: string;
  code?: number;
}

/** One watch event, as far as the bounded tap could see it. Strings are capped at 256 bytes. */
export interface WatchEventRecord {
  /** `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR` (or whatever the server sent). */
  type: string;
  /** `object.kind`; `Table` for kubectl's Table watches. */
  kind?: string;
  /** `object.metadata.name`, or for a Table the first row's `object.metadata.name`. */
  name?: string;
  namespace?: string;
  resourceVersion?: string;
  /** For ERROR events: the Status code and reason (e.g. 410 / Expired). */
  code?: number;
  reason?: string;
  /** When the event's last byte was seen, on the `DecoderOptions.now` clock. */
  atMs: number;
}

export interface WatchSummary {
  events: number;
  added: number;
  modified: number;
  deleted: number;
  bookmark: number;
  error: number;
  /** Events with any other type. */
  other: number;
  /** The first `maxWatchRecords` events. */
  records: WatchEventRecord[];
  /** Events counted but not recorded because the record cap was reached. */
  dropped: number;
}

export interface DecodeResult {
  format: DecodeFormat;
  /** Normalised media type: lower-cased `type/subtype` plus the `as`, `g`, `v`, `stream` parameters. */
  contentType?: string;
  /** Lower-cased Content-Encoding, when one was sent and is not `identity`. */
  contentEncoding?: string;
  /** Body bytes as they crossed the wire. */
  bytes: number;
  /**
   * Body bytes after removing the Content-Encoding (equal to `bytes` without one; as far as it got
   * when decompression failed or stopped at the scan budget, see `partial`). Absent when a Content-Encoding was not removed: `opaque` bodies are
   * not decompressed since nothing in them is read, and unsupported encodings cannot be.
   */
  decodedBytes?: number;
  /** Top-level `kind` (protobuf: runtime.Unknown typeMeta.kind). */
  kind?: string;
  apiVersion?: string;
  /** Length of the top-level `items` array, or of `rows` for a Table. */
  items?: number;
  /** Top-level `metadata.resourceVersion`. */
  resourceVersion?: string;
  /** Set for lists: whether `metadata.continue` was non-empty. The token itself is never kept. */
  continue?: boolean;
  /** Top-level `metadata.remainingItemCount`. */
  remainingItems?: number;
  /** Present when `kind` is `Status`. */
  status?: DecodedStatus;
  /**
   * Pod lists (DecodeInput.countPodPhases): pods per lower-case phase (`running`, `pending`, `succeeded`,
   * `failed`, `unknown`), from each item's `status.phase`, a Table row's object, else its Status cell
   * (`other`: a Status cell that names no phase, e.g. CrashLoopBackOff).
   */
  podPhases?: Record<string, number>;
  /** Present for watch streams. */
  watch?: WatchSummary;
  /** Present for text bodies: newline count, plus one for a final unterminated line. */
  lines?: number;
  error?: DecodeErrorCode;
  /** True when the proxy called `abort()`: the stream was cut before its end. */
  aborted: boolean;
  /**
   * True when the scan budget (`DecoderOptions.maxScanBytes`) ran out before the body did: the rest
   * passed through unread. Counts (`items`) are then lower bounds, fields that come later in the body
   * may be missing, and `decodedBytes` of an encoded body is only as far as decompression got. Not an
   * error: the body itself may well be complete. Absent otherwise.
   */
  partial?: boolean;
  /** With `partial`: the decoded bytes that were read (the budget). */
  scannedBytes?: number;
}

/** A live view of a response still streaming, for a progress display. */
export interface DecodeProgress {
  /** List items (or Table rows) seen so far; 0 before the list starts and for other bodies. */
  items: number;
  /** Watch events completed so far; 0 for non-watch bodies. */
  watchEvents: number;
}

/** A tap on one response body. Never throws, never keeps a chunk beyond `write`. */
export interface Decoder {
  /** Observe the next body chunk. Cheap; memory does not grow with the body. */
  write(chunk: Uint8Array): void;
  /** The body ended normally. Idempotent: later calls return the same result. */
  end(): DecodeResult;
  /** The stream was cut. A document cut short is not an error here; `aborted` says so. */
  abort(): DecodeResult;
  /** Debug accessor: an estimate in bytes of what the decoder retains. Bounded by design. */
  stateSize(): number;
  /**
   * Counts so far, for a live display of a long list or watch (e.g. polled once a second). O(1):
   * reads two counters and allocates only the returned object. Stops moving when the decoder stops
   * reading (end, error, or the scan budget for documents).
   */
  progress(): DecodeProgress;
  /**
   * True once nothing more will be read (an error, the scan budget spent, an opaque body, or ended):
   * later chunks are only counted, so a caller that defers `write` may as well call it at once.
   */
  done(): boolean;
}
