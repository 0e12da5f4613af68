/**
 * Memory of a kubetrail process: idle, with N watches open, while events flow, and across one large list.
 * Diagnostic tool (not part of `npm run bench`). The proxy runs in a forked "host" process that answers
 * memory questions over IPC (process.memoryUsage, V8 heap statistics, /proc/self/status, heap snapshots),
 * so the figures are the proxy's own; the watches are opened from this (driver) process.
 *
 *   npx node bench/lib/watch-mem.ts [--entry src|dist] [--mode start|core] [--proto h2|h1] [--steps 0,250,500,1000]
 *       [--flags "--max-semi-space-size=1"] [--events 1000:10000] [--large 20000:identity[:count]]
 *       [--snapshots DIR] [--env K=V,...] [--json FILE]
 *
 * --mode start: `kubetrail start` in-process (src/cli/main.ts or dist/cli/main.js, OTLP to a live sink);
 * --mode core: startProxy without an observer (bench/lib/proxy-core.ts). --proto h2 (the default): every
 * request a stream of one connection, as kubectl speaks to kubetrail's listener since #13; h1: HTTP/1.1
 * keep-alive, a connection per concurrent request (each watch then has its own connection on both legs).
 * Both through the bench's client (bench/lib/client.ts). Every measurement is taken
 * before and after a forced full GC (the host runs with --expose-gc), so live memory and garbage separate.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type * as SetupModule from '../../src/cli/setup.ts';
import type * as LoadModule from '../../src/config/load.ts';
import type * as ServerModule from '../../src/proxy/server.ts';
import v8 from 'node:v8';

type HostIn = { type: 'mem'; gc?: boolean; id: number } | { type: 'snapshot'; path: string; id: number };
type HostOut = { type: 'mem' | 'snapshot'; id: number; [k: string]: unknown };

// ---------------------------------------------------------------- host side
function procStatus(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of readFileSync('/proc/self/status', 'utf8').split('\n')) {
    const m = /^(VmRSS|VmHWM|RssAnon|RssFile|RssShmem|VmData):\s+(\d+) kB/.exec(line);
    if (m) out[m[1] as string] = Number(m[2]) * 1024;
  }
  return out;
}

function memStats(): Record<string, unknown> {
  const mu = process.memoryUsage();
  const hs = v8.getHeapStatistics();
  const spaces: Record<string, { size: number; used: number; physical: number }> = {};
  for (const s of v8.getHeapSpaceStatistics())
    spaces[s.space_name] = { size: s.space_size, used: s.space_used_size, physical: s.physical_space_size };
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;
  return {
    ...procStatus(),
    rss: mu.rss,
    heapTotal: mu.heapTotal,
    heapUsed: mu.heapUsed,
    external: mu.external,
    arrayBuffers: mu.arrayBuffers,
    mallocedMemory: hs.malloced_memory,
    peakMallocedMemory: hs.peak_malloced_memory,
    totalPhysical: hs.total_physical_size,
    nativeContexts: hs.number_of_native_contexts,
    spaces,
    handles,
  };
}

async function host(cfg: {
  entry: 'src' | 'dist';
  mode: 'start' | 'core';
  kubeconfig: string;
  stateDir: string;
  otlp: string;
}): Promise<void> {
  process.on('message', (m: HostIn) => {
    if (m.type === 'mem') {
      if (m.gc) {
        const gc = (globalThis as { gc?: (o?: unknown) => void }).gc;
        gc?.();
        gc?.();
      }
      process.send?.({ type: 'mem', id: m.id, ...memStats() });
    } else if (m.type === 'snapshot') {
      (globalThis as { gc?: () => void }).gc?.();
      const path = v8.writeHeapSnapshot(m.path);
      process.send?.({ type: 'snapshot', id: m.id, path });
    }
  });
  process.on('disconnect', () => process.exit(0));
  const root = new URL('../../', import.meta.url);
  if (cfg.mode === 'start') {
    const mainUrl = new URL(cfg.entry === 'dist' ? 'dist/cli/main.js' : 'src/cli/main.ts', root);
    const { main } = (await import(mainUrl.href)) as { main: (argv: string[]) => Promise<number> };
    process.exit(
      await main([
        'start',
        '--kubeconfig',
        cfg.kubeconfig,
        '--listen',
        '127.0.0.1:0',
        '--state-dir',
        cfg.stateDir,
        '--otlp-endpoint',
        cfg.otlp,
        '--quiet',
      ]),
    );
  } else {
    const ext = cfg.entry === 'dist' ? 'js' : 'ts';
    const base = cfg.entry === 'dist' ? 'dist/' : 'src/';
    const { prepare } = (await import(new URL(`${base}cli/setup.${ext}`, root).href)) as typeof SetupModule;
    const { resolveConfig } = (await import(new URL(`${base}config/load.${ext}`, root).href)) as typeof LoadModule;
    const { startProxy } = (await import(new URL(`${base}proxy/server.${ext}`, root).href)) as typeof ServerModule;
    const config = resolveConfig({
      kubeconfig: cfg.kubeconfig,
      'state-dir': cfg.stateDir,
      listen: '127.0.0.1:0',
      quiet: true,
    });
    const prepared = await prepare(config);
    const proxy = await startProxy({
      routes: prepared.routes,
      pki: prepared.pki,
      host: '127.0.0.1',
      port: 0,
      observer: undefined,
    });
    process.stdout.write(`export KUBECONFIG=${prepared.writeKubeconfig(proxy.url)}\n`);
  }
}

// ---------------------------------------------------------------- driver side
class Host {
  readonly child: ChildProcess;
  #id = 0;
  readonly #waiters = new Map<number, (m: HostOut) => void>();
  constructor(child: ChildProcess) {
    this.child = child;
    child.on('message', (m: HostOut) => {
      const w = this.#waiters.get(m.id);
      this.#waiters.delete(m.id);
      w?.(m);
    });
  }
  ask(m: Omit<HostIn, 'id'>): Promise<HostOut> {
    const id = ++this.#id;
    return new Promise((resolve) => {
      this.#waiters.set(id, resolve);
      this.child.send({ ...m, id });
    });
  }
  mem(
    gc = false,
  ): Promise<Record<string, number> & { spaces: Record<string, { size: number; used: number; physical: number }> }> {
    return this.ask({ type: 'mem', gc } as HostIn) as never;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const MB = (b: number | undefined): string => (b === undefined ? '-' : (b / 1048576).toFixed(1));

function opt(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? def : (process.argv[i + 1] ?? def);
}

function line(
  label: string,
  m: Record<string, number> & { spaces?: Record<string, { size: number; used: number; physical: number }> },
): Record<string, unknown> {
  const sp = m.spaces ?? {};
  const row = {
    label,
    rss: MB(m.VmRSS),
    hwm: MB(m.VmHWM),
    anon: MB(m.RssAnon),
    file: MB(m.RssFile),
    heapTot: MB(m.heapTotal),
    heapUsed: MB(m.heapUsed),
    newSp: MB(sp.new_space?.physical),
    oldUsed: MB(sp.old_space?.used),
    code: MB(sp.code_space?.physical),
    lo: MB(sp.large_object_space?.physical),
    ext: MB(m.external),
    ab: MB(m.arrayBuffers),
    malloc: MB(m.mallocedMemory),
    handles: m.handles,
  };
  console.log(Object.values(row).join('\t'));
  return { label, ...m };
}

/** RSS of a process by mapping kind: brk heap, anonymous mmaps (malloc arenas, V8 pages), files. */
function smaps(pid: number): string {
  let heap = 0,
    anon = 0,
    file = 0,
    arenaLike = 0;
  let cur = '';
  let size = 0;
  for (const l of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(l);
    if (head) {
      cur = head[1] ?? '';
      continue;
    }
    const m = /^(Size|Rss):\s+(\d+) kB/.exec(l);
    if (!m) continue;
    const kb = Number(m[2]);
    if (m[1] === 'Size') {
      size = kb;
      continue;
    }
    if (cur === '[heap]') heap += kb;
    else if (cur === '') {
      anon += kb;
      if (size >= 60000 && size <= 65536) arenaLike += kb;
    } else file += kb;
  }
  return `brk-heap ${(heap / 1024).toFixed(1)} MB, anon mmaps ${(anon / 1024).toFixed(1)} MB (of which in <=64MB arena-sized maps ${(arenaLike / 1024).toFixed(1)}), file/other ${(file / 1024).toFixed(1)} MB`;
}

