/**
 * A streaming, validating JSON scanner that never holds the document.
 *
 * It reads bytes as they pass, keeps a fixed-size container stack (512 levels), and follows a tiny
 * table of "interesting paths" (`NODE_DEFS` below). Only strings on those paths are copied, into one
 * capped scratch buffer; every other string, number and literal is stepped over without being
 * stored. So memory is constant whatever the body size, and any byte may be a chunk boundary: all
 * state lives in fields, never on the call stack.
 *
 * Speed: a container below which nothing is read (each list item, an event's spec and status: most
 * of the bytes) is skipped by `skip`, a loop that only follows strings and bracket nesting; strings
 * longer than a few dozen bytes are finished with native indexOf. The per-byte JS loop is the floor
 * (~1 GB/s on the bench machine, measured by bench/lib/decode-speed.ts), hence also the scan budget
 * in decoder.ts.
 *
 * Why hand-written: JSON.parse needs the whole body. The streaming JSON parsers on npm emit every
 * token or value as a JS object or string (an allocation per token on the proxy's hot path) and
 * would still need this path-tracking layer on top; what is left for them to do — the byte-level
 * grammar — is the small part of this file, and owning it keeps the state explicit and bounded.
 *
 * Two modes:
 * - document: one top-level value (object, list, Table, Status, discovery, /version, ...)
 * - watch: a sequence of top-level `{"type":...,"object":{...}}` values, separated by whitespace or
 *   by nothing (the apiserver writes `\n`, but the scanner does not rely on it)
 *
 * Leniency: UTF-8 is not validated: Go only emits valid UTF-8 and validating costs a table lookup
 * per byte. On the interesting paths the grammar is checked in full (control characters in strings,
 * escapes, numbers, literals, commas and colons). Inside skipped containers only what the skip loop
 * sees is checked: bracket nesting and matching, the depth limit, and that no byte outside a string
 * is one that JSON never has there (control characters, non-ASCII, stray punctuation), which still
 * catches binary or HTML garbage; a misplaced comma or a bad escape inside a list item is not
 * noticed. The apiserver does not send such bodies, and checking them would cost the speed.
 */
import type { Collector } from './collector.ts';
import {
  E_CODE,
  E_KIND,
  E_NAME,
  E_NAMESPACE,
  E_REASON,
  E_ROW_NAME,
  E_ROW_NAMESPACE,
  E_ROW_RV,
  P_CELL,
  P_COLUMN,
  P_PHASE,
  E_RV,
  E_TYPE,
  F_API_VERSION,
  F_CODE,
  F_KIND,
  F_MESSAGE,
  F_REASON,
  F_REMAINING,
  F_RV,
  MESSAGE_CAP,
  NUMBER_CAP,
  STRING_CAP,
  toSafeInt,
  utf8,
} from './collector.ts';
import type { DecodeErrorCode } from './types.ts';

/** Containers deeper than this set `depth_exceeded` (Kubernetes objects rarely pass 30). */
export const MAX_DEPTH = 512;
/** Keys longer than the longest key we look for are never copied. */
const KEY_CAP = 32;

// ---- the path table -----------------------------------------------------------------------

const LEAF_STR = 1;
const LEAF_NUM = 2;
/** Only whether the string is non-empty (metadata.continue: never keep the token). */
const LEAF_PRESENT = 3;
const COUNT_ITEMS = 1;
const COUNT_ROWS = 2;

interface NodeDef {
  children?: Record<string, string>;
  /** Node of every element when this node is an array. */
  elem?: string;
  /** Node of every element when pod phases are counted (otherwise the elements are skipped whole). */
  podElem?: string;
  count?: typeof COUNT_ITEMS | typeof COUNT_ROWS;
  leaf?: typeof LEAF_STR | typeof LEAF_NUM | typeof LEAF_PRESENT;
  slot?: number;
  limit?: number;
}

