/**
 * Keeps every library and Node internal off the libuv handles for stdout and stderr when they are pipes or
 * files. Imported first by the bins, before anything can read `process.stdout`.
 *
 * Why: the first read of `process.stdout` (or `process.stderr`) opens a libuv handle, and for a pipe libuv
 * sets O_NONBLOCK on the descriptor. In wrap mode that descriptor's open file description is shared with
 * the wrapped kubectl, which then gets EAGAIN once the pipe is full and silently drops output, exit code 0
 * (measured: `kubetrail -- kubectl get pods -n big | slow-reader` printed 16 kB of 26 kB). kubetrail's own
 * code never reads them (src/cli/output.ts), but Node's `Readable.prototype.pipe()` reads `process.stdout`
 * to compare its destination against it, and the OTLP exporter pipes its gzip stream: every export during
 * a command made kubectl's stdout non-blocking. Fixing callers one by one cannot hold; replacing the two
 * getters can.
 *
 * A terminal keeps Node's own stream: libuv reopens a TTY rather than change the shared description, and
 * its `columns` are wanted.
 */
import { isatty } from 'node:tty';
import { Writable } from 'node:stream';
import { writeAll } from './output.ts';

/** A synchronous writer on a raw descriptor, standing in for `process.stdout`/`process.stderr`. */
function rawWriter(fd: 1 | 2): Writable {
  const w = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      writeAll(fd, chunk);
      cb();
    },
  });
  return Object.assign(w, { fd, isTTY: false });
}

export function guardStdio(): void {
  for (const [name, fd] of [
    ['stdout', 1],
    ['stderr', 2],
  ] as const) {
    if (isatty(fd)) continue;
    let stream: Writable | undefined;
    Object.defineProperty(process, name, {
      configurable: true,
      enumerable: true,
      get: () => (stream ??= rawWriter(fd)),
    });
  }
}

guardStdio();
