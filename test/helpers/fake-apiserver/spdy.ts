/**
 * The server side of SPDY/3.1 as kubectl's client (moby/spdystream) speaks it after an `Upgrade: SPDY/3.1`:
 * SYN_STREAM from the client (answered at once with SYN_REPLY), DATA both ways with FIN half-closes,
 * RST_STREAM, PING echo and GOAWAY. No flow control (spdystream sends no WINDOW_UPDATE and ignores them).
 *
 * Header blocks are zlib-compressed with one context per direction and the SPDY/3 dictionary. Incoming
 * blocks are inflated by re-inflating everything received so far (synchronous, and header blocks are few
 * and small). Outgoing blocks are written as zlib "stored" blocks, each followed by a sync flush: a valid
 * continuation of one deflate stream that any zlib reader accepts, so no compressor state is needed.
 */
import { Duplex } from 'node:stream';
import { constants, inflateSync } from 'node:zlib';

const WORDS = [
  'options',
  'head',
  'post',
  'put',
  'delete',
  'trace',
  'accept',
  'accept-charset',
  'accept-encoding',
  'accept-language',
  'accept-ranges',
  'age',
  'allow',
  'authorization',
  'cache-control',
  'connection',
  'content-base',
  'content-encoding',
  'content-language',
  'content-length',
  'content-location',
  'content-md5',
  'content-range',
  'content-type',
  'date',
  'etag',
  'expect',
  'expires',
  'from',
  'host',
  'if-match',
  'if-modified-since',
  'if-none-match',
  'if-range',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'pragma',
  'proxy-authenticate',
  'proxy-authorization',
  'range',
  'referer',
  'retry-after',
  'server',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'user-agent',
  'vary',
  'via',
  'warning',
  'www-authenticate',
  'method',
  'get',
  'status',
  '200 OK',
  'version',
  'HTTP/1.1',
  'url',
  'public',
  'set-cookie',
  'keep-alive',
  'origin',
];
const TAIL =
  '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
  '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized' +
  '403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable' +
  'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
  'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,' +
  'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';

/** The SPDY/3 header compression dictionary (draft 3, §2.6.10.1): length-prefixed words, then a tail. */
export const SPDY3_DICTIONARY: Buffer = (() => {
  const parts: Buffer[] = [];
  for (const w of WORDS) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(w.length);
    parts.push(len, Buffer.from(w, 'latin1'));
  }
  parts.push(Buffer.from(TAIL, 'latin1'));
  return Buffer.concat(parts);
})();

const TYPE_SYN_STREAM = 1;
const TYPE_SYN_REPLY = 2;
const TYPE_RST_STREAM = 3;
const TYPE_PING = 6;
const TYPE_GOAWAY = 7;
const TYPE_HEADERS = 8;
const FLAG_FIN = 0x01;
const MAX_DATA = 32 * 1024;
const SYNC_FLUSH = Buffer.from([0x00, 0x00, 0x00, 0xff, 0xff]);

export const RST_CANCEL = 5;
export const RST_INTERNAL_ERROR = 6;

export interface SpdyTransport {
  write(b: Buffer): void;
  end(): void;
}

/** One SPDY stream: readable = what the client sends, writable = DATA frames to it; `end()` sends FIN. */
export class SpdyStream extends Duplex {
  readonly id: number;
  readonly headers: Map<string, string[]>;
  private readonly session: SpdySession;
  private finSent = false;

  constructor(session: SpdySession, id: number, headers: Map<string, string[]>) {
    super({ allowHalfOpen: true });
    this.session = session;
    this.id = id;
    this.headers = headers;
  }

  header(name: string): string | undefined {
    return this.headers.get(name.toLowerCase())?.[0];
  }

  override _read(): void {
    // Data is pushed as frames arrive.
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.session.sendData(this.id, chunk, false);
    cb();
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.fin();
    cb();
  }

  /** Half-close our side (an empty DATA frame with FIN). */
  fin(): void {
    if (this.finSent) return;
    this.finSent = true;
    this.session.sendData(this.id, Buffer.alloc(0), true);
  }

  remoteData(b: Buffer): void {
    if (b.length > 0) this.push(b);
  }

  remoteFin(): void {
    this.push(null);
  }

  reset(status = RST_CANCEL): void {
    this.session.rst(this.id, status);
    this.finSent = true;
    this.push(null);
  }
}

export class SpdySession {
  private readonly transport: SpdyTransport;
  private readonly onStream: (s: SpdyStream) => void;
  private buf: Buffer = Buffer.alloc(0);
  private readonly zIn: Buffer[] = [];
  private zOutLen = 0;
  private firstOutBlock = true;
  private readonly streams = new Map<number, SpdyStream>();
  private lastStreamId = 0;
  private closed = false;
  /** Set when the client sent GOAWAY. */
  goneAway = false;

  constructor(transport: SpdyTransport, onStream: (s: SpdyStream) => void) {
    this.transport = transport;
    this.onStream = onStream;
  }

  receive(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    while (this.buf.length >= 8) {
      const len = this.buf.readUInt32BE(4) & 0xffffff;
      if (this.buf.length < 8 + len) return;
      const frame = this.buf.subarray(0, 8 + len);
      this.buf = this.buf.subarray(8 + len);
      this.frame(frame);
    }
  }