/** Node 0 is "nothing interesting below here". */
const NODE_DEFS: Record<string, NodeDef> = {
  none: {},
  // Document mode: the top-level object.
  doc: {
    children: {
      kind: 'doc.kind',
      apiVersion: 'doc.apiVersion',
      metadata: 'doc.metadata',
      items: 'doc.items',
      rows: 'doc.rows',
      columnDefinitions: 'doc.columnDefinitions',
      reason: 'doc.reason',
      message: 'doc.message',
      code: 'doc.code',
    },
  },
  'doc.kind': { leaf: LEAF_STR, slot: F_KIND, limit: STRING_CAP },
  'doc.apiVersion': { leaf: LEAF_STR, slot: F_API_VERSION, limit: STRING_CAP },
  'doc.metadata': {
    children: {
      resourceVersion: 'doc.metadata.resourceVersion',
      continue: 'doc.metadata.continue',
      remainingItemCount: 'doc.metadata.remainingItemCount',
    },
  },
  'doc.metadata.resourceVersion': { leaf: LEAF_STR, slot: F_RV, limit: STRING_CAP },
  'doc.metadata.continue': { leaf: LEAF_PRESENT },
  'doc.metadata.remainingItemCount': { leaf: LEAF_NUM, slot: F_REMAINING, limit: NUMBER_CAP },
  'doc.items': { count: COUNT_ITEMS, podElem: 'doc.item' },
  'doc.rows': { count: COUNT_ROWS, podElem: 'doc.row' },
  // Pod phases: items[].status.phase; a Table's rows[].object.status.phase (includeObject=Object), else the
  // row's cell in the column named Status.
  'doc.item': { children: { status: 'doc.item.status' } },
  'doc.item.status': { children: { phase: 'doc.item.status.phase' } },
  'doc.item.status.phase': { leaf: LEAF_STR, slot: P_PHASE, limit: STRING_CAP },
  'doc.columnDefinitions': { podElem: 'doc.column' },
  'doc.column': { children: { name: 'doc.column.name' } },
  'doc.column.name': { leaf: LEAF_STR, slot: P_COLUMN, limit: STRING_CAP },
  'doc.row': { children: { cells: 'doc.row.cells', object: 'doc.row.object' } },
  'doc.row.cells': { podElem: 'doc.row.cell' },
  'doc.row.cell': { leaf: LEAF_STR, slot: P_CELL, limit: STRING_CAP },
  'doc.row.object': { children: { status: 'doc.row.object.status' } },
  'doc.row.object.status': { children: { phase: 'doc.row.object.status.phase' } },
  'doc.row.object.status.phase': { leaf: LEAF_STR, slot: P_PHASE, limit: STRING_CAP },
  'doc.reason': { leaf: LEAF_STR, slot: F_REASON, limit: STRING_CAP },
  'doc.message': { leaf: LEAF_STR, slot: F_MESSAGE, limit: MESSAGE_CAP },
  'doc.code': { leaf: LEAF_NUM, slot: F_CODE, limit: NUMBER_CAP },
  // Watch mode: each top-level value is an event.
  ev: { children: { type: 'ev.type', object: 'ev.object' } },
  'ev.type': { leaf: LEAF_STR, slot: E_TYPE, limit: STRING_CAP },
  'ev.object': {
    children: {
      kind: 'ev.object.kind',
      metadata: 'ev.object.metadata',
      rows: 'ev.object.rows',
      reason: 'ev.object.reason',
      code: 'ev.object.code',
    },
  },
  'ev.object.kind': { leaf: LEAF_STR, slot: E_KIND, limit: STRING_CAP },
  'ev.object.metadata': {
    children: {
      name: 'ev.object.metadata.name',
      namespace: 'ev.object.metadata.namespace',
      resourceVersion: 'ev.object.metadata.resourceVersion',
    },
  },
  'ev.object.metadata.name': { leaf: LEAF_STR, slot: E_NAME, limit: STRING_CAP },
  'ev.object.metadata.namespace': { leaf: LEAF_STR, slot: E_NAMESPACE, limit: STRING_CAP },
  'ev.object.metadata.resourceVersion': { leaf: LEAF_STR, slot: E_RV, limit: STRING_CAP },
  'ev.object.reason': { leaf: LEAF_STR, slot: E_REASON, limit: STRING_CAP },
  'ev.object.code': { leaf: LEAF_NUM, slot: E_CODE, limit: NUMBER_CAP },
  // kubectl get -w asks for Tables: each event's object is a Table with one row.
  'ev.object.rows': { elem: 'ev.row' },
  'ev.row': { children: { object: 'ev.row.object' } },
  'ev.row.object': { children: { metadata: 'ev.row.object.metadata' } },
  'ev.row.object.metadata': {
    children: {
      name: 'ev.row.object.metadata.name',
      namespace: 'ev.row.object.metadata.namespace',
      resourceVersion: 'ev.row.object.metadata.resourceVersion',
    },
  },
  'ev.row.object.metadata.name': { leaf: LEAF_STR, slot: E_ROW_NAME, limit: STRING_CAP },
  'ev.row.object.metadata.namespace': { leaf: LEAF_STR, slot: E_ROW_NAMESPACE, limit: STRING_CAP },
  'ev.row.object.metadata.resourceVersion': { leaf: LEAF_STR, slot: E_ROW_RV, limit: STRING_CAP },
};

