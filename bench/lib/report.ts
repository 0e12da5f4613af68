/** Markdown tables and the target verdicts from one bench run's results. */
import type { ProfileSummary } from './cpuprofile.ts';
import { PATH_LABELS, type PathKind } from './paths.ts';
import type { W5Result, W5Variant, WrapBreakdown } from './real.ts';
import { fmt, mb, ratio } from './stats.ts';
import type { ConnCounts, Proto } from './target.ts';
import type { Conns, LargeResult, LatencyResult, StartMemResult, ThroughputResult, WatchResult } from './workloads.ts';

export interface Machine {
  date: string;
  mode: 'quick' | 'full';
  nproc: number;
  cpu: string;
  memGiB: number;
  kernel: string;
  node: string;
  nginx: string;
  mitmproxy: string;
  kubectl: string;
  apiserver?: string;
  kubetrail: string;
  commit: string;
  /** 1-minute load average at the start and at the end of the run (other work on the machine shows here). */
  loadStart?: number;
  loadEnd?: number;
}

export interface Results {
  machine: Machine;
  config: Record<string, unknown>;
  standIn: {
    podBytes: number;
    w1?: LatencyResult[];
    w2?: ThroughputResult[];
    w3?: LargeResult[];
    w3big?: LargeResult[];
    w4?: WatchResult[];
    /** `kubetrail start` as a user runs it: peak RSS after a burst and a large list (#18). */
    startMem?: StartMemResult[];
  };
  real?: {
    w1?: LatencyResult[];
    w3?: LargeResult[];
    w5?: W5Result;
    breakdown?: WrapBreakdown;
    podsCreatedMs?: number;
  };
  profiles?: Record<string, ProfileSummary>;
  durationS: number;
  errors: string[];
}

type Verdict = 'met' | 'NOT met' | 'n/a';

export interface Target {
  id: string;
  target: string;
  value: string;
  verdict: Verdict;
}

/** The row of path `k` over `proto` (rows of runs before the h2 legs are HTTP/1.1). */
const by = <T extends { path: PathKind; proto?: Proto }>(
  xs: readonly T[] | undefined,
  k: PathKind,
  proto: Proto = 'h1',
): T | undefined => xs?.find((x) => x.path === k && (x.proto ?? 'h1') === proto);

/** Workload 4 has one row per path, over the protocol the path offers. */
const byPath = <T extends { path: PathKind }>(xs: readonly T[] | undefined, k: PathKind): T | undefined =>
  xs?.find((x) => x.path === k);

/** A row's name: the path, and ', h2' when the load generator spoke HTTP/2 to it. */
const label = (r: { path: PathKind; proto?: Proto }): string =>
  `${PATH_LABELS[r.path]}${r.proto === 'h2' ? ', h2' : ''}`;

/** ALPN protocol → short name ('none': TLS without ALPN, which means HTTP/1.1, as nginx's proxy module speaks). */
const PROTO_NAMES: Record<string, string> = { 'http/1.1': 'h1', http: 'h1 (plain)', none: 'h1 (no ALPN)' };

/** `{ h2: 1 }` → "1 h2"; `{ 'http/1.1': 32 }` → "32 h1"; nothing opened → "0". */
export function fmtConns(c: ConnCounts | undefined): string {
  if (!c) return '–';
  const parts = Object.entries(c)
    .filter(([, n]) => n !== 0)
    .map(([k, n]) => `${n} ${PROTO_NAMES[k] ?? k}`);
  return parts.length > 0 ? parts.join(' + ') : '0';
}

/** Connections per measurement, client leg / upstream leg: the common value, or the range when rounds differ. */
export function fmtConnRounds(cs: readonly Conns[] | undefined): string {
  if (!cs || cs.length === 0) return '–';
  const leg = (f: (c: Conns) => string): string => [...new Set(cs.map(f))].join(', ');
  const up = cs.some((c) => c.upstream) ? leg((c) => fmtConns(c.upstream)) : '–';
  return `${leg((c) => fmtConns(c.client))} / ${up}`;
}

