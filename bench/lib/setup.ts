/**
 * What a bench run sets up once: a private temp dir, a bench CA (client identity, nginx's serving
 * certificate, the stand-in's serving certificate), a live OTLP receiver, a refused OTLP endpoint, and the
 * stand-in apiserver process.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createCA, issueCert, type KeyPairPem } from '../../src/pki/certs.ts';
import { Forked } from './child.ts';
import type { BenchEnv, UpstreamSpec } from './paths.ts';
import { freePort } from './proc.ts';
import type { FromUpstream, ToUpstream, UpstreamConfig } from './upstream.ts';

export const KUBECTL = '/usr/lib/google-cloud-sdk/bin/kubectl.1.33';

export interface OtlpSink {
  url: string;
  requests: number;
  bytes: number;
  close(): Promise<void>;
}

/** A live OTLP/HTTP receiver: accepts POST /v1/traces, counts, answers 200 `{}` (what a collector does). */
export async function startOtlpSink(): Promise<OtlpSink> {
  const sink: OtlpSink = { url: '', requests: 0, bytes: 0, close: () => Promise.resolve() };
  const server: Server = createServer((req, res) => {
    req.on('data', (c: Buffer) => (sink.bytes += c.length));
    req.on('end', () => {
      sink.requests++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  sink.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`;
  sink.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return sink;
}

export function writeFile(dir: string, name: string, data: string): string {
  const path = join(dir, name);
  writeFileSync(path, data, { mode: 0o600 });
  return path;
}

export function kubeconfigYaml(server: string, caPem: string, id: KeyPairPem, name = 'bench'): string {
  const b64 = (s: string): string => Buffer.from(s).toString('base64');
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name, cluster: { server, 'certificate-authority-data': b64(caPem) } }],
    users: [{ name: 'admin', user: { 'client-certificate-data': b64(id.certPem), 'client-key-data': b64(id.keyPem) } }],
    contexts: [{ name, context: { cluster: name, user: 'admin' } }],
    'current-context': name,
  });
}

export interface Bench {
  workDir: string;
  ca: KeyPairPem;
  env: BenchEnv;
  sink: OtlpSink;
  cleanup(): Promise<void>;
}

function cleanEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(OTEL_|KUBETRAIL_|KUBECONFIG$|NODE_OPTIONS$|HTTPS?_PROXY$|https?_proxy$|NO_PROXY$|no_proxy$)/.test(k))
      continue;
    env[k] = v;
  }
  env.HOME = home;
  return env;
}

export async function setupBench(): Promise<Bench> {
  const workDir = mkdtempSync(join(process.env.XDG_RUNTIME_DIR ?? tmpdir(), 'kubetrail-bench-'));
  const ca = await createCA('kubetrail bench CA');
  const nginx = await issueCert(ca, {
    commonName: 'nginx',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
  });
  const sink = await startOtlpSink();
  const refusedPort = await freePort();
  const env: BenchEnv = {
    workDir,
    kubectl: KUBECTL,
    otlpLive: sink.url,
    otlpRefused: `http://127.0.0.1:${refusedPort}/v1/traces`,
    benchCaPem: ca.certPem,
    nginxCertFile: writeFile(workDir, 'nginx.crt', nginx.certPem),
    nginxKeyFile: writeFile(workDir, 'nginx.key', nginx.keyPem),
    env: cleanEnv(workDir),
  };
  return {
    workDir,
    ca,
    env,
    sink,
    cleanup: async () => {
      await sink.close();
      rmSync(workDir, { recursive: true, force: true });
    },
  };
}

export interface StandIn {
  spec: UpstreamSpec;
  proc: Forked<ToUpstream, FromUpstream>;
  podBytes: number;
}

export async function startStandIn(bench: Bench, delayMs = 0): Promise<StandIn> {
  const dir = bench.workDir;
  const server = await issueCert(bench.ca, {
    commonName: 'stand-in apiserver',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
  });
  const client = await issueCert(bench.ca, {
    commonName: 'bench-admin',
    organizations: ['system:masters'],
    usage: 'client',
  });
  const caFile = writeFile(dir, 'ca.crt', bench.ca.certPem);
  const cfg: UpstreamConfig = {
    certFile: writeFile(dir, 'standin.crt', server.certPem),
    keyFile: writeFile(dir, 'standin.key', server.keyPem),
    caFile,
    delayMs,
  };
  const proc = new Forked<ToUpstream, FromUpstream>('./upstream.ts', [JSON.stringify(cfg)], bench.env.env);
  const ready = await proc.next(30_000);
  if (ready.type !== 'ready') throw new Error('bench: the stand-in apiserver did not start');
  const url = `https://127.0.0.1:${ready.port}`;
  return {
    proc,
    podBytes: ready.podBytes,
    spec: {
      label: 'stand-in',
      host: '127.0.0.1',
      port: ready.port,
      caFile,
      caPem: bench.ca.certPem,
      certFile: writeFile(dir, 'admin.crt', client.certPem),
      keyFile: writeFile(dir, 'admin.key', client.keyPem),
      certPem: client.certPem,
      keyPem: client.keyPem,
      kubeconfig: writeFile(dir, 'standin.kubeconfig', kubeconfigYaml(url, bench.ca.certPem, client, 'standin')),
    },
  };
}