const NODE_NAMES = Object.keys(NODE_DEFS);
const NODE_ID = new Map(NODE_NAMES.map((name, id) => [name, id]));
const nodeId = (name: string): number => {
  const id = NODE_ID.get(name);
  if (id === undefined) throw new Error(`decode: unknown path node ${name}`);
  return id;
};
const NODE_COUNT = NODE_NAMES.length;
const CHILD_KEYS: Uint8Array[][] = [];
const CHILD_NODES: number[][] = [];
const HAS_CHILDREN = new Uint8Array(NODE_COUNT);
const ELEM = new Uint8Array(NODE_COUNT);
const POD_ELEM = new Uint8Array(NODE_COUNT);
const COUNT = new Uint8Array(NODE_COUNT);
const LEAF = new Uint8Array(NODE_COUNT);
const SLOT = new Int8Array(NODE_COUNT).fill(-1);
const LIMIT = new Uint16Array(NODE_COUNT);
for (const [name, def] of Object.entries(NODE_DEFS)) {
  const id = nodeId(name);
  const entries = Object.entries(def.children ?? {});
  CHILD_KEYS[id] = entries.map(([key]) => Buffer.from(key, 'utf8'));
  CHILD_NODES[id] = entries.map(([, child]) => nodeId(child));
  HAS_CHILDREN[id] = entries.length > 0 ? 1 : 0;
  ELEM[id] = def.elem === undefined ? 0 : nodeId(def.elem);
  POD_ELEM[id] = def.podElem !== undefined ? nodeId(def.podElem) : ELEM[id];
  COUNT[id] = def.count ?? 0;
  LEAF[id] = def.leaf ?? 0;
  SLOT[id] = def.slot ?? -1;
  LIMIT[id] = def.limit ?? 0;
}
const NODE_DOC = nodeId('doc');
const NODE_DOC_ITEMS = nodeId('doc.items');
const NODE_DOC_ROWS = nodeId('doc.rows');
const NODE_EV = nodeId('ev');
const NODE_DOC_ITEM = nodeId('doc.item');
const NODE_DOC_ROW = nodeId('doc.row');
const NODE_COLUMN_NAME = nodeId('doc.column.name');
const NODE_ROW_CELL = nodeId('doc.row.cell');

// ---- lexical states and byte classes ------------------------------------------------------

const S_VALUE = 0; // a value is required
const S_ARR_FIRST = 1; // after '[': a value or ']'
const S_OBJ_FIRST = 2; // after '{': a key or '}'
const S_KEY = 3; // after ',' in an object: a key
const S_COLON = 4;
const S_AFTER = 5; // after a value in a container: ',' or the closing bracket
const S_TOP = 6; // watch mode, between events
const S_DONE = 7; // document mode, after the document: whitespace only
const S_STR = 8;
const S_ESC = 9;
const S_HEX = 10;
const S_NUM = 11;
const S_LIT = 12;
const S_ERR = 13;
const S_SKIP = 14; // inside a container nothing is read from: only brackets and strings matter
const S_SKIP_STR = 15; // a string inside such a container
const S_SKIP_ESC = 16; // after a backslash in such a string

const OBJ = 1;
const ARR = 2;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** 1 for bytes that continue a string without special handling. */
const PLAIN = new Uint8Array(256);
for (let c = 0x20; c < 256; c++) PLAIN[c] = c === QUOTE || c === BACKSLASH ? 0 : 1;
const WS = new Uint8Array(256);
for (const c of [0x20, 0x09, 0x0a, 0x0d]) WS[c] = 1;
const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c;
  HEX[0x61 + c] = 10 + c;
}
/** Escapes other than \u, mapped to the byte they stand for (0 = invalid). */
const ESCAPE = new Uint8Array(256);
ESCAPE[0x22] = 0x22;
ESCAPE[0x5c] = 0x5c;
ESCAPE[0x2f] = 0x2f;
ESCAPE[0x62] = 0x08;
ESCAPE[0x66] = 0x0c;
ESCAPE[0x6e] = 0x0a;
ESCAPE[0x72] = 0x0d;
ESCAPE[0x74] = 0x09;