function latencyTable(title: string, rs: LatencyResult[]): string[] {
  const d = by(rs, 'direct')?.summary.p50;
  const n = by(rs, 'nginx')?.summary.p50;
  const nAdded = n !== undefined && d !== undefined ? n - d : undefined;
  const out = [
    `**${title}**`,
    '',
    "| path | p50 ms | p99 ms | added p50 ms | p50 ×direct | added p50 ×nginx's | round p50s (min–max) | conns per round: client / upstream | errors |",
    '|---|---:|---:|---:|---:|---:|---:|---|---:|',
  ];
  for (const r of rs) {
    // Each row against direct and nginx over the same protocol.
    const dr = by(rs, 'direct', r.proto ?? 'h1')?.summary.p50 ?? d;
    const nr = by(rs, 'nginx', r.proto ?? 'h1')?.summary.p50;
    const nAddedR = nr !== undefined && dr !== undefined ? nr - dr : nAdded;
    const added = dr !== undefined ? r.summary.p50 - dr : undefined;
    const rp = r.roundP50.filter(Number.isFinite);
    out.push(
      `| ${label(r)} | ${fmt(r.summary.p50)} | ${fmt(r.summary.p99)} | ${r.path === 'direct' ? '–' : fmt(added)} | ${ratio(r.summary.p50, dr)} | ${r.path === 'direct' || r.path === 'nginx' ? '–' : ratio(added, nAddedR)} | ${fmt(Math.min(...rp))}–${fmt(Math.max(...rp))} | ${fmtConnRounds(r.conns)} | ${r.errors}${r.error ? ` (${r.error.slice(0, 60)})` : ''} |`,
    );
  }
  return [...out, ''];
}

function throughputTable(rs: ThroughputResult[]): string[] {
  const d = by(rs, 'direct')?.rps;
  const n = by(rs, 'nginx')?.rps;
  const out = [
    '**Workload 2: small list (10 pods), concurrency 32, fixed duration (stand-in)**',
    '',
    '| path | req/s | ×direct | ×nginx | proxy CPU ms/req | latency p50 ms | p99 ms | rounds req/s | conns per round: client / upstream | errors |',
    '|---|---:|---:|---:|---:|---:|---:|---|---|---:|',
  ];
  for (const r of rs) {
    const dr = by(rs, 'direct', r.proto ?? 'h1')?.rps ?? d;
    const nr = by(rs, 'nginx', r.proto ?? 'h1')?.rps ?? n;
    out.push(
      `| ${label(r)} | ${fmt(r.rps)} | ${ratio(r.rps, dr)} | ${ratio(r.rps, nr)} | ${fmt(r.cpuMsPerReq)} | ${fmt(r.latency.p50)} | ${fmt(r.latency.p99)} | ${r.rpsRounds.map((x) => fmt(x)).join(', ')} | ${fmtConnRounds(r.conns)} | ${r.errors} |`,
    );
  }
  return [...out, ''];
}

function largeTable(title: string, rs: LargeResult[]): string[] {
  const out = [
    `**${title}**`,
    '',
    '| path | encoding | wire size | TTLB ms | ×direct | ×nginx | TTFB ms | proxy RSS idle | proxy peak RSS | runs (TTLB ms) | conns: client / upstream |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|',
  ];
  const same = (x: LargeResult, r: LargeResult, k: PathKind): boolean =>
    x.path === k && x.encoding === r.encoding && (x.proto ?? 'h1') === (r.proto ?? 'h1');
  for (const r of rs) {
    const d = rs.find((x) => same(x, r, 'direct'))?.ttlbMs;
    const n = rs.find((x) => same(x, r, 'nginx'))?.ttlbMs;
    out.push(
      `| ${label(r)} | ${r.encoding} | ${mb(r.bytes)} | ${fmt(r.ttlbMs)} | ${ratio(r.ttlbMs, d)} | ${ratio(r.ttlbMs, n)} | ${fmt(r.ttfbMs)} | ${mb(r.idleRss)} | ${mb(r.peakRss)} | ${r.ttlbRuns.map((x) => fmt(x)).join(', ')}${r.error ? ` error: ${r.error.slice(0, 80)}` : ''} | ${fmtConnRounds(r.conns)} |`,
    );
  }
  return [...out, ''];
}

