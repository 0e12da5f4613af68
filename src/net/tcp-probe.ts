/**
 * Does something accept TCP connections on host:port? One connect, closed at once, never throwing. What a
 * caller makes of each answer differs: the wrapper wants `open` (a loopback connect answers at once), the
 * exporter's early warning `refused` (a collector that is not there), doctor anything but `refused` or
 * `unreachable` (a port that does not answer in time is held all the same).
 *
 * Node built-ins only: the wrapped command's fast path imports it (eslint.config.js FAST_PATH).
 */
import { connect } from 'node:net';

export type TcpProbe = 'open' | 'refused' | 'unreachable' | 'timeout';

export function tcpProbe(host: string, port: number, timeoutMs: number): Promise<TcpProbe> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (v: TcpProbe): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    socket.once('connect', () => done('open'));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : 'unreachable'));
  });
}