/**
 * Byte classes of the skip loop, outside strings. Structure bytes map to what they open or close;
 * ordinary bytes (whitespace, `,` `:`, digits, letters of literals, `-+.`) to 0; anything that can
 * never appear outside a string in JSON (control characters, non-ASCII, other punctuation) to K_BAD,
 * so binary garbage is still caught inside skipped containers.
 */
const K_QUOTE = 3;
const K_CLOSE_OBJ = 4;
const K_CLOSE_ARR = 5;
const K_BAD = 6;
const SKIP_CLASS = new Uint8Array(256).fill(K_BAD);
for (const c of ' \t\n\r,:0123456789+-.eEtrufalsn') SKIP_CLASS[c.charCodeAt(0)] = 0;
SKIP_CLASS[0x7b] = OBJ;
SKIP_CLASS[0x5b] = ARR;
SKIP_CLASS[QUOTE] = K_QUOTE;
SKIP_CLASS[0x7d] = K_CLOSE_OBJ;
SKIP_CLASS[0x5d] = K_CLOSE_ARR;

/** 1 for bytes that can start a value. */
const VALUE_START = new Uint8Array(256);
for (const c of '{["tfn-0123456789') VALUE_START[c.charCodeAt(0)] = 1;

const LITERALS = [Buffer.from('true'), Buffer.from('false'), Buffer.from('null')] as const;
const LIT_NULL = 2;

// Number grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
const N_MINUS = 0;
const N_ZERO = 1;
const N_INT = 2;
const N_DOT = 3;
const N_FRAC = 4;
const N_E = 5;
const N_ESIGN = 6;
const N_EXP = 7;
const NUM_CAN_END = [false, true, true, false, true, false, false, true];

function numNext(s: number, c: number): number {
  const digit = c >= 0x30 && c <= 0x39;
  switch (s) {
    case N_MINUS:
      return c === 0x30 ? N_ZERO : digit ? N_INT : -1;
    case N_ZERO:
      return c === 0x2e ? N_DOT : c === 0x65 || c === 0x45 ? N_E : -1;
    case N_INT:
      return digit ? N_INT : c === 0x2e ? N_DOT : c === 0x65 || c === 0x45 ? N_E : -1;
    case N_DOT:
      return digit ? N_FRAC : -1;
    case N_FRAC:
      return digit ? N_FRAC : c === 0x65 || c === 0x45 ? N_E : -1;
    case N_E:
      return c === 0x2b || c === 0x2d ? N_ESIGN : digit ? N_EXP : -1;
    case N_ESIGN:
    case N_EXP:
      return digit ? N_EXP : -1;
    default:
      return -1;
  }
}

/** `stringEnd` ran out of input inside the string, or right after a backslash in it. */
const STR_CUT = -1;
const STR_CUT_ESC = -2;
/** String bytes stepped over one by one before handing the rest of a long string to memchr. */
const SHORT_STRING = 48;

/**
 * The index after the quote that closes the string whose body starts at `start`, or STR_CUT /
 * STR_CUT_ESC when the chunk ends first. Escapes are stepped over without being checked: a `\"`
 * does not close the string, and a multi-byte UTF-8 sequence never contains `"` or `\` bytes.
 * Most strings are short (a pod's average 13 bytes) and a JS loop is fastest for them; a long one
 * (an annotation, a ConfigMap value) goes to `longStringEnd`.
 */
function stringEnd(buf: Buffer, start: number, n: number): number {
  let i = start;
  const stop = n - start > SHORT_STRING ? start + SHORT_STRING : n;
  while (i < stop) {
    const c = buf[i++]!;
    if (c === QUOTE) return i;
    if (c === BACKSLASH) {
      if (i === n) return STR_CUT_ESC;
      i++;
    }
  }
  return i < n ? longStringEnd(buf, i, n) : STR_CUT;
}

/**
 * `stringEnd` with native `indexOf` (memchr) for the quote; a quote preceded by an odd run of
 * backslashes is escaped. `start` is never inside an escape, so runs are counted back to it only.
 */