function watchTable(rs: WatchResult[], rate: number, durationMs: number): string[] {
  const d = byPath(rs, 'direct')?.latencyUs;
  const n = byPath(rs, 'nginx')?.latencyUs;
  const out = [
    `**Workload 4: ${rs[0]?.watches ?? 0} concurrent watches, ${rate} events/s spread over them for ${durationMs / 1000} s (stand-in)**`,
    '',
    '| path | client protocol | opened | open time s | conns: client / upstream | RSS idle | RSS, watches open | peak RSS | events | delivery p50 ms | p99 ms | added p99 ms | p99 ×direct | p99 ×nginx |',
    '|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rs) {
    const added = d ? (r.latencyUs.p99 - d.p99) / 1000 : undefined;
    out.push(
      `| ${PATH_LABELS[r.path]} | ${r.proto ?? 'h1'} | ${r.opened} | ${fmt(r.openMs / 1000)} | ${r.conns ? fmtConnRounds([r.conns]) : '–'} | ${mb(r.idleRss)} | ${mb(r.openRss)} | ${mb(r.peakRss)} | ${r.events}/${r.sent} | ${fmt(r.latencyUs.p50 / 1000)} | ${fmt(r.latencyUs.p99 / 1000)} | ${r.path === 'direct' ? '–' : fmt(added)} | ${ratio(r.latencyUs.p99, d?.p99)} | ${ratio(r.latencyUs.p99, n?.p99)} |${r.error ? ` ${r.error.slice(0, 80)}` : ''}`,
    );
  }
  return [...out, ''];
}

function startMemTable(rs: StartMemResult[]): string[] {
  const first = rs[0];
  const out = [
    `**\`kubetrail start\` memory: a c=${first?.concurrency ?? 0} burst of small lists, then one ${mb(first?.listBytes)} identity list (stand-in; fresh process per run)**`,
    '',
    '| how it is started | RSS idle | peak after burst | peak after list (median) | runs |',
    '|---|---:|---:|---:|---|',
  ];
  const names = {
    user: '`kubetrail start` as a user runs it (no Node flags given)',
    flags: 'started with NODE_FLAGS (as the background kubetrail)',
  };
  for (const r of rs)
    out.push(
      `| ${names[r.variant]}, ${r.entry === 'dist' ? 'dist/ (the built CLI)' : 'src/ (type stripping)'} | ${mb(r.idleRss)} | ${mb(r.burstPeak)} | ${mb(r.peakRss)} | ${r.peakRuns.map((x) => mb(x)).join(', ')}${r.error ? `; ${r.error}` : ''} |`,
    );
  out.push('');
  return out;
}

