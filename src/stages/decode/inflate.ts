/**
 * Synchronous, incremental, bounded decompression of a Content-Encoding stream.
 *
 * Node offers no public API for this: zlib streams are asynchronous (output arrives on later ticks,
 * input chunks would have to be copied and queued), and `_processChunk(chunk, flag)` without a
 * callback — the old answer — closes the engine after one call since Node 10's one-shot
 * `processChunkSync`. So we drive the engine the way `processChunkSync` itself does: the native
 * handle's `writeSync(flush, in, inOff, inLen, out, outOff, outLen)`, which reports the bytes left in
 * `_writeState`. Unlike `processChunkSync` we hand every filled output window straight to the
 * consumer and reuse it, so at most `WINDOW` bytes of decompressed data exist at any time, however
 * large the expansion (a decompression bomb only costs CPU, at the scanner's speed).
 *
 * These are internals (`_handle`, `_writeState`); they have had this shape since Node 10 and are
 * checked at construction: if they are missing, `createInflater` returns undefined and the decoder
 * reports `unsupported_encoding` rather than guessing. The unit tests pin the behaviour.
 */
import zlib from 'node:zlib';

/** Decompressed bytes handed to the consumer at a time. */
const WINDOW = 64 * 1024;

interface ZlibHandle {
  writeSync(
    flush: number,
    input: Uint8Array,
    inOff: number,
    inLen: number,
    out: Uint8Array,
    outOff: number,
    outLen: number,
  ): void;
}

interface ZlibInternals {
  _handle: ZlibHandle | null;
  _writeState: Uint32Array;
  destroyed: boolean;
  errored: (Error & { code?: string }) | null;
}

export type InflateError = 'gzip_error' | 'truncated';

export interface Inflater {
  /**
   * Decompress `chunk`, calling `onData` synchronously with each window of output (a view that is
   * overwritten afterwards). `onData` returns false to stop decompressing the rest of the chunk.
   */
  push(chunk: Uint8Array): InflateError | undefined;
  /** The compressed stream should be complete: flush and check for a cut-short member. */
  finish(): InflateError | undefined;
  /** Release the native engine (idempotent). */
  close(): void;
}

const EMPTY = new Uint8Array(0);

export function createInflater(coding: 'gzip' | 'deflate', onData: (out: Uint8Array) => boolean): Inflater | undefined {
  const engine = coding === 'gzip' ? zlib.createGunzip() : zlib.createInflate();
  // A zlib error destroys the stream and emits 'error' on the next tick; we read it synchronously
  // from `errored`, and this listener keeps the emit from becoming an uncaught exception.
  engine.on('error', () => {});
  const z = engine as unknown as ZlibInternals;
  if (typeof z._handle?.writeSync !== 'function' || !(z._writeState instanceof Uint32Array)) {
    engine.close();
    return undefined;
  }
  const out = Buffer.allocUnsafe(WINDOW);
  let closed = false;
  let failed: InflateError | undefined;

  const run = (input: Uint8Array, flush: number): InflateError | undefined => {
    if (failed !== undefined) return failed;
    if (closed) return undefined;
    const handle = z._handle;
    if (handle === null) return (failed = 'gzip_error');
    const state = z._writeState;
    let inOff = 0;
    let inLen = input.length;
    for (;;) {
      handle.writeSync(flush, input, inOff, inLen, out, 0, WINDOW);
      if (z.destroyed) {
        // Z_BUF_ERROR at Z_FINISH is zlib's "unexpected end of file": the member was cut short.
        failed = z.errored?.code === 'Z_BUF_ERROR' ? 'truncated' : 'gzip_error';
        return failed;
      }
      const availOut = state[0] ?? 0;
      const availIn = state[1] ?? 0;
      const have = WINDOW - availOut;
      if (have > 0 && !onData(out.subarray(0, have))) return undefined;
      inOff += inLen - availIn;
      inLen = availIn;
      // Output window not filled: zlib took all the input. (Concatenated gzip members are read
      // one after another; other bytes after a member make zlib fail with gzip_error.)
      if (availOut !== 0) return undefined;
    }
  };

  return {
    push: (chunk) => run(chunk, zlib.constants.Z_NO_FLUSH),
    finish: () => run(EMPTY, zlib.constants.Z_FINISH),
    close: () => {
      if (closed) return;
      closed = true;
      engine.close();
    },
  };
}
