/**
 * The real stack for end-to-end tests: etcd, Jaeger (memory storage) and kube-apiserver with tracing,
 * all on 127.0.0.1 and free ports, with per-run certificates and test users. With nodes, also
 * kube-controller-manager, kube-scheduler and kwok, which simulates the nodes and their kubelets: pods
 * are scheduled and run, and logs/exec/attach/port-forward cross the apiserver to kwok's kubelet server.
 *
 *   npm run stack -- up [--nodes N] | down | env
 *
 * Tests import startStack() instead; see the Stack interface.
 */
import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { Agent, request } from 'node:https';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse, stringify } from 'yaml';
import { createCA, issueCert, type KeyPairPem } from '../../../src/pki/certs.ts';
import { ensureBinaries, moduleSourceDir, type Binaries, type ComponentName } from './build.ts';

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
  /**
   * The apiserver's audit log (JSON lines): the requests it proxies to a kubelet (pods' log, exec, attach,
   * portforward) at level Metadata, nothing else. Each event's `auditID` is what kubetrail's spans name.
   */
  auditLog: string;
  etcdUrl: string;
  /** Jaeger query API base, e.g. `${jaegerUrl}/api/services`, `${jaegerUrl}/api/v3/traces/{id}`. */
  jaegerUrl: string;
  otlpHttpEndpoint: string;
  /** host:port, no scheme. */
  otlpGrpcEndpoint: string;
  /** What `stack env` exports: see stackEnv. */
  env: Record<string, string>;
  /** Names of the simulated nodes, Ready; empty when the stack was started without nodes. */
  nodes: string[];
  /** Present with nodes: what every simulated container is made of (see kwokConfig). */
  container?: ContainerInfo;
}

export interface ContainerInfo {
  /** kwok's kubelet server (logs, exec, attach, port-forward), which the apiserver calls. */
  kubeletUrl: string;
  /** Every container's log in the CRI format: `logs` reads it, `attach` follows what is appended. */
  logFile: string;
  /** What the log file holds at start (`resetContainerLog` writes it back). */
  initialLog: string;
  /**
   * `exec` runs its command on this machine, in this directory (as nobody when the stack runs as root),
   * so `kubectl cp` reads and writes real files here: the simulated containers share one filesystem.
   */
  rootDir: string;
  /**
   * First on the PATH of every exec'd command: a `tar` that ends an extraction at the end of the archive
   * (see containerTar), so `kubectl cp` to a pod finishes although kwok never closes the command's stdin.
   */
  binDir: string;
}

/**
 * What `npm run stack -- env` exports for a shell: kubectl's KUBECONFIG, the collector (read by kubetrail
 * as by any OpenTelemetry SDK), KUBETRAIL_JAEGER_URL so kubetrail's trace links point at this Jaeger, and
 * JAEGER_URL for the `curl "$JAEGER_URL/api/traces/<id>"` of the docs. Computed from the stack's addresses,
 * so a stack started by an older version gets the same.
 */