function w5Table(w5: W5Result, b: WrapBreakdown | undefined): string[] {
  const d = w5.wall.direct?.p50;
  const out = [
    `**Workload 5: \`kubectl get pods\` end to end, warm caches, ${w5.runs} runs each, interleaved (real kube-apiserver)**`,
    '',
    '| variant | p50 ms | p99 ms | min ms | ×direct (p50) | failures |',
    '|---|---:|---:|---:|---:|---:|',
  ];
  const names: Record<W5Variant, string> = {
    direct: 'kubectl (direct)',
    wrapped: `kubetrail -- kubectl (${w5.bin}, OTLP → Jaeger)`,
    'wrapped-refused': `kubetrail -- kubectl (${w5.bin}, OTLP refused)`,
    'wrapped-dist': 'kubetrail -- kubectl (bin/kubetrail, the launcher users run, dist/ behind it; OTLP → Jaeger)',
  };
  for (const v of ['direct', 'wrapped', 'wrapped-refused', 'wrapped-dist'] as const) {
    const s = w5.wall[v];
    if (!s) continue;
    out.push(
      `| ${names[v]} | ${fmt(s.p50)} | ${fmt(s.p99)} | ${fmt(s.min)} | ${ratio(s.p50, d)} | ${w5.failures[v] ?? 0} |`,
    );
  }
  if (w5.note) out.push('', w5.note);
  out.push('');
  if (b) {
    const p = b.phases;
    out.push(
      "**Where the wrapped run's extra time goes** (medians; phases from a shell that stamps kubectl's start and end)",
      '',
      '| part | ms |',
      '|---|---:|',
      `| Node start (\`node -e 0\`) | ${fmt(b.nodeStartMs)} |`,
      `| import of src/cli/main.ts (all modules the CLI loads; RSS after: ${fmt(b.importRssMb)} MB) | ${fmt(b.importMs)} |`,
      `| import of dist/cli/main.js (the build; RSS after: ${fmt(b.importDistRssMb)} MB) | ${fmt(b.importDistMs)} |`,
      ...Object.entries(b.depsMs).map(([k, v]) => `| &nbsp;&nbsp;of which ${k} | ${fmt(v)} |`),
      `| CA and serving certificate load (ensureLocalPki, existing state dir) | ${fmt(b.caMs)} |`,
      `| prepare() (kubeconfig load, routes, CA, rewrite) | ${fmt(b.prepareMs)} |`,
      `| instrument() (OTel SDK objects) | ${fmt(b.instrumentMs)} |`,
      `| launch → kubectl starts (OTLP live / refused / SDK disabled) | ${fmt(p.live.beforeChild)} / ${fmt(p.refused.beforeChild)} / ${fmt(p.nosdk.beforeChild)} |`,
      `| kubectl's own run, wrapped (live / refused / disabled) vs direct | ${fmt(p.live.child)} / ${fmt(p.refused.child)} / ${fmt(p.nosdk.child)} vs ${fmt(b.directChildMs)} |`,
      `| kubectl exits → kubetrail exits (close, export flush, exit) (live / refused / disabled) | ${fmt(p.live.afterChild)} / ${fmt(p.refused.afterChild)} / ${fmt(p.nosdk.afterChild)} |`,
      `| requests per \`kubectl get pods\` (from spans) | ${fmt(b.requestsPerRun)} |`,
      `| kubetrail → apiserver: TCP connect / TLS / TTFB (from spans) | ${fmt(b.upstreamConnectMs)} / ${fmt(b.upstreamTlsMs)} / ${fmt(b.upstreamTtfbMs)} |`,
      `| SERVER span (kubetrail's whole handling of the request) | ${fmt(b.serverSpanMs)} |`,
      `| TLS handshake, Node client → fresh kubetrail (first) / warm kubetrail / apiserver | ${fmt(b.handshake.kubetrailFirstMs)} / ${fmt(b.handshake.kubetrailMs)} / ${fmt(b.handshake.apiserverMs)} |`,
      '',
    );
    if (b.profile) {
      out.push(
        `CPU profile of one wrapped run (${fmt(b.profile.busyMs)} ms on CPU of ${fmt(b.profile.wallMs)} ms), self time by area:`,
        '',
      );
      out.push(...b.profile.byArea.slice(0, 10).map((a) => `- ${a.area}: ${fmt(a.ms)} ms (${a.pct.toFixed(0)}%)`), '');
    }
  }
  return out;
}

/** The goals of issue #18 (performance, round two). */
const W1_ADDED_MS = 0.3;
const W1_X_NGINX = 2.5;
const W2_OF_NGINX = 0.75;
const W3_GZIP_X_DIRECT = 1.3;