function longStringEnd(buf: Buffer, start: number, n: number): number {
  let i = start;
  for (;;) {
    const q = buf.indexOf(QUOTE, i);
    const end = q < 0 ? n : q;
    let b = end;
    while (b > i && buf[b - 1] === BACKSLASH) b--;
    const escaped = ((end - b) & 1) === 1;
    if (q < 0) return escaped ? STR_CUT_ESC : STR_CUT;
    if (!escaped) return q + 1;
    i = q + 1;
  }
}

export class JsonScanner {
  error: DecodeErrorCode | undefined;

  private readonly c: Collector;
  private readonly watch: boolean;
  private readonly now: () => number;
  /** Clock reading for the current write() call, taken lazily when an event completes. */
  private writeTime = -1;

  private st: number;
  private depth = 0;
  private readonly stack = new Uint8Array(MAX_DEPTH + 1);
  private readonly nodes = new Uint8Array(MAX_DEPTH + 1);
  /** Path node of the value about to start. */
  private pending: number;
  /** Path node of the scalar being read. */
  private valNode = 0;
  private started = false;

  // String capture. `capOn` is 0 when the current string is skipped.
  private readonly scratch = Buffer.allocUnsafe(MESSAGE_CAP + 8);
  private isKey = false;
  private capOn = 0;
  private capLen = 0;
  private capLimit = 0;
  private capTotal = 0;
  private capOver = false;
  private high = 0; // pending UTF-16 high surrogate from a \u escape
  private hexN = 0;
  private hexVal = 0;

  /** Depth of the container that holds the one being skipped (S_SKIP ends when depth is back to it). */
  private skipBase = 0;

  /** Element nodes: ELEM, or POD_ELEM when pod phases are counted. */
  private readonly elem: Uint8Array;
  private readonly podPhases: boolean;
  /** Elements begun so far in the array at each depth (index + 1 of the current one). */
  private readonly idx = new Uint32Array(MAX_DEPTH + 1);
  /** Index of the Table's Status column, -1 until seen. */
  private statusColumn = -1;

  private numSt = 0;
  private lit: Buffer = LITERALS[0];
  private litId = 0;
  private litPtr = 0;

  constructor(collector: Collector, watch: boolean, now: () => number, podPhases = false) {
    this.c = collector;
    this.podPhases = podPhases && !watch;
    this.elem = this.podPhases ? POD_ELEM : ELEM;
    this.watch = watch;
    this.now = now;
    this.st = watch ? S_TOP : S_VALUE;
    this.pending = watch ? NODE_EV : NODE_DOC;
  }

  /** Bytes retained by the scanner itself (all fixed at construction). */
  stateSize(): number {
    return this.stack.length + this.nodes.length + this.scratch.length + 128;
  }

