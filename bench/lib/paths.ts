/**
 * The measured paths between the load generator and an upstream (the stand-in or the real apiserver):
 * direct, kubetrail (live OTLP receiver / refused OTLP endpoint), nginx, mitmproxy and kubectl proxy.
 * Each is started as its own process (fresh when peak memory matters), on a loopback port, configured in
 * the bench's temp dir, never on a default port and never as a system service.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { NODE_FLAGS } from '../../src/cli/node-flags.ts';
import { freePort, processTree, stopChild, tcpOpen, waitFor } from './proc.ts';
import type { Target } from './target.ts';

export const KUBETRAIL_SRC = fileURLToPath(new URL('../../src/bin/kubetrail.ts', import.meta.url));
export const KUBETRAIL_DIST = fileURLToPath(new URL('../../dist/bin/kubetrail.js', import.meta.url));
/** The installed `kubetrail` command: the launcher, with dist/ behind it (it runs `node` from PATH). */
export const KUBETRAIL_LAUNCHER = fileURLToPath(new URL('../../bin/kubetrail', import.meta.url));
const PROXY_CORE = fileURLToPath(new URL('./proxy-core.ts', import.meta.url));

/** Which kubetrail entry point the paths run: the TypeScript source (type stripping) or the built dist/. */
export let KUBETRAIL_BIN = KUBETRAIL_SRC;
export function useKubetrailBin(bin: string): void {
  KUBETRAIL_BIN = bin;
}

/** dist/ exists and is newer than every file under src/ (else it is not the code under test). */
export function distFresh(): boolean {
  const newest = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce(
      (m, e) => Math.max(m, e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs),
      0,
    );
  try {
    return statSync(KUBETRAIL_DIST).mtimeMs >= newest(fileURLToPath(new URL('../../src', import.meta.url)));
  } catch {
    return false;
  }
}

/** The measured paths of issue #5. */
export const PATHS = ['direct', 'kubetrail', 'kubetrail-refused', 'nginx', 'mitmproxy', 'kubectl-proxy'] as const;
/** Diagnostic paths: where kubetrail's cost comes from (export off; no observer at all). */
export const DIAG_PATHS = ['kubetrail-nosdk', 'proxy-core'] as const;
export type PathKind = (typeof PATHS)[number] | (typeof DIAG_PATHS)[number];

export const PATH_LABELS: Record<PathKind, string> = {
  direct: 'direct',
  kubetrail: 'kubetrail (OTLP live)',
  'kubetrail-refused': 'kubetrail (OTLP refused)',
  nginx: 'nginx',
  mitmproxy: 'mitmproxy',
  'kubectl-proxy': 'kubectl proxy',
  'kubetrail-nosdk': 'diag: kubetrail, OTEL_SDK_DISABLED',
  'proxy-core': 'diag: kubetrail core, no observer',
};

/** An apiserver the paths lead to, with the client identity every path presents upstream. */
export interface UpstreamSpec {
  label: string;
  host: string;
  port: number;
  /** CA of the upstream's serving certificate. */
  caFile: string;
  caPem: string;
  /** The client certificate identity (a system:masters user). */
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
  /** A one-context kubeconfig for this upstream and identity (what kubetrail and kubectl proxy read). */
  kubeconfig: string;
}

/** What every path needs from the bench run. */
export interface BenchEnv {
  workDir: string;
  kubectl: string;
  /** OTLP/HTTP traces URL of a live receiver. */
  otlpLive: string;
  /** OTLP/HTTP traces URL on a port nothing listens on. */
  otlpRefused: string;
  /** The bench CA (signs nginx's serving certificate). */
  benchCaPem: string;
  nginxCertFile: string;
  nginxKeyFile: string;
  /** A clean environment for the children (no OTEL_*, KUBECONFIG or KUBETRAIL_* of the caller). */
  env: NodeJS.ProcessEnv;
}

export interface RunningPath {
  kind: PathKind;
  target: Target;
  /** The proxy's processes now (empty for direct). */
  pids(): number[];
  stop(): Promise<void>;
  /** ms from spawn to ready. */
  startMs: number;
}

export interface PathOptions {
  /** Extra Node flags for kubetrail (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** kubetrail as a user runs `kubetrail start` (the bin alone: Node's defaults, not NODE_FLAGS). */
  userFlags?: boolean;
  /** kubetrail's entry point for this process (default KUBETRAIL_BIN). */
  bin?: string;
  /** mitmproxy: stream bodies instead of buffering them (needed for watches). */
  stream?: boolean;
}

let seq = 0;

/** A log file's fd: a chatty child never blocks on a full pipe nobody drains. */
function logFile(env: BenchEnv, name: string): number {
  mkdirSync(join(env.workDir, 'logs'), { recursive: true });
  return openSync(join(env.workDir, 'logs', `${name}-${++seq}.log`), 'a', 0o600);
}

