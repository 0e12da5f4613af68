/**
 * The real stack for end-to-end tests: etcd, Jaeger (memory storage) and kube-apiserver with tracing,
 * all on 127.0.0.1 and free ports, with per-run certificates and test users.
 *
 *   npm run stack -- up | down | env
 *
 * Tests import startStack() instead; see the Stack interface.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:https';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { createCA, issueCert, type KeyPairPem } from '../../../src/pki/certs.ts';
import { ensureBinaries, type ComponentName } from './build.ts';

/**
 * Test users, one kubeconfig context each. alice and tina may do what the bootstrap `edit` ClusterRole
 * allows, in every namespace; mallory and tom have no bindings and get real 403s. admin is in system:masters.
 */
export const USERS = {
  admin: { auth: 'cert', groups: ['system:masters'] },
  alice: { auth: 'cert', groups: [] },
  tina: { auth: 'token', groups: [] },
  mallory: { auth: 'cert', groups: [] },
  tom: { auth: 'token', groups: [] },
} as const;
export type UserName = keyof typeof USERS;
const EDITORS: UserName[] = ['alice', 'tina'];

export interface StackInfo {
  runDir: string;
  /** Mode 0600. Contexts are named after USERS; current-context is admin. */
  kubeconfig: string;
  /** CA of the apiserver's serving certificate (and of the client certificates). */
  caFile: string;
  apiserverUrl: string;
  /** gitVersion from /version. */
  apiserverVersion: string;
  etcdUrl: string;
  /** Jaeger query API base, e.g. `${jaegerUrl}/api/services`, `${jaegerUrl}/api/v3/traces/{id}`. */
  jaegerUrl: string;
  otlpHttpEndpoint: string;
  /** host:port, no scheme. */
  otlpGrpcEndpoint: string;
  /** KUBECONFIG, OTEL_EXPORTER_OTLP_ENDPOINT and JAEGER_URL. */
  env: Record<string, string>;
}

export interface Stack extends StackInfo {
  /** Stops every process (SIGTERM, then SIGKILL) and deletes the run directory. */
  stop(): Promise<void>;
}

export interface StackOptions {
  /** Default: a new directory under ${XDG_RUNTIME_DIR:-/tmp}. Must not exist or be empty of a live stack. */
  runDir?: string;
  /** Build cache; default ${KUBETRAIL_STACK_CACHE:-~/.cache/kubetrail-stack}. */
  cacheDir?: string;
  log?: (line: string) => void;
  /** Leave the processes running when this Node process exits (the CLI's `up`). */
  persist?: boolean;
}

interface Proc {
  name: ComponentName;
  pid: number;
  bin: string;
  log: string;
}

export interface State {
  info: StackInfo;
  procs: Proc[];
}

const HOST = '127.0.0.1';
const STATE_FILE = 'state.json';
/** Marks a directory as a stack's run dir, which a later run may delete. */
const MARKER = '.kubetrail-stack';