  write(chunk: Uint8Array): void {
    // A Buffer view (no copy) for native indexOf in long strings.
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    const n = buf.length;
    let i = 0;
    let st = this.st;
    this.writeTime = -1;
    while (i < n && st !== S_ERR) {
      if (st >= S_SKIP) {
        i = this.skip(buf, i, n, st);
        st = this.st;
        continue;
      }
      if (st === S_STR) {
        // Hot path: step over ordinary string bytes.
        if (this.capOn === 0) {
          while (i < n && PLAIN[buf[i]!] === 1) i++;
        } else {
          i = this.captureRun(buf, i, n);
        }
        if (i >= n) break;
        const c = buf[i++]!;
        if (c === QUOTE) st = this.endString();
        else if (c === BACKSLASH) st = S_ESC;
        else st = this.fail('invalid_json'); // raw control character
        continue;
      }
      const c = buf[i]!;
      switch (st) {
        case S_AFTER:
          if (WS[c] === 1) break;
          if (c === 0x2c) {
            if (this.stack[this.depth] === OBJ) {
              st = S_KEY;
            } else {
              this.pending = this.elem[this.nodes[this.depth]!]!;
              st = S_VALUE;
            }
          } else if (c === 0x7d) {
            st = this.stack[this.depth] === OBJ ? this.close() : this.fail('invalid_json');
          } else if (c === 0x5d) {
            st = this.stack[this.depth] === ARR ? this.close() : this.fail('invalid_json');
          } else {
            st = this.fail('invalid_json');
          }
          break;
        case S_VALUE:
          if (WS[c] === 1) break;
          st = this.beginValue(c);
          break;
        case S_OBJ_FIRST:
        case S_KEY:
          if (WS[c] === 1) break;
          if (c === QUOTE) {
            this.beginKey();
            st = S_STR;
          } else if (c === 0x7d && st === S_OBJ_FIRST) {
            st = this.close();
          } else {
            st = this.fail('invalid_json');
          }
          break;
        case S_COLON:
          if (WS[c] === 1) break;
          st = c === 0x3a ? S_VALUE : this.fail('invalid_json');
          break;
        case S_ARR_FIRST:
          if (WS[c] === 1) break;
          st = c === 0x5d ? this.close() : this.beginValue(c);
          break;
        case S_NUM: {
          const next = numNext(this.numSt, c);
          if (next >= 0) {
            this.numSt = next;
            if (this.capOn !== 0) this.putByte(c);
            break;
          }
          if (!NUM_CAN_END[this.numSt]) {
            st = this.fail('invalid_json');
            break;
          }
          st = this.endNumber();
          continue; // `c` is not part of the number: read it again in the new state
        }
        case S_LIT:
          if (c !== this.lit[this.litPtr]) {
            st = this.fail('invalid_json');
            break;
          }
          if (++this.litPtr === this.lit.length) st = this.endLiteral();
          break;
        case S_ESC:
          st = this.escape(c);
          break;
        case S_HEX: {
          const v = HEX[c]!;
          if (v < 0) {
            st = this.fail('invalid_json');
            break;
          }
          this.hexVal = this.hexVal * 16 + v;
          if (++this.hexN === 4) {
            if (this.capOn !== 0) this.putUnit(this.hexVal);
            st = S_STR;
          }
          break;
        }
        case S_TOP:
          if (WS[c] === 1) break;
          if (c !== 0x7b) {
            st = this.fail('invalid_json');
            break;
          }
          this.pending = NODE_EV;
          st = this.beginValue(c);
          break;
        case S_DONE:
          if (WS[c] !== 1) st = this.fail('invalid_json'); // trailing data after the document
          break;
      }
      i++;
    }
    this.st = st;
  }

  /**
   * The body is over. `aborted`: the stream was cut, so an unfinished value is expected and not
   * an error; otherwise it is `truncated`.
   */
  finish(aborted: boolean): void {
    if (this.st === S_ERR) return;
    if (this.st === S_NUM && this.depth === 0 && NUM_CAN_END[this.numSt]) this.st = this.endNumber();
    if (!this.started || this.st === S_DONE || this.st === S_TOP) return;
    if (!aborted) this.fail('truncated');
  }

  // ---- transitions ----

  private fail(code: DecodeErrorCode): number {
    this.error ??= code;
    this.st = S_ERR;
    return S_ERR;
  }

  private afterValue(): number {
    if (this.depth > 0) return S_AFTER;
    return this.watch ? S_TOP : S_DONE;
  }

  private beginValue(c: number): number {
    const node = this.pending;
    const depth = this.depth;
    if (VALUE_START[c] === 0) return this.fail('invalid_json');
    this.started = true;
    if (depth > 0 && this.stack[depth] === ARR) {
      const count = COUNT[this.nodes[depth]!];
      if (count === COUNT_ITEMS) this.c.items++;
      else if (count === COUNT_ROWS) this.c.rows++;
      this.idx[depth]!++;
    }
    switch (c) {
      case 0x7b: // {
      case 0x5b: {
        // [
        if (depth >= MAX_DEPTH) return this.fail('depth_exceeded');
        const d = depth + 1;
        const inner = LEAF[node] === 0 ? node : 0;
        this.depth = d;
        this.stack[d] = c === 0x7b ? OBJ : ARR;
        this.nodes[d] = inner;
        if (inner === 0) {
          // Nothing below is read: step over it to the matching bracket.
          this.skipBase = depth;
          return S_SKIP;
        }
        if (c === 0x7b) {
          if (node === NODE_EV && d === 1) this.c.beginEvent();
          return S_OBJ_FIRST;
        }
        if (node === NODE_DOC_ITEMS) this.c.items = 0;
        else if (node === NODE_DOC_ROWS) this.c.rows = 0;
        this.idx[d] = 0;
        this.pending = this.elem[node]!;
        return S_ARR_FIRST;
      }
      case QUOTE:
        this.valNode = node;
        this.isKey = false;
        // A row's cells: only the Status column's is read.
        this.startCapture(
          (LEAF[node] === LEAF_STR || LEAF[node] === LEAF_PRESENT) &&
            (node !== NODE_ROW_CELL || this.idx[depth] === this.statusColumn + 1)
            ? LIMIT[node]!
            : -1,
        );
        return S_STR;
      case 0x74: // t
      case 0x66: // f
      case 0x6e: // n
        this.valNode = node;
        this.litId = c === 0x74 ? 0 : c === 0x66 ? 1 : LIT_NULL;
        this.lit = LITERALS[this.litId]!;
        this.litPtr = 1;
        return S_LIT;
      default: // - or a digit
        this.valNode = node;
        this.numSt = c === 0x2d ? N_MINUS : c === 0x30 ? N_ZERO : N_INT;
        this.startCapture(LEAF[node] === LEAF_NUM ? LIMIT[node]! : -1);
        if (this.capOn !== 0) this.putByte(c);
        return S_NUM;
    }
  }

