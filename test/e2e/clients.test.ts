/**
 * Clients other than kubectl, on the real stack (#19 item 1): helm, built from its Go module, and
 * clientgo-demo, our client-go program (test/e2e/stack/go/clientgo-demo), send no Kubectl-Session. Each
 * run must be one trace, in wrap mode (`kubetrail -- helm install …`) and in start mode (a `kubetrail
 * start` whose kubeconfig the program uses), with a root named after the program; traces are counted in
 * the stack's Jaeger. And the Google Cloud SDK's kubectl dispatcher, where this machine has it: one trace
 * per command in start mode, although its first request (its own /version probe) carries no session.
 *
 * The programs are built by the stack's build (build.ts), cached like its six binaries: cold, minutes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unusedPort } from '../helpers/ports.ts';
import { KUBETRAIL_BIN, runProcess, type RunResult } from '../helpers/run-kubetrail.ts';
import {
  adminClient,
  createNamespace,
  fetchTrace,
  kubetrailSpans,
  parentOf,
  searchTraces,
  tagsOf,
  type AdminClient,
  type JaegerSpan,
  type JaegerTrace,
} from './helpers.ts';
import { ensureBinaries, type Binaries } from './stack/build.ts';
import { startStack, type Stack } from './stack/stack.ts';

/** The Google Cloud SDK's kubectl: a dispatcher that asks the server's /version, then runs kubectl.1.xx. */
const DISPATCHER = '/usr/lib/google-cloud-sdk/bin/kubectl';
/** Start mode ends a command after this long without requests (the flag's default; at 1 s, helm on a loaded machine split in 2-4 traces). */
const IDLE_MS = 3000;

let stack: Stack;
let admin: AdminClient;
let bins: Binaries;
let root: string;
let chart: string;
let n = 0;

beforeAll(async () => {
  stack = await startStack();
  admin = adminClient(stack);
  bins = await ensureBinaries({ components: ['helm', 'clientgo-demo'] });
  root = mkdtempSync(join(tmpdir(), 'kubetrail-clients-'));
  chart = writeChart(join(root, 'chart'));
  for (const ns of ['kt-helm-wrap', 'kt-helm-start', 'kt-go-wrap', 'kt-go-start', 'kt-dispatcher'])
    await createNamespace(admin, ns);
}, 3_600_000);

afterAll(async () => {
  admin?.close();
  await stack?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

/** A chart of two ConfigMaps, its data from a value, so an upgrade changes something. */
function writeChart(dir: string): string {
  mkdirSync(join(dir, 'templates'), { recursive: true });
  writeFileSync(join(dir, 'Chart.yaml'), 'apiVersion: v2\nname: kt-demo\nversion: 0.1.0\n');
  writeFileSync(join(dir, 'values.yaml'), 'colour: red\n');
  writeFileSync(
    join(dir, 'templates', 'configmaps.yaml'),
    ['settings', 'flags']
      .map(
        (name) =>
          `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-${name}\ndata:\n  colour: {{ .Values.colour | quote }}\n`,
      )
      .join('---\n'),
  );
  return dir;
}

/** Only what the programs and kubetrail need, with a fresh HOME (helm's caches, kubetrail's state). */
function freshEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const dir = join(root, `run-${++n}`);
  mkdirSync(join(dir, 'home'), { recursive: true });
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: join(dir, 'home'),
    KUBETRAIL_STATE_DIR: join(dir, 'state'),
    ...extra,
  };
}

const helmArgs = (ns: string): string[][] => [
  ['install', 'kt-demo', chart, '--kube-context', 'alice', '-n', ns],
  ['upgrade', 'kt-demo', chart, '--kube-context', 'alice', '-n', ns, '--set', 'colour=blue'],
  ['rollback', 'kt-demo', '1', '--kube-context', 'alice', '-n', ns],
];
const goArgs = (ns: string): string[] => ['-context', 'tina', '-n', ns];

