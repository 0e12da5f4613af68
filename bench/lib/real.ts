/**
 * The real upstream: kube-apiserver v1.33 + etcd + Jaeger from the e2e stack. Pods are created for the
 * small GET (default/pod-0..4) and the large list (namespace bench-large); workload 5 runs the real
 * kubectl, direct and wrapped, and breaks the wrapped run's extra time down.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:https';
import { dirname, join } from 'node:path';
import { connect } from 'node:tls';
import { parse } from 'yaml';
import { startOtlpReceiver } from '../../test/helpers/otlp-receiver.ts';
import { startStack, type Stack } from '../../test/e2e/stack/stack.ts';
import { summarizeProfile, type ProfileSummary } from './cpuprofile.ts';
import { distFresh, KUBETRAIL_BIN, KUBETRAIL_DIST, KUBETRAIL_LAUNCHER, startPath, type UpstreamSpec } from './paths.ts';
import { freePort, run } from './proc.ts';
import { podManifest } from './pods.ts';
import { kubeconfigYaml, KUBECTL, writeFile, type Bench } from './setup.ts';
import { median, summarize, type Summary } from './stats.ts';
import { rotation } from './workloads.ts';

export interface Real {
  stack: Stack;
  spec: UpstreamSpec;
  /** OTLP/HTTP traces URL of the stack's Jaeger. */
  jaegerOtlp: string;
}

export async function startReal(bench: Bench, log: (l: string) => void): Promise<Real> {
  const stack = await startStack({ log: (l) => log(`  [stack] ${l}`) });
  const kc = parse(readFileSync(stack.kubeconfig, 'utf8')) as {
    clusters: { cluster: Record<string, string> }[];
    users: { name: string; user: Record<string, string> }[];
  };
  const admin = kc.users.find((u) => u.name === 'admin')?.user ?? {};
  const dec = (s: string | undefined): string => Buffer.from(s ?? '', 'base64').toString('utf8');
  const certPem = dec(admin['client-certificate-data']);
  const keyPem = dec(admin['client-key-data']);
  const caPem = readFileSync(stack.caFile, 'utf8');
  const url = new URL(stack.apiserverUrl);
  const dir = bench.workDir;
  return {
    stack,
    jaegerOtlp: `${stack.otlpHttpEndpoint}/v1/traces`,
    spec: {
      label: `kube-apiserver ${stack.apiserverVersion}`,
      host: url.hostname,
      port: Number(url.port),
      caFile: stack.caFile,
      caPem,
      certFile: writeFile(dir, 'real-admin.crt', certPem),
      keyFile: writeFile(dir, 'real-admin.key', keyPem),
      certPem,
      keyPem,
      kubeconfig: writeFile(
        dir,
        'real.kubeconfig',
        kubeconfigYaml(stack.apiserverUrl, caPem, { certPem, keyPem }, 'kube-apiserver'),
      ),
    },
  };
}

function api(spec: UpstreamSpec, agent: Agent, method: string, path: string, body?: unknown): Promise<number> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        agent,
        host: spec.host,
        port: spec.port,
        method,
        path,
        headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {},
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.setTimeout(60_000, () => req.destroy(new Error(`${method} ${path}: timeout`)));
    req.on('error', reject);
    req.end(data);
  });
}

