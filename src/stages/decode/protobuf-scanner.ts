/**
 * A streaming walker for the Kubernetes protobuf encodings, with bounded state.
 *
 * Document (`application/vnd.kubernetes.protobuf`): the magic `k8s\0`, then a `runtime.Unknown`
 * (apimachinery runtime/generated.proto):
 *   Unknown  { 1: TypeMeta typeMeta; 2: bytes raw; 3: string contentEncoding; 4: string contentType }
 *   TypeMeta { 1: string apiVersion; 2: string kind }
 * `raw` is the object itself. Which message it is depends on `kind` (typeMeta comes first on the
 * wire), and we only look inside for three shapes, all from meta/v1 generated.proto:
 *   *List    { 1: ListMeta metadata; 2: repeated <Item> items }
 *   ListMeta { 2: string resourceVersion; 3: string continue; 4: int64 remainingItemCount }
 *   Status   { 1: ListMeta; 2: string status; 3: string message; 4: string reason; 6: int32 code }
 *   object   { 1: ObjectMeta metadata; ... }  ObjectMeta { 1: name; 3: namespace; 6: resourceVersion }
 *
 * and, when pod phases are counted, a PodList's items (core/v1 generated.proto; the field numbers were
 * checked against bytes from kube-apiserver v1.33: test/fixtures/README.md):
 *   Pod       { 1: ObjectMeta metadata; 2: PodSpec spec; 3: PodStatus status }
 *   PodStatus { 1: string phase; ... }
 * Each item is then walked for those two fields (the rest skipped by length) instead of skipped whole.
 *
 * Watch (`;stream=watch`): 4-byte big-endian length frames (util/framer), no magic; each frame is
 *   WatchEvent   { 1: string type; 2: RawExtension object }
 *   RawExtension { 1: bytes raw }   raw = `k8s\0` + Unknown, as above
 *
 * What is read in each message is data (protobuf-schema.ts); this file is the walker. Only a stack of
 * (end offset, message type) per nesting level is kept (at most 8 levels), plus one capped capture
 * buffer. List items and every field we do not need are skipped by length without reading them, so a
 * chunk costs O(fields that start in it), not O(bytes).
 *
 * Inside `raw` the message type is a guess from `kind` (e.g. a `*List` kind whose field 1 is not a
 * ListMeta). Those levels are "soft": if the bytes do not parse as the guessed message, the walker
 * skips to the end of `raw` and reports nothing from it instead of flagging the body as invalid.
 */
import type { Collector } from './collector.ts';
import { E_KIND, F_KIND, MESSAGE_CAP, STRING_CAP, utf8 } from './collector.ts';
import {
  M_UNKNOWN,
  M_LIST,
  M_WATCHEVENT,
  M_EV_UNKNOWN,
  M_NONE,
  M_PODLIST,
  M_POD,
  A_DESCEND,
  A_DESCEND_RAW,
  A_STRING,
  A_PRESENT,
  A_COUNT,
  A_VARINT,
  A_DESCEND_ITEM,
  type FieldAction,
  SCHEMAS,
  rawMessage,
} from './protobuf-schema.ts';
import type { DecodeErrorCode } from './types.ts';

const MAGIC = [0x6b, 0x38, 0x73, 0x00] as const; // "k8s\0"
const MAX_FRAMES = 8;

// States.
const P_MAGIC = 0;
const P_TAG = 1;
const P_LEN = 2;
const P_VARINT = 3;
const P_SKIP = 4;
const P_CAPTURE = 5;
const P_FRAME = 6; // watch: reading a 4-byte frame length
const P_ERR = 7;

export class ProtobufScanner {
  error: DecodeErrorCode | undefined;

  private readonly c: Collector;
  private readonly watch: boolean;
  private readonly podPhases: boolean;
  private readonly now: () => number;
  private writeTime = -1;

  private st: number;
  /** Bytes consumed so far (offsets are absolute in the protobuf stream). */
  private pos = 0;

  private readonly fEnd = new Float64Array(MAX_FRAMES);
  private readonly fMsg = new Uint8Array(MAX_FRAMES);
  private readonly fSoft = new Uint8Array(MAX_FRAMES);
  private fd = 0;

