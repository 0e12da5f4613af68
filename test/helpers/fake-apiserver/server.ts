/**
 * The composition: per-run certificates, the TLS listener (ALPN h2 + http/1.1 from one listener, HTTP/1.1
 * upgrades included, or HTTP/1.1 only), the store and the objects a run starts with, and the wiring of the
 * request chain (handler-chain.ts: recording, faults.ts, auth.ts, apf.ts) to its handlers (routing.ts, which
 * hands resources to rest.ts; upgrades.ts, which hands exec/attach/port-forward to streaming.ts). Then the
 * `FakeApiserver` handle tests hold, and `close()`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from 'node:http2';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { createCA, issueCert, type KeyPairPem } from '../../../src/pki/certs.ts';
import { newApfTable } from './apf.ts';
import { createAuth } from './auth.ts';
import { Faults } from './faults.ts';
import { createHandlerChain } from './handler-chain.ts';
import { writeKubeconfigFile } from './kubeconfig.ts';
import {
  findResource,
  makeNamespace,
  resourceForKind,
  RESOURCES,
  type KubeObject,
  type ResourceDef,
} from './resources.ts';
import { Api, type ApfUids } from './rest.ts';
import { createRouter } from './routing.ts';
import { Store, type WatchEvent } from './store.ts';
import type { Fault, FakeApiserverOptions, KubeconfigSpec, RecordedRequest } from './types.ts';
import { createUpgradeRouter } from './upgrades.ts';
import { VERSIONS } from './version.ts';
import type { Sink } from './wire.ts';

export { defaultAuthorize } from './auth.ts';

export interface FakeApiserver {
  /** `https://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** The client CA: sign user certificates with it (or use `issueUser`). */
  readonly ca: KeyPairPem;
  /** The CA that signed the serving certificate (kubeconfig `certificate-authority`). */
  readonly serverCaPem: string;
  readonly version: { major: string; minor: string; gitVersion: string };
  /**
   * The APF UIDs answers carry: flow schema `exempt` for system:masters, `probes` for /healthz, /livez and
   * /readyz (both in the `exempt` priority level, so `probes.priorityLevelUid === exempt.priorityLevelUid`),
   * else `globalDefault`.
   */
  readonly apf: { exempt: ApfUids; probes: ApfUids; globalDefault: ApfUids };
  /** Every request, in arrival order (tests may clear it with `requests.length = 0`). */
  readonly requests: RecordedRequest[];
  issueUser(cn: string, groups?: string[]): Promise<KeyPairPem>;
  /** Replace the active faults (`null` clears them). */
  setFault(fault: Fault | Fault[] | null): void;
  /** Write a kubeconfig for this server into `dir` (0600) and return its path. */
  writeKubeconfig(dir: string, spec: KubeconfigSpec): Promise<string>;

  /** Store an object as if it had been created through the API (its namespace is created if missing). */
  create(obj: KubeObject): KubeObject;
  get(resource: string, namespace: string, name: string): KubeObject | undefined;
  list(resource: string, namespace?: string): KubeObject[];
  /** Replace an object (watchers see MODIFIED). */
  update(obj: KubeObject): KubeObject;
  remove(resource: string, namespace: string, name: string): KubeObject;
  /** Hand a raw event to open watches of `resource` (no stored object changes), e.g. ERROR or BOOKMARK. */
  emit(resource: string, event: WatchEvent): void;
  setLogs(namespace: string, pod: string, lines: string[]): void;
  appendLog(namespace: string, pod: string, line: string): void;
  /** End every open watch stream (kubectl `get -w` then exits 0); returns how many were open. */
  endWatches(): number;
  /** Expire all resource versions so far: resumed watches and old continue tokens get 410. */
  compact(): number;
  readonly resourceVersion: number;
  /** End all streams and connections; resolves when the listener is closed. */
  close(): Promise<void>;
}