export function stackEnv(
  info: Pick<StackInfo, 'kubeconfig' | 'otlpHttpEndpoint' | 'jaegerUrl'>,
): Record<string, string> {
  return {
    KUBECONFIG: info.kubeconfig,
    OTEL_EXPORTER_OTLP_ENDPOINT: info.otlpHttpEndpoint,
    KUBETRAIL_JAEGER_URL: info.jaegerUrl,
    JAEGER_URL: info.jaegerUrl,
  };
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
  /**
   * Simulated nodes. With one or more, kube-controller-manager, kube-scheduler and kwok run too; with 0
   * (the default) none of them do: pods stay Pending and logs/exec answer "does not have a host assigned".
   */
  nodes?: number;
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
const BASE_COMPONENTS: ComponentName[] = ['jaeger', 'etcd', 'kube-apiserver'];
const NODE_COMPONENTS: ComponentName[] = ['kube-controller-manager', 'kube-scheduler', 'kwok'];
/** What a simulated node offers: small, so a few hundred small pods fill them and a big one cannot fit. */
export const NODE_CAPACITY = { cpu: '2', memory: '4Gi', pods: '110' } as const;
/** The user `exec` runs commands as when the stack runs as root: nobody, not root. */
const CONTAINER_UID = 65534;
const STATE_FILE = 'state.json';
/** Marks a directory as a stack's run dir, which a later run may delete. */
const MARKER = '.kubetrail-stack';

function runBase(): string {
  return process.env.XDG_RUNTIME_DIR ?? tmpdir();
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`[stack] ${line}\n`));
  const nodes = opts.nodes ?? 0;
  if (!Number.isInteger(nodes) || nodes < 0) throw new Error(`stack: nodes must be a whole number ≥ 0, not ${nodes}`);
  const components = nodes > 0 ? [...BASE_COMPONENTS, ...NODE_COMPONENTS] : BASE_COMPONENTS;
  const bins = await ensureBinaries({ cacheDir: opts.cacheDir, log, components });
  const runDir = opts.runDir ?? mkdtempSync(join(runBase(), 'kubetrail-stack-'));
  prepareRunDir(runDir);

  const procs: Proc[] = [];
  let containerDirs: ContainerDirs | undefined;
  const killAll = (): void => procs.forEach((p) => signalGroup(p.pid, 'SIGKILL'));
  process.on('exit', killAll);
  const stop = async (): Promise<void> => {
    process.off('exit', killAll);
    for (const p of procs.toReversed()) await stopProc(p);
    if (containerDirs !== undefined) removeContainerDirs(containerDirs);
  };
  try {
    const file = (name: string, data: string): string => {
      const path = join(runDir, name);
      writeFileSync(path, data, { mode: 0o600 });
      return path;
    };
    const launch = <T>(name: ComponentName, setup: () => Promise<Launch<T>>): Promise<T> =>
      launchWithRetry(name, binary(bins, name), runDir, procs, setup);

    // The certificates are made while Jaeger and etcd start (WebCrypto works off the main thread).
    const pkiMade = makePki();
    pkiMade.catch(() => undefined); // awaited below; a failure there is reported there
    // Jaeger and etcd start together: etcd exports its spans to Jaeger's OTLP port, which it retries until
    // Jaeger listens. Their first ports are picked in one go, so they cannot pick the same one.
    const first = await freePorts(['query', 'queryGrpc', 'otlpGrpc', 'otlpHttp', 'etcdClient', 'etcdPeer']);
    const firstTry = <T>(ports: T): (() => T | undefined) => {
      let unused: T | undefined = ports;
      return () => {
        const p = unused;
        unused = undefined;
        return p;
      };
    };
    const jaegerPorts = firstTry({
      query: first.query,
      queryGrpc: first.queryGrpc,
      otlpGrpc: first.otlpGrpc,
      otlpHttp: first.otlpHttp,
    });
    const etcdPorts = firstTry({ client: first.etcdClient, peer: first.etcdPeer });
    const otlpGrpcEndpoint = `${HOST}:${first.otlpGrpc}`;
    const jaegerStarted = launch('jaeger', async () => {
      const ports = jaegerPorts() ?? (await freePorts(['query', 'queryGrpc', 'otlpGrpc', 'otlpHttp']));
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
    const etcdStarted = launch('etcd', async () => {
      const { client, peer } = etcdPorts() ?? (await freePorts(['client', 'peer']));
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
          // Jaeger's first port: should Jaeger have to start again on others (a port taken meanwhile), only
          // etcd's spans are lost.
          `--experimental-distributed-tracing-address=${otlpGrpcEndpoint}`,
          '--experimental-distributed-tracing-service-name=etcd',
          '--experimental-distributed-tracing-sampling-rate=1000000',
        ],
        ready: () => httpOk(`${clientUrl}/health`),
        value: clientUrl,
      };
    });
    const [jaeger, etcdUrl] = await allStarted([jaegerStarted, etcdStarted] as const);
    log(`jaeger ready: ${jaeger.jaegerUrl}`);
    log(`etcd ready: ${etcdUrl}`);

    const { ca, serving, sa, creds, kubeletClient } = await pkiMade;
    const caFile = file('ca.crt', ca.certPem);
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
      // Without nodes no controller-manager creates the default ServiceAccount; with them a pod created
      // just after its namespace would race it. Pods need no ServiceAccount token under kwok.
      '--disable-admission-plugins=ServiceAccount',
      // logs/exec/attach/port-forward: the apiserver dials the node's InternalIP (kwok's server) and
      // verifies its certificate, which the apiserver's default would not.
      `--kubelet-certificate-authority=${caFile}`,
      `--kubelet-client-certificate=${file('kubelet-client.crt', kubeletClient.certPem)}`,
      `--kubelet-client-key=${file('kubelet-client.key', kubeletClient.keyPem)}`,
      '--kubelet-preferred-address-types=InternalIP',
      `--tracing-config-file=${file('tracing.yaml', stringify(tracingConfig(jaeger.otlpGrpcEndpoint)))}`,
      `--audit-policy-file=${file('audit-policy.yaml', stringify(AUDIT_POLICY))}`,
      `--audit-log-path=${join(runDir, 'audit.log')}`,
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

    const kubeconfig = file(
      'kubeconfig',
      stringify(kubeconfigFor(apiserverUrl, ca.certPem, Object.values(creds), 'admin')),
    );

    let container: ContainerInfo | undefined;
    let nodeNames: string[] = [];
    if (nodes > 0) {
      containerDirs = makeContainerDirs();
      const started = Date.now();
      const cluster = await startNodeComponents({
        nodes,
        launch,
        file,
        ca,
        serving,
        caFile,
        apiserverUrl,
        saKeyFile: join(runDir, 'sa.key'),
        otlpGrpcEndpoint: jaeger.otlpGrpcEndpoint,
        kwokSource: moduleSourceDir('kwok', opts.cacheDir),
        containerDirs,
        asAdmin,
      });
      container = cluster.container;
      nodeNames = cluster.nodes;
      log(
        `controller-manager, scheduler and kwok ready, ${nodes} node(s) Ready in ${((Date.now() - started) / 1000).toFixed(1)}s`,
      );
    }

    const info: StackInfo = {
      runDir,
      kubeconfig,
      caFile,
      apiserverUrl,
      apiserverVersion,
      auditLog: join(runDir, 'audit.log'),
      etcdUrl,
      ...jaeger,
      env: stackEnv({ kubeconfig, ...jaeger }),
      nodes: nodeNames,
      ...(container ? { container } : {}),
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
  if (state.info.container) removeContainerDirs(state.info.container);
  rmSync(runDir, { recursive: true, force: true });
  return true;
}

/** True when every process of the stack in runDir is alive. */
export function isStackRunning(state: State): boolean {
  return state.procs.length > 0 && state.procs.every(isRunning);
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

// ---- controller-manager, scheduler and kwok's nodes ----

type AsAdmin = (method: string, path: string, body?: unknown) => Promise<ApiResponse>;

interface NodeComponentsSetup {
  nodes: number;
  launch: <T>(name: ComponentName, setup: () => Promise<Launch<T>>) => Promise<T>;
  file: (name: string, data: string) => string;
  ca: KeyPairPem;
  /** The serving certificate for 127.0.0.1 the apiserver uses; the controller-manager and scheduler share it. */
  serving: KeyPairPem;
  caFile: string;
  apiserverUrl: string;
  saKeyFile: string;
  otlpGrpcEndpoint: string;
  /** kwok's module source, for its stock Stage definitions. */
  kwokSource: string;
  containerDirs: ContainerDirs;
  asAdmin: AsAdmin;
}

/**
 * Starts kube-controller-manager, kube-scheduler and kwok together (each needs only the apiserver), then
 * registers the nodes and waits until kwok has made them Ready.
 */
async function startNodeComponents(o: NodeComponentsSetup): Promise<{ nodes: string[]; container: ContainerInfo }> {
  const servingArgs = [
    `--bind-address=${HOST}`,
    `--tls-cert-file=${o.file('serving.crt', o.serving.certPem)}`,
    `--tls-private-key-file=${o.file('serving.key', o.serving.keyPem)}`,
  ];
  // Each runs as the user the bootstrap RBAC policy grants its component's rights to.
  const kubeconfigAs = async (component: string, user: string, groups: string[] = []): Promise<string> => {
    const cert = await issueCert(o.ca, { commonName: user, organizations: groups, usage: 'client' });
    const config = kubeconfigFor(o.apiserverUrl, o.ca.certPem, [{ name: user, ...cert }], user);
    return o.file(`${component}.kubeconfig`, stringify(config));
  };
  const healthy = (url: string, path: string) => async () => (await api(url, o.ca.certPem, 'GET', path)).status === 200;

  const controllerManager = o.launch('kube-controller-manager', async () => {
    const { port } = await freePorts(['port']);
    const url = `https://${HOST}:${port}`;
    return {
      args: [
        `--kubeconfig=${await kubeconfigAs('kube-controller-manager', 'system:kube-controller-manager')}`,
        ...servingArgs,
        `--secure-port=${port}`,
        '--leader-elect=false',
        // Each controller with its own ServiceAccount's token, as kubeadm runs it.
        '--use-service-account-credentials=true',
        `--service-account-private-key-file=${o.saKeyFile}`,
        `--root-ca-file=${o.caFile}`,
        // A Deployment of a few hundred pods is made in seconds, not at the default 20 requests/s.
        '--kube-api-qps=200',
        '--kube-api-burst=400',
        '--profiling=false',
      ],
      ready: healthy(url, '/healthz'),
      value: url,
      timeoutMs: 60_000,
    };
  });
  const scheduler = o.launch('kube-scheduler', async () => {
    const { port } = await freePorts(['port']);
    const url = `https://${HOST}:${port}`;
    return {
      args: [
        `--kubeconfig=${await kubeconfigAs('kube-scheduler', 'system:kube-scheduler')}`,
        ...servingArgs,
        `--secure-port=${port}`,
        '--leader-elect=false',
        '--profiling=false',
      ],
      ready: healthy(url, '/readyz'),
      value: url,
      timeoutMs: 60_000,
    };
  });

  const logFile = o.file('container.log', CONTAINER_LOG);
  const kwokKubeconfig = await kubeconfigAs('kwok', 'kwok', ['system:masters']);
  const kubeletServing = await issueCert(o.ca, { commonName: 'kwok-kubelet', ipAddresses: [HOST], usage: 'server' });
  const kwokConfigFile = o.file(
    'kwok.yaml',
    kwokConfig({
      kwokSource: o.kwokSource,
      logFile,
      rootDir: o.containerDirs.rootDir,
      httpScript: o.file('pod-http.sh', POD_HTTP_SCRIPT),
    }),
  );
  const kwok = o.launch('kwok', async () => {
    const { port } = await freePorts(['port']);
    const url = `https://${HOST}:${port}`;
    return {
      args: [
        `--kubeconfig=${kwokKubeconfig}`,
        `--config=${kwokConfigFile}`,
        '--manage-all-nodes=false',
        `--manage-nodes-with-annotation-selector=${KWOK_NODE_ANNOTATION}=fake`,
        // Every node's kubelet is this one server; the apiserver finds it at InternalIP:kubeletEndpoint.
        `--node-ip=${HOST}`,
        `--node-port=${port}`,
        `--server-address=${HOST}:${port}`,
        `--tls-cert-file=${o.file('kwok-kubelet.crt', kubeletServing.certPem)}`,
        `--tls-private-key-file=${o.file('kwok-kubelet.key', kubeletServing.keyPem)}`,
        '--node-lease-duration-seconds=40',
        `--tracing-endpoint=${o.otlpGrpcEndpoint}`,
        '--tracing-sampling-rate-per-million=1000000',
      ],
      // HOME: kwok reads ~/.kwok/kwok.yaml when it exists; exec'd commands inherit this environment.
      // PATH: kwok looks up an exec'd command on its own PATH, so the container's tar comes first.
      env: { PATH: `${o.containerDirs.binDir}:${process.env.PATH ?? '/usr/bin:/bin'}`, HOME: o.containerDirs.rootDir },
      ready: healthy(url, '/healthz'),
      value: url,
    };
  });
  const [, , kubeletUrl] = await allStarted([controllerManager, scheduler, kwok] as const);

  const names = Array.from({ length: o.nodes }, (_, i) => `kwok-node-${i}`);
  for (const name of names) {
    const res = await o.asAdmin('POST', '/api/v1/nodes', nodeManifest(name));
    if (res.status !== 201) throw new Error(`creating node ${name}: ${res.status} ${res.body}`);
  }
  await waitFor(`${o.nodes} node(s) Ready`, 30_000, async () => {
    const list = JSON.parse((await o.asAdmin('GET', '/api/v1/nodes')).body) as { items?: NodeStatusView[] };
    return (list.items ?? []).filter(isNodeReady).length >= o.nodes;
  });
  return {
    nodes: names,
    container: { kubeletUrl, logFile, initialLog: CONTAINER_LOG, ...o.containerDirs },
  };
}

const KWOK_NODE_ANNOTATION = 'kwok.x-k8s.io/node';

function nodeManifest(name: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      annotations: { [KWOK_NODE_ANNOTATION]: 'fake', 'node.alpha.kubernetes.io/ttl': '0' },
      labels: {
        'kubernetes.io/hostname': name,
        'kubernetes.io/os': 'linux',
        'kubernetes.io/arch': 'amd64',
        type: 'kwok',
      },
    },
    // A Node's status may be set on create (a kubelet registers that way); kwok keeps what is here.
    status: { capacity: NODE_CAPACITY, allocatable: NODE_CAPACITY },
  };
}

