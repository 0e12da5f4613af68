/**
 * The waterfall's account of the whole command: how its wall time divides, and each finding with what it
 * means: time in a credential plugin, in kubectl's rate limiter. Pure: summary in, lines out; the
 * waterfall places them.
 */
import { canIArgs, type RequiredAccess } from '../stages/rbac.ts';
import { podPhaseTotals, type CommandSummary } from '../telemetry/commands.ts';
import { fmtMs } from './format.ts';

/** The header's note on where the time starts, when it is not kubectl's start. */
export function timedFromNote(cmd: CommandSummary): string {
  if (cmd.timedFrom === 'first_request') return ' (from its first request: no process to watch)';
  if (cmd.timedFrom === 'credential') return ' (from its credential plugin: no process to watch)';
  return '';
}

/** The header's tail: kubectl's exit code when it failed. */
export function exitNote(cmd: CommandSummary): string {
  return cmd.exitCode !== undefined && cmd.exitCode !== 0 ? ` · exit ${cmd.exitCode}` : '';
}

/** `time: requests 150ms · throttled 3900ms · credential 300ms · kubectl 70ms` (they add up to the header's) */
export function divisionLine(cmd: CommandSummary): string | undefined {
  const d = cmd.division;
  if (!d) return undefined;
  const parts: string[] = [`requests ${fmtMs(d.requestsMs)}`];
  if (d.throttledMs > 0) parts.push(`throttled ${fmtMs(d.throttledMs)}`);
  if (d.credentialMs > 0) parts.push(`credential ${fmtMs(d.credentialMs)}`);
  parts.push(`kubectl itself ${fmtMs(d.ownMs)}`);
  return `time: ${parts.join(' · ')}`;
}

const PHASE_NAMES: Record<string, string> = {
  running: 'Running',
  pending: 'Pending',
  succeeded: 'Succeeded',
  failed: 'Failed',
  unknown: 'Unknown',
  other: 'other',
};

/** `600 pods: 500 Running, 100 Pending`, over every page of the command's pod lists; most first. */
export function podPhaseLine(cmd: CommandSummary): string | undefined {
  const totals = podPhaseTotals(cmd.requests);
  if (!totals) return undefined;
  const entries = Object.entries(totals).sort((a, b) => b[1] - a[1]);
  const all = entries.reduce((n, [, v]) => n + v, 0);
  return `${all} pod${all === 1 ? '' : 's'}: ${entries.map(([p, n]) => `${n} ${PHASE_NAMES[p] ?? p}`).join(', ')}`;
}

/**
 * The server's throttling: answers 429 (API Priority and Fairness, or max-in-flight) that kubectl retried
 * after Retry-After, one line per request path: `apf rejected: list pods 2× 429 (Retry-After 1s), then 200`.
 */
export function apfLines(cmd: CommandSummary): string[] {
  const byPath = new Map<
    string,
    { name: string; rejected: number; retryAfter: Set<number>; last: number | undefined }
  >();
  for (const r of cmd.requests) {
    const key = `${r.method} ${r.path}`;
    const g = byPath.get(key);
    if (r.statusCode === 429) {
      const e = g ?? { name: r.name, rejected: 0, retryAfter: new Set<number>(), last: undefined };
      e.rejected++;
      const ra = r.rbac?.retryAfterS;
      if (ra !== undefined) e.retryAfter.add(ra);
      e.last = 429;
      byPath.set(key, e);
    } else if (g) {
      g.last = r.statusCode;
    }
  }
  return [...byPath.values()].map((g) => {
    const ra = g.retryAfter.size > 0 ? ` (Retry-After ${[...g.retryAfter].join('/')}s)` : '';
    const then = g.last !== 429 && g.last !== undefined ? `, then ${g.last}` : ', never let through';
    return `apf rejected: ${g.name} ${g.rejected}× 429${ra}${then}`;
  });
}

