/**
 * Where the scanners put what they find. Both the JSON and the protobuf scanner address the same
 * numbered slots, so building the DecodeResult does not depend on the wire format.
 *
 * Bounded: a fixed number of slots of capped strings, plus at most `maxRecords` event records.
 */
import type { DecodedStatus, WatchEventRecord, WatchSummary } from './types.ts';

// Document-level slots.
export const F_KIND = 0;
export const F_API_VERSION = 1;
export const F_RV = 2;
export const F_REASON = 3;
export const F_MESSAGE = 4;
export const F_CODE = 5; // number
export const F_REMAINING = 6; // number
// Per-event slots (reset at every event).
export const E_TYPE = 7;
export const E_KIND = 8;
export const E_NAME = 9;
export const E_NAMESPACE = 10;
export const E_RV = 11;
export const E_ROW_NAME = 12; // Table watch: rows[0].object.metadata.*
export const E_ROW_NAMESPACE = 13;
export const E_ROW_RV = 14;
export const E_REASON = 15;
export const E_CODE = 16; // number
// Pod phases (pod lists and pod Tables, when the decoder is asked to count them).
export const P_PHASE = 17; // items[].status.phase, rows[].object.status.phase
export const P_CELL = 18; // rows[].cells[<the Status column>]
export const P_COLUMN = 19; // columnDefinitions[].name
export const SLOT_COUNT = 20;
const FIRST_EVENT_SLOT = E_TYPE;

/** Cap on captured strings (names are at most 253 bytes; kinds and RVs far less). */
export const STRING_CAP = 256;
/** Cap on a Status message, for the rbac stage. */
export const MESSAGE_CAP = 1024;
/** Cap on a captured number's text (int64 is at most 20 characters). */
export const NUMBER_CAP = 24;

export class Collector {
  readonly str: (string | undefined)[] = new Array<string | undefined>(SLOT_COUNT).fill(undefined);
  readonly num: (number | undefined)[] = new Array<number | undefined>(SLOT_COUNT).fill(undefined);
  /** Elements of the top-level `items` array; -1 until one is seen. */
  items = -1;
  /** Elements of the top-level `rows` array (Table); -1 until one is seen. */
  rows = -1;
  continueNonEmpty = false;

  events = 0;
  added = 0;
  modified = 0;
  deleted = 0;
  bookmark = 0;
  errorEvents = 0;
  otherEvents = 0;
  dropped = 0;
  readonly records: WatchEventRecord[] = [];
  readonly maxRecords: number;
  /** Set when a stream format is in use; controls whether `watch` appears in the result. */
  watch = false;

  /** Pods per phase (lower-case phase → count), when counted; `other`: a Status cell that names no phase. */
  readonly phases = new Map<string, number>();

  /** One list item or Table row of a pod list ended: count its phase, from the object, else the Status cell. */
  endPod(): void {
    const phase = podPhase(this.str[P_PHASE], this.str[P_CELL]);
    if (phase !== undefined) this.phases.set(phase, (this.phases.get(phase) ?? 0) + 1);
    this.str[P_PHASE] = undefined;
    this.str[P_CELL] = undefined;
  }

  constructor(maxRecords: number) {
    this.maxRecords = maxRecords;
  }

  /**
   * First value wins for row slots (a Table watch event has one row; a second one must not
   * overwrite it), last value wins elsewhere (duplicate JSON keys: like Go's decoder).
   */
  setStr(slot: number, value: string): void {
    if ((slot === E_ROW_NAME || slot === E_ROW_NAMESPACE || slot === E_ROW_RV) && this.str[slot] !== undefined) return;
    this.str[slot] = value;
  }

  setNum(slot: number, value: number): void {
    this.num[slot] = value;
  }

  beginEvent(): void {
    for (let s = FIRST_EVENT_SLOT; s < SLOT_COUNT; s++) {
      this.str[s] = undefined;
      this.num[s] = undefined;
    }
  }

