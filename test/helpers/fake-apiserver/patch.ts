/**
 * Patch application, simplified: JSON merge patch (RFC 7386), JSON patch (RFC 6902: add, remove, replace,
 * test), and a strategic-merge approximation (lists of objects merged by `name`/`containerPort`/`mountPath`,
 * `$patch: delete` honoured, other `$` directives dropped). Server-side apply uses the strategic merge.
 */
import { errors } from './wire.ts';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function isObj(v: unknown): v is Record<string, Json> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function mergePatch(target: unknown, patch: unknown): Json {
  if (!isObj(patch)) return structuredClone(patch as Json);
  const out: Record<string, Json> = isObj(target) ? structuredClone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

const MERGE_KEYS = ['name', 'containerPort', 'mountPath', 'devicePath', 'ip', 'type', 'port'];

function mergeKeyOf(list: Json[]): string | undefined {
  if (list.length === 0 || !list.every(isObj)) return undefined;
  return MERGE_KEYS.find((k) => list.every((e) => isObj(e) && (e[k] !== undefined || e['$patch'] !== undefined)));
}

export function strategicMerge(target: unknown, patch: unknown): Json {
  if (!isObj(patch)) return structuredClone(patch as Json);
  if (patch['$patch'] === 'replace') {
    const { $patch: _p, ...rest } = patch;
    return stripDirectives(rest);
  }
  const out: Record<string, Json> = isObj(target) ? structuredClone(target) : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$')) continue;
    if (v === null) {
      delete out[k];
      continue;
    }
    const cur = out[k];
    if (Array.isArray(v) && Array.isArray(cur)) {
      const key = mergeKeyOf(v);
      if (key !== undefined && cur.every(isObj)) {
        const merged: Json[] = [...cur];
        for (const item of v) {
          if (!isObj(item)) continue;
          const idx = merged.findIndex((e) => isObj(e) && e[key] === item[key]);
          if (item['$patch'] === 'delete') {
            if (idx >= 0) merged.splice(idx, 1);
          } else if (idx >= 0) merged[idx] = strategicMerge(merged[idx], item);
          else merged.push(stripDirectives(item));
        }
        out[k] = merged;
        continue;
      }
      out[k] = stripDirectives(v);
      continue;
    }
    out[k] = strategicMerge(cur, v);
  }
  return out;
}

function stripDirectives(v: Json): Json {
  if (Array.isArray(v)) return v.map(stripDirectives);
  if (!isObj(v)) return v;
  const out: Record<string, Json> = {};
  for (const [k, x] of Object.entries(v)) if (!k.startsWith('$')) out[k] = stripDirectives(x);
  return out;
}

function pointer(path: string): string[] {
  if (path === '') return [];
  if (!path.startsWith('/')) throw errors.badRequest(`invalid JSON pointer: ${path}`);
  return path
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

export function jsonPatch(target: unknown, ops: unknown): Json {
  if (!Array.isArray(ops)) throw errors.badRequest('json patch must be an array of operations');
  const doc: { root: Json } = { root: structuredClone(target as Json) };
  for (const raw of ops) {
    if (!isObj(raw)) throw errors.badRequest('invalid json patch operation');
    const op = typeof raw['op'] === 'string' ? raw['op'] : '';
    const path = typeof raw['path'] === 'string' ? raw['path'] : '';
    const parts = ['root', ...pointer(path)];
    const last = parts.pop() ?? 'root';
    let parent: Json = doc;
    for (const p of parts) {
      if (Array.isArray(parent)) parent = parent[Number(p)] ?? null;
      else if (isObj(parent)) parent = parent[p] ?? null;
      else throw errors.badRequest(`doc is missing path: "${path}"`);
    }
    if (parent === null || typeof parent !== 'object') throw errors.badRequest(`doc is missing path: "${path}"`);
    const value = raw['value'] ?? null;
    if (Array.isArray(parent)) {
      const idx = last === '-' ? parent.length : Number(last);
      if (op === 'add') parent.splice(idx, 0, value);
      else if (op === 'remove') parent.splice(idx, 1);
      else if (op === 'replace') parent[idx] = value;
      else if (op === 'test') {
        if (JSON.stringify(parent[idx]) !== JSON.stringify(value)) throw errors.badRequest('testing value failed');
      } else throw errors.badRequest(`unsupported json patch operation: ${op}`);
    } else {
      const o = parent;
      if (op === 'add' || op === 'replace') {
        if (op === 'replace' && !(last in o))
          throw errors.badRequest(`replace operation does not apply: doc is missing key: ${path}`);
        o[last] = value;
      } else if (op === 'remove') {
        if (!(last in o)) throw errors.badRequest(`remove operation does not apply: doc is missing path: "${path}"`);
        delete o[last];
      } else if (op === 'test') {
        if (JSON.stringify(o[last]) !== JSON.stringify(value)) throw errors.badRequest('testing value failed');
      } else throw errors.badRequest(`unsupported json patch operation: ${op}`);
    }
  }
  return doc.root;
}