  /**
   * Step over the inside of a container nothing is read from (a list item, an event's spec), up to
   * its closing bracket: only strings and bracket nesting are followed, and bytes that cannot occur
   * outside a string are rejected. `st` is S_SKIP, S_SKIP_STR or S_SKIP_ESC. Returns the index after
   * the bytes consumed and sets `this.st` to where it stopped (still skipping, in a string, after a
   * backslash, or the state after the container).
   */
  private skip(buf: Buffer, start: number, n: number, st: number): number {
    let i = start;
    if (st !== S_SKIP) {
      // Resume inside a string cut by the previous chunk (the caller guarantees i < n).
      if (st === S_SKIP_ESC) i++;
      const e = stringEnd(buf, i, n);
      if (e < 0) {
        this.st = e === STR_CUT ? S_SKIP_STR : S_SKIP_ESC;
        return n;
      }
      i = e;
    }
    const stack = this.stack;
    const base = this.skipBase;
    let depth = this.depth;
    while (i < n) {
      const k = SKIP_CLASS[buf[i++]!]!;
      if (k === 0) continue;
      if (k === K_QUOTE) {
        const e = stringEnd(buf, i, n);
        if (e < 0) {
          this.depth = depth;
          this.st = e === STR_CUT ? S_SKIP_STR : S_SKIP_ESC;
          return n;
        }
        i = e;
      } else if (k <= ARR) {
        if (depth >= MAX_DEPTH) {
          this.depth = depth;
          this.fail('depth_exceeded');
          return i;
        }
        stack[++depth] = k;
      } else if (k === K_BAD || stack[depth] !== k - K_QUOTE) {
        this.depth = depth;
        this.fail('invalid_json');
        return i;
      } else if (--depth === base) {
        this.depth = depth;
        this.st = this.afterValue();
        return i;
      }
    }
    this.depth = depth;
    this.st = S_SKIP;
    return i;
  }

  private close(): number {
    const d = this.depth;
    const node = this.nodes[d]!;
    this.depth = d - 1;
    if (node === NODE_EV && d === 1) {
      if (this.writeTime < 0) this.writeTime = this.now();
      this.c.endEvent(this.writeTime);
    } else if (node === NODE_DOC_ITEM || node === NODE_DOC_ROW) {
      this.c.endPod();
    }
    return this.afterValue();
  }

  private beginKey(): void {
    this.isKey = true;
    this.startCapture(HAS_CHILDREN[this.nodes[this.depth]!] === 1 ? KEY_CAP : -1);
  }

  /** limit < 0: skip the token without copying. */
  private startCapture(limit: number): void {
    this.capOn = limit >= 0 ? 1 : 0;
    this.capLimit = limit;
    this.capLen = 0;
    this.capTotal = 0;
    this.capOver = false;
    this.high = 0;
  }

  private endString(): number {
    if (this.capOn !== 0 && this.high !== 0) this.flushHigh();
    if (this.isKey) {
      this.isKey = false;
      this.pending = this.capOn !== 0 && !this.capOver ? this.lookupKey() : 0;
      this.capOn = 0;
      return S_COLON;
    }
    if (this.capOn !== 0) {
      this.capOn = 0;
      const node = this.valNode;
      if (LEAF[node] === LEAF_PRESENT) {
        this.c.continueNonEmpty = this.capTotal > 0;
      } else if (node === NODE_COLUMN_NAME) {
        // The column's index: this string is in a column object, in the columnDefinitions array.
        if (this.capLen === 6 && this.scratch.toString('latin1', 0, 6) === 'Status')
          this.statusColumn = this.idx[this.depth - 1]! - 1;
      } else {
        this.c.setStr(SLOT[node]!, utf8(this.scratch, this.capLen, this.capOver));
      }
    }
    return this.afterValue();
  }

