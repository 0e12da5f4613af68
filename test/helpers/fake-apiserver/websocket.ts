/**
 * A minimal RFC 6455 server side: the opening handshake and framing (fragmentation, ping/pong, close),
 * enough for kubectl's `v5.channel.k8s.io` exec/attach and the `SPDY/3.1+portforward.k8s.io` tunnel.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export const OP_CONT = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

export function isWebSocketRequest(req: IncomingMessage): boolean {
  const upgrade = String(req.headers.upgrade ?? '').toLowerCase();
  const connection = String(req.headers.connection ?? '').toLowerCase();
  return upgrade === 'websocket' && connection.split(',').some((t) => t.trim() === 'upgrade');
}

/** The sub-protocols a client offered, in its order (comma-separated, possibly over several headers). */
export function offeredProtocols(req: IncomingMessage): string[] {
  const out: string[] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]?.toLowerCase() !== 'sec-websocket-protocol') continue;
    for (const p of (raw[i + 1] ?? '').split(',')) if (p.trim() !== '') out.push(p.trim());
  }
  return out;
}

export function acceptKey(key: string): string {
  return createHash('sha1')
    .update(key + GUID)
    .digest('base64');
}

/**
 * The 101 as golang.org/x/net/websocket (exec/attach) and gorilla (port-forward tunnel) write it: four
 * header lines, no Date, no Audit-Id.
 */
export function handshakeResponse(req: IncomingMessage, protocol: string | undefined): string {
  const key = String(req.headers['sec-websocket-key'] ?? '');
  const lines = [
    'HTTP/1.1 101 Switching Protocols',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Accept: ${acceptKey(key)}`,
  ];
  if (protocol !== undefined) lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

export function encodeFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const len = payload.length;
  let head: Buffer;
  if (len < 126) {
    head = Buffer.alloc(2);
    head[1] = len;
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  head[0] = (fin ? 0x80 : 0) | opcode;
  return Buffer.concat([head, payload]);
}

export interface WsHandlers {
  onMessage(opcode: number, data: Buffer): void;
  /** The peer's close frame arrived (we have answered it) or the socket ended. */
  onClose(code: number | undefined): void;
}

/** One server-side WebSocket connection over an upgraded socket. */
export class WsConnection {
  readonly socket: Duplex;
  private buf: Buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private fragOpcode = 0;
  private closeSent = false;
  private closed = false;
  private readonly handlers: WsHandlers;

  constructor(socket: Duplex, head: Buffer, handlers: WsHandlers) {
    this.socket = socket;
    this.handlers = handlers;
    socket.on('data', (d: Buffer) => this.feed(d));
    socket.on('end', () => this.finish(undefined));
    socket.on('close', () => this.finish(undefined));
    socket.on('error', () => this.finish(undefined));
    if (head.length > 0) this.feed(head);
  }

  get isOpen(): boolean {
    return !this.closed && !this.closeSent;
  }

  private finish(code: number | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers.onClose(code);
  }

  private feed(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    for (;;) {
      if (this.buf.length < 2) return;
      const b0 = this.buf[0] ?? 0;
      const b1 = this.buf[1] ?? 0;
      const fin = (b0 & 0x80) !== 0;
      const opcode = b0 & 0x0f;
      const masked = (b1 & 0x80) !== 0;
      let len = b1 & 0x7f;
      let off = 2;
      if (len === 126) {
        if (this.buf.length < 4) return;
        len = this.buf.readUInt16BE(2);
        off = 4;
      } else if (len === 127) {
        if (this.buf.length < 10) return;
        len = Number(this.buf.readBigUInt64BE(2));
        off = 10;
      }
      const maskOff = off;
      if (masked) off += 4;
      if (this.buf.length < off + len) return;
      const payload = Buffer.from(this.buf.subarray(off, off + len));
      if (masked) {
        for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] ?? 0) ^ (this.buf[maskOff + (i % 4)] ?? 0);
      }
      this.buf = this.buf.subarray(off + len);
      this.frame(fin, opcode, payload);
    }
  }

  private frame(fin: boolean, opcode: number, payload: Buffer): void {
    if (opcode === OP_PING) {
      this.send(OP_PONG, payload);
      return;
    }
    if (opcode === OP_PONG) return;
    if (opcode === OP_CLOSE) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : undefined;
      if (!this.closeSent) this.close(code ?? 1000);
      this.socket.end();
      this.finish(code);
      return;
    }
    if (opcode !== OP_CONT) {
      this.fragOpcode = opcode;
      this.fragments = [];
    }
    this.fragments.push(payload);
    if (fin) {
      const data = this.fragments.length === 1 ? (this.fragments[0] ?? Buffer.alloc(0)) : Buffer.concat(this.fragments);
      this.fragments = [];
      this.handlers.onMessage(this.fragOpcode, data);
    }
  }

  send(opcode: number, payload: Buffer): void {
    if (this.closeSent || this.socket.destroyed || !this.socket.writable) return;
    this.socket.write(encodeFrame(opcode, payload));
  }

  sendBinary(payload: Buffer): void {
    this.send(OP_BINARY, payload);
  }

  /** Send a close frame; the peer answers with its own, then we end the socket. */
  close(code = 1000, reason = ''): void {
    if (this.closeSent) return;
    const p = Buffer.alloc(2 + Buffer.byteLength(reason));
    p.writeUInt16BE(code, 0);
    p.write(reason, 2);
    this.send(OP_CLOSE, p);
    this.closeSent = true;
    // If the peer never answers, do not keep the socket.
    const t = setTimeout(() => this.socket.destroy(), 2000);
    t.unref();
  }
}