/** kubetrail's root spans (a trace holds the apiserver's spans too, for system:masters). */
function rootOf(trace: JaegerTrace): JaegerSpan | undefined {
  return kubetrailSpans(trace).find((s) => parentOf(s) === undefined);
}

/**
 * kubetrail's traces whose root began in [fromMs, toMs], once Jaeger's answer has stopped changing
 * (export is batched): how many traces the run made, whatever kubetrail printed.
 */
async function tracesIn(
  fromMs: number,
  toMs: number,
  atLeast: number,
): Promise<{ id: string; name: string; requests: number }[]> {
  const query = {
    service: 'kubetrail',
    start: String(Math.floor(fromMs * 1000)),
    end: String(Math.ceil(toMs * 1000)),
    limit: '200',
  };
  let last = '';
  for (let i = 0; i < 40; i++) {
    const traces = await searchTraces(stack.jaegerUrl, query, (ts) => ts.length >= atLeast, 10_000);
    const found = traces
      .map((t) => ({ t, r: rootOf(t) }))
      .filter(
        (x): x is { t: JaegerTrace; r: JaegerSpan } =>
          x.r !== undefined && x.r.startTime >= fromMs * 1000 && x.r.startTime <= toMs * 1000,
      )
      .map(({ t, r }) => ({
        id: t.traceID,
        name: r.operationName,
        requests: Number(tagsOf(r)['kubectl.requests'] ?? 0),
      }))
      .sort((a, b) => a.id.localeCompare(b.id));
    const key = JSON.stringify(found);
    if (key === last) return found;
    last = key;
    await sleep(500);
  }
  throw new Error(`Jaeger's answer kept changing: ${last}`);
}

/** `trace: <jaeger>/trace/<id>` lines (wrap mode: the waterfall's; start mode: one per finished command). */
function traceIds(text: string): string[] {
  return [...text.matchAll(/^trace: \S+\/trace\/([0-9a-f]{32})\b/gm)].map((m) => m[1] ?? '');
}

/** kubetrail's flags for the stack: its kubeconfig, a listen address, its OTLP endpoint and Jaeger. */
function kubetrailFlags(listen: string): string[] {
  return [
    '--kubeconfig',
    stack.kubeconfig,
    '--listen',
    listen,
    '--otlp-endpoint',
    `${stack.otlpHttpEndpoint}/v1/traces`,
    '--jaeger-url',
    stack.jaegerUrl,
  ];
}

async function wrapped(argv: string[]): Promise<RunResult & { from: number; to: number }> {
  const from = Date.now();
  const flags = kubetrailFlags('127.0.0.1:0');
  const r = await runProcess(process.execPath, [KUBETRAIL_BIN, ...flags, '--', ...argv], {
    env: freshEnv(),
    timeoutMs: 120_000,
  });
  return { ...r, from, to: Date.now() };
}

interface Started {
  kubeconfig: string;
  /** Its stdout so far: the export line, the request log, a `trace:` line per finished command. */
  log: () => string;
  proc: ChildProcess;
}