interface NodeStatusView {
  status?: { conditions?: { type: string; status: string }[] };
}

function isNodeReady(node: NodeStatusView): boolean {
  return node.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

async function waitFor(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`${what}: not after ${timeoutMs / 1000}s`);
    await sleep(100);
  }
}

/** What every simulated container has logged, in the CRI log format kwok reads (fixed times: stable output). */
const CONTAINER_LOG = [
  '2026-01-01T00:00:00.000000000Z stdout F starting web server (simulated by kwok)',
  '2026-01-01T00:00:00.500000000Z stdout F listening on :8080',
  '2026-01-01T00:00:01.000000000Z stderr F warning: no database configured, serving from memory',
  '2026-01-01T00:00:02.000000000Z stdout F GET /healthz 200 1ms',
  '',
].join('\n');

/** Writes the containers' log back to what it held at start, so appended lines (attach, logs -f) are gone. */
export function resetContainerLog(container: ContainerInfo): void {
  writeFileSync(container.logFile, container.initialLog);
}

/** What each simulated pod serves on every port (kwok runs it per forwarded connection, stdin/stdout = the stream). */
const POD_HTTP_SCRIPT = `# Answers one HTTP request read from stdin on stdout.
cr=$(printf '\\r')
while IFS= read -r line; do [ "\${line%"$cr"}" = "" ] && break; done
body='hello from a kwok pod'
printf 'HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n%s\\n' $((\${#body} + 1)) "$body"
`;

