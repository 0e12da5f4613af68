/**
 * The only place kubetrail writes to the terminal. stdout belongs to the wrapped command; kubetrail uses
 * stderr, with synchronous writes to the raw descriptors. Never `process.stdout`/`process.stderr`: opening
 * them sets O_NONBLOCK on descriptors the wrapped kubectl shares, and kubectl then loses output (see
 * src/proxy/relay.ts).
 */
import { writeSync } from 'node:fs';

export function writeAll(fd: 1 | 2, data: string | Uint8Array): void {
  const buf = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let off = 0;
  for (let tries = 0; off < buf.length && tries < 1000; tries++) {
    try {
      off += writeSync(fd, buf, off);
    } catch (err) {
      // Someone else made the descriptor non-blocking: wait a moment and retry; give up on anything else.
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
    }
  }
}

export function errLine(line: string): void {
  writeAll(2, `${line}\n`);
}

export function outLine(line: string): void {
  writeAll(1, `${line}\n`);
}
