/**
 * A connection flood against one `kubetrail start` (a child process, so its memory can be read from /proc)
 * in front of the stand-in apiserver, all on 127.0.0.1, bounded in count and time (#15 item 8):
 *   1. raw TCP connections that never start TLS, more than the connection cap;
 *   2. TLS connections that make one request, then sit idle on keep-alive;
 *   3. watches that never read while the apiserver sends them megabytes of events.
 * Each phase's connections are closed by the client after it; the whole flood runs `--rounds` times (a
 * later round must reuse what the first grew, not add to it); then, `--after-s` later, RSS is read again.
 * All the while one ordinary watch, opened before the flood, must keep receiving its events. Printed: RSS
 * idle, at the peak and `--after-s` after, and where it is (/proc/<pid>/smaps: glibc's malloc heap, other
 * anonymous mappings, files; docs/security.md "Limits" reads them).
 *
 *   node scripts/flood.ts [--after-s 60] [--rounds 2] [--raw 5000] [--keep-alive 900] [--watches 300] [--env K=V]...
 *       (npx node ... with the system's Node older than 22)
 *
 * test/integration/hardening-flood.test.ts runs a smaller flood with a shorter wait and bounds the figures.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { makeConfigMap, startFakeApiserver } from '../test/helpers/fake-apiserver.ts';
import { processStats, startKubetrailProcess, type KubetrailProcess } from './soak.ts';

export interface FloodOptions {
  /** Raw TCP connections (phase 1): more than kubetrail's connection cap (1,024), so the cap is reached. */
  raw: number;
  /** Idle keep-alive TLS connections (phase 2): fewer than the cap. */
  keepAlive: number;
  /** Watches that never read (phase 3). */
  watches: number;
  /** ConfigMap events sent to every watch in phase 3, and the size of each. */
  events: number;
  eventBytes: number;
  /** How long after the flood RSS is read again. */
  afterS: number;
  /** The whole flood, this many times over (a later round reuses what the first one grew). */
  rounds: number;
  /** Extra environment for the kubetrail process (NODE_OPTIONS, MALLOC_ARENA_MAX...: what its memory does). */
  env?: Record<string, string>;
  log?: (line: string) => void;
}

/** Where a process's resident memory is, by kind of mapping (/proc/<pid>/smaps), in MB. */
export interface MemoryMap {
  rssMb: number;
  /** The brk heap: glibc malloc's main arena, where OpenSSL's and Node's native per-connection memory lives. */
  mallocHeapMb: number;
  /** Anonymous mappings of 256 KiB: V8's heap pages. */
  v8PagesMb: number;
  /** Other anonymous mappings: mimalloc's segments, thread stacks and arenas, large mmap'd allocations, V8's large objects. */
  anonMb: number;
  /** Mapped files: the node binary and libraries. */
  filesMb: number;
}

export function memoryMap(pid: number): MemoryMap {
  const kb = { heap: 0, anon: 0, files: 0, v8: 0 };
  let kind: keyof typeof kb = 'anon';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head) {
      const name = head[3] ?? '';
      const size = parseInt(head[2] ?? '0', 16) - parseInt(head[1] ?? '0', 16);
      kind = name === '[heap]' ? 'heap' : name.startsWith('/') ? 'files' : size === 256 * 1024 ? 'v8' : 'anon';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) kb[kind] += Number(rss[1]);
  }
  return {
    rssMb: mb(kb.heap + kb.anon + kb.files + kb.v8),
    mallocHeapMb: mb(kb.heap),
    v8PagesMb: mb(kb.v8),
    anonMb: mb(kb.anon),
    filesMb: mb(kb.files),
  };
}

const showMap = (m: MemoryMap): string =>
  `RSS ${m.rssMb} MB (malloc heap ${m.mallocHeapMb}, V8 pages ${m.v8PagesMb}, other anonymous ${m.anonMb}, files ${m.filesMb})`;

