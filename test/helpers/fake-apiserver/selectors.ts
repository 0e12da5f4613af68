/**
 * Label and field selectors, as far as kubectl uses them: `a=b`, `a==b`, `a!=b`, `a`, `!a`,
 * `a in (x,y)`, `a notin (x,y)`; fields `f=v`, `f==v`, `f!=v` over the fields a resource supports.
 */
import type { KubeObject, ResourceDef } from './resources.ts';
import { errors } from './wire.ts';

type LabelReq =
  | { op: 'eq' | 'ne'; key: string; value: string }
  | { op: 'exists' | 'notexists'; key: string }
  | { op: 'in' | 'notin'; key: string; values: string[] };

function splitTopLevel(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = '';
  for (const c of s) {
    if (c === '(') depth++;
    if (c === ')') depth--;
    if (c === ',' && depth === 0) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  if (cur.trim() !== '') out.push(cur);
  return out.map((t) => t.trim()).filter((t) => t !== '');
}

export function parseLabelSelector(s: string | null): LabelReq[] {
  if (s === null || s.trim() === '') return [];
  return splitTopLevel(s).map((term) => {
    let m = /^(\S+?)\s+(in|notin)\s+\(([^)]*)\)$/.exec(term);
    if (m) return { op: m[2] as 'in' | 'notin', key: m[1] ?? '', values: (m[3] ?? '').split(',').map((v) => v.trim()) };
    m = /^(\S+?)\s*(!=|==|=)\s*(\S*)$/.exec(term);
    if (m) return { op: m[2] === '!=' ? 'ne' : 'eq', key: m[1] ?? '', value: m[3] ?? '' };
    m = /^!\s*(\S+)$/.exec(term);
    if (m) return { op: 'notexists', key: m[1] ?? '' };
    if (/^[A-Za-z0-9._/-]+$/.test(term)) return { op: 'exists', key: term };
    throw errors.badRequest(`unable to parse requirement: found '${term}', expected: '=', '!=', '==', 'in', notin'`);
  });
}

export function matchLabels(reqs: LabelReq[], labels: Record<string, string> | undefined): boolean {
  const l = labels ?? {};
  return reqs.every((r) => {
    const has = Object.hasOwn(l, r.key);
    const v = l[r.key];
    switch (r.op) {
      case 'eq':
        return has && v === r.value;
      case 'ne':
        return !has || v !== r.value;
      case 'exists':
        return has;
      case 'notexists':
        return !has;
      case 'in':
        return has && r.values.includes(v ?? '');
      case 'notin':
        return !has || !r.values.includes(v ?? '');
    }
  });
}

interface FieldReq {
  field: string;
  neg: boolean;
  value: string;
}

export function parseFieldSelector(s: string | null, r: ResourceDef): FieldReq[] {
  if (s === null || s.trim() === '') return [];
  return s.split(',').map((term) => {
    const m = /^\s*([^!=\s]+)\s*(!=|==|=)\s*(.*?)\s*$/.exec(term);
    if (!m) throw errors.badRequest(`invalid selector: '${s}'; can't understand '${term}'`);
    const field = m[1] ?? '';
    if (field !== 'metadata.name' && field !== 'metadata.namespace' && !(field in r.fieldLabels)) {
      throw errors.badRequest(`field label not supported: ${field}`);
    }
    return { field, neg: m[2] === '!=', value: m[3] ?? '' };
  });
}

export function matchFields(reqs: FieldReq[], r: ResourceDef, obj: KubeObject): boolean {
  return reqs.every((q) => {
    let v: string;
    if (q.field === 'metadata.name') v = obj.metadata.name ?? '';
    else if (q.field === 'metadata.namespace') v = obj.metadata.namespace ?? '';
    else v = r.fieldLabels[q.field]?.(obj) ?? '';
    return q.neg ? v !== q.value : v === q.value;
  });
}