export function findingLines(cmd: CommandSummary): string[] {
  const lines: string[] = [...apfLines(cmd)];
  const pods = podPhaseLine(cmd);
  if (pods) lines.push(pods);
  const creds = cmd.credentials ?? [];
  if (creds.length > 0) {
    const byName = new Map<string, { runs: number; ms: number; failed: number }>();
    for (const c of creds) {
      const e = byName.get(c.command) ?? { runs: 0, ms: 0, failed: 0 };
      e.runs++;
      e.ms += c.end - c.start;
      if (c.exitCode !== 0) e.failed++;
      byName.set(c.command, e);
    }
    for (const [name, e] of byName) {
      const runs = e.runs === 1 ? '' : ` in ${e.runs} runs`;
      const failed = e.failed > 0 ? `, ${e.failed} failed` : '';
      lines.push(`credential plugin: ${name} ${fmtMs(e.ms)}${runs}${failed}`);
    }
  }
  const t = cmd.throttling;
  if (t && t.totalMs > 0 && t.limiter) {
    lines.push(
      `client-side throttling: ${fmtMs(t.totalMs)} (kubectl's limiter: QPS ${t.limiter.qps}, burst ${t.limiter.burst})`,
    );
  }
  return lines;
}

/** A shell word as typed: quoted only when it must be. */
function sh(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** An RBAC object name (a DNS subdomain) for the rule: `kubetrail-list-pods`, `kubetrail-get-pods-log`. */
function ruleName(r: RequiredAccess): string {
  const what =
    r.path !== undefined
      ? [r.verb, r.path]
      : [r.verb, r.resource ?? '', r.group ?? '', r.subresource ?? '', r.name ?? ''];
  const slug = what
    .filter(Boolean)
    .join('-')
    .toLowerCase()
    .replace(/[^a-z0-9.-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^-|-$/g, '');
  return `kubetrail-${slug}`.slice(0, 63).replace(/[-.]+$/, '');
}

/**
 * The commands that would allow a denied request, for an admin to run, and the check for the user: a Role
 * and RoleBinding in the namespace, or a ClusterRole and ClusterRoleBinding at the cluster scope and for
 * non-resource URLs. Service accounts are bound as such.
 */
export function rbacFix(r: RequiredAccess): { allow: string[]; check: string } {
  const name = ruleName(r);
  const sa = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(r.user);
  const subject = sa ? `--serviceaccount=${sh(`${sa[1]}:${sa[2]}`)}` : `--user=${sh(r.user)}`;
  const check = `kubectl auth can-i ${canIArgs(r)
    .split(' ')
    .map((w) => (w.startsWith('-') ? w : sh(w)))
    .join(' ')}`;
  if (r.path !== undefined) {
    return {
      allow: [
        `kubectl create clusterrole ${name} --verb=${sh(r.verb)} --non-resource-url=${sh(r.path)}`,
        `kubectl create clusterrolebinding ${name} --clusterrole=${name} ${subject}`,
      ],
      check,
    };
  }
  const resource = `${r.resource ?? ''}${r.group ? `.${r.group}` : ''}${r.subresource !== undefined ? `/${r.subresource}` : ''}`;
  const rule = `--verb=${sh(r.verb)} --resource=${sh(resource)}${r.name !== undefined ? ` --resource-name=${sh(r.name)}` : ''}`;
  if (r.namespace !== undefined) {
    const ns = `-n ${sh(r.namespace)}`;
    return {
      allow: [
        `kubectl create role ${name} ${rule} ${ns}`,
        `kubectl create rolebinding ${name} --role=${name} ${subject} ${ns}`,
      ],
      check,
    };
  }
  return {
    allow: [
      `kubectl create clusterrole ${name} ${rule}`,
      `kubectl create clusterrolebinding ${name} --clusterrole=${name} ${subject}`,
    ],
    check,
  };
}

/** At most this many distinct denials are explained (each is four lines). */
const MAX_DENIALS = 3;

/** For each distinct authorizer denial: the commands that would allow it (never cut: they are to be copied). */
export function rbacFixLines(cmd: CommandSummary): string[] {
  const seen = new Set<string>();
  const lines: string[] = [];
  for (const req of cmd.requests) {
    // The rbac stage worked it out from the authorizer's message when the answer came back.
    const r = req.rbac?.decision === 'denied' ? req.rbac.required : undefined;
    if (!r) continue;
    const key = canIArgs(r);
    if (seen.has(key)) continue;
    seen.add(key);
    if (seen.size > MAX_DENIALS) break;
    const fix = rbacFix(r);
    lines.push(`rbac: ${r.user || 'the user'} needs ${key}`);
    if (r.iamPermissions)
      lines.push(`  IAM: needs one of ${r.iamPermissions.join(', ')} (an IAM role that grants it; or RBAC:)`);
    lines.push(...fix.allow.map((l) => `  ${l}`));
    lines.push(`  check: ${fix.check}`);
  }
  return lines;
}
