/**
 * Helpers for the end-to-end suite against the real stack (test/e2e/stack): run one kubectl command
 * directly and through kubetrail and compare what the user sees, read kubetrail's traces (and the
 * apiserver's) back from Jaeger, and set up cluster state as admin.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect } from 'vitest';
import { parse } from 'yaml';
import { KUBETRAIL_BIN, type RunResult } from '../helpers/run-kubetrail.ts';
import type { Stack, UserName } from './stack/stack.ts';

export type KubectlVersion = '1.30' | '1.32' | '1.33';

/** Plain kubectl builds (not the gcloud dispatcher, which picks a version from the server's /version). */
export function kubectlBinary(version: KubectlVersion = '1.33'): string {
  return `/usr/lib/google-cloud-sdk/bin/kubectl.${version}`;
}

// ---- running kubectl, directly and through kubetrail ----

export interface RunOptions {
  context: UserName;
  /** Default 1.33. */
  kubectl?: KubectlVersion;
  /** Extra environment for kubectl (both sides), e.g. KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false. */
  env?: Record<string, string>;
  /** stdin. */
  input?: string;
  timeoutMs?: number;
  /**
   * Read nothing of stdout for this long, like `| less` before the user scrolls: kubectl's writes
   * must wait for the reader, never fail.
   */
  slowReaderMs?: number;
}

export interface CompareOptions extends RunOptions {
  /**
   * `-n <direct>` for the direct run and `-n <proxied>` for the proxied one: commands that create or
   * delete run on the same names in two namespaces, so both print the same thing.
   */
  namespaces?: readonly [direct: string, proxied: string];
}

/** A run through kubetrail, with kubetrail's own report split off kubectl's stderr. */
export interface ProxiedRun extends RunResult {
  /** What kubectl wrote on stderr: everything before kubetrail's report. */
  kubectlStderr: string;
  /** kubetrail's waterfall, from its `kubectl <cmd> · N requests` header to the `trace:` line. */
  report: string[];
  /** From the report's `trace: <jaeger>/trace/<id>` line. */
  traceId: string | undefined;
  /** From the report's header. */
  requests: number | undefined;
}

export interface Comparison {
  /** `kubectl --context alice get pods`, for messages. */
  command: string;
  direct: RunResult;
  proxied: ProxiedRun;
}

/** A process whose stdout can be watched while it runs (kubectl get -w). */
export interface Streaming<R> {
  /** Resolves once stdout matches (or rejects after timeoutMs, with what was seen so far). */
  waitForStdout: (re: RegExp, timeoutMs: number) => Promise<void>;
  /** ^C: SIGINT to the process group, as a terminal sends it to the foreground job. */
  interrupt: () => void;
  result: Promise<R>;
}

const REPORT_HEADER = /^kubectl [a-z][\w-]*(?: [a-z][\w-]*)* · (\d+) requests? · /;
const TRACE_LINE = /^trace: \S+\/trace\/([0-9a-f]{32})\b/;

/** Splits a wrapped run's stderr into kubectl's part and kubetrail's report (printed after kubectl exited). */
export function splitReport(stderr: string): Pick<ProxiedRun, 'kubectlStderr' | 'report' | 'traceId' | 'requests'> {
  const lines = stderr.split('\n');
  let start = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (REPORT_HEADER.test(lines[i] ?? '')) {
      start = i;
      break;
    }
  }
  if (start === -1) return { kubectlStderr: stderr, report: [], traceId: undefined, requests: undefined };
  const report = lines.slice(start).filter((l) => l !== '');
  const traceIds = report.flatMap((l) => TRACE_LINE.exec(l)?.[1] ?? []);
  return {
    kubectlStderr: lines.slice(0, start).join('\n') + (start > 0 ? '\n' : ''),
    report,
    traceId: traceIds.length === 1 ? traceIds[0] : undefined,
    requests: Number(REPORT_HEADER.exec(lines[start] ?? '')?.[1]),
  };
}

/** Runs kubectl directly and through kubetrail against one stack; every run gets a fresh, cold HOME. */
export class Harness {
  readonly stack: Stack;
  /** Every stderr kubetrail printed in this file, for the secrets test. */
  readonly kubetrailStderr: string[] = [];
  /** Wall times, for the report. */
  readonly timings: { command: string; directMs: number; proxiedMs: number }[] = [];
  readonly #root: string;
  #n = 0;

