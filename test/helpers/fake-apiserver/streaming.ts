/**
 * exec / attach / port-forward after the upgrade: the `v5.channel.k8s.io` WebSocket protocol (what the
 * apiserver's stream translator speaks to kubectl since 1.30), `v4`/`channel.k8s.io` WebSockets (the kubelet's),
 * SPDY/3.1 with `v4.channel.k8s.io` (what the kubelet negotiates on kubectl's SPDY fallback) and
 * `portforward.k8s.io` over SPDY, directly or tunnelled in `SPDY/3.1+portforward.k8s.io` WebSocket frames.
 */
import type { IncomingMessage } from 'node:http';
import { PassThrough, type Duplex, type Readable } from 'node:stream';
import { SpdySession, type SpdyStream } from './spdy.ts';
import { OP_BINARY, WsConnection, handshakeResponse, offeredProtocols } from './websocket.ts';

export interface ExecRequest {
  subresource: 'exec' | 'attach';
  namespace: string;
  pod: string;
  container: string;
  /** Empty for attach. */
  command: string[];
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
  transport: 'websocket' | 'spdy';
  /** The negotiated sub-protocol, e.g. `v5.channel.k8s.io`. */
  protocol: string;
}

export interface ExecIO {
  /** What the client types; ends on the client's stdin close (or at once without `-i`). */
  stdin: Readable;
  stdout(data: string | Buffer): void;
  stderr(data: string | Buffer): void;
  /** Aborted when the client goes away or the server closes. */
  signal: AbortSignal;
}

/** Resolve to the exit code (default 0). Throw to make the "container runtime" fail the exec (500). */
export type ExecHandler = (req: ExecRequest, io: ExecIO) => number | void | Promise<number | void>;

export interface PortForwardRequest {
  namespace: string;
  pod: string;
  podUid: string;
  port: number;
}

/**
 * Serve one forwarded connection: `conn` carries the client's bytes and takes the "container's". Throw (or
 * reject) to refuse it; the message reaches kubectl on the error stream.
 */
export type PortForwardHandler = (req: PortForwardRequest, conn: Duplex) => void | Promise<void>;

/** The exit of a shell-less fake container: `echo`, `cat`, `true`, `false`, `hostname`, `sleep N`, `sh -c 'exit N'`. */
export const defaultExec: ExecHandler = async (req, io) => {
  if (req.subresource === 'attach') {
    if (!req.stdin) return 0;
    for await (const chunk of io.stdin) io.stdout(chunk as Buffer);
    return 0;
  }
  let argv = req.command;
  if ((argv[0] === 'sh' || argv[0] === '/bin/sh' || argv[0] === 'bash') && argv[1] === '-c') {
    const script = (argv[2] ?? '').trim();
    const exit = /^exit\s+(\d+)$/.exec(script);
    if (exit) return Number(exit[1]);
    argv = script.split(/\s+/).filter((s) => s !== '');
  }
  const [cmd, ...args] = argv;
  switch (cmd) {
    case 'echo': {
      const noNewline = args[0] === '-n';
      const text = (noNewline ? args.slice(1) : args).join(' ');
      io.stdout(noNewline ? text : `${text}\n`);
      return 0;
    }
    case 'cat':
      if (req.stdin) for await (const chunk of io.stdin) io.stdout(chunk as Buffer);
      return 0;
    case 'true':
      return 0;
    case 'false':
      return 1;
    case 'hostname':
      io.stdout(`${req.pod}\n`);
      return 0;
    case 'sleep': {
      const ms = Number(args[0] ?? '0') * 1000;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, ms);
        io.signal.addEventListener('abort', () => {
          clearTimeout(t);
          resolve();
        });
      });
      return 0;
    }
    default:
      throw new Error(
        `failed to exec in container: failed to start exec "${'e'.repeat(64)}": OCI runtime exec failed: exec failed: unable to start container process: exec: "${cmd ?? ''}": executable file not found in $PATH: unknown`,
      );
  }
};

