export { createDecoder } from './decoder.ts';
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
  DecodeResult,
  Decoder,
  DecoderOptions,
  WatchEventRecord,
  WatchSummary,
} from './types.ts';