  constructor(stack: Stack) {
    this.stack = stack;
    this.#root = mkdtempSync(join(tmpdir(), 'kubetrail-e2e-'));
  }

  dispose(): void {
    rmSync(this.#root, { recursive: true, force: true });
  }

  /** A new empty HOME (and kubectl cache dir) so kubectl starts cold, plus kubetrail's state dir. */
  #freshDirs(): { HOME: string; KUBECACHEDIR: string; KUBETRAIL_STATE_DIR: string } {
    const dir = join(this.#root, String(++this.#n));
    const home = join(dir, 'home');
    mkdirSync(home, { recursive: true });
    return { HOME: home, KUBECACHEDIR: join(home, '.kube', 'cache'), KUBETRAIL_STATE_DIR: join(dir, 'state') };
  }

  /** Only what kubectl and kubetrail need: nothing from the developer's shell (KUBECONFIG, OTEL_*...). */
  #baseEnv(extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
    const dirs = this.#freshDirs();
    return { PATH: process.env.PATH ?? '/usr/bin:/bin', ...dirs, ...extra };
  }

  kubetrailFlags(): string[] {
    return [
      '--kubeconfig',
      this.stack.kubeconfig,
      '--listen',
      '127.0.0.1:0',
      '--otlp-endpoint',
      `${this.stack.otlpHttpEndpoint}/v1/traces`,
      '--jaeger-url',
      this.stack.jaegerUrl,
    ];
  }

  #kubectlArgv(args: readonly string[], opts: RunOptions, namespace?: string): string[] {
    return ['--context', opts.context, ...(namespace === undefined ? [] : ['-n', namespace]), ...args];
  }

  direct(args: readonly string[], opts: RunOptions, namespace?: string): Promise<RunResult> {
    const env = { ...this.#baseEnv(opts.env), KUBECONFIG: this.stack.kubeconfig };
    return spawnStreaming(kubectlBinary(opts.kubectl), this.#kubectlArgv(args, opts, namespace), env, opts).result;
  }

  async proxied(args: readonly string[], opts: RunOptions, namespace?: string): Promise<ProxiedRun> {
    const argv = [
      KUBETRAIL_BIN,
      ...this.kubetrailFlags(),
      '--',
      kubectlBinary(opts.kubectl),
      ...this.#kubectlArgv(args, opts, namespace),
    ];
    const res = await spawnStreaming(process.execPath, argv, this.#baseEnv(opts.env), opts).result;
    this.kubetrailStderr.push(res.stderr);
    return { ...res, ...splitReport(res.stderr) };
  }

  /** The same command, directly and through kubetrail, one after the other. */
  async compare(args: readonly string[], opts: CompareOptions): Promise<Comparison> {
    const direct = await this.direct(args, opts, opts.namespaces?.[0]);
    const proxied = await this.proxied(args, opts, opts.namespaces?.[1]);
    const command = [`kubectl.${opts.kubectl ?? '1.33'}`, ...this.#kubectlArgv(args, opts, opts.namespaces?.[0])].join(
      ' ',
    );
    this.timings.push({ command, directMs: Math.round(direct.ms), proxiedMs: Math.round(proxied.ms) });
    return { command, direct, proxied };
  }

  /** kubectl (direct) as a streaming process. */
  spawnDirect(args: readonly string[], opts: RunOptions): Streaming<RunResult> {
    const env = { ...this.#baseEnv(opts.env), KUBECONFIG: this.stack.kubeconfig };
    return spawnStreaming(kubectlBinary(opts.kubectl), this.#kubectlArgv(args, opts), env, opts);
  }

  /** kubetrail -- kubectl as a streaming process. */
  spawnProxied(args: readonly string[], opts: RunOptions): Streaming<ProxiedRun> {
    const argv = [
      KUBETRAIL_BIN,
      ...this.kubetrailFlags(),
      '--',
      kubectlBinary(opts.kubectl),
      ...this.#kubectlArgv(args, opts),
    ];
    const s = spawnStreaming(process.execPath, argv, this.#baseEnv(opts.env), opts);
    return {
      waitForStdout: s.waitForStdout,
      interrupt: s.interrupt,
      result: s.result.then((res) => {
        this.kubetrailStderr.push(res.stderr);
        return { ...res, ...splitReport(res.stderr) };
      }),
    };
  }
}

/**
 * Runs a process with piped stdio (as a CI job or `| less` would), in a process group of its own so that
 * after timeoutMs it and its children (kubetrail's kubectl) are killed together.
 */
function spawnStreaming(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  opts: Pick<RunOptions, 'input' | 'timeoutMs' | 'slowReaderMs'>,
): Streaming<RunResult> {
  const started = performance.now();
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  child.stdin.on('error', () => undefined); // a command that never reads stdin
  child.stdin.end(opts.input ?? '');
  if (opts.slowReaderMs) {
    child.stdout.pause();
    setTimeout(() => child.stdout.resume(), opts.slowReaderMs).unref();
  }
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const listeners = new Set<() => void>();
  child.stdout.on('data', (c: Buffer) => {
    out.push(c);
    for (const l of listeners) l();
  });
  child.stderr.on('data', (c: Buffer) => err.push(c));
  const signalGroup = (signal: NodeJS.Signals): void => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  const timer = setTimeout(() => signalGroup('SIGKILL'), timeoutMs);
  let closed = false;
  const result = new Promise<RunResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      closed = true;
      for (const l of listeners) l();
      resolve({
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err).toString('utf8'),
        // What a shell's $? shows for a process killed by a signal: 128 + its number.
        code: code ?? 128 + (signal ? constants.signals[signal] : 0),
        ms: performance.now() - started,
      });
    });
  });
  return {
    result,
    interrupt: () => signalGroup('SIGINT'),
    waitForStdout: (re, ms) =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          const text = Buffer.concat(out).toString('utf8');
          if (re.test(text)) done(resolve);
          else if (closed)
            done(() =>
              reject(
                new Error(
                  `${cmd} exited before stdout matched ${re}; stdout:\n${text}\nstderr:\n${Buffer.concat(err).toString('utf8')}`,
                ),
              ),
            );
        };
        const t = setTimeout(
          () =>
            done(() =>
              reject(
                new Error(
                  `stdout did not match ${re} within ${ms}ms; stdout so far:\n${Buffer.concat(out).toString('utf8')}`,
                ),
              ),
            ),
          ms,
        );
        const done = (f: () => void): void => {
          clearTimeout(t);
          listeners.delete(check);
          f();
        };
        listeners.add(check);
        check();
      }),
  };
}