  // Varint being read (a tag, a length or a value).
  private vVal = 0;
  private vMul = 1;
  private vBytes = 0;

  private action: FieldAction | undefined;
  private remaining = 0;
  private magicPos = 0;
  private frameHdr = 0;
  private frameHdrN = 0;

  private readonly scratch = Buffer.allocUnsafe(MESSAGE_CAP + 8);
  private capLen = 0;
  private capLimit = 0;
  private capOver = false;
  private capSlot = 0;

  constructor(collector: Collector, watch: boolean, now: () => number, podPhases = false) {
    this.c = collector;
    this.watch = watch;
    this.podPhases = podPhases && !watch;
    this.now = now;
    if (watch) {
      this.st = P_FRAME;
    } else {
      this.push(M_UNKNOWN, Infinity, false);
      this.st = P_MAGIC;
    }
  }

  stateSize(): number {
    return this.scratch.length + MAX_FRAMES * 10 + 128;
  }

  write(buf: Uint8Array): void {
    const n = buf.length;
    let i = 0;
    this.writeTime = -1;
    while (i < n && this.st !== P_ERR) {
      const st = this.st;
      if (st === P_SKIP) {
        const avail = n - i;
        const k = this.remaining < avail ? this.remaining : avail;
        i += k;
        this.pos += k;
        this.remaining -= k;
        if (this.remaining === 0) this.fieldDone();
        continue;
      }
      if (st === P_CAPTURE) {
        const avail = n - i;
        const k = this.remaining < avail ? this.remaining : avail;
        const room = this.capLimit - this.capLen;
        const copy = k < room ? k : room;
        for (let j = 0; j < copy; j++) this.scratch[this.capLen++] = buf[i + j]!;
        if (copy < k) this.capOver = true;
        i += k;
        this.pos += k;
        this.remaining -= k;
        if (this.remaining === 0) {
          this.c.setStr(this.capSlot, utf8(this.scratch, this.capLen, this.capOver));
          this.fieldDone();
        }
        continue;
      }
      // A tag, length or varint must not run past the end of the message it belongs to.
      if (this.fd > 0 && this.pos >= this.fEnd[this.fd - 1]!) {
        this.fail('invalid_protobuf');
        continue;
      }
      const b = buf[i++]!;
      this.pos++;
      this.step(b);
    }
  }

  finish(aborted: boolean): void {
    if (this.st === P_ERR || this.pos === 0 || aborted) return;
    const complete = this.watch ? this.st === P_FRAME && this.frameHdrN === 0 : this.st === P_TAG && this.fd === 1;
    if (!complete) this.fail('truncated', true);
  }

  private step(b: number): void {
    switch (this.st) {
      case P_MAGIC:
        if (b !== MAGIC[this.magicPos]) {
          this.fail('invalid_protobuf');
          return;
        }
        if (++this.magicPos === MAGIC.length) this.fieldDone();
        return;
      case P_FRAME:
        this.frameHdr = this.frameHdr * 256 + b;
        if (++this.frameHdrN === 4) {
          const len = this.frameHdr;
          this.frameHdr = 0;
          this.frameHdrN = 0;
          this.c.beginEvent();
          this.push(M_WATCHEVENT, this.pos + len, false);
          this.fieldDone();
        }
        return;
      case P_TAG:
      case P_LEN:
      case P_VARINT: {
        if (this.vBytes === 10) {
          this.fail('invalid_protobuf');
          return;
        }
        this.vVal += (b & 0x7f) * this.vMul;
        this.vMul *= 128;
        this.vBytes++;
        if (b & 0x80) return;
        const v = this.vVal;
        this.vVal = 0;
        this.vMul = 1;
        this.vBytes = 0;
        if (this.st === P_TAG) this.onTag(v);
        else if (this.st === P_LEN) this.onLength(v);
        else this.onVarint(v);
        return;
      }
    }
  }

  private onTag(tag: number): void {
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (field === 0) {
      this.fail('invalid_protobuf');
      return;
    }
    this.action = SCHEMAS[this.fMsg[this.fd - 1]!]?.[field];
    switch (wire) {
      case 0:
        this.st = P_VARINT;
        return;
      case 1:
        this.remaining = 8;
        this.st = P_SKIP;
        return;
      case 2:
        this.st = P_LEN;
        return;
      case 5:
        this.remaining = 4;
        this.st = P_SKIP;
        return;
      default: // groups (3, 4) are not used by Kubernetes; 6 and 7 do not exist
        this.fail('invalid_protobuf');
    }
  }