export interface PhaseReport {
  name: string;
  opened: number;
  /** Closed by kubetrail while the client held them open (the cap). */
  closedByKubetrail: number;
  peakMb: number;
}

export interface FloodReport {
  /** The malloc kubetrail ran on: glibc's, or mimalloc when KUBETRAIL_ALLOCATOR=mimalloc (src/cli/allocator.ts). */
  allocator: 'mimalloc' | 'glibc';
  /** kubetrail loaded native/build/trim.node (malloc_trim after a burst: src/proxy/reclaim.ts). */
  trim: boolean;
  idleMb: number;
  peakMb: number;
  /** Each round's peak. */
  roundPeaksMb: number[];
  afterMb: number;
  afterS: number;
  /** Where the memory was: idle, while the largest phase held its connections, and `afterS` after the flood. */
  maps: { idle: MemoryMap; held: MemoryMap; after: MemoryMap };
  idleFds: number;
  afterFds: number;
  phases: PhaseReport[];
  /** kubetrail's stderr lines about the connection cap. */
  capLines: string[];
  /** Events the watch opened before the flood received during it (it must never be cut). */
  bystanderEvents: number;
  bystanderOpen: boolean;
  /** A request on a new connection after the flood succeeded. */
  afterRequestOk: boolean;
}

const TOKEN = 'kt-flood-token';
const mb = (kb: number): number => Math.round(kb / 102.4) / 10;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Samples the process's RSS until stopped; `peak()` is the highest seen (VmHWM is since the start). */
function rssSampler(pid: number): { peak(): number; stop(): void } {
  let peak = processStats(pid).rssKb;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, processStats(pid).rssKb);
    } catch {
      // The process is gone: the caller notices.
    }
  }, 100);
  return { peak: () => peak, stop: () => clearInterval(timer) };
}

function tlsTo(kt: KubetrailProcess): Promise<TLSSocket> {
  const route = kt.route();
  return new Promise((resolve, reject) => {
    const s = tlsConnect(
      { host: '127.0.0.1', port: kt.port, ca: route.caPem, servername: route.servername, ALPNProtocols: ['http/1.1'] },
      () => resolve(s),
    );
    s.once('error', reject);
  });
}

function requestHead(kt: KubetrailProcess, path: string): string {
  const prefix = new URL(kt.route().base).pathname.replace(/\/$/, '');
  return `GET ${prefix}${path} HTTP/1.1\r\nHost: kubetrail\r\nAuthorization: Bearer ${TOKEN}\r\nUser-Agent: kubetrail-flood\r\n\r\n`;
}

interface Held<T extends Socket> {
  sockets: T[];
  /** Connections kubetrail refused or closed while the client held them. */
  closedByPeer(): number;
  /** The client ends the phase: every connection it still holds is destroyed. */
  closeAll(): Promise<void>;
}

/** Open `n` connections with `open`, 50 at a time, and hold them. */
async function openMany<T extends Socket>(n: number, open: () => Promise<T>): Promise<Held<T>> {
  const sockets: T[] = [];
  let closedByPeer = 0;
  let closing = false;
  for (let i = 0; i < n; i += 50) {
    const batch = await Promise.allSettled(Array.from({ length: Math.min(50, n - i) }, open));
    for (const b of batch) {
      if (b.status === 'rejected') {
        closedByPeer++;
        continue;
      }
      const s = b.value;
      s.on('error', () => undefined);
      s.once('close', () => {
        if (!closing) closedByPeer++;
      });
      sockets.push(s);
    }
  }
  return {
    sockets,
    closedByPeer: () => closedByPeer,
    closeAll: async () => {
      closing = true;
      const open = sockets.filter((s) => !s.closed);
      const closed = open.map((s) => new Promise<void>((r) => s.once('close', () => r())));
      for (const s of open) s.destroy();
      await Promise.all(closed);
    },
  };
}