// ---- comparing outcomes ----

/** Long outputs are shown head and tail (the assertion's diff pinpoints the difference). */
function clip(text: string, max = 40): string {
  const lines = text.split('\n');
  if (lines.length <= max) return text;
  const half = max / 2;
  return [...lines.slice(0, half), `… (${lines.length - max} more lines) …`, ...lines.slice(-half)].join('\n');
}

function show(label: string, r: { stdout: Buffer; code: number }, stderr: string): string {
  return `--- ${label}: exit ${r.code}, ${r.stdout.length} bytes of stdout\n[stdout]\n${clip(r.stdout.toString('utf8'))}\n[stderr]\n${clip(stderr)}`;
}

export function describeComparison(c: Comparison): string {
  return `${c.command}\n${show('direct', c.direct, c.direct.stderr)}\n${show('through kubetrail', c.proxied, c.proxied.stderr)}`;
}

/**
 * kubectl's table output ends in an AGE column computed from the clock when it prints, so two runs a
 * moment apart may differ there and nowhere else. On tables whose header ends in AGE (pods), this masks
 * that last column only; everything else stays byte-for-byte.
 */
export function maskAgeColumn(text: string): string {
  return text
    .split('\n')
    .map((line, _i, lines) =>
      /\sAGE$/.test(lines[0] ?? '') && line !== lines[0] && line !== '' ? line.replace(/\S+$/, '<age>') : line,
    )
    .join('\n');
}

export interface SameOptions {
  /** Normalise stdout before comparing (only what differs run to run by nature, e.g. maskAgeColumn). */
  stdout?: (text: string) => string;
  /** Normalise kubectl's stderr before comparing (e.g. klog lines carry timestamps, pids and URLs). */
  stderr?: (text: string) => string;
}

/**
 * Same exit code, same stdout (byte for byte unless normalised), same stderr from kubectl; and a trace
 * link. Soft: every difference is reported, and the caller's trace checks still run.
 */