  private onVarint(v: number): void {
    const act = this.action;
    if (act?.a === A_VARINT && act.slot !== undefined && Number.isSafeInteger(v)) this.c.setNum(act.slot, v);
    this.fieldDone();
  }

  private onLength(len: number): void {
    const end = this.pos + len;
    if (end > this.fEnd[this.fd - 1]!) {
      this.fail('invalid_protobuf');
      return;
    }
    const act = this.action;
    this.remaining = len;
    this.st = P_SKIP;
    if (act === undefined || len === 0) {
      if (act?.a === A_PRESENT) this.c.continueNonEmpty = false;
      if (act?.a === A_COUNT) this.c.items++;
      // An empty Pod: one pod, with no phase.
      if (act?.a === A_DESCEND_ITEM) {
        this.c.items++;
        this.c.endPod();
      }
      if (len === 0 && act?.a === A_STRING && act.slot !== undefined) this.c.setStr(act.slot, '');
      if (len === 0) this.fieldDone();
      return;
    }
    switch (act.a) {
      case A_DESCEND:
      case A_DESCEND_ITEM:
      case A_DESCEND_RAW: {
        let msg = act.msg ?? M_NONE;
        if (act.a === A_DESCEND_RAW) {
          const event = this.fMsg[this.fd - 1] === M_EV_UNKNOWN;
          msg = rawMessage(this.c.str[event ? E_KIND : F_KIND], event, this.podPhases);
        }
        if (act.a === A_DESCEND_ITEM) this.c.items++;
        if (this.fd === MAX_FRAMES) return; // deeper than any schema: skip it
        this.push(msg, end, act.soft === true);
        if (act.magic === true) {
          this.magicPos = 0;
          this.st = P_MAGIC;
        } else {
          this.st = P_TAG;
        }
        return;
      }
      case A_STRING:
        this.capLen = 0;
        this.capOver = false;
        this.capLimit = act.limit ?? STRING_CAP;
        this.capSlot = act.slot ?? 0;
        this.st = P_CAPTURE;
        return;
      case A_PRESENT:
        this.c.continueNonEmpty = true;
        return;
      case A_COUNT:
        this.c.items++;
        return;
    }
  }

  private push(msg: number, end: number, soft: boolean): void {
    const d = this.fd++;
    this.fEnd[d] = end;
    this.fMsg[d] = msg;
    this.fSoft[d] = soft ? 1 : 0;
    if (msg === M_LIST || msg === M_PODLIST) this.c.items = 0;
  }

  /** A field (or a magic prefix, or a frame header) is complete: close the messages that ended here. */
  private fieldDone(): void {
    this.st = P_TAG;
    while (this.fd > 0) {
      const end = this.fEnd[this.fd - 1]!;
      if (this.pos < end) return;
      if (this.pos > end) {
        this.fail('invalid_protobuf');
        return;
      }
      const msg = this.fMsg[this.fd - 1]!;
      this.fd--;
      if (msg === M_WATCHEVENT) {
        if (this.writeTime < 0) this.writeTime = this.now();
        this.c.endEvent(this.writeTime);
      } else if (msg === M_POD) {
        this.c.endPod();
      }
    }
    if (this.watch) this.st = P_FRAME;
  }

  /**
   * Inside a soft level, give up on that level: skip to its end and carry on with its parent.
   * Anywhere else, the body is invalid.
   */
  private fail(code: DecodeErrorCode, hard = false): void {
    if (!hard) {
      for (let d = 0; d < this.fd; d++) {
        if (this.fSoft[d] === 1) {
          const end = this.fEnd[d]!;
          this.fd = d;
          this.vVal = 0;
          this.vMul = 1;
          this.vBytes = 0;
          this.remaining = end - this.pos;
          this.st = P_SKIP;
          if (this.remaining <= 0) this.fieldDone();
          return;
        }
      }
    }
    this.error ??= code;
    this.st = P_ERR;
  }
}