function rawTcp(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** A TLS connection that made one request and read its answer, now idle on keep-alive. */
async function idleKeepAlive(kt: KubetrailProcess): Promise<TLSSocket> {
  const s = await tlsTo(kt);
  await new Promise<void>((resolve, reject) => {
    let got = '';
    const onData = (c: Buffer): void => {
      got += c.toString('latin1');
      // /version is small and sized: its head and body arrive together.
      if (/\r\n\r\n[\s\S]*\}/.test(got)) {
        s.off('data', onData);
        resolve();
      }
    };
    s.on('data', onData);
    s.once('close', () => reject(new Error('closed before the answer')));
    s.write(requestHead(kt, '/version'));
  });
  return s;
}

/** A watch whose client reads its answer's head, then nothing more. */
async function stalledWatch(kt: KubetrailProcess): Promise<TLSSocket> {
  const s = await tlsTo(kt);
  await new Promise<void>((resolve, reject) => {
    s.once('data', () => {
      s.pause();
      resolve();
    });
    s.once('close', () => reject(new Error('closed before the answer')));
    s.write(requestHead(kt, '/api/v1/namespaces/default/configmaps?watch=1'));
  });
  return s;
}

export async function runFlood(opts: FloodOptions): Promise<FloodReport> {
  const log = opts.log ?? (() => undefined);
  const home = mkdtempSync(join(tmpdir(), 'kt-flood-'));
  const fake = await startFakeApiserver({ tokens: { [TOKEN]: { user: 'flood' } } });
  let kt: KubetrailProcess | undefined;
  try {
    const kubeconfig = await fake.writeKubeconfig(join(home, 'kc'), { users: [{ name: 'flood', token: TOKEN }] });
    kt = await startKubetrailProcess({ kubeconfig, home, args: ['--quiet'], env: opts.env });
    const k = kt;
    const rss = (): number => processStats(k.pid).rssKb;

    // A bystander: a watch opened before the flood, reading everything; it must never be cut.
    const bystander = await tlsTo(k);
    let bystanderEvents = 0;
    bystander.on('data', (c: Buffer) => (bystanderEvents += c.toString('latin1').split('"type":"').length - 1));
    bystander.write(requestHead(k, '/api/v1/namespaces/default/configmaps?watch=1'));
    // Warm up: a few requests, then let the process settle.
    for (let i = 0; i < 20; i++) (await idleKeepAlive(k)).destroy();
    await sleep(2000);
    const idleKb = rss();
    const idleFds = processStats(k.pid).fds;
    const idleMap = memoryMap(k.pid);
    const maps = readFileSync(`/proc/${k.pid}/maps`, 'utf8');
    const allocator = maps.includes('libmimalloc') ? 'mimalloc' : 'glibc';
    const trim = maps.includes('/trim.node');
    log(
      `idle: ${showMap(idleMap)}, ${idleFds} descriptors; malloc: ${allocator}${trim ? ', malloc_trim after a burst' : ''}`,
    );
    let heldMap = idleMap;
    const sampler = rssSampler(k.pid);
    const phases: PhaseReport[] = [];

    const phase = async <T extends Socket>(
      name: string,
      n: number,
      open: () => Promise<T>,
      during?: () => Promise<void>,
    ): Promise<void> => {
      const phaseSampler = rssSampler(k.pid);
      const t0 = Date.now();
      const held = await openMany(n, open);
      if (during) await during();
      await sleep(1000);
      const map = memoryMap(k.pid);
      if (map.rssMb > heldMap.rssMb) heldMap = map;
      const report: PhaseReport = {
        name,
        opened: n,
        closedByKubetrail: held.closedByPeer(),
        peakMb: mb(phaseSampler.peak()),
      };
      phaseSampler.stop();
      await held.closeAll();
      phases.push(report);
      log(
        `${name}: ${n} opened in ${Date.now() - t0} ms, ${report.closedByKubetrail} closed by kubetrail while held, peak RSS ${report.peakMb} MB`,
      );
    };

    const payload = 'x'.repeat(opts.eventBytes);
    const roundPeaksMb: number[] = [];
    let made = 0;
    for (let round = 1; round <= opts.rounds; round++) {
      const roundSampler = rssSampler(k.pid);
      await phase(`round ${round}: raw TCP, never TLS`, opts.raw, () => rawTcp(k.port));
      await phase(`round ${round}: TLS, one request, idle keep-alive`, opts.keepAlive, () => idleKeepAlive(k));
      await phase(
        `round ${round}: watches that never read`,
        opts.watches,
        () => stalledWatch(k),
        async () => {
          for (let i = 0; i < opts.events; i++) {
            fake.create(makeConfigMap(`flood-${made++}`, { payload }));
            if (i % 10 === 9) await sleep(20);
          }
          await sleep(2000);
        },
      );
      roundPeaksMb.push(mb(roundSampler.peak()));
      roundSampler.stop();
      const st = processStats(k.pid);
      log(
        `round ${round} over: peak RSS ${roundPeaksMb.at(-1) ?? 0} MB; now RSS ${mb(st.rssKb)} MB, ${st.fds} descriptors`,
      );
    }
    const peakKb = sampler.peak();
    sampler.stop();

    log(`flood over: ${processStats(k.pid).fds} descriptors open; waiting ${opts.afterS} s`);
    for (let waited = 0; waited < opts.afterS; waited += 10) {
      await sleep(Math.min(10, opts.afterS - waited) * 1000);
      const st = processStats(k.pid);
      log(`  +${Math.min(waited + 10, opts.afterS)} s: RSS ${mb(st.rssKb)} MB, ${st.fds} descriptors`);
    }
    const afterKb = rss();
    const afterFds = processStats(k.pid).fds;
    const afterMap = memoryMap(k.pid);
    const afterRequestOk = await idleKeepAlive(k).then(
      (s) => (s.destroy(), true),
      () => false,
    );
    const bystanderOpen = !bystander.closed;
    bystander.destroy();
    const capLines = k
      .stderr()
      .split('\n')
      .filter((l) => /connections open/.test(l));
    log(`RSS: idle ${mb(idleKb)} MB, peak ${mb(peakKb)} MB, ${opts.afterS} s after ${mb(afterKb)} MB`);
    log(`  idle:            ${showMap(idleMap)}`);
    log(`  held (largest):  ${showMap(heldMap)}`);
    log(`  ${`${opts.afterS} s after:`.padEnd(16)} ${showMap(afterMap)}`);
    log(
      `bystander watch: ${bystanderOpen ? 'open' : 'CUT'}, ${bystanderEvents} events; a request after the flood: ${afterRequestOk ? 'ok' : 'FAILED'}`,
    );
    for (const l of capLines) log(`kubetrail said: ${l}`);
    return {
      allocator,
      trim,
      idleMb: mb(idleKb),
      peakMb: mb(peakKb),
      roundPeaksMb,
      afterMb: mb(afterKb),
      afterS: opts.afterS,
      maps: { idle: idleMap, held: heldMap, after: afterMap },
      idleFds,
      afterFds,
      phases,
      capLines,
      bystanderEvents,
      bystanderOpen,
      afterRequestOk,
    };
  } finally {
    await kt?.stop();
    await fake.close();
    rmSync(home, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name: string, dflt: number): number => {
    const i = process.argv.indexOf(name);
    return i === -1 ? dflt : Number(process.argv[i + 1]);
  };
  await runFlood({
    raw: arg('--raw', 5000),
    keepAlive: arg('--keep-alive', 900),
    watches: arg('--watches', 300),
    events: arg('--events', 100),
    eventBytes: arg('--event-bytes', 64 * 1024),
    afterS: arg('--after-s', 60),
    rounds: arg('--rounds', 2),
    env: Object.fromEntries(
      process.argv.flatMap((a, i) =>
        process.argv[i - 1] === '--env' && a.includes('=')
          ? [[a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]]
          : [],
      ),
    ),
    log: (line) => void process.stdout.write(`${line}\n`),
  });
}