  private frame(f: Buffer): void {
    const w0 = f.readUInt32BE(0);
    const flags = f[4] ?? 0;
    const payload = f.subarray(8);
    if ((w0 & 0x80000000) === 0) {
      const id = w0 & 0x7fffffff;
      const s = this.streams.get(id);
      if (!s) return;
      s.remoteData(Buffer.from(payload));
      if (flags & FLAG_FIN) s.remoteFin();
      return;
    }
    const type = w0 & 0xffff;
    switch (type) {
      case TYPE_SYN_STREAM: {
        const id = payload.readUInt32BE(0) & 0x7fffffff;
        const headers = this.inflateHeaders(payload.subarray(10));
        const s = new SpdyStream(this, id, headers);
        this.streams.set(id, s);
        this.lastStreamId = Math.max(this.lastStreamId, id);
        this.synReply(id);
        if (flags & FLAG_FIN) s.remoteFin();
        this.onStream(s);
        return;
      }
      case TYPE_HEADERS:
        // Keep the decompression context in step even though we have no use for the headers.
        this.inflateHeaders(payload.subarray(4));
        return;
      case TYPE_SYN_REPLY:
        this.inflateHeaders(payload.subarray(4));
        return;
      case TYPE_RST_STREAM: {
        const id = payload.readUInt32BE(0) & 0x7fffffff;
        const s = this.streams.get(id);
        if (s) {
          this.streams.delete(id);
          s.remoteFin();
          s.destroy();
        }
        return;
      }
      case TYPE_PING:
        // Client pings have odd ids; echo them.
        if ((payload.readUInt32BE(0) & 1) === 1) this.control(TYPE_PING, 0, Buffer.from(payload.subarray(0, 4)));
        return;
      case TYPE_GOAWAY:
        this.goneAway = true;
        return;
      default:
        // SETTINGS, WINDOW_UPDATE, CREDENTIAL: nothing to do.
        return;
    }
  }

  private inflateHeaders(block: Buffer): Map<string, string[]> {
    this.zIn.push(Buffer.from(block));
    const all = inflateSync(Buffer.concat(this.zIn), {
      dictionary: SPDY3_DICTIONARY,
      finishFlush: constants.Z_SYNC_FLUSH,
    });
    const raw = all.subarray(this.zOutLen);
    this.zOutLen = all.length;
    const out = new Map<string, string[]>();
    if (raw.length < 4) return out;
    const n = raw.readUInt32BE(0);
    let off = 4;
    for (let i = 0; i < n && off + 4 <= raw.length; i++) {
      const nl = raw.readUInt32BE(off);
      const name = raw
        .subarray(off + 4, off + 4 + nl)
        .toString('latin1')
        .toLowerCase();
      off += 4 + nl;
      const vl = raw.readUInt32BE(off);
      const value = raw.subarray(off + 4, off + 4 + vl).toString('latin1');
      off += 4 + vl;
      out.set(name, value.split('\0'));
    }
    return out;
  }

  private encodeHeaders(h: [string, string][]): Buffer {
    const parts: Buffer[] = [];
    const n = Buffer.alloc(4);
    n.writeUInt32BE(h.length);
    parts.push(n);
    for (const [k, v] of h) {
      for (const s of [k.toLowerCase(), v]) {
        const l = Buffer.alloc(4);
        l.writeUInt32BE(Buffer.byteLength(s));
        parts.push(l, Buffer.from(s));
      }
    }
    const raw = Buffer.concat(parts);
    // One stored deflate block (BFINAL=0, BTYPE=00), then the empty stored block of a sync flush: Go's
    // flate reader only hands out a non-final block's bytes at a flush point, and reading on to find one
    // would run past the frame.
    const stored = Buffer.alloc(5);
    stored[0] = 0x00;
    stored.writeUInt16LE(raw.length, 1);
    stored.writeUInt16LE(~raw.length & 0xffff, 3);
    const chunks = [stored, raw, SYNC_FLUSH];
    if (this.firstOutBlock) {
      this.firstOutBlock = false;
      chunks.unshift(Buffer.from([0x78, 0x01])); // zlib header, no preset dictionary
    }
    return Buffer.concat(chunks);
  }

  private control(type: number, flags: number, payload: Buffer): void {
    const h = Buffer.alloc(8);
    h.writeUInt32BE((0x80000000 | (3 << 16) | type) >>> 0, 0);
    h.writeUInt32BE(((flags << 24) | payload.length) >>> 0, 4);
    this.out(Buffer.concat([h, payload]));
  }

  private out(b: Buffer): void {
    if (this.closed) return;
    this.transport.write(b);
  }

  synReply(id: number, headers: [string, string][] = []): void {
    const idb = Buffer.alloc(4);
    idb.writeUInt32BE(id & 0x7fffffff);
    this.control(TYPE_SYN_REPLY, 0, Buffer.concat([idb, this.encodeHeaders(headers)]));
  }

  sendData(id: number, data: Buffer, fin: boolean): void {
    let off = 0;
    do {
      const part = data.subarray(off, off + MAX_DATA);
      off += part.length;
      const last = off >= data.length;
      const h = Buffer.alloc(8);
      h.writeUInt32BE(id & 0x7fffffff, 0);
      h.writeUInt32BE((((fin && last ? FLAG_FIN : 0) << 24) | part.length) >>> 0, 4);
      this.out(Buffer.concat([h, part]));
    } while (off < data.length);
  }

  rst(id: number, statusCode: number): void {
    const p = Buffer.alloc(8);
    p.writeUInt32BE(id & 0x7fffffff, 0);
    p.writeUInt32BE(statusCode, 4);
    this.control(TYPE_RST_STREAM, 0, p);
    this.streams.delete(id);
  }

  /** GOAWAY (status OK) and end the transport, as spdystream's Close does on the kubelet side. */
  close(): void {
    if (this.closed) return;
    const p = Buffer.alloc(8);
    p.writeUInt32BE(this.lastStreamId, 0);
    p.writeUInt32BE(0, 4);
    this.control(TYPE_GOAWAY, 0, p);
    this.closed = true;
    for (const s of this.streams.values()) s.push(null);
    this.streams.clear();
    this.transport.end();
  }
}