function trim(pid: number): void {
  try {
    execFileSync('gdb', ['-p', String(pid), '-batch', '-ex', 'call (int)malloc_trim(0)'], {
      stdio: 'ignore',
      timeout: 60_000,
    });
  } catch (err) {
    console.log(`# malloc_trim via gdb failed: ${String(err)}`);
  }
}

async function driver(): Promise<void> {
  const { setupBench, startStandIn } = await import('./setup.ts');
  const { kubetrailTarget } = await import('./paths.ts');
  const { createClient } = await import('./client.ts');
  const proto = opt('proto', 'h2') as 'h1' | 'h2';
  const entry = opt('entry', 'src') as 'src' | 'dist';
  const mode = opt('mode', 'start') as 'start' | 'core';
  const steps = opt('steps', '0,250,500,1000').split(',').filter(Boolean).map(Number);
  const flags = opt('flags', '').split(/\s+/).filter(Boolean);
  const events = opt('events', '');
  const large = opt('large', '');
  const snapshots = opt('snapshots', '');
  const extraEnv = Object.fromEntries(
    opt('env', '')
      .split(',')
      .filter(Boolean)
      .map((kv) => kv.split('=') as [string, string]),
  );
  const results: Record<string, unknown>[] = [];
  const doTrim = process.argv.includes('--trim');

  const bench = await setupBench();
  const standIn = await startStandIn(bench);
  const up = standIn.spec;
  try {
    if (large) await standIn.proc.call({ type: 'prepare', counts: [Number(large.split(':')[0])] }, 'prepared', 120_000);
    const child = fork(
      fileURLToPath(import.meta.url),
      [
        '--host',
        JSON.stringify({
          entry,
          mode,
          kubeconfig: up.kubeconfig,
          stateDir: `${bench.workDir}/state`,
          otlp: bench.env.otlpLive,
        }),
      ],
      {
        env: { ...bench.env.env, ...extraEnv },
        execArgv: ['--expose-gc', ...flags],
        stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
        serialization: 'advanced',
      },
    );
    const h = new Host(child);
    let out = '';
    const kcPath = await new Promise<string>((resolve, reject) => {
      child.stdout?.setEncoding('utf8').on('data', (c: string) => {
        out += c;
        const m = /export KUBECONFIG=(\S+)\n/.exec(out);
        if (m) resolve(m[1] as string);
      });
      child.once('exit', (c) => reject(new Error(`host exited ${c}`)));
    });
    const t = kubetrailTarget(mode, kcPath, up);
    console.log(
      `# entry=${entry} mode=${mode} proto=${proto} flags=${flags.join(' ')} env=${JSON.stringify(extraEnv)} pid=${child.pid}`,
    );
    console.log(
      [
        'label',
        'rss',
        'hwm',
        'anon',
        'file',
        'heapTot',
        'heapUsed',
        'newSp',
        'oldUsed',
        'code',
        'lo',
        'ext',
        'ab',
        'malloc',
        'handles',
      ].join('\t'),
    );
    await sleep(1500);
    results.push(line('idle', await h.mem()));
    results.push(line('idle+gc', await h.mem(true)));
    // One request so every lazily loaded module and the upstream agent exist before the baseline.
    const client = createClient(t, proto, Infinity);
    const kubectlHeaders = (): Record<string, string> => ({
      Accept: 'application/json',
      'User-Agent': 'kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0',
      'Kubectl-Command': 'kubectl get',
      'Kubectl-Session': randomUUID(),
    });
    const get = async (
      path: string,
      headers: Record<string, string> = {},
    ): Promise<{ status: number; bytes: number; ms: number }> => {
      const r = await client.request(path, { ...kubectlHeaders(), ...headers }).done;
      return { status: r.status, bytes: r.bytes, ms: r.ttlbMs };
    };
    for (let i = 0; i < 20; i++) await get('/api/v1/namespaces/default/pods/pod-0');
    await sleep(500);
    results.push(line('warm+gc', await h.mem(true)));
    console.log(`#   smaps: ${smaps(child.pid ?? 0)}`);
    if (doTrim) {
      trim(child.pid ?? 0);
      results.push(line('warm+gc+trim', await h.mem()));
    }
    if (snapshots) await h.ask({ type: 'snapshot', path: `${snapshots}/w0.heapsnapshot` } as HostIn);

    if (large) {
      const [count, encoding = 'identity', reps = '3'] = large.split(':');
      const cpu0 = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]?.split(' ');
      for (let i = 0; i < Number(reps); i++) {
        const r = await get(`/api/v1/namespaces/bench-n${count}/pods`, { 'Accept-Encoding': encoding });
        console.log(`# large ${count} ${encoding}: status ${r.status} ${MB(r.bytes)} MB in ${r.ms.toFixed(0)} ms`);
      }
      const cpu1 = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]?.split(' ');
      const cpuMs = ((Number(cpu1?.[11]) + Number(cpu1?.[12]) - Number(cpu0?.[11]) - Number(cpu0?.[12])) * 1000) / 100;
      console.log(`# large: proxy CPU ${cpuMs.toFixed(0)} ms for ${reps} requests`);
      results.push(line('after-large', await h.mem()));
      results.push(line('after-large+gc', await h.mem(true)));
      results.push({ label: 'large-cpu-ms', cpuMs });
    }

    // Watches, opened in steps.
    const open = new Set<Readable>();
    let received = 0;
    const openOne = (): Promise<void> =>
      new Promise((resolve) => {
        const req = client.request(
          '/api/v1/namespaces/default/pods?watch=1&resourceVersion=1',
          kubectlHeaders(),
          (_status, res) => {
            open.add(res);
            res.on('data', (c: Buffer) => (received += c.length));
            res.on('error', () => undefined);
            res.on('close', () => open.delete(res));
            resolve();
          },
        );
        req.done.catch(() => resolve());
      });
    let opened = 0;
    for (const n of steps) {
      if (n === 0) continue;
      const want = n - opened;
      let next = 0;
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          while (next < want) {
            next++;
            await openOne();
          }
        }),
      );
      opened = n;
      for (let i = 0; i < 200; i++) {
        const w = await standIn.proc.call({ type: 'watches' }, 'watches');
        if (w.count >= n) break;
        await sleep(50);
      }
      await sleep(1500);
      results.push(line(`w${n}`, await h.mem()));
      results.push(line(`w${n}+gc`, await h.mem(true)));
      console.log(`#   smaps: ${smaps(child.pid ?? 0)}`);
      if (doTrim) {
        trim(child.pid ?? 0);
        results.push(line(`w${n}+gc+trim`, await h.mem()));
      }
      if (snapshots && n === steps[steps.length - 1])
        await h.ask({ type: 'snapshot', path: `${snapshots}/w${n}.heapsnapshot` } as HostIn);
    }
    if (events && opened > 0) {
      const [rate = '1000', ms = '10000'] = events.split(':');
      const cpu0 = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]?.split(' ');
      const e = standIn.proc.call(
        { type: 'emit', rate: Number(rate), durationMs: Number(ms) },
        'emitted',
        Number(ms) + 30_000,
      );
      let maxRss = 0;
      const poll = setInterval(() => {
        try {
          const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
          maxRss = Math.max(maxRss, Number(m?.[1] ?? 0) * 1024);
        } catch {
          /* gone */
        }
      }, 100);
      const sent = await e;
      await sleep(500);
      clearInterval(poll);
      const cpu1 = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]?.split(' ');
      const cpuMs = ((Number(cpu1?.[11]) + Number(cpu1?.[12]) - Number(cpu0?.[11]) - Number(cpu0?.[12])) * 1000) / 100;
      console.log(
        `# events: sent ${sent.sent} to ${sent.watches} watches; client got ${MB(received)} MB; max sampled RSS ${MB(maxRss)} MB; proxy CPU ${cpuMs.toFixed(0)} ms`,
      );
      results.push(line('events-end', await h.mem()));
      results.push(line('events-end+gc', await h.mem(true)));
      if (snapshots) await h.ask({ type: 'snapshot', path: `${snapshots}/w${opened}-events.heapsnapshot` } as HostIn);
    }
    for (const r of open) r.destroy();
    client.close();
    if (opened > 0) {
      await sleep(2000);
      results.push(line('closed', await h.mem()));
      results.push(line('closed+gc', await h.mem(true)));
      console.log(`#   smaps: ${smaps(child.pid ?? 0)}`);
      if (doTrim) {
        trim(child.pid ?? 0);
        results.push(line('closed+gc+trim', await h.mem()));
      }
    }
    const json = opt('json', '');
    if (json)
      (await import('node:fs')).writeFileSync(json, JSON.stringify({ entry, mode, flags, extraEnv, results }, null, 1));
    if (process.argv.includes('--hold')) {
      console.log(`# holding; host pid ${child.pid}; Ctrl-C to stop`);
      await new Promise((r) => process.once('SIGINT', r));
    }
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  } finally {
    await standIn.proc.stop();
    await bench.cleanup();
  }
}

if (process.argv[2] === '--host') await host(JSON.parse(process.argv[3] ?? '{}') as Parameters<typeof host>[0]);
else await driver();