/** Echo server: what the client sends comes back. */
export const defaultPortForward: PortForwardHandler = (_req, conn) => {
  conn.pipe(conn);
};

interface ExecOutcome {
  /** The JSON the kubelet (v4) writes on the error channel. */
  statusJson: string;
  /** What channel.k8s.io..v3 write instead: the error text, nothing on success. */
  legacyText: string;
}

/** `metav1.Status` as `json.Marshal` writes it from a kubelet/translator (no kind/apiVersion). */
function execOutcome(
  result: { code: number } | { error: string },
  command: string[],
  translated: boolean,
): ExecOutcome {
  if ('error' in result) {
    const inner = `error executing command in container: ${result.error}`;
    let message = `Internal error occurred: ${inner}`;
    let cause = inner;
    if (translated) {
      // The stream translator gets the kubelet's failure as a plain error and wraps it once more.
      cause = message;
      message = `Internal error occurred: ${message}`;
    }
    const st = {
      metadata: {},
      status: 'Failure',
      message,
      reason: 'InternalError',
      details: { causes: [{ message: cause }] },
      code: 500,
    };
    return { statusJson: JSON.stringify(st), legacyText: message };
  }
  if (result.code === 0) return { statusJson: JSON.stringify({ metadata: {}, status: 'Success' }), legacyText: '' };
  let message = `command terminated with non-zero exit code: error executing command [${command.join(' ')}], exit code ${result.code}`;
  // client-go's CodeExitError and the translator each prefix the kubelet's message once more.
  if (translated)
    message = `command terminated with non-zero exit code: command terminated with non-zero exit code: ${message}`;
  const st = {
    metadata: {},
    status: 'Failure',
    message,
    reason: 'NonZeroExitCode',
    details: { causes: [{ reason: 'ExitCode', message: String(result.code) }] },
  };
  return { statusJson: JSON.stringify(st), legacyText: message };
}

async function runHandler(
  handler: ExecHandler,
  req: ExecRequest,
  io: ExecIO,
): Promise<{ code: number } | { error: string }> {
  try {
    const code = await handler(req, io);
    return { code: typeof code === 'number' ? code : 0 };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

const WS_EXEC_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io', 'channel.k8s.io'];

/** Pick the first offered protocol we speak, or undefined (the caller answers 400). */
export function chooseWsExecProtocol(req: IncomingMessage): string | undefined {
  return offeredProtocols(req).find((p) => WS_EXEC_PROTOCOLS.includes(p));
}

/** WebSocket exec/attach: write the 101, then run the handler over channels 0–4. */
export function serveWebSocketExec(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  exec: Omit<ExecRequest, 'transport' | 'protocol'>,
  protocol: string,
  handler: ExecHandler,
  track: (stop: () => void) => () => void,
): void {
  socket.write(handshakeResponse(req, protocol));
  const v5 = protocol === 'v5.channel.k8s.io';
  const stdin = new PassThrough();
  const ac = new AbortController();
  let done = false;
  const ws = new WsConnection(socket, head, {
    onMessage(opcode, data) {
      if (opcode !== OP_BINARY || data.length === 0) return;
      const ch = data[0];
      if (ch === 0 && exec.stdin) stdin.write(data.subarray(1));
      else if (ch === 255 && v5 && data[1] === 0) stdin.end();
    },
    onClose() {
      stdin.end();
      ac.abort();
    },
  });
  const untrack = track(() => {
    ac.abort();
    ws.close(1001);
  });
  if (!exec.stdin) stdin.end();
  // The translator signals readiness with an empty message on the first writable channel.
  if (v5) ws.sendBinary(Buffer.from([exec.stdout ? 1 : exec.stderr ? 2 : 3]));
  const send = (ch: number, d: string | Buffer): void => {
    if (done) return;
    const b = typeof d === 'string' ? Buffer.from(d) : d;
    if (b.length > 0) ws.sendBinary(Buffer.concat([Buffer.from([ch]), b]));
  };
  const io: ExecIO = {
    stdin,
    stdout: (d) => send(1, d),
    stderr: (d) => send(exec.tty ? 1 : 2, d),
    signal: ac.signal,
  };
  void runHandler(handler, { ...exec, transport: 'websocket', protocol }, io).then((result) => {
    const outcome = execOutcome(result, exec.command, v5);
    if (!ac.signal.aborted) {
      if (protocol === 'channel.k8s.io') {
        if (outcome.legacyText !== '') send(3, outcome.legacyText);
      } else {
        send(3, outcome.statusJson);
      }
      ws.close(1000);
    }
    done = true;
    untrack();
  });
}

const SPDY_EXEC_PROTOCOLS = ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'];

export function spdyProtocols(req: IncomingMessage): string[] {
  const out: string[] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]?.toLowerCase() !== 'x-stream-protocol-version') continue;
    for (const p of (raw[i + 1] ?? '').split(',')) if (p.trim() !== '') out.push(p.trim());
  }
  return out;
}