type ContainerDirs = Pick<ContainerInfo, 'rootDir' | 'binDir'>;

/**
 * exec runs commands on this machine: give them a directory of their own, owned by the user they run as
 * (nobody, when we are root: then every directory above it must let others through, as /tmp does), and
 * a directory of programs that come first on their PATH, which they may run but not change.
 */
function makeContainerDirs(): ContainerDirs {
  const asRoot = process.getuid?.() === 0;
  const base = !asRoot || othersMayTraverse(tmpdir()) ? tmpdir() : '/tmp';
  const rootDir = mkdtempSync(join(base, 'kubetrail-container-'));
  if (asRoot) chownSync(rootDir, CONTAINER_UID, CONTAINER_UID);
  const binDir = mkdtempSync(join(base, 'kubetrail-container-bin-'));
  chmodSync(binDir, 0o755);
  writeFileSync(join(binDir, 'tar'), containerTar(realTar()), { mode: 0o755 });
  return { rootDir, binDir };
}

function removeContainerDirs(dirs: ContainerDirs): void {
  for (const dir of [dirs.rootDir, dirs.binDir]) rmSync(dir, { recursive: true, force: true });
}

/** The machine's tar: the first on PATH. */
function realTar(): string {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const path = join(dir || '.', 'tar');
    if (existsSync(path) && (statSync(path).mode & 0o111) !== 0) return resolve(path);
  }
  throw new Error('stack: no tar on PATH (kubectl cp runs it in the simulated containers)');
}