function runBase(): string {
  return process.env.XDG_RUNTIME_DIR ?? tmpdir();
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`[stack] ${line}\n`));
  const bins = await ensureBinaries({ cacheDir: opts.cacheDir, log });
  const runDir = opts.runDir ?? mkdtempSync(join(runBase(), 'kubetrail-stack-'));
  prepareRunDir(runDir);

  const procs: Proc[] = [];
  const killAll = (): void => procs.forEach((p) => signalGroup(p.pid, 'SIGKILL'));
  process.on('exit', killAll);
  const stop = async (): Promise<void> => {
    process.off('exit', killAll);
    for (const p of procs.toReversed()) await stopProc(p);
  };
  try {
    const file = (name: string, data: string): string => {
      const path = join(runDir, name);
      writeFileSync(path, data, { mode: 0o600 });
      return path;
    };
    const launch = <T>(name: ComponentName, setup: () => Promise<Launch<T>>): Promise<T> =>
      launchWithRetry(name, bins[name], runDir, procs, setup);

    // Jaeger first, so etcd and the apiserver can export their spans from the start.
    const jaeger = await launch('jaeger', async () => {
      const ports = await freePorts(['query', 'queryGrpc', 'otlpGrpc', 'otlpHttp']);
      const config = file('jaeger.yaml', stringify(jaegerConfig(ports)));
      const jaegerUrl = `http://${HOST}:${ports.query}`;
      return {
        args: ['--config', config],
        ready: async () =>
          (await tcpOpen(ports.otlpGrpc)) &&
          (await tcpOpen(ports.otlpHttp)) &&
          (await httpOk(`${jaegerUrl}/api/services`)),
        value: {
          jaegerUrl,
          otlpGrpcEndpoint: `${HOST}:${ports.otlpGrpc}`,
          otlpHttpEndpoint: `http://${HOST}:${ports.otlpHttp}`,
        },
      };
    });
    log(`jaeger ready: ${jaeger.jaegerUrl}`);

    const etcdUrl = await launch('etcd', async () => {
      const { client, peer } = await freePorts(['client', 'peer']);
      const clientUrl = `http://${HOST}:${client}`;
      const peerUrl = `http://${HOST}:${peer}`;
      return {
        args: [
          '--name=kubetrail',
          `--data-dir=${join(runDir, 'etcd-data')}`,
          `--listen-client-urls=${clientUrl}`,
          `--advertise-client-urls=${clientUrl}`,
          `--listen-peer-urls=${peerUrl}`,
          `--initial-advertise-peer-urls=${peerUrl}`,
          `--initial-cluster=kubetrail=${peerUrl}`,
          '--unsafe-no-fsync',
          '--experimental-enable-distributed-tracing',
          `--experimental-distributed-tracing-address=${jaeger.otlpGrpcEndpoint}`,
          '--experimental-distributed-tracing-service-name=etcd',
          '--experimental-distributed-tracing-sampling-rate=1000000',
        ],
        ready: () => httpOk(`${clientUrl}/health`),
        value: clientUrl,
      };
    });
    log(`etcd ready: ${etcdUrl}`);

    const ca = await createCA('kubetrail-e2e-ca');
    const caFile = file('ca.crt', ca.certPem);
    const serving = await issueCert(ca, {
      commonName: 'kube-apiserver',
      dnsNames: ['localhost'],
      ipAddresses: [HOST],
      usage: 'server',
    });
    const sa = generateKeyPairSync('ec', {
      namedCurve: 'prime256v1',
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' },
    });
    const creds = await userCredentials(ca);
    const tokens = Object.values(creds).flatMap((c) => ('token' in c ? [`${c.token},${c.name},${c.name}`] : []));
    const apiArgs = [
      `--etcd-servers=${etcdUrl}`,
      `--bind-address=${HOST}`,
      `--advertise-address=${HOST}`,
      `--tls-cert-file=${file('apiserver.crt', serving.certPem)}`,
      `--tls-private-key-file=${file('apiserver.key', serving.keyPem)}`,
      `--client-ca-file=${caFile}`,
      `--token-auth-file=${file('tokens.csv', tokens.join('\n') + '\n')}`,
      '--authorization-mode=RBAC',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-signing-key-file=${file('sa.key', sa.privateKey)}`,
      `--service-account-key-file=${file('sa.pub', sa.publicKey)}`,
      '--service-cluster-ip-range=10.0.0.0/24',
      '--endpoint-reconciler-type=none',
      // No controller-manager creates the default ServiceAccount.
      '--disable-admission-plugins=ServiceAccount',
      `--tracing-config-file=${file('tracing.yaml', stringify(tracingConfig(jaeger.otlpGrpcEndpoint)))}`,
      '--profiling=false',
    ];
    const apiserverUrl = await launch('kube-apiserver', async () => {
      const { port } = await freePorts(['port']);
      const url = `https://${HOST}:${port}`;
      return {
        args: [...apiArgs, `--secure-port=${port}`],
        ready: async () => (await api(url, ca.certPem, 'GET', '/readyz')).status === 200,
        value: url,
        timeoutMs: 120_000,
      };
    });
    const admin = creds.admin as CertCredentials;
    const asAdmin = (method: string, path: string, body?: unknown): Promise<ApiResponse> =>
      api(apiserverUrl, ca.certPem, method, path, body, admin);
    await bindEditors(asAdmin);
    const version = await asAdmin('GET', '/version');
    const apiserverVersion = (JSON.parse(version.body) as { gitVersion: string }).gitVersion;
    log(`kube-apiserver ready: ${apiserverUrl} (${apiserverVersion})`);

    const kubeconfig = file('kubeconfig', stringify(kubeconfigFor(apiserverUrl, ca.certPem, creds)));
    const info: StackInfo = {
      runDir,
      kubeconfig,
      caFile,
      apiserverUrl,
      apiserverVersion,
      etcdUrl,
      ...jaeger,
      env: { KUBECONFIG: kubeconfig, OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpHttpEndpoint, JAEGER_URL: jaeger.jaegerUrl },
    };
    file(STATE_FILE, JSON.stringify({ info, procs } satisfies State, null, 2));
    if (opts.persist) process.off('exit', killAll);
    return {
      ...info,
      stop: async () => {
        await stop();
        rmSync(runDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await stop();
    throw new Error(`stack: start failed (logs in ${runDir}): ${(err as Error).message}`, { cause: err });
  }
}

/** Stops the stack whose state file is in runDir (started by another process) and deletes runDir. */
export async function stopStack(runDir: string): Promise<boolean> {
  const state = readState(runDir);
  if (state === undefined) return false;
  for (const p of state.procs.toReversed()) await stopProc(p);
  rmSync(runDir, { recursive: true, force: true });
  return true;
}

export function readState(runDir: string): State | undefined {
  const path = join(runDir, STATE_FILE);
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as State) : undefined;
}