/** Create `count` pods in `namespace` (concurrency 32); returns ms. Existing pods are kept. */
export async function createPods(
  spec: UpstreamSpec,
  namespace: string,
  count: number,
  log: (l: string) => void,
): Promise<number> {
  const t0 = performance.now();
  const agent = new Agent({ keepAlive: true, maxSockets: 32, ca: spec.caPem, cert: spec.certPem, key: spec.keyPem });
  const ns = await api(spec, agent, 'POST', '/api/v1/namespaces', {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: namespace },
  });
  if (ns !== 201 && ns !== 409) throw new Error(`bench: cannot create namespace ${namespace}: HTTP ${ns}`);
  let next = 0;
  let failed = 0;
  const worker = async (): Promise<void> => {
    while (next < count && failed < 20) {
      const i = next++;
      const code = await api(
        spec,
        agent,
        'POST',
        `/api/v1/namespaces/${namespace}/pods`,
        podManifest(`pod-${i}`, namespace, i),
      );
      if (code !== 201 && code !== 409) failed++;
      if (i > 0 && i % 5000 === 0) log(`  created ${i} pods in ${namespace}`);
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  agent.destroy();
  if (failed > 0) throw new Error(`bench: ${failed} pod creations failed in ${namespace}`);
  return performance.now() - t0;
}

// ---- workload 5: kubectl get pods, direct vs wrapped ----

export type W5Variant = 'direct' | 'wrapped' | 'wrapped-refused' | 'wrapped-dist';

export interface W5Result {
  runs: number;
  /** Entry point of the `wrapped` variants. */
  bin: string;
  wall: Partial<Record<W5Variant, Summary>>;
  failures: Partial<Record<W5Variant, number>>;
  /** Why wrapped-dist is missing, if it is. */
  note?: string;
}

interface W5Setup {
  env: NodeJS.ProcessEnv;
  argv(v: W5Variant | 'wrapped-nosdk', command?: string[]): string[];
}

/**
 * Each wrapped variant gets its own port: a background kubetrail (--linger, the default) serves one
 * configuration, and variants that differ in endpoint, entry point or OTEL_* would replace it every run.
 */
async function variantPorts(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const k of ['wrapped', 'wrapped-refused', 'wrapped-dist', 'wrapped-nosdk', 'live', 'refused', 'nosdk'])
    out[k] = await freePort();
  return out;
}

function w5Setup(bench: Bench, real: Real, ports: Record<string, number>): W5Setup {
  const home = join(bench.workDir, 'kubectl-home');
  mkdirSync(home, { recursive: true });
  // The launcher runs `node` from PATH for the commands it does not serve itself: this Node.
  const env = { ...bench.env.env, HOME: home, PATH: `${dirname(process.execPath)}:${bench.env.env.PATH ?? ''}` };
  const stateDir = join(bench.workDir, 'wrap-state');
  const kubectl = [KUBECTL, 'get', 'pods'];
  return {
    env,
    argv: (v, command = kubectl) => {
      if (v === 'direct') return [KUBECTL, '--kubeconfig', real.spec.kubeconfig, 'get', 'pods'];
      const otlp = v === 'wrapped-refused' ? bench.env.otlpRefused : real.jaegerOtlp;
      return [
        // What users run: the launcher (bin/kubetrail), which serves a command with no Node process when the
        // background kubetrail can; the other variants run the Node CLI itself.
        ...(v === 'wrapped-dist' ? [KUBETRAIL_LAUNCHER] : [process.execPath, KUBETRAIL_BIN]),
        '--kubeconfig',
        real.spec.kubeconfig,
        '--listen',
        `127.0.0.1:${ports[v] ?? 0}`,
        '--state-dir',
        stateDir,
        '--otlp-endpoint',
        otlp,
        '--quiet',
        '--',
        ...command,
      ];
    },
  };
}