/**
 * The containers' `tar`. kwok v0.8.0 copies an exec's stdin to the command through a pipe it never closes
 * (pkg/utils/exec: `io.Copy(inPipe, in)` without a Close), and GNU tar reading an archive from a pipe reads
 * it to its end even after the end-of-archive blocks, so the `tar -xmf -` of `kubectl cp` to a pod would
 * wait forever. This one passes every other use to the machine's tar as it is; for an extraction from
 * stdin it hands tar the archive up to its end-of-archive block and then closes tar's stdin.
 */
function containerTar(tar: string): string {
  return `#!${process.execPath}
// Made by kubetrail's e2e stack (test/e2e/stack/stack.ts, containerTar): see there why.
import { spawn } from 'node:child_process';
const args = process.argv.slice(2);
const fromStdin = /^-?[A-Za-z]*x[A-Za-z]*f$/.test(args[0] ?? '') && args[1] === '-';
const tar = spawn(${JSON.stringify(tar)}, args, { argv0: 'tar', stdio: [fromStdin ? 'pipe' : 'inherit', 'inherit', 'inherit'] });
tar.on('exit', (code, signal) => process.exit(code ?? 128));
if (fromStdin) {
  tar.stdin.on('error', () => undefined);
  let header = Buffer.alloc(0); // the next entry's 512-byte header, as it arrives
  let body = 0; // bytes of the current entry's data (padded to 512) still to pass on
  const endOfArchive = () => {
    tar.stdin.end(Buffer.alloc(1024));
    process.stdin.destroy();
  };
  process.stdin.on('data', (chunk) => {
    while (chunk.length > 0) {
      if (body > 0) {
        const n = Math.min(body, chunk.length);
        tar.stdin.write(chunk.subarray(0, n));
        body -= n;
        chunk = chunk.subarray(n);
        continue;
      }
      const n = Math.min(512 - header.length, chunk.length);
      header = Buffer.concat([header, chunk.subarray(0, n)]);
      chunk = chunk.subarray(n);
      if (header.length < 512) continue;
      if (header.every((b) => b === 0)) return endOfArchive();
      body = Math.ceil(entrySize(header) / 512) * 512;
      tar.stdin.write(header);
      header = Buffer.alloc(0);
    }
  });
  process.stdin.on('end', () => tar.stdin.end());
}
/** The size field: octal text, or base-256 when its first byte has the high bit set. */
function entrySize(h) {
  const field = h.subarray(124, 136);
  if (field[0] & 0x80) return field.subarray(1).reduce((n, b) => n * 256 + b, field[0] & 0x7f);
  return parseInt(field.toString('latin1').replace(/[\0 ]/g, '') || '0', 8);
}
`;
}

