/**
 * Issue #3: every stand-in behaviour the integration tests rely on, checked once against the real
 * kube-apiserver (v1.33, test/e2e/stack). Both servers get the same data (the same pods in the same
 * namespace, the same users) and the same raw requests: HTTP/1.1 over TLS written byte by byte (so header
 * names, their order and the framing are seen as sent), HTTP/2 through node:http2, and upgrade requests on
 * a TLS connection that offers no ALPN, as kubectl's. Each `it` reduces both answers to the facts our tests
 * rely on (header names and the values that matter, Status bodies, list metadata, watch framing, upgrade
 * refusals, gzip) and fails when the stand-in's facts differ from the real server's.
 *
 * Not compared, by nature: uids, timestamps, resourceVersions, APF UIDs, the ETag's value. Not reproducible
 * here: a 429 (APF would have to be saturated), and a too-old watch on pods (the watch cache serves it; see
 * the watch test, which uses events, whose watches go to etcd).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { appendFileSync, readFileSync } from 'node:fs';
import { connect as h2connect } from 'node:http2';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect as tlsConnect } from 'node:tls';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { makePod, startFakeApiserver, type AuthorizeFn, type FakeApiserver } from '../helpers/fake-apiserver.ts';
import { podManifest } from './helpers.ts';
import { startStack, type Stack } from './stack/stack.ts';

// ---- what kubectl sends ---------------------------------------------------------------------------

const UA = 'kubectl.1.33/v1.33.1 (linux/amd64) kubernetes/8adc0f0';
const DISCOVERY_ACCEPT =
  'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json';
const TABLE_ACCEPT =
  'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json';
const LEGACY_ACCEPT = 'application/json, */*';
const WS_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

const NS = 'conformance';
/** Watched by `kubectl get -w`: a pod is added while the watch is open. */
const NS_WATCH = 'conformance-watch';
const PODS = ['pod-0', 'pod-1', 'pod-2', 'pod-3', 'pod-4'];
const GZIP_THRESHOLD = 128 * 1024;

// ---- the two servers --------------------------------------------------------------------------------

type User = 'admin' | 'alice' | 'tina' | 'mallory' | 'tom';
/** `foreign`: alice's client certificate from the other server, signed by a CA this one does not know. */
type Who = User | 'anonymous' | 'badtoken' | 'foreign';

interface Cred {
  cert?: string;
  key?: string;
  token?: string;
}

interface Target {
  name: 'real' | 'fake';
  host: string;
  port: number;
  ca: string;
  creds: Record<User, Cred>;
  /** Creates a pod as admin (real: a POST; fake: `fake.create`). */
  createPod(namespace: string, name: string): Promise<void>;
}

let stack: Stack | undefined;
let fake: FakeApiserver | undefined;
let real: Target;
let stand: Target;
const timings: Record<string, number> = {};

interface KubeconfigFile {
  clusters: { cluster: { server: string; 'certificate-authority-data': string } }[];
  users: { name: string; user: { token?: string; 'client-certificate-data'?: string; 'client-key-data'?: string } }[];
}

function realTarget(s: Stack): Target {
  const kc = parse(readFileSync(s.kubeconfig, 'utf8')) as KubeconfigFile;
  const b64 = (v: string | undefined): string | undefined =>
    v === undefined ? undefined : Buffer.from(v, 'base64').toString('utf8');
  const creds = {} as Record<User, Cred>;
  for (const { name, user } of kc.users) {
    const c: Cred = {};
    if (user.token !== undefined) c.token = user.token;
    const cert = b64(user['client-certificate-data']);
    const key = b64(user['client-key-data']);
    if (cert !== undefined && key !== undefined) Object.assign(c, { cert, key });
    creds[name as User] = c;
  }
  const url = new URL(s.apiserverUrl);
  const t: Target = {
    name: 'real',
    host: url.hostname,
    port: Number(url.port),
    ca: readFileSync(s.caFile, 'utf8'),
    creds,
    async createPod(namespace, name) {
      const res = await h1(t, {
        method: 'POST',
        path: `/api/v1/namespaces/${namespace}/pods`,
        who: 'admin',
        json: podManifest(name),
      });
      if (res.status !== 201) throw new Error(`create pod ${namespace}/${name}: ${res.status} ${res.body.toString()}`);
    },
  };
  return t;
}

/** The cluster's RBAC, as far as these requests go: `edit` for alice and tina, nothing for mallory and tom,
 * system:discovery for every authenticated user, system:public-info-viewer for anonymous. */
const DISCOVERY_PATHS = /^\/(?:(?:api|apis|openapi)(?:\/.*)?|version\/?|healthz|livez|readyz)$/;
const PUBLIC_PATHS = /^\/(?:version\/?|healthz|livez|readyz)$/;
const EDIT = new Set([
  'pods',
  'pods/log',
  'pods/exec',
  'pods/attach',
  'pods/portforward',
  'configmaps',
  'events',
  'deployments',
]);
const authorize: AuthorizeFn = (user, a) => {
  if (user.groups.includes('system:masters')) return true;
  if (!a.isResourceRequest) {
    return (
      a.verb === 'get' && (user.groups.includes('system:authenticated') ? DISCOVERY_PATHS : PUBLIC_PATHS).test(a.path)
    );
  }
  if (user.name !== 'alice' && user.name !== 'tina') return false;
  if (a.resource === 'namespaces') return ['get', 'list', 'watch'].includes(a.verb);
  return EDIT.has(a.subresource === '' ? a.resource : `${a.resource}/${a.subresource}`);
};

async function fakeTarget(f: FakeApiserver, tokens: Record<'tina' | 'tom', string>): Promise<Target> {
  const creds = {} as Record<User, Cred>;
  for (const [name, groups] of [
    ['admin', ['system:masters']],
    ['alice', []],
    ['mallory', []],
  ] as const) {
    const kp = await f.issueUser(name, [...groups]);
    creds[name] = { cert: kp.certPem, key: kp.keyPem };
  }
  creds.tina = { token: tokens.tina };
  creds.tom = { token: tokens.tom };
  return {
    name: 'fake',
    host: '127.0.0.1',
    port: f.port,
    ca: f.serverCaPem,
    creds,
    createPod(namespace, name) {
      f.create(makePod(name, { namespace, phase: 'Pending', containers: ['main'], labels: { app: 'kubetrail-e2e' } }));
      return Promise.resolve();
    },
  };
}