export async function startFakeApiserver(opts: FakeApiserverOptions = {}): Promise<FakeApiserver> {
  const versionKey = opts.version ?? '1.33';
  const v = VERSIONS[versionKey];
  const serverCa = await createCA('fake-apiserver-ca');
  const clientCa = await createCA('fake-apiserver-client-ca');
  const serving = await issueCert(serverCa, {
    commonName: 'kube-apiserver',
    dnsNames: [
      'localhost',
      'kubernetes',
      'kubernetes.default',
      'kubernetes.default.svc',
      ...(opts.extraDnsNames ?? []),
    ],
    ipAddresses: ['127.0.0.1'],
    usage: 'server',
  });
  const apf = newApfTable();
  const auth = createAuth(opts);
  const store = new Store({ historyLimit: opts.watchHistory ?? 10_000 });
  const api = new Api(store, {
    authorize: auth.decision,
    gzipThreshold: opts.gzipThresholdBytes ?? 128 * 1024,
    watchList: versionKey !== '1.33',
    bookmarkIntervalMs: opts.bookmarkIntervalMs,
    logFollow: opts.logFollow,
  });
  const namespacesDef = findResource('', 'v1', 'namespaces') as ResourceDef;
  const ensureNamespace = (ns: string): void => {
    if (ns !== '' && !store.get(namespacesDef, '', ns)) store.create(namespacesDef, '', makeNamespace(ns));
  };
  for (const ns of opts.namespaces ?? ['default', 'kube-node-lease', 'kube-public', 'kube-system']) ensureNamespace(ns);

  const resourceByName = (name: string): ResourceDef => {
    const r = RESOURCES.find((x) => x.name === name || x.kind === name || x.singular === name);
    if (!r) throw new Error(`fake apiserver: unknown resource ${name}`);
    return r;
  };
  const createObject = (obj: KubeObject): KubeObject => {
    const r = resourceForKind(obj.kind ?? '');
    if (!r) throw new Error(`fake apiserver: unknown kind ${String(obj.kind)}`);
    const ns = r.namespaced ? (obj.metadata.namespace ?? 'default') : '';
    ensureNamespace(ns);
    return store.create(r, ns, obj);
  };
  for (const o of opts.objects ?? []) createObject(o);

  const route = createRouter({
    api,
    version: versionKey,
    aggregatedDiscovery: opts.aggregatedDiscovery ?? true,
    serverAddress: () => `127.0.0.1:${port}`,
  });

  const requests: RecordedRequest[] = [];
  const faults = new Faults();
  const sockets = new Set<Duplex>();
  const sessions = new Set<Http2Session>();
  const sinks = new Set<Sink>();
  const upgradeStops = new Set<() => void>();
  let closing = false;

  const http2 = opts.http2 ?? true;
  const tlsOptions = {
    key: serving.keyPem,
    cert: serving.certPem,
    ca: [clientCa.certPem],
    requestCert: true,
    rejectUnauthorized: false,
  };
  const server = http2
    ? createSecureServer({ ...tlsOptions, allowHTTP1: true })
    : createHttpsServer({ ...tlsOptions, ALPNProtocols: ['http/1.1'], requestTimeout: 0 });

  server.on('secureConnection', (s: TLSSocket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
  });
  server.on('session', (s: Http2Session) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
    s.on('error', () => undefined);
  });

  const track = (stop: () => void): (() => void) => {
    upgradeStops.add(stop);
    return () => upgradeStops.delete(stop);
  };
  const serveUpgrade = createUpgradeRouter({
    store,
    websocket: opts.websocket,
    spdy: opts.spdy,
    exec: opts.exec,
    portForward: opts.portForward,
    track,
  });
  const { handleRequest, handleUpgrade } = createHandlerChain({
    requests,
    faults,
    auth,
    apf,
    api,
    route,
    serveUpgrade,
    sinks,
    sockets,
    closing: () => closing,
  });

  server.on('request', (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => {
    handleRequest(req, res).catch(() => {
      try {
        if (!res.headersSent) {
          res.statusCode = 500;
          res.end();
        } else res.destroy();
      } catch {
        // The stream is gone already.
      }
    });
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    handleUpgrade(req, socket, head).catch(() => socket.destroy());
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const url = `https://127.0.0.1:${port}`;

  const fake: FakeApiserver = {
    url,
    port,
    ca: clientCa,
    serverCaPem: serverCa.certPem,
    version: { major: '1', minor: v.minor, gitVersion: v.gitVersion },
    apf,
    requests,
    issueUser: (cn, groups = []) => issueCert(clientCa, { commonName: cn, organizations: groups, usage: 'client' }),
    setFault: (f) => faults.set(f),
    writeKubeconfig: (dir, spec) => writeKubeconfigFile(dir, { url, serverCaPem: serverCa.certPem }, spec),
    create: createObject,
    get: (resource, namespace, name) => store.get(resourceByName(resource), namespace, name),
    list: (resource, namespace = '') => store.list(resourceByName(resource), namespace).map((e) => e.obj),
    update(obj) {
      const r = resourceForKind(obj.kind ?? '');
      if (!r) throw new Error(`fake apiserver: unknown kind ${String(obj.kind)}`);
      return store.update(r, r.namespaced ? (obj.metadata.namespace ?? 'default') : '', obj.metadata.name ?? '', obj);
    },
    remove: (resource, namespace, name) => api.removeObject(resourceByName(resource), namespace, name),
    emit: (resource, event) => api.emit(resourceByName(resource).name, event),
    setLogs: (ns, pod, lines) => api.setLogs(ns, pod, lines),
    appendLog: (ns, pod, line) => api.appendLog(ns, pod, line),
    endWatches() {
      const ends = [...api.watches];
      for (const end of ends) end();
      return ends.length;
    },
    compact: () => store.compact(),
    get resourceVersion() {
      return store.resourceVersion;
    },
    async close() {
      if (closing) return;
      closing = true;
      for (const stop of [...upgradeStops]) stop();
      for (const end of [...api.watches]) end();
      for (const end of [...api.follows]) end();
      for (const s of [...sinks]) s.terminate();
      for (const s of sessions) s.destroy();
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return fake;
}