function othersMayTraverse(dir: string): boolean {
  for (let d = resolve(dir); ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return false;
    if (d === dirname(d)) return true;
  }
}

/**
 * kwok's configuration: its stock Stages (node initialise + lease heartbeat, pod ready/complete/delete:
 * the set kwokctl uses) read from the pinned module's source, and one rule each for every pod's logs,
 * attach, exec and port-forward.
 */
function kwokConfig(o: { kwokSource: string; logFile: string; rootDir: string; httpScript: string }): string {
  const stages = [
    'node/fast/node-initialize.yaml',
    'node/heartbeat-with-lease/node-heartbeat-with-lease.yaml',
    'pod/fast/pod-ready.yaml',
    'pod/fast/pod-complete.yaml',
    'pod/fast/pod-delete.yaml',
  ].map((f) => readFileSync(join(o.kwokSource, 'kustomize', 'stage', f), 'utf8'));
  const rule = (kind: string, spec: object): string =>
    stringify({ apiVersion: 'kwok.x-k8s.io/v1alpha1', kind, metadata: { name: 'kubetrail-e2e' }, spec });
  const asNobody =
    process.getuid?.() === 0 ? { securityContext: { runAsUser: CONTAINER_UID, runAsGroup: CONTAINER_UID } } : {};
  return [
    // No KwokConfiguration: one given here replaces kwok's defaults field by field (parallelism 0, no
    // debugging handlers = no logs/exec), and the flags below say the rest.
    ...stages,
    rule('ClusterLogs', { logs: [{ logsFile: o.logFile }] }),
    rule('ClusterAttach', { attaches: [{ logsFile: o.logFile }] }),
    rule('ClusterExec', {
      execs: [{ local: { workDir: o.rootDir, envs: [{ name: 'HOME', value: o.rootDir }], ...asNobody } }],
    }),
    rule('ClusterPortForward', { forwards: [{ command: ['/bin/sh', o.httpScript] }] }),
  ]
    .map((doc) => doc.trim())
    .join('\n---\n');
}

function binary(bins: Binaries, name: ComponentName): string {
  const bin = bins[name];
  if (bin === undefined) throw new Error(`stack: ${name} was not built`);
  return bin;
}

// ---- processes ----

/**
 * Waits for components started together. A failure is reported only once all of them have stopped
 * starting, so stop() finds every process.
 */
