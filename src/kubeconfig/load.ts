/**
 * Load kubeconfig files the way kubectl does (client-go clientcmd/loader.go):
 * --kubeconfig: that one file; else every file in KUBECONFIG (':'-separated, deduplicated, missing ones
 * skipped); else ~/.kube/config. For clusters, users and contexts the first file that defines a name wins
 * the whole entry; for current-context the first file that sets it wins. Relative paths inside an entry
 * are resolved against the directory of the file that defined it.
 */
import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, resolve } from 'node:path';
import { parseDocument, isMap, isSeq, type Document } from 'yaml';
import { KtError } from '../errors.ts';

export type Entry = Record<string, unknown>;

export interface NamedEntry {
  name: string;
  /** The entry's body (`cluster`, `user` or `context`), paths already absolute. */
  body: Entry;
  /** The file that defined it. */
  origin: string;
}

export interface LoadedKubeconfig {
  files: string[];
  clusters: Map<string, NamedEntry>;
  users: Map<string, NamedEntry>;
  contexts: Map<string, NamedEntry>;
  currentContext: string | undefined;
  /** Top-level `preferences` and `extensions` from the first file that has them. */
  preferences: unknown;
  extensions: unknown;
}

export interface LoadOptions {
  /** Value of --kubeconfig, if given. */
  explicitPath?: string | undefined;
  env?: NodeJS.ProcessEnv;
}

const PATH_FIELDS: Record<'cluster' | 'user', string[]> = {
  cluster: ['certificate-authority'],
  user: ['client-certificate', 'client-key', 'tokenFile'],
};

export function kubeconfigPaths(opts: LoadOptions = {}): { paths: string[]; explicit: boolean } {
  const env = opts.env ?? process.env;
  if (opts.explicitPath) return { paths: [resolve(opts.explicitPath)], explicit: true };
  const list = env.KUBECONFIG;
  if (list) {
    const seen = new Set<string>();
    for (const p of list.split(delimiter)) if (p) seen.add(resolve(p));
    return { paths: [...seen], explicit: false };
  }
  return { paths: [resolve(env.HOME ?? homedir(), '.kube', 'config')], explicit: false };
}

function readDocument(file: string): Document {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'read error';
    throw new KtError('KT_ERR_KUBECONFIG_INVALID', `kubeconfig ${file}: cannot read (${code})`, { cause: err });
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: false });
  const first = doc.errors[0];
  if (first) {
    const line = first.linePos?.[0].line;
    const msg = first.message.split('\n')[0] ?? 'invalid YAML';
    throw new KtError(
      'KT_ERR_KUBECONFIG_INVALID',
      `kubeconfig ${file}${line ? `:${line}` : ''}: ${msg.replace(/ at line \d+, column \d+:?$/, '')}`,
    );
  }
  return doc;
}

function absolutize(body: Entry, kind: 'cluster' | 'user' | 'context', dir: string): Entry {
  if (kind === 'context') return body;
  const out: Entry = { ...body };
  for (const field of PATH_FIELDS[kind]) {
    const v = out[field];
    if (typeof v === 'string' && v !== '' && !isAbsolute(v)) out[field] = resolve(dir, v);
  }
  const exec = out.exec;
  if (kind === 'user' && exec && typeof exec === 'object') {
    const command = (exec as Entry).command;
    // kubectl resolves exec.command against the file only when it contains a path separator.
    if (typeof command === 'string' && command.includes('/') && !isAbsolute(command)) {
      out.exec = { ...(exec as Entry), command: resolve(dir, command) };
    }
  }
  return out;
}

function collect(
  target: Map<string, NamedEntry>,
  list: unknown,
  kind: 'cluster' | 'user' | 'context',
  file: string,
): void {
  if (list === null || list === undefined) return;
  if (!Array.isArray(list)) {
    throw new KtError('KT_ERR_KUBECONFIG_INVALID', `kubeconfig ${file}: "${kind}s" must be a list`);
  }
  list.forEach((item: unknown, i) => {
    const rec = item as Entry | null;
    const name = rec?.name;
    if (typeof name !== 'string' || name === '') {
      throw new KtError('KT_ERR_KUBECONFIG_INVALID', `kubeconfig ${file}: ${kind}s[${i}] has no name`);
    }
    const body = rec?.[kind] ?? {};
    if (typeof body !== 'object' || Array.isArray(body)) {
      throw new KtError(
        'KT_ERR_KUBECONFIG_INVALID',
        `kubeconfig ${file}: ${kind}s[${i}] ("${name}").${kind} must be a map`,
      );
    }
    if (!target.has(name)) {
      target.set(name, { name, body: absolutize(body as Entry, kind, dirname(file)), origin: file });
    }
  });
}

export function loadKubeconfig(opts: LoadOptions = {}): LoadedKubeconfig {
  const { paths, explicit } = kubeconfigPaths(opts);
  const out: LoadedKubeconfig = {
    files: [],
    clusters: new Map(),
    users: new Map(),
    contexts: new Map(),
    currentContext: undefined,
    preferences: undefined,
    extensions: undefined,
  };
  for (const file of paths) {
    let exists = true;
    try {
      statSync(file);
    } catch {
      exists = false;
    }
    if (!exists) {
      if (explicit) throw new KtError('KT_ERR_KUBECONFIG_INVALID', `kubeconfig ${file}: no such file`);
      continue;
    }
    const doc = readDocument(file);
    out.files.push(file);
    if (doc.contents === null) continue;
    if (!isMap(doc.contents) && !isSeq(doc.contents)) {
      throw new KtError('KT_ERR_KUBECONFIG_INVALID', `kubeconfig ${file}: not a kubeconfig (expected a YAML map)`);
    }
    const data = doc.toJS() as Entry | null;
    if (!data || typeof data !== 'object' || Array.isArray(data)) {
      throw new KtError('KT_ERR_KUBECONFIG_INVALID', `kubeconfig ${file}: not a kubeconfig (expected a YAML map)`);
    }
    collect(out.clusters, data.clusters, 'cluster', file);
    collect(out.users, data.users, 'user', file);
    collect(out.contexts, data.contexts, 'context', file);
    const cc = data['current-context'];
    if (out.currentContext === undefined && typeof cc === 'string' && cc !== '') out.currentContext = cc;
    out.preferences ??= data.preferences;
    out.extensions ??= data.extensions;
  }
  if (out.files.length === 0) {
    throw new KtError(
      'KT_ERR_KUBECONFIG_INVALID',
      `kubeconfig: none of ${paths.join(', ')} exists (set --kubeconfig or KUBECONFIG)`,
    );
  }
  return out;
}

/** Bytes of a `*-data` field or the file it names; `*-data` wins, as in client-go. */
export function dataOrFile(body: Entry, field: string, owner: string): Buffer | undefined {
  const data = body[`${field}-data`];
  if (typeof data === 'string' && data !== '') return Buffer.from(data, 'base64');
  const file = body[field];
  if (typeof file === 'string' && file !== '') {
    try {
      return readFileSync(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'read error';
      throw new KtError('KT_ERR_KUBECONFIG_INVALID', `kubeconfig ${owner}: ${field} ${file}: cannot read (${code})`, {
        cause: err,
      });
    }
  }
  return undefined;
}