export function expectSameOutcome(c: Comparison, opts: SameOptions = {}): void {
  const msg = describeComparison(c);
  expect.soft(c.proxied.code, `exit code differs\n${msg}`).toBe(c.direct.code);
  const out = opts.stdout ?? ((s: string) => s);
  expect
    .soft(
      firstDifference(out(c.direct.stdout.toString('utf8')), out(c.proxied.stdout.toString('utf8'))),
      `stdout differs\n${msg}`,
    )
    .toBeUndefined();
  if (!opts.stdout) expect.soft(c.proxied.stdout.equals(c.direct.stdout), `stdout bytes differ\n${msg}`).toBe(true);
  const err = opts.stderr ?? ((s: string) => s);
  expect
    .soft(firstDifference(err(c.direct.stderr), err(c.proxied.kubectlStderr)), `kubectl's stderr differs\n${msg}`)
    .toBeUndefined();
  expect.soft(c.proxied.traceId, `no trace link in kubetrail's report\n${msg}`).toMatch(/^[0-9a-f]{32}$/);
}

/** Where two outputs first differ (line numbers from 1), compactly; undefined when they are equal. */
export function firstDifference(direct: string, proxied: string): object | undefined {
  if (direct === proxied) return undefined;
  const a = direct.split('\n');
  const b = proxied.split('\n');
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return {
    line: i + 1,
    direct: a[i],
    proxied: b[i],
    directLines: a.length,
    proxiedLines: b.length,
    directBytes: direct.length,
    proxiedBytes: proxied.length,
  };
}

/**
 * What kubectl logs (at -v=6) when a WebSocket upgrade is refused and it falls back to SPDY: the reason,
 * decoded from the refusal's body (`unable to upgrade streaming request: <Status message>`). The klog
 * prefix (time, pid, file:line) is dropped; the reason names no URL.
 */
export function fallbackReasons(stderr: string): string[] {
  return stderr
    .split('\n')
    .flatMap((l) => /^[IW]\d{4} [\d:.]+\s+\d+ fallback(?:_dialer)?\.go:\d+\] (.*)$/.exec(l)?.[1] ?? []);
}

/** kubectl's own error lines (`Error from server (...)`, `error: ...`), without -v logging around them. */
export function errorLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => /^(Error from server|error: )/.test(l));
}

// ---- Jaeger ----

export interface JaegerTag {
  key: string;
  type: string;
  value: unknown;
}

export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: { refType: 'CHILD_OF' | 'FOLLOWS_FROM'; traceID: string; spanID: string }[];
  startTime: number;
  duration: number;
  tags: JaegerTag[];
  processID: string;
}

export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string; tags: JaegerTag[] }>;
}

export function tagsOf(span: JaegerSpan): Record<string, unknown> {
  return Object.fromEntries(span.tags.map((t) => [t.key, t.value]));
}

export function serviceOf(trace: JaegerTrace, span: JaegerSpan): string | undefined {
  return trace.processes[span.processID]?.serviceName;
}

export function parentOf(span: JaegerSpan): { traceID: string; spanID: string } | undefined {
  return span.references.find((r) => r.refType === 'CHILD_OF');
}

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) {
    await res.arrayBuffer();
    return undefined;
  }
  return res.json();
}

/**
 * Polls Jaeger (`GET /api/traces/{id}`, the internal JSON) until `ready` says the trace is complete
 * (export is batched on both sides), or timeoutMs passes; then returns the last answer.
 */