async function allStarted<T extends readonly unknown[]>(starting: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(starting);
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/**
 * The stack's certificates and keys: its CA, the serving certificate for 127.0.0.1 (the apiserver's; the
 * controller-manager and scheduler share it), the ServiceAccount signing key, the users' credentials, and
 * the apiserver's client certificate for kubelets (kwok's server).
 */
async function makePki() {
  const ca = await createCA('kubetrail-e2e-ca');
  const [serving, creds, kubeletClient] = await Promise.all([
    issueCert(ca, { commonName: 'kube-apiserver', dnsNames: ['localhost'], ipAddresses: [HOST], usage: 'server' }),
    userCredentials(ca),
    issueCert(ca, { commonName: 'kube-apiserver-kubelet-client', usage: 'client' }),
  ]);
  const sa = generateKeyPairSync('ec', {
    namedCurve: 'prime256v1',
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return { ca, serving, sa, creds, kubeletClient };
}

interface Launch<T> {
  args: string[];
  /** The whole environment; default: this process's. */
  env?: Record<string, string>;
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
    const { args, env, ready, value, timeoutMs = 30_000 } = await setup();
    const proc = spawnProc(name, bin, args, runDir, env);
    procs.push(proc);
    const started = Date.now();
    for (;;) {
      if (!isRunning(proc)) {
        // Not pop(): components start side by side, so another may have been added since.
        procs.splice(procs.indexOf(proc), 1);
        const tail = logTail(proc.log);
        if (attempt < 3 && tail.includes('address already in use')) break;
        throw new Error(`${name} exited during start; ${proc.log} ends:\n${tail}`);
      }
      if (await ready().catch(() => false)) return value;
      if (Date.now() - started > timeoutMs) {
        throw new Error(`${name} not ready after ${timeoutMs / 1000}s; see ${proc.log}`);
      }
      await sleep(100);
    }
  }
}

function spawnProc(
  name: ComponentName,
  bin: string,
  args: string[],
  runDir: string,
  env?: Record<string, string>,
): Proc {
  const log = join(runDir, `${name}.log`);
  const fd = openSync(log, 'a', 0o600);
  // A process group of its own, so stop() can signal the group and `up` can leave it running.
  const child = spawn(bin, args, { cwd: runDir, env: env ?? process.env, detached: true, stdio: ['ignore', fd, fd] });
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
    socket
      .once('connect', () => done(true))
      .once('error', () => done(false))
      .once('timeout', () => done(false));
  });
}

async function httpOk(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
  await res.arrayBuffer();
  return res.ok;
}

export interface ApiResponse {
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

export interface AdminClient {
  request(method: string, path: string, body?: unknown): Promise<ApiResponse>;
  close(): void;
}

/**
 * HTTPS straight to the apiserver as admin (system:masters), verified against the stack's CA, with
 * keep-alive connections (up to maxSockets): for setting up cluster state in tests, scenarios and the demo.
 * PATCH bodies are merge patches.
 */
export function adminClient(info: Pick<StackInfo, 'kubeconfig'>, maxSockets = 16): AdminClient {
  interface Kubeconfig {
    clusters: { cluster: { server: string; 'certificate-authority-data': string } }[];
    users: { name: string; user: { 'client-certificate-data'?: string; 'client-key-data'?: string } }[];
  }
  const kc = parse(readFileSync(info.kubeconfig, 'utf8')) as Kubeconfig;
  const admin = kc.users.find((u) => u.name === 'admin')?.user;
  const cluster = kc.clusters[0]?.cluster;
  if (!admin?.['client-certificate-data'] || !admin['client-key-data'] || !cluster)
    throw new Error(`${info.kubeconfig}: no admin certificate`);
  const b64 = (s: string): string => Buffer.from(s, 'base64').toString('utf8');
  const agent = new Agent({
    keepAlive: true,
    maxSockets,
    ca: b64(cluster['certificate-authority-data']),
    cert: b64(admin['client-certificate-data']),
    key: b64(admin['client-key-data']),
  });
  return {
    request: (method, path, body) =>
      new Promise((resolve, reject) => {
        const req = request(new URL(path, cluster.server), {
          method,
          agent,
          headers:
            body === undefined
              ? {}
              : { 'content-type': method === 'PATCH' ? 'application/merge-patch+json' : 'application/json' },
          timeout: 10_000,
        });
        req.on('response', (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        });
        req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
        req.on('error', reject);
        req.end(body === undefined ? undefined : JSON.stringify(body));
      }),
    close: () => agent.destroy(),
  };
}

// ---- users, RBAC, kubeconfig ----

type CertCredentials = KeyPairPem & { name: string };
type Credentials = CertCredentials | { name: string; token: string };

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
    if (res.status !== 201)
      throw new Error(`kube-apiserver: creating ClusterRoleBinding ${name}: ${res.status} ${res.body}`);
  }
  // The apiserver creates the default namespace shortly after it is ready.
  for (let i = 0; (await asAdmin('GET', '/api/v1/namespaces/default')).status !== 200; i++) {
    if (i === 100) throw new Error('kube-apiserver: namespace default was not created');
    await sleep(100);
  }
}