/** Spawn with stdout captured until `ready(stdoutSoFar)` matches, stderr to a log file. */
function spawnReady(
  env: BenchEnv,
  name: string,
  cmd: string,
  args: string[],
  ready: RegExp,
  timeoutMs = 30_000,
): Promise<{ child: ChildProcess; match: RegExpExecArray; ms: number }> {
  const t0 = performance.now();
  const errFd = logFile(env, name);
  const child = spawn(cmd, args, { env: env.env, stdio: ['ignore', 'pipe', errFd] });
  closeSync(errFd);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `bench: ${name} did not start within ${timeoutMs} ms; stdout: ${out.slice(0, 500)} (logs in ${env.workDir}/logs)`,
        ),
      );
    }, timeoutMs);
    child.stdout?.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const m = ready.exec(out);
      if (m && timer.hasRef()) {
        clearTimeout(timer);
        timer.unref();
        resolve({ child, match: m, ms: performance.now() - t0 });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(
        new Error(
          `bench: ${name} exited with ${code} during start; stdout: ${out.slice(0, 500)} (logs in ${env.workDir}/logs)`,
        ),
      );
    });
  });
}

function spawnLogged(env: BenchEnv, name: string, cmd: string, args: string[]): ChildProcess {
  const fd = logFile(env, name);
  const child = spawn(cmd, args, { env: env.env, stdio: ['ignore', fd, fd] });
  closeSync(fd);
  return child;
}

/** The load generator's target for a kubetrail: its first cluster in the kubeconfig it wrote, as a client holding `client`. */
export function kubetrailTarget(
  name: string,
  kubeconfigPath: string,
  client: { certPem: string; keyPem: string },
): Target {
  const kc = parse(readFileSync(kubeconfigPath, 'utf8')) as { clusters: { cluster: Record<string, string> }[] };
  const cluster = kc.clusters[0]?.cluster ?? {};
  const server = new URL(cluster.server ?? '');
  return {
    name,
    scheme: 'https',
    host: server.hostname,
    port: Number(server.port),
    prefix: server.pathname.replace(/\/$/, ''),
    servername: cluster['tls-server-name'],
    ca: Buffer.from(cluster['certificate-authority-data'] ?? '', 'base64').toString('utf8'),
    cert: client.certPem,
    key: client.keyPem,
    // kubetrail's listener offers h2 and http/1.1 by ALPN, as the apiserver does (#13).
    h2: true,
  };
}

async function startKubetrail(
  env: BenchEnv,
  up: UpstreamSpec,
  otlp: string,
  kind: PathKind,
  opts: PathOptions,
): Promise<RunningPath> {
  const stateDir = join(env.workDir, 'kubetrail-state');
  const flags = opts.userFlags ? [] : NODE_FLAGS;
  const args =
    kind === 'proxy-core'
      ? [...flags, ...(opts.nodeArgs ?? []), PROXY_CORE, up.kubeconfig, stateDir]
      : [
          ...flags,
          ...(opts.nodeArgs ?? []),
          opts.bin ?? KUBETRAIL_BIN,
          'start',
          '--kubeconfig',
          up.kubeconfig,
          '--listen',
          '127.0.0.1:0',
          '--state-dir',
          stateDir,
          '--otlp-endpoint',
          otlp,
          '--quiet',
        ];
  const childEnv = kind === 'kubetrail-nosdk' ? { ...env, env: { ...env.env, OTEL_SDK_DISABLED: 'true' } } : env;
  const { child, match, ms } = await spawnReady(childEnv, kind, process.execPath, args, /export KUBECONFIG=(\S+)\n/);
  return {
    kind,
    startMs: ms,
    target: kubetrailTarget(kind, match[1] ?? '', up),
    pids: () => (child.exitCode === null && child.pid ? [child.pid] : []),
    stop: () => stopChild(child),
  };
}

async function startNginx(env: BenchEnv, up: UpstreamSpec): Promise<RunningPath> {
  const t0 = performance.now();
  const dir = join(env.workDir, `nginx-${++seq}`);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const conf = `
# kubetrail bench: nginx as a TLS-terminating reverse proxy that presents the client certificate upstream.
worker_processes 1;
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream apiserver {
    server ${up.host}:${up.port};
    keepalive 64;
  }
  server {
    # h2 on the client leg, as the apiserver offers it; nginx's proxy module speaks only HTTP/1.x upstream,
    # so each concurrent stream (each watch) takes an upstream connection of its own.
    listen 127.0.0.1:${port} ssl http2;
    # kube-apiserver's default limit (nginx's own is 128), as the stand-in and kubetrail advertise it.
    http2_max_concurrent_streams 100;
    ssl_certificate ${env.nginxCertFile};
    ssl_certificate_key ${env.nginxKeyFile};
    # Ask for the client certificate without verifying it, as kubetrail does.
    ssl_verify_client optional_no_ca;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    location / {
      proxy_pass https://apiserver;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host ${up.host}:${up.port};
      proxy_ssl_certificate ${up.certFile};
      proxy_ssl_certificate_key ${up.keyFile};
      proxy_ssl_trusted_certificate ${up.caFile};
      proxy_ssl_verify on;
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
      # Stream both ways (watches, large lists), as kubetrail does.
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 3600s;
    }
  }
}
`;
  writeFileSync(join(dir, 'nginx.conf'), conf);
  const child = spawnLogged(env, 'nginx', 'nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')]);
  await waitFor('nginx', async () => {
    if (child.exitCode !== null)
      throw new Error(`bench: nginx exited with ${child.exitCode} (see ${env.workDir}/logs)`);
    return tcpOpen(port);
  });
  return {
    kind: 'nginx',
    startMs: performance.now() - t0,
    target: {
      name: 'nginx',
      scheme: 'https',
      host: '127.0.0.1',
      port,
      prefix: '',
      servername: 'localhost',
      ca: env.benchCaPem,
      cert: up.certPem,
      key: up.keyPem,
      h2: true,
    },
    pids: () => (child.exitCode === null && child.pid ? processTree(child.pid) : []),
    stop: () => stopChild(child),
  };
}

