/**
 * DecodeResult → span attributes, and watch event records → span events. Pure functions.
 *
 * The names are ours (there is no OTel semantic convention for them) and stay here with their stage, as
 * every stage's do (telemetry/semconv.ts holds only the names that are no stage's); docs/telemetry.md's
 * attribute table lists each one.
 */
import { setAttr, type Attributes } from '../attributes.ts';
import type { DecodeResult, WatchEventRecord } from './types.ts';

export const ATTR_DECODE_FORMAT = 'decode.format';
export const ATTR_DECODE_CONTENT_TYPE = 'decode.content_type';
export const ATTR_DECODE_CONTENT_ENCODING = 'decode.content_encoding';
export const ATTR_DECODE_BYTES = 'decode.bytes';
export const ATTR_DECODE_DECODED_BYTES = 'decode.decoded_bytes';
export const ATTR_DECODE_KIND = 'decode.kind';
export const ATTR_DECODE_API_VERSION = 'decode.api_version';
export const ATTR_DECODE_ITEMS = 'decode.items';
export const ATTR_DECODE_RESOURCE_VERSION = 'decode.resource_version';
export const ATTR_DECODE_CONTINUE = 'decode.continue';
export const ATTR_DECODE_REMAINING_ITEMS = 'decode.remaining_items';
export const ATTR_DECODE_STATUS_REASON = 'decode.status.reason';
export const ATTR_DECODE_STATUS_CODE = 'decode.status.code';
export const ATTR_DECODE_WATCH_EVENTS = 'decode.watch.events';
export const ATTR_DECODE_WATCH_ADDED = 'decode.watch.added';
export const ATTR_DECODE_WATCH_MODIFIED = 'decode.watch.modified';
export const ATTR_DECODE_WATCH_DELETED = 'decode.watch.deleted';
export const ATTR_DECODE_WATCH_BOOKMARK = 'decode.watch.bookmark';
export const ATTR_DECODE_WATCH_ERROR = 'decode.watch.error';
export const ATTR_DECODE_WATCH_OTHER = 'decode.watch.other';
export const ATTR_DECODE_WATCH_EVENTS_DROPPED = 'decode.watch.events_dropped';
export const ATTR_DECODE_LINES = 'decode.lines';
export const ATTR_DECODE_ERROR = 'decode.error';
export const ATTR_DECODE_ABORTED = 'decode.aborted';
export const ATTR_DECODE_PARTIAL = 'decode.partial';
export const ATTR_DECODE_SCANNED_BYTES = 'decode.scanned_bytes';
/** `decode.pod_phase.<phase>`: pods of a pod list per lower-case phase. */
export const ATTR_DECODE_POD_PHASE_PREFIX = 'decode.pod_phase.';

/** Name of the span event added per recorded watch event. */
export const WATCH_EVENT_NAME = 'watch.event';
export const ATTR_WATCH_EVENT_TYPE = 'decode.watch.event.type';
export const ATTR_WATCH_EVENT_KIND = 'decode.watch.event.kind';
export const ATTR_WATCH_EVENT_NAME = 'decode.watch.event.name';
export const ATTR_WATCH_EVENT_NAMESPACE = 'decode.watch.event.namespace';
export const ATTR_WATCH_EVENT_RESOURCE_VERSION = 'decode.watch.event.resource_version';
export const ATTR_WATCH_EVENT_STATUS_CODE = 'decode.watch.event.status.code';
export const ATTR_WATCH_EVENT_STATUS_REASON = 'decode.watch.event.status.reason';

/**
 * Attributes of the `decode` span. Never includes the Status message (the rbac stage owns it) nor
 * the continue token (only whether there is one).
 */
export function decodeAttributes(r: DecodeResult): Attributes {
  const a: Attributes = {};
  setAttr(a, ATTR_DECODE_FORMAT, r.format);
  setAttr(a, ATTR_DECODE_CONTENT_TYPE, r.contentType);
  setAttr(a, ATTR_DECODE_CONTENT_ENCODING, r.contentEncoding);
  setAttr(a, ATTR_DECODE_BYTES, r.bytes);
  setAttr(a, ATTR_DECODE_DECODED_BYTES, r.decodedBytes);
  setAttr(a, ATTR_DECODE_KIND, r.kind);
  setAttr(a, ATTR_DECODE_API_VERSION, r.apiVersion);
  setAttr(a, ATTR_DECODE_ITEMS, r.items);
  for (const [phase, n] of Object.entries(r.podPhases ?? {})) a[`${ATTR_DECODE_POD_PHASE_PREFIX}${phase}`] = n;
  setAttr(a, ATTR_DECODE_RESOURCE_VERSION, r.resourceVersion);
  setAttr(a, ATTR_DECODE_CONTINUE, r.continue);
  setAttr(a, ATTR_DECODE_REMAINING_ITEMS, r.remainingItems);
  if (r.status !== undefined) {
    setAttr(a, ATTR_DECODE_STATUS_REASON, r.status.reason);
    setAttr(a, ATTR_DECODE_STATUS_CODE, r.status.code);
  }
  const w = r.watch;
  if (w !== undefined) {
    setAttr(a, ATTR_DECODE_WATCH_EVENTS, w.events);
    setAttr(a, ATTR_DECODE_WATCH_ADDED, w.added);
    setAttr(a, ATTR_DECODE_WATCH_MODIFIED, w.modified);
    setAttr(a, ATTR_DECODE_WATCH_DELETED, w.deleted);
    setAttr(a, ATTR_DECODE_WATCH_BOOKMARK, w.bookmark);
    setAttr(a, ATTR_DECODE_WATCH_ERROR, w.error);
    if (w.other > 0) setAttr(a, ATTR_DECODE_WATCH_OTHER, w.other);
    if (w.dropped > 0) setAttr(a, ATTR_DECODE_WATCH_EVENTS_DROPPED, w.dropped);
  }
  setAttr(a, ATTR_DECODE_LINES, r.lines);
  setAttr(a, ATTR_DECODE_ERROR, r.error);
  if (r.aborted) setAttr(a, ATTR_DECODE_ABORTED, true);
  if (r.partial === true) {
    setAttr(a, ATTR_DECODE_PARTIAL, true);
    setAttr(a, ATTR_DECODE_SCANNED_BYTES, r.scannedBytes);
  }
  return a;
}

export interface SpanEventFacts {
  name: string;
  /** On the decoder's clock (performance.now() by default), like the proxy's `t` values. */
  atMs: number;
  attributes: Attributes;
}

/** One span event per recorded watch event, in arrival order. */
export function watchEventSpanEvents(r: DecodeResult): SpanEventFacts[] {
  return (r.watch?.records ?? []).map((rec) => ({
    name: WATCH_EVENT_NAME,
    atMs: rec.atMs,
    attributes: watchEventAttributes(rec),
  }));
}

export function watchEventAttributes(rec: WatchEventRecord): Attributes {
  const a: Attributes = {};
  setAttr(a, ATTR_WATCH_EVENT_TYPE, rec.type);
  setAttr(a, ATTR_WATCH_EVENT_KIND, rec.kind);
  setAttr(a, ATTR_WATCH_EVENT_NAME, rec.name);
  setAttr(a, ATTR_WATCH_EVENT_NAMESPACE, rec.namespace);
  setAttr(a, ATTR_WATCH_EVENT_RESOURCE_VERSION, rec.resourceVersion);
  setAttr(a, ATTR_WATCH_EVENT_STATUS_CODE, rec.code);
  setAttr(a, ATTR_WATCH_EVENT_STATUS_REASON, rec.reason);
  return a;
}