export async function w5Kubectl(bench: Bench, real: Real, runs: number, log: (l: string) => void): Promise<W5Result> {
  const ports = await variantPorts();
  const s = w5Setup(bench, real, ports);
  const variants: W5Variant[] = ['direct', 'wrapped', 'wrapped-refused'];
  let note: string | undefined;
  if (KUBETRAIL_BIN !== KUBETRAIL_DIST && distFresh()) variants.push('wrapped-dist');
  else if (KUBETRAIL_BIN !== KUBETRAIL_DIST)
    note = 'dist/ is missing or older than src/ (run `npm run build`): the built CLI was not measured';
  const walls: Partial<Record<W5Variant, number[]>> = {};
  const failures: Partial<Record<W5Variant, number>> = {};
  // Warm kubectl's discovery and HTTP caches for both server URLs, and the OS page cache.
  for (const v of variants) {
    for (let i = 0; i < 2; i++) {
      const [cmd = '', ...args] = s.argv(v);
      const r = await run(cmd, args, { env: s.env, timeoutMs: 60_000 });
      if (r.code !== 0) log(`  warm-up ${v} failed (${r.code}): ${r.stderr.slice(0, 300)}`);
    }
  }
  for (let i = 0; i < runs; i++) {
    for (const v of rotation(variants, i)) {
      const [cmd = '', ...args] = s.argv(v);
      const r = await run(cmd, args, { env: s.env, timeoutMs: 60_000 });
      if (r.code !== 0) failures[v] = (failures[v] ?? 0) + 1;
      else (walls[v] ??= []).push(r.ms);
    }
  }
  const wall: Partial<Record<W5Variant, Summary>> = {};
  for (const v of variants) wall[v] = summarize(walls[v] ?? []);
  return { runs, bin: KUBETRAIL_BIN.replace(/^.*\/(src|dist)\//, '$1/'), wall, failures, note };
}

export interface WrapBreakdown {
  nodeStartMs: number;
  importMs: number;
  /** RSS after importing src/cli/main.ts (type stripping) and dist/cli/main.js (the build), MB. */
  importRssMb: number;
  importDistMs: number | undefined;
  importDistRssMb: number | undefined;
  depsMs: Record<string, number>;
  caMs: number;
  prepareMs: number;
  instrumentMs: number;
  /** Wrapped run phases (median ms): launch → kubectl starts; kubectl's own run; kubectl exits → kubetrail exits. */
  phases: Record<
    'live' | 'refused' | 'nosdk',
    { beforeChild: number; child: number; afterChild: number; total: number }
  >;
  /** kubectl's own run time, direct (same shell wrapper), for comparison with `child`. */
  directChildMs: number;
  /** From kubetrail's spans (wrapped runs): the upstream connection kubetrail opens, per run. */
  upstreamTlsMs: number | undefined;
  upstreamConnectMs: number | undefined;
  upstreamTtfbMs: number | undefined;
  serverSpanMs: number | undefined;
  requestsPerRun: number | undefined;
  /** A Node TLS client's handshake (new connection, no resumption), median ms. */
  handshake: { kubetrailFirstMs: number; kubetrailMs: number; apiserverMs: number };
  profile: ProfileSummary | undefined;
}

function jsonLine<T>(s: string): T {
  const line = s.trim().split('\n').pop() ?? '{}';
  return JSON.parse(line) as T;
}

function tlsHandshakeMs(
  host: string,
  port: number,
  o: { ca: string; servername?: string; cert?: string; key?: string },
): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = connect(
      { host, port, ca: o.ca, servername: o.servername, cert: o.cert, key: o.key, ALPNProtocols: ['http/1.1'] },
      () => {
        const ms = performance.now() - t0;
        s.destroy();
        resolve(ms);
      },
    );
    s.setTimeout(10_000, () => s.destroy(new Error('handshake timeout')));
    s.on('error', reject);
  });
}