/**
 * `httpstream.Handshake`: the first client protocol the server supports; "" when the client named none
 * (legacy v1); undefined when nothing matches (the caller answers 403 like the kubelet).
 */
export function negotiateSpdy(req: IncomingMessage, supported: string[]): string | undefined {
  const client = spdyProtocols(req);
  if (client.length === 0) return '';
  return client.find((p) => supported.includes(p));
}

export function negotiateSpdyExec(req: IncomingMessage): string | undefined {
  return negotiateSpdy(req, SPDY_EXEC_PROTOCOLS);
}

export function spdyUpgradeHead(protocol: string): string {
  const lines = ['HTTP/1.1 101 Switching Protocols', 'Connection: Upgrade', 'Upgrade: SPDY/3.1'];
  if (protocol !== '') lines.push(`X-Stream-Protocol-Version: ${protocol}`);
  lines.push(`Date: ${new Date().toUTCString()}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** SPDY exec/attach as the kubelet serves it: wait for the client's streams, run, report, GOAWAY. */
export function serveSpdyExec(
  socket: Duplex,
  head: Buffer,
  exec: Omit<ExecRequest, 'transport' | 'protocol'>,
  protocol: string,
  handler: ExecHandler,
  track: (stop: () => void) => () => void,
): void {
  socket.write(spdyUpgradeHead(protocol));
  const ac = new AbortController();
  const streams = new Map<string, SpdyStream>();
  const tty = exec.tty && protocol !== 'v2.channel.k8s.io' && protocol !== 'channel.k8s.io';
  const expected = 1 + (exec.stdin ? 1 : 0) + (exec.stdout ? 1 : 0) + (exec.stderr ? 1 : 0) + (tty ? 1 : 0);
  let started = false;
  const session = new SpdySession(
    {
      write: (b) => {
        if (!socket.destroyed) socket.write(b);
      },
      end: () => socket.end(),
    },
    (s) => {
      streams.set(s.header('streamtype') ?? '', s);
      if (!started && streams.size >= expected) {
        started = true;
        start();
      }
    },
  );
  socket.on('data', (d: Buffer) => session.receive(d));
  socket.on('close', () => ac.abort());
  socket.on('error', () => ac.abort());
  if (head.length > 0) session.receive(head);
  const untrack = track(() => {
    ac.abort();
    session.close();
  });
  const timeout = setTimeout(() => {
    if (!started) session.close();
  }, 30_000);
  timeout.unref();

  function start(): void {
    clearTimeout(timeout);
    const stdinStream = streams.get('stdin');
    const stdin: Readable = stdinStream ?? new PassThrough().end();
    const stdout = streams.get('stdout');
    const stderr = streams.get('stderr');
    const errStream = streams.get('error');
    const io: ExecIO = {
      stdin,
      stdout: (d) => {
        if (!ac.signal.aborted) stdout?.write(d);
      },
      stderr: (d) => {
        if (!ac.signal.aborted) (exec.tty ? stdout : stderr)?.write(d);
      },
      signal: ac.signal,
    };
    void runHandler(handler, { ...exec, transport: 'spdy', protocol }, io).then((result) => {
      if (!ac.signal.aborted) {
        stdout?.fin();
        stderr?.fin();
        const outcome = execOutcome(result, exec.command, false);
        const text = protocol === 'v4.channel.k8s.io' ? outcome.statusJson : outcome.legacyText;
        if (text !== '') errStream?.write(text);
        errStream?.fin();
        session.close();
      }
      untrack();
    });
  }
}

/** Port-forward over a SPDY session (raw, or inside the WebSocket tunnel). */
function portForwardSession(
  transport: { write(b: Buffer): void; end(): void },
  pf: Omit<PortForwardRequest, 'port'>,
  handler: PortForwardHandler,
): SpdySession {
  const pairs = new Map<string, { data?: SpdyStream; error?: SpdyStream }>();
  const session = new SpdySession(transport, (s) => {
    const type = s.header('streamtype');
    const rid = s.header('requestid') ?? String(type === 'data' ? s.id - 2 : s.id);
    const pair = pairs.get(rid) ?? {};
    if (type === 'data') pair.data = s;
    else if (type === 'error') pair.error = s;
    pairs.set(rid, pair);
    if (pair.data === undefined || pair.error === undefined) return;
    pairs.delete(rid);
    const { data, error } = pair;
    const port = Number(data.header('port') ?? error.header('port'));
    // kubectl half-closes the error stream at once; drain it.
    error.resume();
    const fail = (msg: string): void => {
      error.write(`error forwarding port ${port} to pod ${pf.podUid}, uid : ${msg}`);
      error.fin();
      data.reset();
    };
    if (!Number.isInteger(port) || port <= 0) {
      fail(`unable to parse "${data.header('port') ?? ''}" as a port`);
      return;
    }
    data.on('error', () => undefined);
    Promise.resolve()
      .then(() => handler({ ...pf, port }, data))
      .then(
        () => {
          data.once('finish', () => error.fin());
        },
        (err: unknown) => fail(err instanceof Error ? err.message : String(err)),
      );
  });
  return session;
}

export function serveSpdyPortForward(
  socket: Duplex,
  head: Buffer,
  pf: Omit<PortForwardRequest, 'port'>,
  handler: PortForwardHandler,
  track: (stop: () => void) => () => void,
): void {
  socket.write(spdyUpgradeHead('portforward.k8s.io'));
  const session = portForwardSession(
    {
      write: (b) => {
        if (!socket.destroyed) socket.write(b);
      },
      end: () => socket.end(),
    },
    pf,
    handler,
  );
  socket.on('data', (d: Buffer) => session.receive(d));
  if (head.length > 0) session.receive(head);
  const untrack = track(() => session.close());
  socket.on('close', untrack);
}

export const PORTFORWARD_WS_PROTOCOL = 'SPDY/3.1+portforward.k8s.io';

/** kubectl ≥1.31's port-forward: SPDY frames inside WebSocket binary messages (the apiserver's tunnel). */
export function serveWebSocketPortForward(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  pf: Omit<PortForwardRequest, 'port'>,
  handler: PortForwardHandler,
  track: (stop: () => void) => () => void,
): void {
  socket.write(handshakeResponse(req, PORTFORWARD_WS_PROTOCOL));
  const pending: Buffer[] = [];
  let session: SpdySession | undefined = undefined;
  const ws = new WsConnection(socket, head, {
    onMessage(opcode, data) {
      if (opcode !== OP_BINARY) return;
      if (session) session.receive(data);
      else pending.push(data);
    },
    onClose() {
      untrack();
    },
  });
  const s = portForwardSession({ write: (b) => ws.sendBinary(b), end: () => ws.close(1000) }, pf, handler);
  session = s;
  for (const d of pending) s.receive(d);
  const untrack = track(() => s.close());
}
