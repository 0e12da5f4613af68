export { createDecoder } from './decoder.ts';
export { decodeAttributes, watchEventSpanEvents } from './attributes.ts';
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