  private lookupKey(): number {
    const parent = this.nodes[this.depth]!;
    const keys = CHILD_KEYS[parent]!;
    const len = this.capLen;
    const s = this.scratch;
    outer: for (let k = 0; k < keys.length; k++) {
      const key = keys[k]!;
      if (key.length !== len) continue;
      for (let j = 0; j < len; j++) if (key[j] !== s[j]) continue outer;
      return CHILD_NODES[parent]![k]!;
    }
    return 0;
  }

  private endNumber(): number {
    if (this.capOn !== 0) {
      this.capOn = 0;
      if (!this.capOver) {
        const v = toSafeInt(this.scratch.toString('latin1', 0, this.capLen));
        if (v !== undefined) this.c.setNum(SLOT[this.valNode]!, v);
      }
    }
    return this.afterValue();
  }

  private endLiteral(): number {
    // "items": null is an empty list as far as counting goes.
    if (this.litId === LIT_NULL) {
      if (this.valNode === NODE_DOC_ITEMS) this.c.items = 0;
      else if (this.valNode === NODE_DOC_ROWS) this.c.rows = 0;
    }
    return this.afterValue();
  }

  private escape(c: number): number {
    if (c === 0x75) {
      this.hexN = 0;
      this.hexVal = 0;
      return S_HEX;
    }
    const b = ESCAPE[c]!;
    if (b === 0) return this.fail('invalid_json');
    if (this.capOn !== 0) this.putByte(b);
    return S_STR;
  }

  // ---- capture ----

  /** Copy a run of plain string bytes (up to the cap) and return the index after it. */
  private captureRun(buf: Uint8Array, start: number, n: number): number {
    let i = start;
    while (i < n && PLAIN[buf[i]!] === 1) i++;
    const run = i - start;
    if (run === 0) return i;
    if (this.high !== 0) this.flushHigh();
    this.capTotal += run;
    if (this.capOver) return i;
    const room = this.capLimit - this.capLen;
    const k = run < room ? run : room;
    const s = this.scratch;
    let len = this.capLen;
    for (let j = 0; j < k; j++) s[len++] = buf[start + j]!;
    this.capLen = len;
    if (k < run) this.capOver = true;
    return i;
  }

  private putByte(b: number): void {
    if (this.high !== 0) this.flushHigh();
    this.capTotal++;
    if (this.capOver) return;
    if (this.capLen < this.capLimit) this.scratch[this.capLen++] = b;
    else this.capOver = true;
  }

  /** A UTF-16 code unit from a \u escape; pairs surrogates, replaces lone ones with U+FFFD. */
  private putUnit(u: number): void {
    if (this.high !== 0) {
      if (u >= 0xdc00 && u <= 0xdfff) {
        const cp = 0x10000 + ((this.high - 0xd800) << 10) + (u - 0xdc00);
        this.high = 0;
        this.putCodePoint(cp);
        return;
      }
      this.flushHigh();
    }
    if (u >= 0xd800 && u <= 0xdbff) {
      this.high = u;
      this.capTotal++;
      return;
    }
    this.putCodePoint(u >= 0xdc00 && u <= 0xdfff ? 0xfffd : u);
  }

  private flushHigh(): void {
    this.high = 0;
    this.putCodePoint(0xfffd);
  }

  private putCodePoint(cp: number): void {
    this.capTotal++;
    if (this.capOver) return;
    const size = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (this.capLen + size > this.capLimit) {
      this.capOver = true;
      return;
    }
    const s = this.scratch;
    let p = this.capLen;
    if (size === 1) {
      s[p++] = cp;
    } else if (size === 2) {
      s[p++] = 0xc0 | (cp >> 6);
      s[p++] = 0x80 | (cp & 0x3f);
    } else if (size === 3) {
      s[p++] = 0xe0 | (cp >> 12);
      s[p++] = 0x80 | ((cp >> 6) & 0x3f);
      s[p++] = 0x80 | (cp & 0x3f);
    } else {
      s[p++] = 0xf0 | (cp >> 18);
      s[p++] = 0x80 | ((cp >> 12) & 0x3f);
      s[p++] = 0x80 | ((cp >> 6) & 0x3f);
      s[p++] = 0x80 | (cp & 0x3f);
    }
    this.capLen = p;
  }
}