beforeAll(async () => {
  let t0 = performance.now();
  stack = await startStack();
  timings['start stack'] = performance.now() - t0;
  t0 = performance.now();
  const tokens = { tina: randomBytes(16).toString('hex'), tom: randomBytes(16).toString('hex') };
  fake = await startFakeApiserver({
    version: '1.33',
    tokens: { [tokens.tina]: { user: 'tina' }, [tokens.tom]: { user: 'tom' } },
    authorize,
  });
  real = realTarget(stack);
  stand = await fakeTarget(fake, tokens);
  timings['start fake'] = performance.now() - t0;
  t0 = performance.now();
  for (const t of [real, stand]) {
    for (const ns of [NS, NS_WATCH]) {
      const res = await h1(t, {
        method: 'POST',
        path: '/api/v1/namespaces',
        who: 'admin',
        json: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
      });
      if (res.status !== 201)
        throw new Error(`${t.name}: create namespace ${ns}: ${res.status} ${res.body.toString()}`);
    }
    for (const p of PODS) await t.createPod(NS, p);
    await t.createPod(NS_WATCH, 'before');
  }
  timings['seed both'] = performance.now() - t0;
});

afterAll(async () => {
  await fake?.close();
  await stack?.stop();
  console.log(
    `[conformance] ${Object.entries(timings)
      .map(([k, v]) => `${k} ${Math.round(v)}ms`)
      .join(', ')}`,
  );
});

// ---- raw clients ------------------------------------------------------------------------------------

interface Req {
  method?: string;
  path: string;
  who: Who;
  /** In this order, after Host and User-Agent (and Authorization). */
  headers?: [string, string][];
  /** Sent as the body with `Content-Type: application/json` (or `contentType`). */
  json?: unknown;
  contentType?: string;
  /** Offer no ALPN, as kubectl's upgrade connections. */
  noAlpn?: boolean;
}

interface Answer {
  proto: 'h1' | 'h2';
  status: number;
  /** HTTP/1.1: the names as on the wire, in order. HTTP/2: lower-case, sorted. */
  names: string[];
  /** Lower-case names; repeated fields joined with ", ". */
  headers: Record<string, string>;
  /** As on the wire (de-chunked, not decompressed). */
  body: Buffer;
  /** HTTP/1.1 framing; `h2` for HTTP/2 (where Content-Length alone says it). */
  framing: 'length' | 'chunked' | 'close' | 'none' | 'h2';
  /** HTTP/2: the server sent GOAWAY before `goawayWaitMs` after the answer ended. */
  goaway: boolean;
}

function credOf(t: Target, who: Who): { cert?: string; key?: string; authorization?: string } {
  if (who === 'anonymous') return {};
  if (who === 'badtoken') return { authorization: 'Bearer not-a-known-token' };
  const c = who === 'foreign' ? (t === real ? stand : real).creds.alice : t.creds[who];
  if (c.token !== undefined) return { authorization: `Bearer ${c.token}` };
  return { cert: c.cert, key: c.key };
}

function requestHeaders(t: Target, r: Req): [string, string][] {
  const c = credOf(t, r.who);
  const h: [string, string][] = [['User-Agent', UA]];
  if (c.authorization !== undefined) h.push(['Authorization', c.authorization]);
  h.push(...(r.headers ?? []));
  if (r.json !== undefined) h.push(['Content-Type', r.contentType ?? 'application/json']);
  return h;
}

/** Decodes a chunked body; `undefined` while incomplete. */
function dechunk(b: Buffer): Buffer | undefined {
  const out: Buffer[] = [];
  let i = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', i);
    if (eol < 0) return undefined;
    const size = parseInt(b.subarray(i, eol).toString('latin1').split(';')[0] ?? '', 16);
    if (Number.isNaN(size)) throw new Error(`bad chunk size line: ${b.subarray(i, eol).toString('latin1')}`);
    if (size === 0) return b.indexOf('\r\n\r\n', eol) >= 0 ? Buffer.concat(out) : undefined;
    if (b.length < eol + 2 + size + 2) return undefined;
    out.push(b.subarray(eol + 2, eol + 2 + size));
    i = eol + 2 + size + 2;
  }
}

/** One request on a fresh TLS connection, written and parsed by hand (HTTP/1.1). */
function h1(t: Target, r: Req, timeoutMs = 15_000): Promise<Answer> {
  const c = credOf(t, r.who);
  const method = r.method ?? 'GET';
  return new Promise<Answer>((resolve, reject) => {
    const sock = tlsConnect({
      host: t.host,
      port: t.port,
      ca: t.ca,
      ...(c.cert !== undefined ? { cert: c.cert, key: c.key } : {}),
      ...(r.noAlpn ? {} : { ALPNProtocols: ['http/1.1'] }),
    });
    let buf = Buffer.alloc(0);
    let head: { status: number; names: string[]; headers: Record<string, string>; bodyAt: number } | undefined;
    let settled = false;
    const finish = (err: Error | undefined, a?: Answer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(a as Answer);
    };
    const timer = setTimeout(
      () => finish(new Error(`${t.name} ${method} ${r.path}: no complete answer in ${timeoutMs}ms`)),
      timeoutMs,
    );
    const answer = (body: Buffer, framing: Answer['framing']): Answer => {
      const h = head as NonNullable<typeof head>;
      return { proto: 'h1', status: h.status, names: h.names, headers: h.headers, body, framing, goaway: false };
    };
    const parse = (ended: boolean): void => {
      if (!head) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (ended) finish(new Error(`${t.name} ${method} ${r.path}: connection closed before the answer's head`));
          return;
        }
        const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
        const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '')?.[1]);
        const names: string[] = [];
        const headers: Record<string, string> = {};
        for (const l of lines.slice(1)) {
          const colon = l.indexOf(':');
          const name = l.slice(0, colon);
          const value = l.slice(colon + 1).trim();
          names.push(name);
          const k = name.toLowerCase();
          headers[k] = headers[k] === undefined ? value : `${headers[k]}, ${value}`;
        }
        head = { status, names, headers, bodyAt: end + 4 };
      }
      const rest = buf.subarray(head.bodyAt);
      if (head.status === 101 || head.status === 204 || head.status === 304 || method === 'HEAD') {
        finish(undefined, answer(Buffer.alloc(0), 'none'));
        return;
      }
      if (/\bchunked\b/i.test(head.headers['transfer-encoding'] ?? '')) {
        const body = dechunk(rest);
        if (body) finish(undefined, answer(body, 'chunked'));
        else if (ended) finish(new Error(`${t.name} ${method} ${r.path}: connection closed inside a chunked body`));
        return;
      }
      const cl = head.headers['content-length'];
      if (cl !== undefined) {
        if (rest.length >= Number(cl)) finish(undefined, answer(rest.subarray(0, Number(cl)), 'length'));
        else if (ended)
          finish(new Error(`${t.name} ${method} ${r.path}: connection closed after ${rest.length} of ${cl} bytes`));
        return;
      }
      if (ended) finish(undefined, answer(rest, 'close'));
    };
    sock.on('secureConnect', () => {
      const body = r.json === undefined ? '' : JSON.stringify(r.json);
      const lines = [
        `${method} ${r.path} HTTP/1.1`,
        `Host: ${t.host}:${t.port}`,
        ...requestHeaders(t, r).map(([k, v]) => `${k}: ${v}`),
      ];
      if (r.json !== undefined || method === 'POST') lines.push(`Content-Length: ${Buffer.byteLength(body)}`);
      sock.write(`${lines.join('\r\n')}\r\n\r\n${body}`);
    });
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      try {
        parse(false);
      } catch (err) {
        finish(err as Error);
      }
    });
    sock.on('close', () => {
      try {
        parse(true);
      } catch (err) {
        finish(err as Error);
      }
    });
    sock.on('error', (err: Error) => finish(err));
  });
}