async function startMode(): Promise<Started> {
  const port = await unusedPort();
  const flags = kubetrailFlags(`127.0.0.1:${port}`);
  const proc = spawn(process.execPath, [KUBETRAIL_BIN, 'start', ...flags, '--session-idle-ms', String(IDLE_MS)], {
    env: freshEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout?.on('data', (c: Buffer) => (out += c.toString()));
  proc.stderr?.on('data', (c: Buffer) => (err += c.toString()));
  await expect
    .poll(() => out, { timeout: 30_000, message: `kubetrail start printed no kubeconfig; stderr: ${err}` })
    .toMatch(/^export KUBECONFIG=\S+\.yaml$/m);
  return { kubeconfig: /^export KUBECONFIG=(\S+\.yaml)$/m.exec(out)?.[1] ?? '', log: () => out, proc };
}

async function stopStart(s: Started | undefined): Promise<void> {
  if (!s || s.proc.exitCode !== null) return;
  s.proc.kill('SIGTERM');
  await new Promise((r) => s.proc.once('close', r));
}

/**
 * A program run against a `kubetrail start`: its exit, then the `trace:` lines printed for it once start
 * mode has seen it idle (and then some, so a trace split off late would show too).
 */
async function throughStart(
  s: Started,
  cmd: string,
  argv: string[],
  env: Record<string, string> = {},
): Promise<RunResult & { from: number; to: number; printed: string[] }> {
  const mark = s.log().length;
  const from = Date.now();
  const r = await runProcess(cmd, argv, { env: freshEnv({ KUBECONFIG: s.kubeconfig, ...env }), timeoutMs: 120_000 });
  await expect.poll(() => traceIds(s.log().slice(mark)).length, { timeout: 20_000 }).toBeGreaterThan(0);
  await sleep(IDLE_MS + 2500);
  const printed = s
    .log()
    .slice(mark)
    .split('\n')
    .filter((l) => l.startsWith('trace'));
  return { ...r, from, to: Date.now(), printed };
}

/** One line per run for the report: what the issue counted (traces per run) and what a user sees. */
function report(mode: string, what: string, traces: { name: string; requests: number }[]): void {
  console.log(
    `[clients] ${mode} ${what}: ${traces.length} trace(s): ${traces.map((t) => `${t.name} (${t.requests} requests)`).join(', ')}`,
  );
}

describe('helm (built from helm.sh/helm/v4): one trace per run, named after it', () => {
  it('wrap mode: install, upgrade, rollback are a trace each, named `helm <sub-command>`', async () => {
    const helm = bins.helm ?? '';
    const seen: { sub: string; traces: { name: string; requests: number }[] }[] = [];
    for (const args of helmArgs('kt-helm-wrap')) {
      const r = await wrapped([helm, ...args]);
      expect(r.code, r.stderr).toBe(0);
      const ids = traceIds(r.stderr);
      const traces = await tracesIn(r.from, r.to, ids.length);
      report('wrap', `helm ${args[0]}`, traces);
      seen.push({ sub: args[0] ?? '', traces });
      expect(ids).toHaveLength(1);
      expect(traces.map((t) => t.id)).toEqual(ids);
    }
    for (const { sub, traces } of seen) {
      expect(traces.map((t) => t.name)).toEqual([`helm ${sub}`]);
      expect(traces[0]?.requests).toBeGreaterThan(3);
    }
    const cm = await admin.request('GET', '/api/v1/namespaces/kt-helm-wrap/configmaps/kt-demo-settings');
    expect(JSON.parse(cm.body) as unknown).toMatchObject({ data: { colour: 'red' } });
  });

  it('wrap mode through a background kubetrail (the default): each run its own trace, named from its command line', async () => {
    const env = freshEnv();
    const port = await unusedPort();
    const flags = kubetrailFlags(`127.0.0.1:${port}`);
    try {
      const ids: string[] = [];
      for (let run = 0; run < 2; run++) {
        const from = Date.now();
        const r = await runProcess(
          process.execPath,
          [KUBETRAIL_BIN, ...flags, '--', bins.helm ?? '', 'list', '--kube-context', 'alice', '-n', 'kt-helm-wrap'],
          { env, timeoutMs: 120_000 },
        );
        expect(r.code, r.stderr).toBe(0);
        if (run === 0) expect(r.stderr).toMatch(/started a background kubetrail/);
        const printed = traceIds(r.stderr);
        const traces = await tracesIn(from, Date.now(), 1);
        report('wrap (background)', `helm list (run ${run + 1})`, traces);
        expect(printed).toHaveLength(1);
        expect(traces.map((t) => [t.id, t.name])).toEqual([[printed[0], 'helm list']]);
        ids.push(...printed);
      }
      expect(new Set(ids).size).toBe(2);
    } finally {
      await runProcess(process.execPath, [KUBETRAIL_BIN, 'stop'], { env, timeoutMs: 30_000 });
    }
  });

  it('start mode: install, upgrade, rollback are a trace each, named `helm` (its User-Agent)', async () => {
    const s = await startMode();
    try {
      // Every run first, then the checks: the report line of each is the figure the issue counted.
      const runs = [];
      for (const args of helmArgs('kt-helm-start')) {
        const r = await throughStart(s, bins.helm ?? '', args);
        const traces = await tracesIn(r.from, r.to, 1);
        report('start', `helm ${args[0]}`, traces);
        runs.push({ r, traces });
      }
      for (const { r, traces } of runs) {
        expect(r.code, r.stderr).toBe(0);
        expect(r.printed).toHaveLength(1);
        expect(r.printed[0]).toMatch(/^trace: \S+ helm \(\d+ requests, /);
        expect(traces.map((t) => t.name)).toEqual(['helm']);
        expect(traces.map((t) => t.id)).toEqual(traceIds(r.printed.join('\n')));
      }
    } finally {
      await stopStart(s);
    }
  });
});

describe('a client-go program (ours, client-go v0.37): one trace per run, named after it', () => {
  it('wrap mode', async () => {
    const r = await wrapped([bins['clientgo-demo'] ?? '', ...goArgs('kt-go-wrap')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.toString()).toBe('listed 5 configmaps in 3 pages\n');
    const traces = await tracesIn(r.from, r.to, 1);
    report('wrap', 'clientgo-demo', traces);
    expect(traceIds(r.stderr)).toHaveLength(1);
    expect(traces.map((t) => [t.name, t.requests])).toEqual([['clientgo-demo', 14]]);
  });

  it('start mode: a paged list, creates, a get and deletes are one trace, however many connections', async () => {
    const s = await startMode();
    try {
      const runs = [];
      for (let run = 0; run < 2; run++) {
        const r = await throughStart(s, bins['clientgo-demo'] ?? '', goArgs('kt-go-start'));
        const traces = await tracesIn(r.from, r.to, 1);
        report('start', `clientgo-demo (run ${run + 1})`, traces);
        runs.push({ r, traces });
      }
      for (const { r, traces } of runs) {
        expect(r.code, r.stderr).toBe(0);
        expect(r.printed).toHaveLength(1);
        expect(traces.map((t) => [t.name, t.requests])).toEqual([['clientgo-demo', 14]]);
      }
    } finally {
      await stopStart(s);
    }
  });
});

describe.skipIf(!existsSync(DISPATCHER))("the Google Cloud SDK's kubectl dispatcher in start mode", () => {
  it('one trace per command: its session-less /version probe joins the kubectl it runs', async () => {
    const s = await startMode();
    try {
      for (const [args, name] of [
        [['get', 'configmaps'], 'kubectl get'],
        [['create', 'configmap', 'from-dispatcher', '--from-literal=a=1'], 'kubectl create configmap'],
      ] as const) {
        const r = await throughStart(s, DISPATCHER, ['--context', 'alice', '-n', 'kt-dispatcher', ...args]);
        expect(r.code, r.stderr).toBe(0);
        const traces = await tracesIn(r.from, r.to, 1);
        report('start', `dispatcher kubectl ${args[0]}`, traces);
        expect(traces.map((t) => t.name)).toEqual([name]);
        // What it sends first: GET /version?timeout=5s, User-Agent kubectl-dispatcher/v1.0, no session.
        const trace = await fetchTrace(stack.jaegerUrl, traces[0]?.id ?? '');
        const first = kubetrailSpans(trace as JaegerTrace)
          .filter((sp) => tagsOf(sp)['http.request.method'] !== undefined)
          .sort((a, b) => a.startTime - b.startTime)[0];
        expect(first && tagsOf(first)).toMatchObject({
          'url.path': '/version',
          'user_agent.original': expect.stringMatching(/^kubectl-dispatcher\//) as unknown,
        });
      }
    } finally {
      await stopStart(s);
    }
  });
});