/** Makes runDir ready for a new stack: refuses a live one, clears what a previous run left. */
function prepareRunDir(runDir: string): void {
  if (readState(runDir)?.procs.some(isRunning)) {
    throw new Error(`stack: already running in ${runDir} (run \`npm run stack -- down\` first)`);
  }
  if (existsSync(runDir) && readdirSync(runDir).length > 0) {
    if (!existsSync(join(runDir, MARKER))) throw new Error(`stack: ${runDir} is not empty and not a stack's run dir`);
    rmSync(runDir, { recursive: true });
  }
  mkdirSync(runDir, { recursive: true, mode: 0o700 });
  writeFileSync(join(runDir, MARKER), '', { mode: 0o600 });
}

// ---- processes ----

interface Launch<T> {
  args: string[];
  ready: () => Promise<boolean>;
  value: T;
  timeoutMs?: number;
}

/** Starts a component; on a port clash (the ports are picked before the program binds them) tries new ones. */
async function launchWithRetry<T>(
  name: ComponentName,
  bin: string,
  runDir: string,
  procs: Proc[],
  setup: () => Promise<Launch<T>>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const { args, ready, value, timeoutMs = 30_000 } = await setup();
    const proc = spawnProc(name, bin, args, runDir);
    procs.push(proc);
    const started = Date.now();
    for (;;) {
      if (!isRunning(proc)) {
        procs.pop();
        const tail = logTail(proc.log);
        if (attempt < 3 && tail.includes('address already in use')) break;
        throw new Error(`${name} exited during start; ${proc.log} ends:\n${tail}`);
      }
      if (await ready().catch(() => false)) return value;
      if (Date.now() - started > timeoutMs) {
        throw new Error(`${name} not ready after ${timeoutMs / 1000}s; see ${proc.log}`);
      }
      await sleep(250);
    }
  }
}

