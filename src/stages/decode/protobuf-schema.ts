/**
 * What the protobuf walker (protobuf-scanner.ts) looks for, as data: a message type per shape it walks,
 * and per message the fields it descends into, captures, counts or only notes; every other field is
 * skipped by length. The shapes and their field numbers are in the walker's file comment.
 */
import {
  E_CODE,
  E_KIND,
  E_NAME,
  E_NAMESPACE,
  E_REASON,
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
  P_PHASE,
  STRING_CAP,
} from './collector.ts';

// Message types.
export const M_UNKNOWN = 0;
export const M_TYPEMETA = 1;
export const M_LIST = 2;
export const M_LISTMETA = 3;
export const M_OBJECT = 4;
export const M_OBJMETA = 5;
export const M_STATUS = 6;
export const M_WATCHEVENT = 7;
export const M_RAWEXT = 8;
export const M_EV_UNKNOWN = 9;
export const M_EV_TYPEMETA = 10;
export const M_EV_OBJECT = 11;
export const M_EV_OBJMETA = 12;
export const M_EV_STATUS = 13;
export const M_NONE = 14; // walked for structure only
export const M_PODLIST = 15; // a PodList whose pods' phases are counted
export const M_POD = 16;
export const M_PODSTATUS = 17;

// Field actions.
export const A_DESCEND = 1; // length-delimited: walk it as message `msg`
export const A_DESCEND_RAW = 2; // Unknown.raw: the message type follows from the kind seen so far
export const A_STRING = 3; // length-delimited: capture into `slot`
export const A_PRESENT = 4; // length-delimited: only whether non-empty (ListMeta.continue)
export const A_COUNT = 5; // length-delimited: count it (List.items), skip its bytes
export const A_VARINT = 6; // varint: capture into `slot`
export const A_DESCEND_ITEM = 7; // List.items, when each is walked: count it and walk it as message `msg`

export interface FieldAction {
  a: number;
  slot?: number;
  limit?: number;
  msg?: number;
  /** Parse failures inside are tolerated (see the file comment). */
  soft?: boolean;
  /** The message starts with the `k8s\0` magic. */
  magic?: boolean;
}

const str = (slot: number, limit = STRING_CAP): FieldAction => ({ a: A_STRING, slot, limit });
export const SCHEMAS: Record<number, Record<number, FieldAction>> = {
  [M_UNKNOWN]: { 1: { a: A_DESCEND, msg: M_TYPEMETA }, 2: { a: A_DESCEND_RAW, soft: true } },
  [M_TYPEMETA]: { 1: str(F_API_VERSION), 2: str(F_KIND) },
  [M_LIST]: { 1: { a: A_DESCEND, msg: M_LISTMETA }, 2: { a: A_COUNT } },
  [M_LISTMETA]: { 2: str(F_RV), 3: { a: A_PRESENT }, 4: { a: A_VARINT, slot: F_REMAINING } },
  [M_OBJECT]: { 1: { a: A_DESCEND, msg: M_OBJMETA } },
  [M_OBJMETA]: { 6: str(F_RV) },
  [M_STATUS]: { 3: str(F_MESSAGE, MESSAGE_CAP), 4: str(F_REASON), 6: { a: A_VARINT, slot: F_CODE } },
  [M_WATCHEVENT]: { 1: str(E_TYPE), 2: { a: A_DESCEND, msg: M_RAWEXT } },
  [M_RAWEXT]: { 1: { a: A_DESCEND, msg: M_EV_UNKNOWN, soft: true, magic: true } },
  [M_EV_UNKNOWN]: { 1: { a: A_DESCEND, msg: M_EV_TYPEMETA }, 2: { a: A_DESCEND_RAW } },
  [M_EV_TYPEMETA]: { 2: str(E_KIND) },
  [M_EV_OBJECT]: { 1: { a: A_DESCEND, msg: M_EV_OBJMETA } },
  [M_EV_OBJMETA]: { 1: str(E_NAME), 3: str(E_NAMESPACE), 6: str(E_RV) },
  [M_EV_STATUS]: { 4: str(E_REASON), 6: { a: A_VARINT, slot: E_CODE } },
  [M_NONE]: {},
  [M_PODLIST]: { 1: { a: A_DESCEND, msg: M_LISTMETA }, 2: { a: A_DESCEND_ITEM, msg: M_POD } },
  [M_POD]: { 3: { a: A_DESCEND, msg: M_PODSTATUS } },
  [M_PODSTATUS]: { 1: str(P_PHASE) },
};

/** Kinds named `*List` that do not have the ListMeta/items layout. */
export const NOT_LISTS = new Set(['APIGroupList', 'APIResourceList']);

export function rawMessage(kind: string | undefined, event: boolean, podPhases: boolean): number {
  if (kind === undefined) return M_NONE;
  if (kind === 'Status') return event ? M_EV_STATUS : M_STATUS;
  if (event) return M_EV_OBJECT;
  if (kind === 'PodList' && podPhases) return M_PODLIST;
  if (kind.endsWith('List') && !NOT_LISTS.has(kind)) return M_LIST;
  return M_OBJECT;
}