  endEvent(atMs: number): void {
    const type = this.str[E_TYPE] ?? '';
    this.events++;
    switch (type) {
      case 'ADDED':
        this.added++;
        break;
      case 'MODIFIED':
        this.modified++;
        break;
      case 'DELETED':
        this.deleted++;
        break;
      case 'BOOKMARK':
        this.bookmark++;
        break;
      case 'ERROR':
        this.errorEvents++;
        break;
      default:
        this.otherEvents++;
    }
    if (this.records.length >= this.maxRecords) {
      this.dropped++;
      return;
    }
    const rec: WatchEventRecord = { type, atMs };
    const kind = this.str[E_KIND];
    if (kind !== undefined) rec.kind = kind;
    const name = this.str[E_NAME] ?? this.str[E_ROW_NAME];
    if (name !== undefined) rec.name = name;
    const ns = this.str[E_NAMESPACE] ?? this.str[E_ROW_NAMESPACE];
    if (ns !== undefined) rec.namespace = ns;
    const rv = this.str[E_RV] ?? this.str[E_ROW_RV];
    if (rv !== undefined) rec.resourceVersion = rv;
    if (type === 'ERROR' || kind === 'Status') {
      const code = this.num[E_CODE];
      if (code !== undefined) rec.code = code;
      const reason = this.str[E_REASON];
      if (reason !== undefined) rec.reason = reason;
    }
    this.records.push(rec);
  }

  status(): DecodedStatus | undefined {
    if (this.str[F_KIND] !== 'Status') return undefined;
    const s: DecodedStatus = {};
    const reason = this.str[F_REASON];
    if (reason !== undefined) s.reason = reason;
    const message = this.str[F_MESSAGE];
    if (message !== undefined) s.message = message;
    const code = this.num[F_CODE];
    if (code !== undefined) s.code = code;
    return s;
  }

  watchSummary(): WatchSummary {
    return {
      events: this.events,
      added: this.added,
      modified: this.modified,
      deleted: this.deleted,
      bookmark: this.bookmark,
      error: this.errorEvents,
      other: this.otherEvents,
      records: this.records.slice(),
      dropped: this.dropped,
    };
  }

  /** Rough retained size in bytes: slot strings (UTF-16) and records. */
  size(): number {
    let n = SLOT_COUNT * 16;
    for (const s of this.str) if (s !== undefined) n += 2 * s.length;
    for (const r of this.records) {
      n += 64 + 2 * (r.type.length + (r.kind?.length ?? 0) + (r.name?.length ?? 0));
      n += 2 * ((r.namespace?.length ?? 0) + (r.resourceVersion?.length ?? 0) + (r.reason?.length ?? 0));
    }
    return n;
  }
}

const PHASES = new Set(['pending', 'running', 'succeeded', 'failed', 'unknown']);
/**
 * The STATUS column kubectl prints (the apiserver's pod printer): the phase, or a reason that stands in
 * for it. Only reasons that imply one phase are mapped; the rest (CrashLoopBackOff, Terminating, Error...)
 * are `other`.
 */
const STATUS_PHASE: Record<string, string> = {
  Completed: 'succeeded',
  ContainerCreating: 'pending',
  PodInitializing: 'pending',
  ErrImagePull: 'pending',
  ImagePullBackOff: 'pending',
  SchedulingGated: 'pending',
  Evicted: 'failed',
  NodeLost: 'unknown',
};

function podPhase(objectPhase: string | undefined, cell: string | undefined): string | undefined {
  if (objectPhase !== undefined) {
    const p = objectPhase.toLowerCase();
    return PHASES.has(p) ? p : 'other';
  }
  if (cell === undefined) return undefined;
  const p = cell.toLowerCase();
  if (PHASES.has(p)) return p;
  if (cell.startsWith('Init:')) return 'pending';
  return STATUS_PHASE[cell] ?? 'other';
}

/**
 * Decode `len` bytes of UTF-8 from `buf`. When the capture hit its cap, trim a split multi-byte
 * sequence at the end instead of producing U+FFFD.
 */
export function utf8(buf: Buffer, len: number, truncated: boolean): string {
  let end = len;
  if (truncated && end > 0) {
    // Walk back over continuation bytes to the lead byte of the last sequence.
    let lead = end - 1;
    while (lead > 0 && lead > end - 4 && ((buf[lead] ?? 0) & 0xc0) === 0x80) lead--;
    const b = buf[lead] ?? 0;
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    if (lead + need > end) end = lead;
  }
  return buf.toString('utf8', 0, end);
}

/** Parse a captured JSON or varint number; undefined unless it is a safe integer. */
export function toSafeInt(text: string): number | undefined {
  const v = Number(text);
  return Number.isSafeInteger(v) ? v : undefined;
}
