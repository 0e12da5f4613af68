/**
 * A TCP relay in front of an apiserver that counts connections: each one's ALPN offer (read from the
 * TLS ClientHello, which is sent in the clear) and whether it is still open. Optionally it delays every
 * chunk by `delayMs` each way, so a TLS handshake through it costs the injected round trips.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export interface RelayedConnection {
  /** ALPN protocols the client offered, in its order ([] when none). */
  offered: string[];
  /** What an apiserver that offers h2 and http/1.1 would choose. */
  protocol: 'h2' | 'http/1.1';
  open: boolean;
}

export interface CountingRelay {
  port: number;
  readonly connections: RelayedConnection[];
  open(): number;
  close(): Promise<void>;
}

/** The ALPN list of a TLS ClientHello record, or undefined when the bytes are not one (yet). */
export function clientHelloAlpn(buf: Buffer): string[] | undefined {
  // record: type(1)=22 version(2) length(2); handshake: type(1)=1 length(3) version(2) random(32)
  if (buf.length < 5 || buf[0] !== 22) return undefined;
  const recordLen = buf.readUInt16BE(3);
  if (buf.length < 5 + recordLen) return undefined;
  let p = 5;
  if (buf[p] !== 1) return undefined;
  p += 4 + 2 + 32;
  p += 1 + (buf[p] ?? 0); // session id
  p += 2 + buf.readUInt16BE(p); // cipher suites
  p += 1 + (buf[p] ?? 0); // compression methods
  if (p + 2 > 5 + recordLen) return [];
  const end = p + 2 + buf.readUInt16BE(p);
  p += 2;
  while (p + 4 <= end) {
    const type = buf.readUInt16BE(p);
    const len = buf.readUInt16BE(p + 2);
    p += 4;
    if (type === 16) {
      const out: string[] = [];
      let q = p + 2;
      while (q < p + len) {
        const n = buf[q] ?? 0;
        out.push(buf.subarray(q + 1, q + 1 + n).toString('latin1'));
        q += 1 + n;
      }
      return out;
    }
    p += len;
  }
  return [];
}

export async function startCountingRelay(targetPort: number, opts: { delayMs?: number } = {}): Promise<CountingRelay> {
  const connections: RelayedConnection[] = [];
  const sockets = new Set<Socket>();
  const delay = opts.delayMs ?? 0;
  const forward = (from: Socket, to: Socket): void => {
    from.on('data', (c: Buffer) => {
      if (delay === 0) to.write(c);
      else setTimeout(() => to.writable && to.write(c), delay);
    });
    from.on('end', () => (delay === 0 ? to.end() : setTimeout(() => to.end(), delay)));
  };
  const server: Server = createServer((down) => {
    const record: RelayedConnection = { offered: [], protocol: 'http/1.1', open: true };
    connections.push(record);
    const up = connect(targetPort, '127.0.0.1');
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => {
        sockets.delete(s);
        down.destroy();
        up.destroy();
        record.open = false;
      });
    }
    let head = Buffer.alloc(0);
    const sniff = (c: Buffer): void => {
      head = Buffer.concat([head, c]);
      const alpn = clientHelloAlpn(head);
      if (alpn === undefined && head.length < 16_384) return;
      record.offered = alpn ?? [];
      record.protocol = record.offered.includes('h2') ? 'h2' : 'http/1.1';
      down.off('data', sniff);
    };
    down.on('data', sniff);
    forward(down, up);
    forward(up, down);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    connections,
    open: () => connections.filter((c) => c.open).length,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