function spawnProc(name: ComponentName, bin: string, args: string[], runDir: string): Proc {
  const log = join(runDir, `${name}.log`);
  const fd = openSync(log, 'a', 0o600);
  // A process group of its own, so stop() can signal the group and `up` can leave it running.
  const child = spawn(bin, args, { cwd: runDir, detached: true, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  child.on('error', () => undefined); // reported through isRunning() and the log
  child.unref();
  if (child.pid === undefined) throw new Error(`${name}: cannot start ${bin}`);
  return { name, pid: child.pid, bin, log };
}

/** True while the process is alive and is still the program we started (pids are reused). */
function isRunning(p: Proc): boolean {
  try {
    const stat = readFileSync(`/proc/${p.pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) Z/.test(stat) && readFileSync(`/proc/${p.pid}/cmdline`, 'utf8').split('\0')[0] === p.bin;
  } catch {
    return false;
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

async function stopProc(p: Proc): Promise<void> {
  if (!isRunning(p)) return;
  signalGroup(p.pid, 'SIGTERM');
  for (let i = 0; i < 100 && isRunning(p); i++) await sleep(100);
  signalGroup(p.pid, 'SIGKILL');
}

function logTail(path: string): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-10).join('\n');
  } catch {
    return '(no log)';
  }
}

// ---- ports and probes ----

/** Distinct free ports (held open together while picked); the program binds them a moment later. */
async function freePorts<K extends string>(names: readonly K[]): Promise<Record<K, number>> {
  const servers = await Promise.all(
    names.map(() => {
      const s = createServer();
      return new Promise<typeof s>((resolve, reject) => s.once('error', reject).listen(0, HOST, () => resolve(s)));
    }),
  );
  const ports = names.map((name, i) => [name, (servers[i]?.address() as AddressInfo).port]);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return Object.fromEntries(ports) as Record<K, number>;
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, HOST).setTimeout(1000);
    const done = (open: boolean): void => {
      socket.destroy();
      resolve(open);
    };
    socket.once('connect', () => done(true)).once('error', () => done(false)).once('timeout', () => done(false));
  });
}

async function httpOk(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  await res.arrayBuffer();
  return res.ok;
}

interface ApiResponse {
  status: number;
  body: string;
}

/** An HTTPS request to the apiserver, verified with our CA (never insecure), optionally as a cert user. */
function api(
  base: string,
  caPem: string,
  method: string,
  path: string,
  body?: unknown,
  user?: KeyPairPem,
): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const req = request(new URL(path, base), {
      method,
      ca: caPem,
      cert: user?.certPem,
      key: user?.keyPem,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      timeout: 5000,
    });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

// ---- users, RBAC, kubeconfig ----

type CertCredentials = KeyPairPem & { name: UserName };
type Credentials = CertCredentials | { name: UserName; token: string };

async function userCredentials(ca: KeyPairPem): Promise<Record<UserName, Credentials>> {
  const entries = await Promise.all(
    (Object.keys(USERS) as UserName[]).map(async (name): Promise<[UserName, Credentials]> => {
      const user = USERS[name];
      if (user.auth === 'token') return [name, { name, token: randomBytes(24).toString('hex') }];
      const cert = await issueCert(ca, { commonName: name, organizations: [...user.groups], usage: 'client' });
      return [name, { name, ...cert }];
    }),
  );
  return Object.fromEntries(entries) as Record<UserName, Credentials>;
}

/**
 * Grants the editors what the bootstrap `edit` ClusterRole grants. `edit` itself is an aggregated role
 * whose rules kube-controller-manager fills in; without it `edit` is empty, so bind its two sources.
 */
async function bindEditors(asAdmin: (method: string, path: string, body?: unknown) => Promise<ApiResponse>) {
  for (const role of ['system:aggregate-to-view', 'system:aggregate-to-edit']) {
    const name = `kubetrail-e2e-editors-${role.slice('system:aggregate-to-'.length)}`;
    const res = await asAdmin('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
      subjects: EDITORS.map((user) => ({ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: user })),
    });
    if (res.status !== 201) throw new Error(`kube-apiserver: creating ClusterRoleBinding ${name}: ${res.status} ${res.body}`);
  }
  // The apiserver creates the default namespace shortly after it is ready.
  for (let i = 0; (await asAdmin('GET', '/api/v1/namespaces/default')).status !== 200; i++) {
    if (i === 100) throw new Error('kube-apiserver: namespace default was not created');
    await sleep(100);
  }
}

function kubeconfigFor(server: string, caPem: string, creds: Record<UserName, Credentials>): object {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const cluster = 'kubetrail-e2e';
  const users = Object.values(creds);
  return {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: cluster, cluster: { server, 'certificate-authority-data': b64(caPem) } }],
    users: users.map((c) => ({
      name: c.name,
      user:
        'token' in c
          ? { token: c.token }
          : { 'client-certificate-data': b64(c.certPem), 'client-key-data': b64(c.keyPem) },
    })),
    contexts: users.map((c) => ({ name: c.name, context: { cluster, user: c.name } })),
    'current-context': 'admin',
  };
}

// ---- component configuration ----

function tracingConfig(otlpGrpc: string): object {
  return {
    apiVersion: 'apiserver.config.k8s.io/v1beta1',
    kind: 'TracingConfiguration',
    endpoint: otlpGrpc,
    samplingRatePerMillion: 1_000_000,
  };
}

/** Jaeger v2 is an OpenTelemetry Collector distribution: memory storage, OTLP in, query API, all on loopback. */
function jaegerConfig(ports: Record<'query' | 'queryGrpc' | 'otlpGrpc' | 'otlpHttp', number>): object {
  return {
    service: {
      extensions: ['jaeger_storage', 'jaeger_query'],
      pipelines: {
        traces: { receivers: ['otlp'], processors: ['batch'], exporters: ['jaeger_storage_exporter'] },
      },
      // No metrics endpoint (it would listen on :8888).
      telemetry: { metrics: { level: 'none' }, logs: { level: 'info' } },
    },
    extensions: {
      jaeger_storage: { backends: { memstore: { memory: { max_traces: 100_000 } } } },
      jaeger_query: {
        storage: { traces: 'memstore' },
        enable_tracing: false,
        http: { endpoint: `${HOST}:${ports.query}` },
        grpc: { endpoint: `${HOST}:${ports.queryGrpc}` },
      },
    },
    receivers: {
      otlp: {
        protocols: { grpc: { endpoint: `${HOST}:${ports.otlpGrpc}` }, http: { endpoint: `${HOST}:${ports.otlpHttp}` } },
      },
    },
    processors: { batch: {} },
    exporters: { jaeger_storage_exporter: { trace_storage: 'memstore' } },
  };
}

// ---- CLI ----

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

async function main(command: string | undefined): Promise<number> {
  const runDir = process.env.KUBETRAIL_STACK_DIR ?? join(runBase(), 'kubetrail-stack');
  switch (command) {
    case 'up': {
      const started = Date.now();
      process.on('SIGINT', () => process.exit(130)).on('SIGTERM', () => process.exit(143));
      const s = await startStack({ runDir, persist: true });
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      console.log(`stack up in ${secs}s (run dir ${runDir})
  export KUBECONFIG=${s.kubeconfig}   contexts: ${Object.keys(USERS).join(' ')} (current: admin)
  kube-apiserver  ${s.apiserverUrl}  ${s.apiserverVersion}
  Jaeger query    ${s.jaegerUrl}  (API: /api/services, /api/traces?service=apiserver)
  OTLP            HTTP ${s.otlpHttpEndpoint}  gRPC ${s.otlpGrpcEndpoint}
  eval "$(npm run -s stack -- env)"   sets KUBECONFIG, OTEL_EXPORTER_OTLP_ENDPOINT, JAEGER_URL
  npm run stack -- down               stops it`);
      return 0;
    }
    case 'down':
      console.error((await stopStack(runDir)) ? `stack in ${runDir} stopped` : `no stack in ${runDir}`);
      return 0;
    case 'env': {
      const state = readState(runDir);
      if (state === undefined) {
        console.error(`no stack in ${runDir} (run \`npm run stack -- up\`)`);
        return 1;
      }
      for (const [k, v] of Object.entries(state.info.env)) console.log(`export ${k}=${shellQuote(v)}`);
      return 0;
    }
    default:
      console.error('usage: npm run stack -- up | down | env   (run dir: $KUBETRAIL_STACK_DIR or ${XDG_RUNTIME_DIR:-/tmp}/kubetrail-stack)');
      return 2;
  }
}

if (import.meta.main) {
  try {
    process.exitCode = await main(process.argv[2]);
  } catch (err) {
    console.error((err as Error).message);
    process.exitCode = 1;
  }
}