export async function fetchTrace(
  jaegerUrl: string,
  traceId: string,
  ready: (t: JaegerTrace) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<JaegerTrace | undefined> {
  const deadline = Date.now() + timeoutMs;
  let last: JaegerTrace | undefined;
  for (;;) {
    const body = (await getJson(`${jaegerUrl}/api/traces/${traceId}`)) as { data?: JaegerTrace[] } | undefined;
    last = body?.data?.[0] ?? last;
    if ((last && ready(last)) || Date.now() > deadline) return last;
    await sleep(250);
  }
}

/** `GET /api/traces?...` (search), polled until `ready` or timeoutMs. */
export async function searchTraces(
  jaegerUrl: string,
  query: Record<string, string>,
  ready: (ts: JaegerTrace[]) => boolean = (ts) => ts.length > 0,
  timeoutMs = 15_000,
): Promise<JaegerTrace[]> {
  const url = `${jaegerUrl}/api/traces?${new URLSearchParams(query).toString()}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const body = (await getJson(url)) as { data?: JaegerTrace[] | null } | undefined;
    const traces = body?.data ?? [];
    if (ready(traces) || Date.now() > deadline) return traces;
    await sleep(250);
  }
}

/** The raw JSON of every kubetrail trace Jaeger holds, for the secrets scan. */
export async function allKubetrailTracesRaw(jaegerUrl: string): Promise<string> {
  const res = await fetch(`${jaegerUrl}/api/traces?service=kubetrail&limit=1000&lookback=1h`, {
    signal: AbortSignal.timeout(10_000),
  });
  return res.text();
}

export interface RequestSpan {
  span: JaegerSpan;
  tags: Record<string, unknown>;
  /** Child spans by name (auth, upstream, rbac, decode). */
  children: Map<string, JaegerSpan>;
}

export interface CommandTrace {
  trace: JaegerTrace;
  root: JaegerSpan;
  /** kubetrail's SERVER spans, in start order. */
  requests: RequestSpan[];
}

const STAGES = ['auth', 'upstream', 'rbac', 'decode'] as const;

/** kubetrail's spans in a trace (an admin trace also holds the apiserver's). */
export function kubetrailSpans(trace: JaegerTrace): JaegerSpan[] {
  return trace.spans.filter((s) => serviceOf(trace, s) === 'kubetrail');
}

function dumpTrace(trace: JaegerTrace | undefined): string {
  if (!trace) return '(no trace)';
  const byId = new Map(trace.spans.map((s) => [s.spanID, s]));
  return [...trace.spans]
    .sort((a, b) => a.startTime - b.startTime)
    .map((s) => {
      const p = parentOf(s);
      return `  ${serviceOf(trace, s)}: ${s.operationName} (parent: ${p ? (byId.get(p.spanID)?.operationName ?? `${p.traceID}/${p.spanID}`) : '-'})`;
    })
    .join('\n');
}

/**
 * Reads the command's trace from Jaeger and checks the telemetry contract's shape: one trace, service
 * `kubetrail`, a root span named after Kubectl-Command, the expected number of SERVER spans, all children
 * of the root, each with auth/upstream/rbac/decode children, and `kube.audit_id` = the trace id.
 */
export async function expectCommandTrace(
  jaegerUrl: string,
  traceId: string | undefined,
  expected: { command: string; requests: number | undefined },
): Promise<CommandTrace> {
  expect(traceId, 'kubetrail printed no trace id').toMatch(/^[0-9a-f]{32}$/);
  const id = traceId ?? '';
  const serverSpans = (t: JaegerTrace): JaegerSpan[] =>
    kubetrailSpans(t).filter((s) => tagsOf(s)['span.kind'] === 'server');
  const complete = (t: JaegerTrace): boolean =>
    expected.requests !== undefined &&
    serverSpans(t).length >= expected.requests &&
    kubetrailSpans(t).some((s) => parentOf(s) === undefined);
  const trace = await fetchTrace(jaegerUrl, id, complete);
  const where = `trace ${id}:\n${dumpTrace(trace)}`;
  expect(trace, `Jaeger has no trace ${id}`).toBeDefined();
  if (!trace) throw new Error('unreachable');

  const ours = kubetrailSpans(trace);
  expect(ours.length, `no kubetrail spans in ${where}`).toBeGreaterThan(0);
  expect(new Set(ours.map((s) => s.traceID)), where).toEqual(new Set([id]));
  for (const s of ours) expect(serviceOf(trace, s), where).toBe('kubetrail');

  const roots = ours.filter((s) => parentOf(s) === undefined);
  expect(
    roots.map((s) => s.operationName),
    `exactly one root span in ${where}`,
  ).toEqual([expected.command]);
  const root = roots[0] as JaegerSpan;

  const requests = serverSpans(trace).sort((a, b) => a.startTime - b.startTime);
  expect(requests.length, `SERVER spans (one per HTTP request) in ${where}`).toBe(expected.requests);
  const result: RequestSpan[] = [];
  for (const span of requests) {
    expect(parentOf(span)?.spanID, `${span.operationName} is not a child of the root in ${where}`).toBe(root.spanID);
    const tags = tagsOf(span);
    expect(tags['kube.audit_id'], `${span.operationName}: kube.audit_id`).toBe(id);
    const children = new Map(ours.filter((c) => parentOf(c)?.spanID === span.spanID).map((c) => [c.operationName, c]));
    // Soft: a missing stage is reported, and the caller's own checks still run.
    expect
      .soft([...children.keys()].sort(), `children of ${span.operationName} (${String(tags['url.path'])}) in ${where}`)
      .toEqual([...STAGES].sort());
    expect(
      children.get('upstream') && tagsOf(children.get('upstream') as JaegerSpan)['span.kind'],
      `${span.operationName}: upstream is a CLIENT span`,
    ).toBe('client');
    result.push({ span, tags, children });
  }
  return { trace, root, requests: result };
}

export function stageTags(r: RequestSpan, stage: (typeof STAGES)[number]): Record<string, unknown> {
  const s = r.children.get(stage);
  return s ? tagsOf(s) : {};
}

// ---- the stack's kubeconfig, and the apiserver as admin ----

interface KubeconfigFile {
  clusters: { name: string; cluster: { server: string; 'certificate-authority-data': string } }[];
  users: { name: string; user: { token?: string; 'client-certificate-data'?: string; 'client-key-data'?: string } }[];
}

function readKubeconfig(stack: Stack): KubeconfigFile {
  return parse(readFileSync(stack.kubeconfig, 'utf8')) as KubeconfigFile;
}

/**
 * Every secret in the stack's kubeconfig, in each form it could leak in: bearer tokens; client keys as
 * the kubeconfig's base64, as PEM, and as the PEM's base64 body (one line and wrapped lines).
 */
export function stackSecrets(stack: Stack): { name: string; value: string }[] {
  const out: { name: string; value: string }[] = [];
  for (const { name, user } of readKubeconfig(stack).users) {
    if (user.token) out.push({ name: `${name}'s token`, value: user.token });
    const keyB64 = user['client-key-data'];
    if (keyB64) {
      const pem = Buffer.from(keyB64, 'base64').toString('utf8');
      const body = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
      out.push({ name: `${name}'s client-key-data`, value: keyB64 });
      out.push({ name: `${name}'s key PEM body`, value: body });
      // Any 64-character line of the PEM is a long, key-specific substring.
      const line = pem.split('\n').find((l) => l.length >= 60 && !l.startsWith('-----'));
      if (line) out.push({ name: `${name}'s key PEM line`, value: line });
    }
  }
  return out;
}