/** One request on a fresh HTTP/2 connection; waits `goawayWaitMs` after the answer for a GOAWAY. */
function h2(t: Target, r: Req, opts: { goawayWaitMs?: number; timeoutMs?: number } = {}): Promise<Answer> {
  const c = credOf(t, r.who);
  const method = r.method ?? 'GET';
  return new Promise<Answer>((resolve, reject) => {
    const session = h2connect(`https://${t.host}:${t.port}`, {
      ca: t.ca,
      ...(c.cert !== undefined ? { cert: c.cert, key: c.key } : {}),
    });
    let goaway = false;
    session.on('goaway', () => (goaway = true));
    session.on('error', () => undefined);
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`${t.name} h2 ${method} ${r.path}: no complete answer`));
    }, opts.timeoutMs ?? 15_000);
    const headers: Record<string, string> = { ':method': method, ':path': r.path };
    for (const [k, v] of requestHeaders(t, r)) headers[k.toLowerCase()] = v;
    const body = r.json === undefined ? undefined : JSON.stringify(r.json);
    const stream = session.request(headers, { endStream: body === undefined });
    if (body !== undefined) stream.end(body);
    let status = 0;
    let resHeaders: Record<string, string> = {};
    stream.on('response', (h) => {
      status = Number(h[':status']);
      resHeaders = {};
      for (const [k, v] of Object.entries(h)) {
        if (k.startsWith(':') || v === undefined) continue;
        resHeaders[k] = Array.isArray(v) ? v.join(', ') : String(v);
      }
    });
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('error', (err: Error) => {
      clearTimeout(timer);
      session.destroy();
      reject(err);
    });
    stream.on('end', () => {
      setTimeout(() => {
        clearTimeout(timer);
        session.close();
        // Content-Length is the framing on h2: `framingRule` checks it.
        const names = Object.keys(resHeaders)
          .filter((k) => k !== 'content-length')
          .sort();
        resolve({
          proto: 'h2',
          status,
          names,
          headers: resHeaders,
          body: Buffer.concat(chunks),
          framing: 'h2',
          goaway,
        });
      }, opts.goawayWaitMs ?? 0);
    });
  });
}

/** Runs the same thing against the real server, then the stand-in. */
async function both<T>(fn: (t: Target) => Promise<T>): Promise<{ real: T; fake: T }> {
  return { real: await fn(real), fake: await fn(stand) };
}

// ---- facts ------------------------------------------------------------------------------------------

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Go's net/http sends a Content-Length only when the handler's whole answer fit in its write buffer. */
const BUFFERED = { h1: 2048, h2: 4096 };

/** How the answer was framed, against the rule the stand-in models ("ok" when it follows the rule). */
function framingRule(a: Answer, streaming: boolean): string {
  const len = a.body.length;
  if (a.proto === 'h1') {
    if (a.status === 204 || a.status === 304) return a.framing === 'none' ? 'ok' : `${a.framing} on a ${a.status}`;
    const want = !streaming && len <= BUFFERED.h1 ? 'length' : 'chunked';
    return a.framing === want ? 'ok' : `${a.framing} for ${len} bytes${streaming ? ' (stream)' : ''}`;
  }
  const hasLength = a.headers['content-length'] !== undefined;
  const want = !streaming && a.status !== 204 && a.status !== 304 && len <= BUFFERED.h2;
  return hasLength === want ? 'ok' : `content-length ${hasLength ? 'present' : 'absent'} for ${len} bytes`;
}

/** The header facts our tests rely on. */
function headerFacts(a: Answer, opts: { auditId?: string; streaming?: boolean } = {}): Record<string, unknown> {
  const h = a.headers;
  return {
    proto: a.proto,
    status: a.status,
    // In wire order on HTTP/1.1 (Go sorts, then Date, then the framing header).
    names: a.names.map((n) => (/^(content-length|transfer-encoding)$/i.test(n) ? '<framing>' : n)),
    contentType: h['content-type'],
    cacheControl: h['cache-control'],
    xContentTypeOptions: h['x-content-type-options'],
    contentEncoding: h['content-encoding'],
    vary: h['vary'],
    auditId:
      opts.auditId === undefined
        ? UUID.test(h['audit-id'] ?? '')
        : h['audit-id'] === opts.auditId
          ? 'echoed'
          : h['audit-id'],
    apf: h['x-kubernetes-pf-flowschema-uid'] !== undefined && h['x-kubernetes-pf-prioritylevel-uid'] !== undefined,
    framing: framingRule(a, opts.streaming === true),
  };
}

function json(a: Answer): Record<string, unknown> {
  const raw = a.headers['content-encoding'] === 'gzip' ? gunzipSync(a.body) : a.body;
  return JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
}

const rec = (v: unknown): Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

/** A Status body as facts: its keys in order, and every field (the whole text when `exact`). */
function statusFacts(a: Answer): Record<string, unknown> {
  const s = json(a);
  return { text: a.body.toString('utf8'), keys: Object.keys(s) };
}

function auditId(): string {
  return `conformance-${randomUUID()}`;
}

/**
 * `fake` must equal `real`; the message names the comparison. With KUBETRAIL_CONFORMANCE_DUMP=<file>, the
 * real server's facts are appended there too (what protocol.md is checked against).
 */
function same<T>(what: string, r: { real: T; fake: T }): void {
  const dump = process.env['KUBETRAIL_CONFORMANCE_DUMP'];
  if (dump) appendFileSync(dump, `## ${what}\n${JSON.stringify(r.real, null, 2)}\n\n`);
  expect(r.fake, `${what}: the stand-in differs from the real kube-apiserver`).toEqual(r.real);
}

// ---- the comparisons --------------------------------------------------------------------------------