async function startMitmproxy(env: BenchEnv, up: UpstreamSpec, opts: PathOptions): Promise<RunningPath> {
  const t0 = performance.now();
  const confdir = join(env.workDir, 'mitmproxy');
  mkdirSync(confdir, { recursive: true });
  const combined = join(confdir, 'client.pem');
  writeFileSync(combined, `${up.certPem.trimEnd()}\n${up.keyPem.trimEnd()}\n`, { mode: 0o600 });
  const port = await freePort();
  const args = [
    '--mode',
    `reverse:https://${up.host}:${up.port}/`,
    '--listen-host',
    '127.0.0.1',
    '--listen-port',
    String(port),
    '--set',
    `confdir=${confdir}`,
    '--set',
    `client_certs=${combined}`,
    '--set',
    `ssl_verify_upstream_trusted_ca=${up.caFile}`,
    '--set',
    'keep_host_header=true',
  ];
  if (opts.stream) args.push('--set', 'stream_large_bodies=1');
  const child = spawnLogged(env, 'mitmproxy', 'mitmdump', args);
  await waitFor(
    'mitmproxy',
    async () => {
      if (child.exitCode !== null)
        throw new Error(`bench: mitmdump exited with ${child.exitCode} (see ${env.workDir}/logs)`);
      return tcpOpen(port);
    },
    60_000,
  );
  return {
    kind: 'mitmproxy',
    startMs: performance.now() - t0,
    target: {
      name: 'mitmproxy',
      scheme: 'https',
      host: '127.0.0.1',
      port,
      prefix: '',
      servername: 'localhost',
      ca: readFileSync(join(confdir, 'mitmproxy-ca-cert.pem'), 'utf8'),
      cert: up.certPem,
      key: up.keyPem,
      // mitmproxy 8.1.1 in reverse mode negotiates no ALPN on either leg (checked with `openssl s_client
      // -alpn h2,http/1.1`: "No ALPN negotiated"; the stand-in sees none either), so HTTP/1.1 on both.
      h2: false,
    },
    pids: () => (child.exitCode === null && child.pid ? processTree(child.pid) : []),
    stop: () => stopChild(child),
  };
}

async function startKubectlProxy(env: BenchEnv, up: UpstreamSpec): Promise<RunningPath> {
  const { child, match, ms } = await spawnReady(
    env,
    'kubectl-proxy',
    env.kubectl,
    ['proxy', '--kubeconfig', up.kubeconfig, '--address', '127.0.0.1', '--port', '0'],
    /Starting to serve on 127\.0\.0\.1:(\d+)/,
  );
  const port = Number(match[1]);
  // Keep draining its stdout.
  child.stdout?.resume();
  return {
    kind: 'kubectl-proxy',
    startMs: ms,
    // Plain HTTP on loopback: Go's server speaks HTTP/1.1 there (no h2c), so a client opens a connection per
    // concurrent request; upstream it is client-go's transport (h2, one connection).
    target: { name: 'kubectl-proxy', scheme: 'http', host: '127.0.0.1', port, prefix: '', h2: false },
    pids: () => (child.exitCode === null && child.pid ? [child.pid] : []),
    stop: () => stopChild(child),
  };
}

export async function startPath(
  kind: PathKind,
  env: BenchEnv,
  up: UpstreamSpec,
  opts: PathOptions = {},
): Promise<RunningPath> {
  switch (kind) {
    case 'direct':
      return {
        kind,
        startMs: 0,
        target: {
          name: 'direct',
          scheme: 'https',
          host: up.host,
          port: up.port,
          prefix: '',
          ca: up.caPem,
          cert: up.certPem,
          key: up.keyPem,
          h2: true,
        },
        pids: () => [],
        stop: () => Promise.resolve(),
      };
    case 'kubetrail':
      return startKubetrail(env, up, env.otlpLive, kind, opts);
    case 'kubetrail-refused':
      return startKubetrail(env, up, env.otlpRefused, kind, opts);
    case 'kubetrail-nosdk':
    case 'proxy-core':
      return startKubetrail(env, up, env.otlpLive, kind, opts);
    case 'nginx':
      return startNginx(env, up);
    case 'mitmproxy':
      return startMitmproxy(env, up, opts);
    case 'kubectl-proxy':
      return startKubectlProxy(env, up);
  }
}