export function evaluateTargets(r: Results): Target[] {
  const t: Target[] = [];
  const w1 = r.standIn.w1;
  const w2 = r.standIn.w2;
  const rw1 = r.real?.w1;
  // HTTP/1.1 rows (comparable with runs before #13), then the h2 rows where the run has them.
  for (const proto of ['h1', 'h2'] as const) {
    const on = proto === 'h2' ? ', h2' : '';
    const d1 = by(w1, 'direct', proto)?.summary.p50;
    const k1 = by(w1, 'kubetrail', proto)?.summary.p50;
    const n1 = by(w1, 'nginx', proto)?.summary.p50;
    if (d1 !== undefined && k1 !== undefined) {
      const added = k1 - d1;
      t.push({
        id: `w1-added${on}`,
        target: `W1 added p50 latency ≤ ${W1_ADDED_MS} ms (stand-in${on})`,
        value: `${fmt(added)} ms`,
        verdict: added <= W1_ADDED_MS ? 'met' : 'NOT met',
      });
      if (n1 !== undefined) {
        const nAdded = n1 - d1;
        const ok = added <= W1_X_NGINX * Math.max(nAdded, 0);
        t.push({
          id: `w1-nginx${on}`,
          target: `W1 added p50 ≤ ${W1_X_NGINX}× nginx's added p50${on}`,
          value: `${fmt(added)} ms vs nginx ${fmt(nAdded)} ms (${ratio(added, nAdded)})`,
          verdict: ok ? 'met' : 'NOT met',
        });
      }
    }
    const rd1 = by(rw1, 'direct', proto)?.summary.p50;
    const rk1 = by(rw1, 'kubetrail', proto)?.summary.p50;
    if (rd1 !== undefined && rk1 !== undefined) {
      t.push({
        id: `w1-real${on}`,
        target: `W1 added p50 latency ≤ 0.5 ms (real kube-apiserver${on})`,
        value: `${fmt(rk1 - rd1)} ms`,
        verdict: rk1 - rd1 <= 0.5 ? 'met' : 'NOT met',
      });
    }
    const k2 = by(w2, 'kubetrail', proto)?.rps;
    const n2 = by(w2, 'nginx', proto)?.rps;
    if (k2 !== undefined && n2 !== undefined) {
      t.push({
        id: `w2${on}`,
        target: `W2 throughput ≥ ${100 * W2_OF_NGINX}% of nginx's${on}`,
        value: `${fmt(k2)} vs ${fmt(n2)} req/s (${((100 * k2) / n2).toFixed(0)}%)`,
        verdict: k2 >= W2_OF_NGINX * n2 ? 'met' : 'NOT met',
      });
    }
    for (const [where, rs] of [
      ['stand-in', r.standIn.w3],
      ['stand-in, 200 MB', r.standIn.w3big],
      ['real', r.real?.w3],
    ] as const) {
      if (!rs) continue;
      const label3 = `${where}${on}`;
      const row = (k: PathKind, enc: string): LargeResult | undefined =>
        rs.find((x) => x.path === k && x.encoding === enc && (x.proto ?? 'h1') === proto);
      for (const enc of ['identity', 'gzip'] as const) {
        const k = row('kubetrail', enc);
        const d = row('direct', enc);
        // mitmproxy runs over HTTP/1.1 only here (one slow request): the h2 rows compare with it too.
        const m = rs.find((x) => x.path === 'mitmproxy' && x.encoding === enc);
        const n = row('nginx', enc);
        if (k && d && enc === 'gzip')
          t.push({
            id: `w3-ttlb-${label3}-${enc}`,
            target: `W3 TTLB ≤ ${W3_GZIP_X_DIRECT}× direct (${label3}, ${enc}, ${k.items} items)`,
            value: `${fmt(k.ttlbMs)} vs ${fmt(d.ttlbMs)} ms (${ratio(k.ttlbMs, d.ttlbMs)})`,
            verdict: k.ttlbMs <= W3_GZIP_X_DIRECT * d.ttlbMs ? 'met' : 'NOT met',
          });
        // Identity: no proxy that decrypts and re-encrypts ~86 MB keeps up with direct on two shared cores; nginx's ratio is the bar.
        if (k && d && n && enc === 'identity') {
          const kx = k.ttlbMs / d.ttlbMs;
          const nx = n.ttlbMs / d.ttlbMs;
          t.push({
            id: `w3-ttlb-${label3}-${enc}`,
            target: `W3 TTLB ×direct ≤ nginx's (${label3}, ${enc}, ${k.items} items)`,
            value: `${fmt(k.ttlbMs)} vs direct ${fmt(d.ttlbMs)} ms (${kx.toFixed(2)}×; nginx ${nx.toFixed(2)}×)`,
            verdict: kx <= nx ? 'met' : 'NOT met',
          });
        }
        if (k?.peakRss !== undefined)
          t.push({
            id: `w3-rss-${label3}-${enc}`,
            target: `W3 proxy peak RSS < 150 MB (${label3}, ${enc}, ${mb(k.bytes)} on the wire)`,
            value: mb(k.peakRss),
            verdict: k.peakRss < 150e6 ? 'met' : 'NOT met',
          });
        if (k && m && Number.isFinite(m.ttlbMs))
          t.push({
            id: `w3-mitm-${label3}-${enc}`,
            target: `W3 faster than mitmproxy (${label3}, ${enc})`,
            value: `${ratio(m.ttlbMs, k.ttlbMs)} faster`,
            verdict: m.ttlbMs > k.ttlbMs ? 'met' : 'NOT met',
          });
        else if (k && m?.error)
          t.push({
            id: `w3-mitm-${label3}-${enc}`,
            target: `W3 faster than mitmproxy (${label3}, ${enc})`,
            value: `mitmproxy did not finish: ${m.error.slice(0, 80)}`,
            verdict: 'met',
          });
      }
    }
  }
  // What users run: the built CLI (older runs measured src/ only).
  const um =
    r.standIn.startMem?.find((x) => x.variant === 'user' && x.entry === 'dist') ??
    r.standIn.startMem?.find((x) => x.variant === 'user');
  if (um?.peakRss !== undefined) {
    t.push({
      id: 'start-rss',
      target: `\`kubetrail start\` as a user runs it (${um.entry ?? 'src'}): peak RSS ≤ 150 MB after a c=${um.concurrency} burst and a ${mb(um.listBytes)} list`,
      value: `${mb(um.peakRss)} (runs ${um.peakRuns.map((x) => mb(x)).join(', ')})`,
      verdict: Math.max(...um.peakRuns) <= 150e6 ? 'met' : 'NOT met',
    });
  }
  const w4 = r.standIn.w4;
  const k4 = byPath(w4, 'kubetrail');
  const d4 = byPath(w4, 'direct');
  if (k4) {
    const rss = k4.peakRss ?? Number.NaN;
    t.push({
      id: 'w4-rss',
      target: `W4 ${k4.watches} watches in < 250 MB RSS`,
      value: `peak ${mb(k4.peakRss)} (with watches open: ${mb(k4.openRss)})`,
      verdict: k4.watches >= 1000 ? (rss < 250e6 ? 'met' : 'NOT met') : 'n/a',
    });
    if (d4) {
      const added = (k4.latencyUs.p99 - d4.latencyUs.p99) / 1000;
      t.push({
        id: 'w4-p99',
        target: 'W4 added event delivery p99 ≤ 5 ms',
        value: `${fmt(added)} ms`,
        verdict: added <= 5 ? 'met' : 'NOT met',
      });
    }
  }
  const w5 = r.real?.w5;
  for (const v of ['wrapped', 'wrapped-dist'] as const) {
    const w = w5?.wall[v]?.p50;
    const dd = w5?.wall.direct?.p50;
    if (w === undefined || dd === undefined) continue;
    const x = w / dd;
    t.push({
      id: `w5-${v}`,
      target: `W5 wrapped wall time ≤ 1.3× direct (p50; ${v === 'wrapped' ? w5?.bin : 'bin/kubetrail, the launcher'})`,
      value: `${fmt(w)} vs ${fmt(dd)} ms (${x.toFixed(2)}×)`,
      verdict: x <= 1.3 ? 'met' : 'NOT met',
    });
  }
  // OTLP refused vs live: the target is that a refused collector costs nothing extra, so only a refused
  // figure worse than the live one by more than noise (the larger of 10% and the live path's own
  // round-to-round spread) is a miss; a refused path that came out faster is noise in the other direction.
  // The last element says which way is worse: +1 higher is worse (times), -1 lower is worse (req/s).
  const pairs: [string, number | undefined, number | undefined, number, 1 | -1][] = [];
  const l1 = by(w1, 'kubetrail');
  const f1 = by(w1, 'kubetrail-refused');
  if (l1 && f1) {
    const spread = Math.max(...l1.roundP50) - Math.min(...l1.roundP50);
    pairs.push(['W1 p50 ms', l1.summary.p50, f1.summary.p50, Math.max(0.1 * l1.summary.p50, spread), 1]);
  }
  const l2 = by(w2, 'kubetrail');
  const f2 = by(w2, 'kubetrail-refused');
  if (l2 && f2)
    pairs.push([
      'W2 req/s',
      l2.rps,
      f2.rps,
      Math.max(0.1 * l2.rps, Math.max(...l2.rpsRounds) - Math.min(...l2.rpsRounds)),
      -1,
    ]);
  for (const enc of ['identity', 'gzip'] as const) {
    const l = r.standIn.w3?.find((x) => x.path === 'kubetrail' && x.encoding === enc);
    const f = r.standIn.w3?.find((x) => x.path === 'kubetrail-refused' && x.encoding === enc);
    if (l && f) pairs.push([`W3 ${enc} TTLB ms`, l.ttlbMs, f.ttlbMs, 0.1 * l.ttlbMs, 1]);
  }
  const f4 = byPath(w4, 'kubetrail-refused');
  // One W4 run per path gives no spread of its own; its p99 moved by ±3 ms between runs on this machine.
  if (k4 && f4)
    pairs.push([
      'W4 p99 ms',
      k4.latencyUs.p99 / 1000,
      f4.latencyUs.p99 / 1000,
      Math.max(0.2 * (k4.latencyUs.p99 / 1000), 1),
      1,
    ]);
  const w5l = w5?.wall.wrapped?.p50;
  if (w5l !== undefined) pairs.push(['W5 p50 ms', w5l, w5?.wall['wrapped-refused']?.p50, 0.1 * w5l, 1]);
  if (pairs.length > 0) {
    const bad = pairs.filter(([, a, b, tol, worse]) => a !== undefined && b !== undefined && (b - a) * worse > tol);
    t.push({
      id: 'refused',
      target: 'OTLP refused: no figure worse than OTLP live beyond noise',
      value: pairs.map(([n, a, b]) => `${n} ${fmt(a)}→${fmt(b)}`).join('; '),
      verdict: bad.length === 0 ? 'met' : 'NOT met',
    });
  }
  return t;
}