describe('headers and bodies of ordinary answers', () => {
  it('/version: headers (h1 and h2), Audit-ID echo, indented body without a trailing newline', async () => {
    const r = await both(async (t) => {
      const id = auditId();
      const a1 = await h1(t, { path: '/version?timeout=32s', who: 'alice', headers: [['Audit-ID', id]] });
      const a2 = await h2(t, { path: '/version?timeout=32s', who: 'alice', headers: [['Audit-ID', id]] });
      const anon = await h1(t, { path: '/version', who: 'anonymous' });
      const body = a1.body.toString('utf8');
      const v = json(a1);
      return {
        h1: headerFacts(a1, { auditId: id }),
        h2: headerFacts(a2, { auditId: id }),
        anonymous: headerFacts(anon),
        keys: Object.keys(v),
        major: v['major'],
        minor: v['minor'],
        indented: body.startsWith('{\n  "major": "1",\n'),
        trailingNewline: body.endsWith('\n'),
      };
    });
    same('/version', r);
  });

  it('/api and /apis: aggregated discovery (ETag, 304), legacy discovery, and a v2beta1-only Accept', async () => {
    const r = await both(async (t) => {
      const out: Record<string, unknown> = {};
      for (const path of ['/api', '/apis']) {
        const agg = await h1(t, { path: `${path}?timeout=32s`, who: 'alice', headers: [['Accept', DISCOVERY_ACCEPT]] });
        const etag = agg.headers['etag'] ?? '';
        const again = await h1(t, {
          path: `${path}?timeout=32s`,
          who: 'alice',
          headers: [
            ['Accept', DISCOVERY_ACCEPT],
            ['If-None-Match', etag],
          ],
        });
        const again2 = await h2(t, {
          path: `${path}?timeout=32s`,
          who: 'alice',
          headers: [
            ['Accept', DISCOVERY_ACCEPT],
            ['If-None-Match', etag],
          ],
        });
        const agg2 = await h2(t, {
          path: `${path}?timeout=32s`,
          who: 'alice',
          headers: [['Accept', DISCOVERY_ACCEPT]],
        });
        const legacy = await h1(t, { path: `${path}?timeout=32s`, who: 'alice', headers: [['Accept', LEGACY_ACCEPT]] });
        const beta = await h1(t, {
          path,
          who: 'alice',
          headers: [['Accept', 'application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList']],
        });
        const doc = json(agg);
        out[path] = {
          aggregated: headerFacts(agg),
          aggregatedH2: headerFacts(agg2),
          etag: /^"[0-9A-F]{128}"$/.test(etag) ? 'quoted upper-case hex SHA-512' : etag,
          sameEtagOnH2: agg2.headers['etag'] === etag,
          document: { kind: doc['kind'], apiVersion: doc['apiVersion'], metadata: doc['metadata'] },
          notModified: { ...headerFacts(again), etag: again.headers['etag'] === etag, bodyBytes: again.body.length },
          notModifiedH2: {
            ...headerFacts(again2),
            etag: again2.headers['etag'] === etag,
            bodyBytes: again2.body.length,
          },
          legacy: { ...headerFacts(legacy), etag: legacy.headers['etag'], kind: json(legacy)['kind'] },
          v2beta1Only: { ...headerFacts(beta), body: statusFacts(beta) },
        };
      }
      return out;
    });
    same('discovery', r);
  });

  it('aggregated discovery entries for the resources the stand-in serves', async () => {
    const entry = (doc: Record<string, unknown>, group: string, resource: string): unknown => {
      const g = list(doc['items'])
        .map(rec)
        .find((i) => (rec(i['metadata'])['name'] ?? '') === group);
      const v = list(g?.['versions'])
        .map(rec)
        .find((x) => x['version'] === 'v1');
      return list(v?.['resources'])
        .map(rec)
        .find((x) => x['resource'] === resource);
    };
    const r = await both(async (t) => {
      const core = json(await h1(t, { path: '/api', who: 'alice', headers: [['Accept', DISCOVERY_ACCEPT]] }));
      const groups = json(await h1(t, { path: '/apis', who: 'alice', headers: [['Accept', DISCOVERY_ACCEPT]] }));
      const apps = list(groups['items'])
        .map(rec)
        .find((i) => rec(i['metadata'])['name'] === 'apps');
      return {
        pods: entry(core, '', 'pods'),
        configmaps: entry(core, '', 'configmaps'),
        namespaces: entry(core, '', 'namespaces'),
        deployments: entry(groups, 'apps', 'deployments'),
        appsVersions: list(apps?.['versions']).map((v) => ({
          version: rec(v)['version'],
          freshness: rec(v)['freshness'],
        })),
      };
    });
    same('discovery entries', r);
  });

  it('a list, as JSON and as the Table kubectl asks for, and a get, on h1 and h2', async () => {
    const r = await both(async (t) => {
      const out: Record<string, unknown> = {};
      for (const proto of ['h1', 'h2'] as const) {
        const send = proto === 'h1' ? h1 : h2;
        const id = auditId();
        const plain = await send(t, {
          path: `/api/v1/namespaces/${NS}/pods?limit=500`,
          who: 'alice',
          headers: [
            ['Accept', 'application/json'],
            ['Audit-ID', id],
          ],
        });
        const table = await send(t, {
          path: `/api/v1/namespaces/${NS}/pods?limit=500`,
          who: 'tina',
          headers: [['Accept', TABLE_ACCEPT]],
        });
        const get = await send(t, {
          path: `/api/v1/namespaces/${NS}/pods/pod-0`,
          who: 'alice',
          headers: [['Accept', 'application/json, */*']],
        });
        const getTable = await send(t, {
          path: `/api/v1/namespaces/${NS}/pods/pod-0`,
          who: 'alice',
          headers: [['Accept', TABLE_ACCEPT]],
        });
        const l = json(plain);
        const tb = json(table);
        const cols = list(tb['columnDefinitions']).map(rec);
        const age = cols.findIndex((c) => c['name'] === 'Age');
        const pod = json(get);
        const gt = json(getTable);
        out[proto] = {
          list: headerFacts(plain, { auditId: id }),
          listBody: {
            kind: l['kind'],
            apiVersion: l['apiVersion'],
            metadataKeys: Object.keys(rec(l['metadata'])),
            items: list(l['items']).map((i) => rec(rec(i)['metadata'])['name']),
            itemKeys: [...new Set(list(l['items']).flatMap((i) => Object.keys(rec(i))))],
          },
          table: headerFacts(table),
          tableBody: {
            keys: Object.keys(tb),
            kind: tb['kind'],
            apiVersion: tb['apiVersion'],
            metadataKeys: Object.keys(rec(tb['metadata'])),
            columnDefinitions: cols,
            rows: list(tb['rows']).map((row) => ({
              keys: Object.keys(rec(row)),
              cells: list(rec(row)['cells']).map((c, i) => (i === age ? '<age>' : c)),
              object: { kind: rec(rec(row)['object'])['kind'], apiVersion: rec(rec(row)['object'])['apiVersion'] },
            })),
          },
          get: headerFacts(get),
          getBody: { kind: pod['kind'], apiVersion: pod['apiVersion'] },
          getTable: headerFacts(getTable),
          getTableBody: {
            rows: list(gt['rows']).length,
            columns: list(gt['columnDefinitions']).length,
            resourceVersionIsThePods:
              rec(gt['metadata'])['resourceVersion'] === rec(pod['metadata'])['resourceVersion'],
            metadataKeys: Object.keys(rec(gt['metadata'])),
          },
        };
      }
      return out;
    });
    same('list and get', r);
  });

  it('Table column definitions of configmaps, namespaces and deployments', async () => {
    const r = await both(async (t) => {
      const out: Record<string, unknown> = {};
      for (const path of [
        `/api/v1/namespaces/${NS}/configmaps`,
        '/api/v1/namespaces',
        `/apis/apps/v1/namespaces/${NS}/deployments`,
      ]) {
        const a = await h1(t, { path: `${path}?limit=500`, who: 'alice', headers: [['Accept', TABLE_ACCEPT]] });
        out[path] = { status: a.status, columnDefinitions: json(a)['columnDefinitions'] };
      }
      return out;
    });
    same('column definitions', r);
  });

  it('API Priority and Fairness UIDs: one flow schema for ordinary users, exempt ones for system:masters and probes', async () => {
    const r = await both(async (t) => {
      const uids = async (who: Who, path: string): Promise<[string | undefined, string | undefined]> => {
        const a = await h1(t, { path, who });
        return [a.headers['x-kubernetes-pf-flowschema-uid'], a.headers['x-kubernetes-pf-prioritylevel-uid']];
      };
      const alice = await uids('alice', '/version');
      const aliceList = await uids('alice', `/api/v1/namespaces/${NS}/pods`);
      const tom = await uids('tom', `/api/v1/namespaces/${NS}/pods`);
      const anonymous = await uids('anonymous', '/version');
      const admin = await uids('admin', '/version');
      const probe = await uids('alice', '/healthz');
      return {
        aliceSameAcrossRequests: alice[0] === aliceList[0] && alice[1] === aliceList[1],
        forbiddenUserSameAsAlice: tom[0] === alice[0],
        anonymousSameAsAlice: anonymous[0] === alice[0],
        adminDiffersFromAlice: admin[0] !== alice[0] && admin[1] !== alice[1],
        probeFlowSchemaDiffersFromAdmins: probe[0] !== admin[0],
        probePriorityLevelIsAdmins: probe[1] === admin[1],
      };
    });
    same('APF UIDs', r);
  });
});

