export { createDecoder, DEFAULT_MAX_SCAN_BYTES } from './decoder.ts';
export {
  decodeAttributes,
  watchEventAttributes,
  watchEventSpanEvents,
  WATCH_EVENT_NAME,
  type SpanEventFacts,
} from './attributes.ts';
export type {
  DecodedStatus,
  DecodeErrorCode,
  DecodeFormat,
  DecodeInput,
  DecodeProgress,
  DecodeResult,
  Decoder,
  DecoderOptions,
  WatchEventRecord,
  WatchSummary,
} from './types.ts';
