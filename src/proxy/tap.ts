/**
 * What the proxy observes of a response body as it relays it: the decode stage's streaming tap, and the
 * first bytes of a failed JSON answer (a Status) for the rbac stage. Observes only; never keeps a chunk.
 */
import { createDecoder, type Decoder } from '../stages/decode/index.ts';
import { STATUS_BODY_CAP, type RequestEnd } from './events.ts';

export interface ResponseTap {
  write(chunk: Buffer): void;
  /** Items and watch events decoded so far (cheap; for live progress). */
  progress(): { items: number; watchEvents: number };
  /** The facts for the `end` event; `complete` ends the decoder, anything else aborts it. */
  finish(complete: boolean): Pick<RequestEnd, 'decode' | 'statusBody'>;
}

export function createResponseTap(res: { statusCode: number; contentType: string | undefined; contentEncoding: string | undefined; isWatch: boolean; podList?: boolean }): ResponseTap {
  const decoder: Decoder = createDecoder({ contentType: res.contentType, contentEncoding: res.contentEncoding, statusCode: res.statusCode, isWatch: res.isWatch, countPodPhases: res.podList === true });
  const captureStatus = res.statusCode >= 400 && res.contentType?.includes('json') === true && res.contentEncoding === undefined;
  const status: Buffer[] = [];
  let statusLen = 0;
  return {
    write(chunk) {
      decoder.write(chunk);
      if (captureStatus && statusLen < STATUS_BODY_CAP) {
        const part = chunk.subarray(0, STATUS_BODY_CAP - statusLen);
        status.push(Buffer.from(part));
        statusLen += part.length;
      }
    },
    progress() {
      return decoder.progress();
    },
    finish(complete) {
      const out: Pick<RequestEnd, 'decode' | 'statusBody'> = { decode: complete ? decoder.end() : decoder.abort() };
      if (captureStatus) out.statusBody = Buffer.concat(status).toString('utf8');
      return out;
    },
  };
}