describe('Status answers', () => {
  it('404: a missing object, an unknown resource, an unknown group or path', async () => {
    const r = await both(async (t) => {
      const id = auditId();
      const missing = await h1(t, {
        path: `/api/v1/namespaces/${NS}/pods/nope`,
        who: 'alice',
        headers: [['Audit-ID', id]],
      });
      const missingApps = await h2(t, { path: `/apis/apps/v1/namespaces/${NS}/deployments/nope`, who: 'alice' });
      const missingNs = await h1(t, { path: '/api/v1/namespaces/no-such-namespace/pods/nope', who: 'admin' });
      const resource = await h1(t, { path: '/api/v1/nopes', who: 'admin' });
      const version = await h1(t, { path: '/apis/apps/v2/deployments', who: 'admin' });
      const subresource = await h1(t, { path: `/api/v1/namespaces/${NS}/pods/pod-0/nopes`, who: 'admin' });
      const group = await h1(t, { path: '/apis/nope.example.com/v1/things', who: 'admin' });
      const path = await h1(t, { path: '/no/such/path', who: 'admin' });
      return {
        missing: { ...headerFacts(missing, { auditId: id }), body: statusFacts(missing) },
        missingApps: { ...headerFacts(missingApps), body: statusFacts(missingApps) },
        missingNamespace: { ...headerFacts(missingNs), body: statusFacts(missingNs) },
        unknownResource: { ...headerFacts(resource), body: statusFacts(resource) },
        unknownVersion: { ...headerFacts(version), body: statusFacts(version) },
        unknownSubresource: { ...headerFacts(subresource), body: statusFacts(subresource) },
        unknownGroup: { ...headerFacts(group), body: group.body.toString('utf8') },
        unknownPath: { ...headerFacts(path), body: path.body.toString('utf8') },
      };
    });
    same('404s', r);
  });

  it('401: a bad token (h1 and h2, GOAWAY on h2), and an unknown client certificate', async () => {
    const r = await both(async (t) => {
      const id = auditId();
      const a1 = await h1(t, { path: `/api/v1/namespaces/${NS}/pods`, who: 'badtoken', headers: [['Audit-ID', id]] });
      const a2 = await h2(t, { path: `/api/v1/namespaces/${NS}/pods`, who: 'badtoken' }, { goawayWaitMs: 500 });
      const foreign = await h1(t, { path: `/api/v1/namespaces/${NS}/pods`, who: 'foreign' });
      return {
        h1: { ...headerFacts(a1, { auditId: id }), body: statusFacts(a1) },
        h2: { ...headerFacts(a2), body: statusFacts(a2), goaway: a2.goaway },
        foreignCertificate: { ...headerFacts(foreign), body: statusFacts(foreign) },
      };
    });
    same('401', r);
  });

  it('GOAWAY on h2 after anonymous answers, not after authenticated ones', async () => {
    const r = await both(async (t) => ({
      anonymous: (await h2(t, { path: '/version', who: 'anonymous' }, { goawayWaitMs: 500 })).goaway,
      anonymousForbidden: (
        await h2(t, { path: `/api/v1/namespaces/${NS}/pods`, who: 'anonymous' }, { goawayWaitMs: 500 })
      ).goaway,
      alice: (await h2(t, { path: '/version', who: 'alice' }, { goawayWaitMs: 500 })).goaway,
      tina: (await h2(t, { path: `/api/v1/namespaces/${NS}/pods`, who: 'tina' }, { goawayWaitMs: 500 })).goaway,
    }));
    same('GOAWAY', r);
  });

  it('403: namespaced and cluster-scoped lists, a named get, a group, a path; cert, token and anonymous users', async () => {
    const cases: [string, Who, string][] = [
      ['list in a namespace (cert)', 'mallory', `/api/v1/namespaces/${NS}/pods`],
      ['list in a namespace (token)', 'tom', `/api/v1/namespaces/${NS}/pods?limit=500`],
      ['list in a namespace (anonymous)', 'anonymous', `/api/v1/namespaces/${NS}/pods`],
      ['list at the cluster scope', 'mallory', '/api/v1/pods'],
      ['cluster-scoped resource', 'tom', '/api/v1/namespaces'],
      ['named get', 'mallory', `/api/v1/namespaces/${NS}/pods/pod-0`],
      ['named get of a cluster-scoped object', 'mallory', `/api/v1/namespaces/${NS}`],
      ['watch', 'mallory', `/api/v1/namespaces/${NS}/pods?watch=true`],
      ['group', 'mallory', `/apis/apps/v1/namespaces/${NS}/deployments`],
      ['resource no role grants', 'alice', '/api/v1/nopes'],
      ['non-resource path', 'mallory', '/no/such/path'],
      ['discovery (anonymous)', 'anonymous', '/api'],
    ];
    const r = await both(async (t) => {
      const out: Record<string, unknown> = {};
      for (const [name, who, path] of cases) {
        const id = auditId();
        const a = await h1(t, {
          path,
          who,
          headers: [
            ['Audit-ID', id],
            ['Accept', TABLE_ACCEPT],
          ],
        });
        out[name] = { ...headerFacts(a, { auditId: id }), body: statusFacts(a) };
      }
      const a2 = await h2(t, { path: `/api/v1/namespaces/${NS}/pods`, who: 'mallory' });
      out['h2'] = { ...headerFacts(a2), body: statusFacts(a2) };
      return out;
    });
    same('403s', r);
  });

  it('400: a bad limit, an unsupported field selector, a garbage continue token', async () => {
    const r = await both(async (t) => {
      const limit = await h1(t, { path: `/api/v1/namespaces/${NS}/pods?limit=abc`, who: 'alice' });
      const field = await h1(t, { path: `/api/v1/namespaces/${NS}/pods?fieldSelector=foo%3Dbar`, who: 'alice' });
      const garbage = await h1(t, { path: `/api/v1/namespaces/${NS}/pods?continue=garbage&limit=2`, who: 'alice' });
      const g = json(garbage);
      return {
        limit: { ...headerFacts(limit), body: statusFacts(limit) },
        fieldSelector: { ...headerFacts(field), body: statusFacts(field) },
        garbageContinue: {
          ...headerFacts(garbage),
          keys: Object.keys(g),
          reason: g['reason'],
          code: g['code'],
          // The rest is Go's base64/JSON error text for whatever the token decodes to.
          messagePrefix: String(g['message']).startsWith('invalid continue token: continue key is not valid: '),
        },
      };
    });
    same('400s', r);
  });
});

