/**
 * A delay link for e2e tests on kernels without sch_netem (test/e2e/netem/main.go does the delaying in
 * userspace). startDelayLink() puts a TCP address "far away": a network namespace of its own behind a pair
 * of TUN devices whose packets wait `oneWayMs` in each direction, with a forwarder listening in that
 * namespace and dialling `forwardTo` on this machine's loopback (undelayed). A client here that connects to
 * `host:port` pays the round trip on its SYN/SYN-ACK, on each TLS flight and on every request, as it would to
 * an apiserver that far away.
 *
 * Root only (TUN devices, namespaces). Nothing touches the host's real network: the link's two addresses are
 * from 198.18.0.0/15 (RFC 2544's benchmarking range), a /32 route on a device of its own; the namespace
 * has no other interface. The program is built per process into a temp dir (Go standard library only).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GO } from '../stack/build.ts';

const SOURCE_DIR = import.meta.dirname;

/** Why this machine cannot run a delay link, or undefined when it can (checked without changing anything). */
export function delayLinkUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'the delay link needs Linux (TUN devices, network namespaces)';
  if (process.getuid?.() !== 0) return 'the delay link needs root (it creates TUN devices and a network namespace)';
  if (!existsSync('/dev/net/tun')) return 'no /dev/net/tun on this machine';
  for (const [cmd, args, what] of [
    ['ip', ['netns', 'list'], 'iproute2 with network namespaces (`ip netns list` failed)'],
    [GO, ['version'], `Go to build test/e2e/netem (${GO}; set KUBETRAIL_GO)`],
  ] as const) {
    try {
      execFileSync(cmd, args, { stdio: 'ignore' });
    } catch {
      return `the delay link needs ${what}`;
    }
  }
  return undefined;
}

let built: { dir: string; bin: string } | undefined;

/** Builds test/e2e/netem once per process (niced: the machine is shared); removed with the last link. */
function netemBinary(): string {
  if (built) return built.bin;
  const dir = mkdtempSync(join(tmpdir(), 'kubetrail-netem-'));
  const bin = join(dir, 'netem');
  try {
    execFileSync('nice', ['-n', '10', GO, 'build', '-trimpath', '-o', bin, '.'], {
      cwd: SOURCE_DIR,
      env: { ...process.env, GOTOOLCHAIN: 'local', CGO_ENABLED: '0', GOFLAGS: '-mod=readonly' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const stderr = (err as { stderr?: Buffer }).stderr?.toString() ?? '';
    throw new Error(`building test/e2e/netem failed: ${stderr || (err as Error).message}`);
  }
  built = { dir, bin };
  return bin;
}

export interface DelayLink {
  /** The far end: connect here to reach forwardTo across the link. */
  host: string;
  port: number;
  /** The round trip the link adds (2 × one-way). */
  rttMs: number;
  /** Stops the program (its TUN devices go with it) and deletes the namespace. Idempotent. */
  close(): Promise<void>;
}

const open = new Set<DelayLink>();

/** Runs `ip …`, saying which command failed. */
function ip(...args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? '';
    throw new Error(`ip ${args.join(' ')}: ${stderr || (err as Error).message}`);
  }
}

export async function startDelayLink(opts: {
  oneWayMs: number;
  forwardTo: { host: string; port: number };
  /** The forwarder's port in the far namespace (default 443). */
  port?: number;
}): Promise<DelayLink> {
  const bin = netemBinary();
  const id = randomBytes(3).toString('hex');
  const netns = `kubetrail-netem-${id}`;
  const [near, far] = [`ktn${id}a`, `ktn${id}b`];
  // One /24 of 198.18.0.0/15 per link, at random: two links (or two runs) at once rarely meet, and when they
  // do, `ip addr add` fails loudly rather than crossing wires.
  const net = `198.${18 + ((randomBytes(1)[0] ?? 0) % 2)}.${randomBytes(1)[0] ?? 0}`;
  const [nearAddr, farAddr] = [`${net}.1`, `${net}.2`];
  const port = opts.port ?? 443;

  let proc: ChildProcess | undefined;
  let closed = false;
  const cleanUpNow = (): void => {
    if (proc?.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    try {
      execFileSync('ip', ['netns', 'delete', netns], { stdio: 'ignore' });
    } catch {
      // not created, or already gone
    }
  };
  // Whatever happens to the test (a failed assertion, a killed worker), the namespace does not outlive it.
  process.once('exit', cleanUpNow);
  const link: DelayLink = {
    host: farAddr,
    port,
    rttMs: 2 * opts.oneWayMs,
    close: async () => {
      if (closed) return;
      closed = true;
      open.delete(link);
      process.off('exit', cleanUpNow);
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc?.once('exit', r));
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc?.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }
      cleanUpNow();
      if (open.size === 0 && built) {
        rmSync(built.dir, { recursive: true, force: true });
        built = undefined;
      }
    },
  };
  open.add(link);
  try {
    ip('netns', 'add', netns);
    proc = spawn(
      bin,
      [
        `-netns=${netns}`,
        `-near=${near}`,
        `-far=${far}`,
        `-delay=${opts.oneWayMs}ms`,
        `-listen=0.0.0.0:${port}`,
        `-forward=${opts.forwardTo.host}:${opts.forwardTo.port}`,
        '-exit-on-stdin-eof',
      ],
      // stdin stays open: the program exits when it closes, so it cannot outlive this process.
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    await readyLine(proc);
    ip('addr', 'add', nearAddr, 'peer', farAddr, 'dev', near);
    ip('link', 'set', near, 'up');
    ip('-n', netns, 'addr', 'add', farAddr, 'peer', nearAddr, 'dev', far);
    ip('-n', netns, 'link', 'set', far, 'up');
  } catch (err) {
    await link.close();
    throw err;
  }
  return link;
}

/** Resolves on the program's "ready" line; rejects with its stderr if it exits first. */
function readyLine(proc: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    proc.stderr?.on('data', (c: Buffer) => (err += c.toString()));
    proc.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      if (/^ready$/m.test(out)) resolve();
    });
    proc.once('error', reject);
    proc.once('exit', (code, signal) =>
      reject(new Error(`test/e2e/netem exited (${signal ?? code}) before it was ready: ${err.trim()}`)),
    );
  });
}

/** Closes every link still open (for afterAll). */
export async function closeAllDelayLinks(): Promise<void> {
  for (const l of [...open]) await l.close();
}

/** Time to a TCP connection's establishment (its SYN/SYN-ACK round trip, plus the client's own overhead). */
export function tcpConnectMs(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = connect({ host, port });
    s.once('connect', () => {
      const ms = performance.now() - t0;
      s.destroy();
      resolve(ms);
    });
    s.once('error', reject);
  });
}
