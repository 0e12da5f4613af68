/**
 * Move bytes from one stream to another with backpressure, calling `tap` on each chunk after it has been
 * handed to the destination: kubectl gets the bytes before kubetrail looks at them.
 *
 * Not `Readable.pipe()`: pipe() reads `process.stdout` to decide whether to end its destination, and the
 * first read of `process.stdout` opens a libuv handle that sets O_NONBLOCK on file descriptor 1. In wrap
 * mode that descriptor is shared with kubectl, which then loses output on EAGAIN. The proxy core must never
 * touch the process's stdio.
 *
 * `endsCleanly`, asked when the source ends: false means the source was torn down rather than finished (an
 * HTTP/2 stream whose connection died ends its readable side too), and the destination is destroyed, never
 * ended (or `cut`, for an HTTP/2 stream reset with a chosen code): kubectl must see a broken stream, not a
 * complete answer.
 */
import type { Readable, Writable } from 'node:stream';

export function relay(
  src: Readable,
  dst: Writable,
  tap?: (chunk: Buffer) => void,
  endsCleanly?: () => boolean,
  cut?: () => void,
): void {
  src.on('data', (chunk: Buffer) => {
    const ok = dst.write(chunk);
    tap?.(chunk);
    if (!ok) {
      src.pause();
      dst.once('drain', () => src.resume());
    }
  });
  src.once('end', () => {
    if (endsCleanly && !endsCleanly()) (cut ?? (() => dst.destroy()))();
    else dst.end();
  });
}