interface Page {
  status: number;
  metadata: Record<string, unknown>;
  names: unknown[];
}

async function page(t: Target, path: string): Promise<Page> {
  const a = await h1(t, { path, who: 'alice', headers: [['Accept', 'application/json']] });
  const b = json(a);
  return {
    status: a.status,
    metadata: rec(b['metadata']),
    names: list(b['items']).map((i) => rec(rec(i)['metadata'])['name']),
  };
}

function decodeToken(token: unknown): Record<string, unknown> {
  try {
    return rec(JSON.parse(Buffer.from(String(token), 'base64url').toString('utf8')));
  } catch {
    return {};
  }
}

/** The continue token's shape: base64url without padding of {"v","rv","start"}, rv = the list's resourceVersion. */
function tokenFacts(token: unknown, listRv: unknown): Record<string, unknown> {
  const s = String(token);
  const decoded = decodeToken(s);
  return {
    base64urlNoPadding: /^[A-Za-z0-9_-]+$/.test(s),
    keys: Object.keys(decoded),
    v: decoded['v'],
    rvIsTheLists: String(decoded['rv']) === String(listRv),
    startEndsWithNul: String(decoded['start']).endsWith('\u0000'),
  };
}

describe('pagination', () => {
  it('limit=2, then continue to the end; a token from before a compaction gets 410 Expired', async () => {
    const r = await both(async (t) => {
      const base = `/api/v1/namespaces/${NS}/pods`;
      const first = await page(t, `${base}?limit=2`);
      const second = await page(t, `${base}?continue=${String(first.metadata['continue'])}&limit=2`);
      const third = await page(t, `${base}?continue=${String(second.metadata['continue'])}&limit=2`);
      const selected = await page(t, `${base}?labelSelector=app%3Dkubetrail-e2e&limit=2`);
      const cont = first.metadata['continue'];
      // Expire the first page's token: write something, then compact up to it.
      const cm = await h1(t, {
        method: 'POST',
        path: `/api/v1/namespaces/${NS}/configmaps`,
        who: 'admin',
        json: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'bump' } },
      });
      const rv = String(rec(json(cm)['metadata'])['resourceVersion']);
      if (t.name === 'real') {
        const res = await fetch(`${(stack as Stack).etcdUrl}/v3/kv/compaction`, {
          method: 'POST',
          body: JSON.stringify({ revision: rv, physical: true }),
        });
        if (!res.ok) throw new Error(`etcd compaction: ${res.status} ${await res.text()}`);
      } else (fake as FakeApiserver).compact();
      const expired = await h1(t, { path: `${base}?continue=${String(cont)}&limit=2`, who: 'alice' });
      const e = json(expired);
      return {
        pages: [first, second, third].map((p) => ({
          status: p.status,
          metadataKeys: Object.keys(p.metadata),
          names: p.names,
          remainingItemCount: p.metadata['remainingItemCount'],
        })),
        sameResourceVersionOnEveryPage:
          new Set([first, second, third].map((p) => p.metadata['resourceVersion'])).size === 1,
        firstToken: tokenFacts(first.metadata['continue'], first.metadata['resourceVersion']),
        secondToken: tokenFacts(second.metadata['continue'], first.metadata['resourceVersion']),
        withLabelSelector: { metadataKeys: Object.keys(selected.metadata), names: selected.names },
        expired: {
          ...headerFacts(expired),
          keys: Object.keys(e),
          metadataKeys: Object.keys(rec(e['metadata'])),
          newTokenRv: decodeToken(rec(e['metadata'])['continue'])['rv'],
          statusField: e['status'],
          message: e['message'],
          reason: e['reason'],
          code: e['code'],
        },
        // Kept for the watch test below.
        tokenRv: decodeToken(cont)['rv'],
      };
    });
    // One before the first page's: etcd's watch starts after the given revision, which must be compacted.
    oldRv = { real: String(Number(r.real.tokenRv) - 1), fake: String(Number(r.fake.tokenRv) - 1) };
    same('pagination', { real: { ...r.real, tokenRv: '<rv>' }, fake: { ...r.fake, tokenRv: '<rv>' } });
  });
});

/** A resourceVersion from before the compaction in the pagination test. */
let oldRv: { real: string; fake: string } | undefined;

interface WatchEventFacts {
  lines: number;
  endsWithNewline: boolean;
  events: Record<string, unknown>[];
}

function watchEvents(
  a: Answer,
  objectFacts: (type: unknown, o: Record<string, unknown>, i: number) => Record<string, unknown>,
): WatchEventFacts {
  const text = a.body.toString('utf8');
  const lines = text.split('\n').filter((l) => l !== '');
  return {
    lines: lines.length,
    endsWithNewline: text.endsWith('\n'),
    events: lines.map((l, i) => {
      const e = rec(JSON.parse(l));
      return { keys: Object.keys(e), type: e['type'], ...objectFacts(e['type'], rec(e['object']), i) };
    }),
  };
}