// The admin client lives with the stack, so the demo can use it without vitest.
export { adminClient, type AdminClient } from './stack/stack.ts';
import type { AdminClient } from './stack/stack.ts';

async function must(
  p: Promise<{ status: number; body: string }>,
  what: string,
  ok: number[] = [200, 201],
): Promise<void> {
  const res = await p;
  if (!ok.includes(res.status)) throw new Error(`${what}: ${res.status} ${res.body}`);
}

export async function createNamespace(admin: AdminClient, name: string): Promise<void> {
  await must(
    admin.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } }),
    `create namespace ${name}`,
  );
}

export function podManifest(name: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, labels: { app: 'kubetrail-e2e' } },
    spec: { containers: [{ name: 'main', image: 'registry.k8s.io/pause:3.10' }] },
  };
}

/** Creates the pods with `concurrency` requests in flight (600 pods: well under a second). */
export async function createPods(
  admin: AdminClient,
  namespace: string,
  names: readonly string[],
  concurrency = 16,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const name = names[next++] as string;
      await must(
        admin.request('POST', `/api/v1/namespaces/${namespace}/pods`, podManifest(name)),
        `create pod ${namespace}/${name}`,
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, names.length) }, worker));
}

/**
 * There is no kubelet: pods stay Pending, and kubectl refuses to port-forward to a pod that is not
 * Running before sending any upgrade request. Setting status.phase (as a kubelet would) gets kubectl
 * past that check, so the request reaches the apiserver, which still has no node for the pod.
 */
export async function markRunning(admin: AdminClient, namespace: string, name: string): Promise<void> {
  await must(
    admin.request('PATCH', `/api/v1/namespaces/${namespace}/pods/${name}/status`, { status: { phase: 'Running' } }),
    `mark ${namespace}/${name} Running`,
  );
}

export async function createConfigMap(
  admin: AdminClient,
  namespace: string,
  name: string,
  data: Record<string, string>,
): Promise<void> {
  await must(
    admin.request('POST', `/api/v1/namespaces/${namespace}/configmaps`, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name },
      data,
    }),
    `create configmap ${namespace}/${name}`,
  );
}