export async function wrapBreakdown(
  bench: Bench,
  real: Real,
  runs: number,
  log: (l: string) => void,
  withProfile = true,
): Promise<WrapBreakdown> {
  const env = bench.env.env;
  const cwd = join(import.meta.dirname, '..', '..');
  const probe = join(import.meta.dirname, 'probe.ts');
  const rep = async (n: number, cmd: string, args: string[]): Promise<string[]> => {
    const outs: string[] = [];
    for (let i = 0; i < n; i++) outs.push((await run(cmd, args, { env, cwd, timeoutMs: 60_000 })).stdout);
    return outs;
  };
  const nodeStarts: number[] = [];
  for (let i = 0; i < runs; i++) nodeStarts.push((await run(process.execPath, ['-e', '0'], { env, cwd })).ms);
  type ImportProbe = { importMs: number; rssAfterMb: number };
  const imports = (await rep(runs, process.execPath, [probe, 'import'])).map((s) => jsonLine<ImportProbe>(s));
  const importsDist = distFresh()
    ? (await rep(runs, process.execPath, [probe, 'import-dist'])).map((s) => jsonLine<ImportProbe>(s))
    : [];
  const depsRuns = (await rep(Math.min(runs, 5), process.execPath, [probe, 'deps'])).map((s) =>
    jsonLine<Record<string, number>>(s),
  );
  const depsMs: Record<string, number> = {};
  for (const k of Object.keys(depsRuns[0] ?? {})) depsMs[k] = median(depsRuns.map((d) => d[k] ?? Number.NaN));
  const stateDir = join(bench.workDir, 'wrap-state');
  const setups = (await rep(runs, process.execPath, [probe, 'setup', real.spec.kubeconfig, stateDir])).map((s) =>
    jsonLine<{ caMs: number; prepareMs: number; instrumentMs: number }>(s),
  );

  // Wrapped runs through a shell that stamps kubectl's start and end (CLOCK_REALTIME ns).
  const ports = await variantPorts();
  const s = w5Setup(bench, real, ports);
  const receiver = await startOtlpReceiver();
  const stamps = join(bench.workDir, 'stamps');
  const shell = (file: string): string[] => [
    'sh',
    '-c',
    `echo S $(date +%s%N) > ${file}; ${KUBECTL} get pods; c=$?; echo E $(date +%s%N) >> ${file}; exit $c`,
  ];
  const phaseRuns: Record<
    'live' | 'refused' | 'nosdk' | 'direct',
    { before: number[]; child: number[]; after: number[]; total: number[] }
  > = {
    live: { before: [], child: [], after: [], total: [] },
    refused: { before: [], child: [], after: [], total: [] },
    nosdk: { before: [], child: [], after: [], total: [] },
    direct: { before: [], child: [], after: [], total: [] },
  };
  const once = async (kind: 'live' | 'refused' | 'nosdk' | 'direct'): Promise<void> => {
    const file = `${stamps}-${kind}`;
    let argv: string[];
    const e = { ...s.env };
    if (kind === 'direct') {
      argv = shell(file);
      e.KUBECONFIG = real.spec.kubeconfig;
    } else {
      argv = s.argv(kind === 'refused' ? 'wrapped-refused' : 'wrapped', shell(file));
      // The live variant reports to a receiver we can read spans from; nosdk turns export off.
      if (kind === 'live') argv[argv.indexOf('--otlp-endpoint') + 1] = receiver.url;
      if (kind === 'nosdk') e.OTEL_SDK_DISABLED = 'true';
      argv[argv.indexOf('--listen') + 1] = `127.0.0.1:${ports[kind] ?? 0}`;
    }
    const t0 = performance.timeOrigin + performance.now();
    const [cmd = '', ...args] = argv;
    const r = await run(cmd, args, { env: e, timeoutMs: 60_000 });
    const t1 = t0 + r.ms;
    if (r.code !== 0) {
      log(`  breakdown ${kind}: exit ${r.code}: ${r.stderr.slice(0, 300)}`);
      return;
    }
    const text = readFileSync(file, 'utf8');
    const S = Number(/S (\d+)/.exec(text)?.[1]) / 1e6;
    const E = Number(/E (\d+)/.exec(text)?.[1]) / 1e6;
    const pr = phaseRuns[kind];
    pr.before.push(S - t0);
    pr.child.push(E - S);
    pr.after.push(t1 - E);
    pr.total.push(r.ms);
  };
  const kinds = ['direct', 'live', 'refused', 'nosdk'] as const;
  for (const k of kinds) await once(k); // warm caches for this shell path
  for (const k of kinds) phaseRuns[k] = { before: [], child: [], after: [], total: [] };
  for (let i = 0; i < runs; i++) for (const k of rotation(kinds, i)) await once(k);
  const med = (
    k: 'live' | 'refused' | 'nosdk',
  ): { beforeChild: number; child: number; afterChild: number; total: number } => ({
    beforeChild: median(phaseRuns[k].before),
    child: median(phaseRuns[k].child),
    afterChild: median(phaseRuns[k].after),
    total: median(phaseRuns[k].total),
  });
  await new Promise((resolve) => setTimeout(resolve, 300));
  const upstreamSpans = receiver.spans.filter((sp) => sp.name === 'upstream');
  const serverSpans = receiver.spans.filter((sp) => sp.kind === 2);
  const attr = (name: string): number | undefined => {
    const xs = upstreamSpans.map((sp) => sp.attributes[name]).filter((x): x is number => typeof x === 'number');
    return xs.length > 0 ? median(xs) : undefined;
  };
  const roots = receiver.spans.filter((sp) => sp.parentSpanId === undefined).length;
  const breakdownSpans = {
    upstreamTlsMs: attr('upstream.tls_ms'),
    upstreamConnectMs: attr('upstream.connect_ms'),
    upstreamTtfbMs: attr('upstream.ttfb_ms'),
    serverSpanMs:
      serverSpans.length > 0 ? median(serverSpans.map((sp) => Number(sp.endNs - sp.startNs) / 1e6)) : undefined,
    requestsPerRun: roots > 0 ? serverSpans.length / roots : undefined,
  };
  await receiver.close();

  // TLS handshakes: a fresh `kubetrail start`'s first, then warm ones; the apiserver's for comparison.
  const hs = { kubetrailFirstMs: Number.NaN, kubetrailMs: Number.NaN, apiserverMs: Number.NaN };
  const firsts: number[] = [];
  const warms: number[] = [];
  for (let i = 0; i < Math.min(runs, 5); i++) {
    const p = await startPath('kubetrail', bench.env, real.spec);
    try {
      const o = {
        ca: p.target.ca ?? '',
        servername: p.target.servername,
        cert: real.spec.certPem,
        key: real.spec.keyPem,
      };
      firsts.push(await tlsHandshakeMs(p.target.host, p.target.port, o));
      for (let j = 0; j < 5; j++) warms.push(await tlsHandshakeMs(p.target.host, p.target.port, o));
    } finally {
      await p.stop();
    }
  }
  const api: number[] = [];
  for (let j = 0; j < 10; j++)
    api.push(
      await tlsHandshakeMs(real.spec.host, real.spec.port, {
        ca: real.spec.caPem,
        cert: real.spec.certPem,
        key: real.spec.keyPem,
      }),
    );
  hs.kubetrailFirstMs = median(firsts);
  hs.kubetrailMs = median(warms);
  hs.apiserverMs = median(api);

  // One CPU profile of a wrapped run.
  let profile: ProfileSummary | undefined;
  if (withProfile)
    try {
      const profDir = join(bench.workDir, 'prof-wrap');
      mkdirSync(profDir, { recursive: true });
      const argv = s.argv('wrapped');
      argv.splice(1, 0, '--cpu-prof', `--cpu-prof-dir=${profDir}`, '--cpu-prof-interval=200');
      const [cmd = '', ...args] = argv;
      await new Promise<void>((resolve) =>
        spawn(cmd, args, { env: s.env, stdio: 'ignore' }).once('exit', () => resolve()),
      );
      const f = readdirSync(profDir).find((x) => x.endsWith('.cpuprofile'));
      if (f) {
        profile = summarizeProfile(join(profDir, f));
        writeFileSync(join(bench.workDir, 'wrap.cpuprofile.json'), JSON.stringify(profile));
      }
    } catch (err) {
      log(`  profile of a wrapped run failed: ${String(err)}`);
    }

  return {
    nodeStartMs: median(nodeStarts),
    importMs: median(imports.map((x) => x.importMs)),
    importRssMb: median(imports.map((x) => x.rssAfterMb)),
    importDistMs: importsDist.length > 0 ? median(importsDist.map((x) => x.importMs)) : undefined,
    importDistRssMb: importsDist.length > 0 ? median(importsDist.map((x) => x.rssAfterMb)) : undefined,
    depsMs,
    caMs: median(setups.map((x) => x.caMs)),
    prepareMs: median(setups.map((x) => x.prepareMs)),
    instrumentMs: median(setups.map((x) => x.instrumentMs)),
    phases: { live: med('live'), refused: med('refused'), nosdk: med('nosdk') },
    directChildMs: median(phaseRuns.direct.child),
    ...breakdownSpans,
    handshake: hs,
    profile,
  };
}