describe('watch', () => {
  it('JSON watch from resourceVersion=0: headers (h1, h2), framing, initial ADDED events, never gzipped', async () => {
    const r = await both(async (t) => {
      const path = `/api/v1/namespaces/${NS}/pods?resourceVersion=0&timeoutSeconds=1&watch=true`;
      const headers: [string, string][] = [
        ['Accept', 'application/json'],
        ['Accept-Encoding', 'gzip'],
      ];
      const a1 = await h1(t, { path, who: 'alice', headers });
      const a2 = await h2(t, { path, who: 'alice', headers });
      const objects = (_: unknown, o: Record<string, unknown>): Record<string, unknown> => ({
        kind: o['kind'],
        apiVersion: o['apiVersion'],
        name: rec(o['metadata'])['name'],
      });
      return {
        h1: headerFacts(a1, { streaming: true }),
        h1Events: watchEvents(a1, objects),
        h2: headerFacts(a2, { streaming: true }),
        h2Events: watchEvents(a2, objects).events.length,
      };
    });
    same('JSON watch', r);
  });

  it('Table watch with kubectl get -w Accept: one row per event, column definitions on the first only', async () => {
    const r = await both(async (t) => {
      const a = await h1(t, {
        path: `/api/v1/namespaces/${NS}/pods?resourceVersion=0&timeoutSeconds=1&watch=true`,
        who: 'alice',
        headers: [['Accept', TABLE_ACCEPT]],
      });
      return {
        headers: headerFacts(a, { streaming: true }),
        events: watchEvents(a, (_, o) => ({
          objectKeys: Object.keys(o),
          kind: o['kind'],
          apiVersion: o['apiVersion'],
          metadataKeys: Object.keys(rec(o['metadata'])),
          columnDefinitions: o['columnDefinitions'] === null ? null : list(o['columnDefinitions']).length,
          rows: list(o['rows']).map((row) => ({
            keys: Object.keys(rec(row)),
            name: list(rec(row)['cells'])[0],
            object: rec(rec(row)['object'])['kind'],
          })),
        })),
      };
    });
    same('Table watch', r);
  });

  it('kubectl get -w: list, then watch from the list resourceVersion; an object added meanwhile arrives once', async () => {
    const r = await both(async (t) => {
      const listed = json(
        await h1(t, {
          path: `/api/v1/namespaces/${NS_WATCH}/pods?limit=500`,
          who: 'alice',
          headers: [['Accept', TABLE_ACCEPT]],
        }),
      );
      const rv = String(rec(listed['metadata'])['resourceVersion']);
      const watching = h1(t, {
        path: `/api/v1/namespaces/${NS_WATCH}/pods?resourceVersion=${rv}&timeoutSeconds=2&watch=true`,
        who: 'alice',
        headers: [['Accept', TABLE_ACCEPT]],
      });
      await sleep(400);
      await t.createPod(NS_WATCH, 'late');
      const a = await watching;
      return {
        headers: headerFacts(a, { streaming: true }),
        events: watchEvents(a, (_, o) => ({
          kind: o['kind'],
          columnDefinitions: o['columnDefinitions'] === null ? null : list(o['columnDefinitions']).length,
          names: list(o['rows']).map((row) => list(rec(row)['cells'])[0]),
        })),
      };
    });
    same('get -w', r);
  });

  it('sendInitialEvents (WatchList) is refused: the gate is off by default in 1.33', async () => {
    const r = await both(async (t) => {
      const a = await h1(t, {
        path: `/api/v1/namespaces/${NS}/pods?allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&sendInitialEvents=true&timeoutSeconds=1&watch=true`,
        who: 'alice',
      });
      return { ...headerFacts(a), body: statusFacts(a) };
    });
    same('sendInitialEvents', r);
  });

  it('a watch from a compacted resourceVersion: 200, one ERROR event with a 410 Expired Status, then the end', async () => {
    expect(oldRv, 'the pagination test compacts the history first').toBeDefined();
    const rvs = oldRv as { real: string; fake: string };
    const r = await both(async (t) => {
      // The real server's pod watches come from its watch cache, which still answers from a compacted
      // version; events are not cached, so their watches meet etcd's compaction. The stand-in's pods do.
      const resource = t.name === 'real' ? 'events' : 'pods';
      const path = `/api/v1/namespaces/${NS}/${resource}?resourceVersion=${rvs[t.name]}&timeoutSeconds=3&watch=true`;
      const started = performance.now();
      const a = await h1(t, { path, who: 'alice', headers: [['Accept', 'application/json']] });
      const endedEarly = performance.now() - started < 2500;
      return {
        headers: headerFacts(a, { streaming: true }),
        events: watchEvents(a, (_, o) => ({
          objectKeys: Object.keys(o),
          kind: o['kind'],
          apiVersion: o['apiVersion'],
          metadata: o['metadata'],
          status: o['status'],
          reason: o['reason'],
          code: o['code'],
          // etcd: "The resourceVersion for the provided watch is too old."; the watch cache:
          // "too old resource version: N (M)".
          tooOld: /too old/.test(String(o['message'])),
        })),
        // The stream ends after the ERROR, not at timeoutSeconds.
        endedEarly,
      };
    });
    same('too-old watch', r);
  });
});

describe('upgrade answers for a pod without a node', () => {
  const wsHeaders = (protocols: string): [string, string][] => [
    ['Connection', 'Upgrade'],
    ['Upgrade', 'websocket'],
    ['Sec-WebSocket-Key', WS_KEY],
    ['Sec-WebSocket-Protocol', protocols],
    ['Sec-WebSocket-Version', '13'],
  ];
  const spdyHeaders = (versions: string[]): [string, string][] => [
    ['Connection', 'Upgrade'],
    ['Upgrade', 'SPDY/3.1'],
    ...versions.map((v): [string, string] => ['X-Stream-Protocol-Version', v]),
  ];
  const EXEC = `/api/v1/namespaces/${NS}/pods/pod-0/exec?command=true&container=main&stderr=true&stdout=true`;
  const ATTACH = `/api/v1/namespaces/${NS}/pods/pod-0/attach?container=main&stderr=true&stdout=true`;
  const PORTFORWARD = `/api/v1/namespaces/${NS}/pods/pod-0/portforward`;
  const STREAM_VERSIONS = [
    'v5.channel.k8s.io',
    'v4.channel.k8s.io',
    'v3.channel.k8s.io',
    'v2.channel.k8s.io',
    'channel.k8s.io',
  ];

  const attempts: [string, Req][] = [
    [
      'exec WebSocket',
      { path: EXEC, who: 'alice', headers: wsHeaders('v5.channel.k8s.io,v4.channel.k8s.io'), noAlpn: true },
    ],
    ['exec SPDY', { method: 'POST', path: EXEC, who: 'alice', headers: spdyHeaders(STREAM_VERSIONS), noAlpn: true }],
    ['attach WebSocket', { path: ATTACH, who: 'tina', headers: wsHeaders('v5.channel.k8s.io'), noAlpn: true }],
    [
      'attach SPDY',
      { method: 'POST', path: ATTACH, who: 'tina', headers: spdyHeaders(['v4.channel.k8s.io']), noAlpn: true },
    ],
    [
      'port-forward WebSocket',
      { path: PORTFORWARD, who: 'alice', headers: wsHeaders('SPDY/3.1+portforward.k8s.io'), noAlpn: true },
    ],
    [
      'port-forward SPDY',
      { method: 'POST', path: PORTFORWARD, who: 'alice', headers: spdyHeaders(['portforward.k8s.io']), noAlpn: true },
    ],
    [
      'exec WebSocket, forbidden',
      { path: EXEC, who: 'mallory', headers: wsHeaders('v5.channel.k8s.io'), noAlpn: true },
    ],
    [
      'exec SPDY, forbidden',
      { method: 'POST', path: EXEC, who: 'tom', headers: spdyHeaders(STREAM_VERSIONS), noAlpn: true },
    ],
    [
      'port-forward WebSocket, forbidden',
      { path: PORTFORWARD, who: 'mallory', headers: wsHeaders('SPDY/3.1+portforward.k8s.io'), noAlpn: true },
    ],
    [
      'exec WebSocket, bad token',
      { path: EXEC, who: 'badtoken', headers: wsHeaders('v5.channel.k8s.io'), noAlpn: true },
    ],
    [
      'exec WebSocket, unknown container',
      {
        path: EXEC.replace('container=main', 'container=nope'),
        who: 'alice',
        headers: wsHeaders('v5.channel.k8s.io'),
        noAlpn: true,
      },
    ],
    ['exec without Upgrade (GET)', { path: EXEC, who: 'alice' }],
    ['exec without Upgrade (POST)', { method: 'POST', path: EXEC, who: 'alice' }],
  ];

  it('status, headers and Status body of every refused attempt', async () => {
    const r = await both(async (t) => {
      const out: Record<string, unknown> = {};
      for (const [name, req] of attempts) {
        const id = auditId();
        const a = await h1(t, { ...req, headers: [...(req.headers ?? []), ['Audit-ID', id]] });
        out[name] = { ...headerFacts(a, { auditId: id }), body: statusFacts(a) };
      }
      return out;
    });
    same('upgrade answers', r);
  });
});