function kubeconfigFor(server: string, caPem: string, users: Credentials[], current: string): object {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  const cluster = 'kubetrail-e2e';
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
    'current-context': current,
  };
}

// ---- component configuration ----

/** What the apiserver's audit log records: the requests it proxies to a kubelet, at level Metadata. */
const AUDIT_POLICY = {
  apiVersion: 'audit.k8s.io/v1',
  kind: 'Policy',
  omitStages: ['RequestReceived'],
  rules: [
    {
      level: 'Metadata',
      resources: [{ group: '', resources: ['pods/log', 'pods/exec', 'pods/attach', 'pods/portforward'] }],
    },
    { level: 'None' },
  ],
};

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

/** The endpoints of a stack, as `up` prints them. */
function describe(s: StackInfo): string {
  const lines = [
    `  export KUBECONFIG=${s.kubeconfig}   contexts: ${Object.keys(USERS).join(' ')} (current: admin)`,
    `  kube-apiserver  ${s.apiserverUrl}  ${s.apiserverVersion}`,
    ...(s.container
      ? [
          `  nodes           ${s.nodes.join(' ')} (kwok; kubelet server ${s.container.kubeletUrl})`,
          `  containers      log ${s.container.logFile}, exec runs on this machine in ${s.container.rootDir}`,
        ]
      : ['  nodes           none: pods stay Pending (started with --nodes 0)']),
    `  Jaeger query    ${s.jaegerUrl}  (API: /api/services, /api/traces?service=apiserver)`,
    `  OTLP            HTTP ${s.otlpHttpEndpoint}  gRPC ${s.otlpGrpcEndpoint}`,
    `  eval "$(npm run -s stack -- env)"   sets KUBECONFIG, OTEL_EXPORTER_OTLP_ENDPOINT, KUBETRAIL_JAEGER_URL, JAEGER_URL`,
    `  npm run stack -- down               stops it`,
  ];
  return lines.join('\n');
}

const UP_NODES = 3;
const USAGE =
  'usage: npm run stack -- up [--nodes N] | down | env   (N default 3, 0 for no nodes; run dir: $KUBETRAIL_STACK_DIR or ${XDG_RUNTIME_DIR:-/tmp}/kubetrail-stack)';

/**
 * `up`'s only option: --nodes N (or --nodes=N), a whole number ≥ 0. Three by default: what a person
 * starts the stack for (the demo's story, logs and exec) needs them; tests start what they need through
 * startStack(), whose default is none.
 */
export function parseUpArgs(args: string[]): { nodes: number } {
  let nodes = UP_NODES;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] ?? '';
    const [flag, inline] = arg.split(/=(.*)/s, 2);
    if (flag !== '--nodes') throw new Error(`stack up: unknown argument ${arg}\n${USAGE}`);
    const value = inline ?? args[++i];
    if (value === undefined || !/^\d+$/.test(value))
      throw new Error(`stack up: --nodes needs a whole number ≥ 0, not ${value ?? 'nothing'}`);
    nodes = Number(value);
  }
  return { nodes };
}

async function main(command: string | undefined, args: string[]): Promise<number> {
  const runDir = process.env.KUBETRAIL_STACK_DIR ?? join(runBase(), 'kubetrail-stack');
  switch (command) {
    case 'up': {
      const { nodes } = parseUpArgs(args);
      const running = readState(runDir);
      if (running !== undefined && isStackRunning(running)) {
        const n = running.info.nodes.length;
        const note = n === nodes ? '' : ` (with ${n} node(s), not ${nodes}: \`down\` first to change that)`;
        console.log(`stack already running in ${runDir}${note}\n${describe(running.info)}`);
        return 0;
      }
      const started = Date.now();
      process.on('SIGINT', () => process.exit(130)).on('SIGTERM', () => process.exit(143));
      // What is left of a stack some of whose processes died is stopped before a new one starts.
      if (running !== undefined) await stopStack(runDir);
      const s = await startStack({ runDir, persist: true, nodes });
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      console.log(`stack up in ${secs}s (run dir ${runDir})\n${describe(s)}`);
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
      for (const [k, v] of Object.entries(stackEnv(state.info))) console.log(`export ${k}=${shellQuote(v)}`);
      return 0;
    }
    default:
      console.error(USAGE);
      return 2;
  }
}

if (import.meta.main) {
  try {
    process.exitCode = await main(process.argv[2], process.argv.slice(3));
  } catch (err) {
    console.error((err as Error).message);
    process.exitCode = 1;
  }
}