export function renderMarkdown(r: Results): string {
  const m = r.machine;
  const out: string[] = [
    `Run: ${m.date}, \`npm run bench${m.mode === 'quick' ? ' -- --quick' : ''}\`, ${fmt(r.durationS)} s, kubetrail ${m.kubetrail} (${m.commit}).`,
    '',
    `Machine: ${m.nproc} cores (${m.cpu}), ${m.memGiB} GiB, Linux ${m.kernel}; Node ${m.node}; ${m.nginx}; mitmproxy ${m.mitmproxy}; kubectl ${m.kubectl}${m.apiserver ? `; kube-apiserver ${m.apiserver}` : ''}.`,
    `Every process (load generator, upstream, proxy, receiver) shares those cores; all traffic is on 127.0.0.1. Load average (1 min) at start ${fmt(m.loadStart)}, at end ${fmt(m.loadEnd)}.`,
    '',
  ];
  const targets = evaluateTargets(r);
  if (targets.length > 0) {
    out.push('**Targets**', '', '| target | measured | verdict |', '|---|---|---|');
    for (const t of targets)
      out.push(
        `| ${t.target} | ${t.value} | ${t.verdict === 'met' ? 'met' : t.verdict === 'n/a' ? 'n/a' : '**NOT met**'} |`,
      );
    out.push('');
  }
  const s = r.standIn;
  if (s.w1)
    out.push(
      ...latencyTable(
        `Workload 1: small GET (one pod, ${fmt(s.podBytes / 1000)} kB), keep-alive, concurrency 1 (stand-in)`,
        s.w1,
      ),
    );
  if (r.real?.w1)
    out.push(
      ...latencyTable(
        `Workload 1: small GET (one pod), keep-alive, concurrency 1 (real ${m.apiserver ?? 'kube-apiserver'})`,
        r.real.w1,
      ),
    );
  if (s.w2) out.push(...throughputTable(s.w2));
  if (s.w3)
    out.push(
      ...largeTable(
        `Workload 3: large list, ${s.w3[0]?.items ?? 0} pods (stand-in); fresh proxy process per measurement`,
        s.w3,
      ),
    );
  if (s.w3big)
    out.push(
      ...largeTable(
        `Workload 3: very large list, ${s.w3big[0]?.items ?? 0} pods (~200 MB identity) (stand-in)`,
        s.w3big,
      ),
    );
  if (r.real?.w3)
    out.push(
      ...largeTable(`Workload 3: large list, ${r.real.w3[0]?.items ?? 0} pods (real kube-apiserver)`, r.real.w3),
    );
  if (s.startMem) out.push(...startMemTable(s.startMem));
  if (s.w4) out.push(...watchTable(s.w4, Number(r.config.w4Rate), Number(r.config.w4DurationMs)));
  if (r.real?.w5) out.push(...w5Table(r.real.w5, r.real.breakdown));
  for (const [name, p] of Object.entries(r.profiles ?? {})) {
    out.push(
      `**CPU profile: ${name}** (${fmt(p.busyMs)} ms on CPU over ${fmt(p.wallMs)} ms)`,
      '',
      '| self time by area | ms | % |',
      '|---|---:|---:|',
    );
    out.push(...p.byArea.slice(0, 12).map((a) => `| ${a.area} | ${fmt(a.ms)} | ${a.pct.toFixed(1)} |`), '');
    out.push('| top functions (self) | ms | % |', '|---|---:|---:|');
    out.push(
      ...p.byFunction
        .slice(0, 12)
        .map((f) => `| \`${f.fn.replace(/\|/g, '\\|')}\` | ${fmt(f.ms)} | ${f.pct.toFixed(1)} |`),
      '',
    );
  }
  if (r.errors.length > 0) out.push('**Errors**', '', ...r.errors.map((e) => `- ${e}`), '');
  return out.join('\n');
}