describe('gzip', () => {
  /** A ConfigMap whose JSON (GET, Accept: application/json) is exactly `bytes` long. */
  async function sizedConfigMap(t: Target, name: string, bytes: number): Promise<void> {
    const path = `/api/v1/namespaces/${NS}/configmaps`;
    let pad = bytes - 600;
    const created = await h1(t, {
      method: 'POST',
      path,
      who: 'admin',
      json: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { pad: 'x'.repeat(pad) } },
    });
    if (created.status !== 201) throw new Error(`${t.name}: create configmap ${name}: ${created.status}`);
    for (let i = 0; i < 5; i++) {
      const got = await h1(t, { path: `${path}/${name}`, who: 'admin', headers: [['Accept', 'application/json']] });
      if (got.body.length === bytes) return;
      pad += bytes - got.body.length;
      const patched = await h1(t, {
        method: 'PATCH',
        path: `${path}/${name}`,
        who: 'admin',
        json: { data: { pad: 'x'.repeat(pad) } },
        contentType: 'application/merge-patch+json',
      });
      if (patched.status !== 200) throw new Error(`${t.name}: patch configmap ${name}: ${patched.status}`);
    }
    throw new Error(`${t.name}: could not size configmap ${name} to ${bytes} bytes`);
  }

  it(`threshold (${GZIP_THRESHOLD} bytes: identity; one more: gzip) on h1 and h2; lists too; watches never`, async () => {
    const r = await both(async (t) => {
      await sizedConfigMap(t, 'at-threshold', GZIP_THRESHOLD);
      await sizedConfigMap(t, 'over-threshold', GZIP_THRESHOLD + 1);
      const gz: [string, string][] = [
        ['Accept', 'application/json'],
        ['Accept-Encoding', 'gzip'],
      ];
      const out: Record<string, unknown> = {};
      for (const name of ['at-threshold', 'over-threshold']) {
        for (const proto of ['h1', 'h2'] as const) {
          const a = await (proto === 'h1' ? h1 : h2)(t, {
            path: `/api/v1/namespaces/${NS}/configmaps/${name}`,
            who: 'alice',
            headers: gz,
          });
          const plain = a.headers['content-encoding'] === 'gzip' ? gunzipSync(a.body) : a.body;
          out[`${name} ${proto}`] = { ...headerFacts(a), decodedBytes: plain.length };
        }
      }
      const noGzip = await h1(t, {
        path: `/api/v1/namespaces/${NS}/configmaps/over-threshold`,
        who: 'alice',
        headers: [['Accept', 'application/json']],
      });
      out['over-threshold without Accept-Encoding'] = headerFacts(noGzip);
      const listed = await h1(t, { path: `/api/v1/namespaces/${NS}/configmaps`, who: 'alice', headers: gz });
      out['list'] = { ...headerFacts(listed), items: list(json(listed)['items']).length };
      const table = await h2(t, {
        path: `/api/v1/namespaces/${NS}/configmaps?includeObject=Object`,
        who: 'alice',
        headers: [
          ['Accept', TABLE_ACCEPT],
          ['Accept-Encoding', 'gzip'],
        ],
      });
      out['Table list with objects'] = { ...headerFacts(table), rows: list(json(table)['rows']).length };
      for (const proto of ['h1', 'h2'] as const) {
        const w = await (proto === 'h1' ? h1 : h2)(t, {
          path: `/api/v1/namespaces/${NS}/configmaps?resourceVersion=0&timeoutSeconds=1&watch=true`,
          who: 'alice',
          headers: gz,
        });
        out[`watch ${proto}`] = {
          ...headerFacts(w, { streaming: true }),
          events: w.body
            .toString('utf8')
            .split('\n')
            .filter((l) => l !== '').length,
        };
      }
      return out;
    });
    same('gzip', r);
  });
});

describe('logs of a pod without a node', () => {
  it('204 No Content, with and without follow, h1 and h2; a bad container is a 400', async () => {
    const r = await both(async (t) => {
      const base = `/api/v1/namespaces/${NS}/pods/pod-0/log`;
      const id = auditId();
      const plain = await h1(t, {
        path: base,
        who: 'alice',
        headers: [
          ['Accept', 'application/json, */*'],
          ['Audit-ID', id],
        ],
      });
      const follow = await h2(t, {
        path: `${base}?container=main&follow=true`,
        who: 'tina',
        headers: [['Accept', 'application/json, */*']],
      });
      const bad = await h1(t, { path: `${base}?container=nope`, who: 'alice' });
      const forbidden = await h1(t, { path: base, who: 'mallory' });
      return {
        plain: { ...headerFacts(plain, { auditId: id }), bodyBytes: plain.body.length },
        follow: { ...headerFacts(follow), bodyBytes: follow.body.length },
        badContainer: { ...headerFacts(bad), body: statusFacts(bad) },
        forbidden: { ...headerFacts(forbidden), body: statusFacts(forbidden) },
      };
    });
    same('logs', r);
  });
});
