/**
 * Resolve the Config once: defaults < config file < environment < flags. Unknown keys and wrong types are
 * rejected with the file and line; the result is frozen.
 */
import { closeSync, existsSync, constants as fsConstants, fstatSync, openSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type * as Yaml from 'yaml';
import type { Pair } from 'yaml';
import { isKtError, KtError } from '../errors.ts';
import { camel, OPTIONS, type Config, type OptionDef } from './schema.ts';

export type RawValues = Record<string, string | boolean | number | undefined>;

/** A config file is a few lines of YAML: one this large is not one. */
const CONFIG_MAX_BYTES = 1024 * 1024;

function coerce(def: OptionDef, value: unknown, where: string): string | boolean | number {
  if (def.type === 'boolean') {
    if (typeof value === 'boolean') return value;
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0') return false;
  } else if (def.type === 'number') {
    const n =
      typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
    if (Number.isFinite(n) && n >= 0) return n;
  } else if (typeof value === 'string' && value !== '') {
    return value;
  }
  throw new KtError(
    'KT_ERR_CONFIG_INVALID',
    `${where}: expected a ${def.type === 'number' ? 'non-negative number' : def.type}, got ${JSON.stringify(value)}`,
  );
}

function defaultConfigFile(env: NodeJS.ProcessEnv): string | undefined {
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  const file = join(base, 'kubetrail', 'config.yaml');
  return existsSync(file) ? file : undefined;
}

function readConfigFile(file: string): RawValues {
  let text: string;
  let fd: number | undefined;
  try {
    // Without blocking: a FIFO or a device named here (`--config /dev/stdin`) is refused, never waited on.
    fd = openSync(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    const st = fstatSync(fd);
    // A directory fails the read below (EISDIR), as it always has.
    if (!st.isFile() && !st.isDirectory())
      throw new KtError('KT_ERR_CONFIG_INVALID', `config ${file}: not a regular file`);
    if (st.size > CONFIG_MAX_BYTES)
      throw new KtError('KT_ERR_CONFIG_INVALID', `config ${file}: larger than ${CONFIG_MAX_BYTES} bytes`);
    text = readFileSync(fd, 'utf8');
  } catch (err) {
    if (isKtError(err)) throw err;
    throw new KtError(
      'KT_ERR_CONFIG_INVALID',
      `config ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      { cause: err },
    );
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  // Loaded only when there is a config file: a wrapped command without one never pays for the YAML parser.
  const { isMap, isScalar, parseDocument } = createRequire(import.meta.url)('yaml') as typeof Yaml;
  const doc = parseDocument(text, { prettyErrors: true });
  const first = doc.errors[0];
  if (first) {
    const line = first.linePos?.[0].line;
    throw new KtError(
      'KT_ERR_CONFIG_INVALID',
      `config ${file}${line ? `:${line}` : ''}: ${(first.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '')}`,
    );
  }
  if (doc.contents === null) return {};
  if (!isMap(doc.contents)) throw new KtError('KT_ERR_CONFIG_INVALID', `config ${file}: expected a map of options`);
  const out: RawValues = {};
  for (const pair of doc.contents.items as Pair[]) {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    const line =
      pair.key && isScalar(pair.key) && pair.key.range
        ? doc.toString().slice(0, pair.key.range[0]).split('\n').length
        : undefined;
    const where = `config ${file}${line ? `:${line}` : ''}: "${key}"`;
    const def = OPTIONS.find((o) => o.key === key) as OptionDef | undefined;
    if (!def || def.flagOnly) {
      const known = OPTIONS.filter((o: OptionDef) => !o.flagOnly)
        .map((o) => o.key)
        .join(', ');
      throw new KtError('KT_ERR_CONFIG_INVALID', `${where} is not a kubetrail option (known: ${known})`);
    }
    if (pair.value !== null && !isScalar(pair.value))
      throw new KtError('KT_ERR_CONFIG_INVALID', `${where}: expected a single value`);
    const value: unknown = pair.value === null ? null : pair.value.value;
    if (value === null || value === undefined) continue;
    out[key] = coerce(def, value, where);
  }
  return out;
}

/** `flags` are keyed by option key (kebab-case), as the CLI parsed them; absent = not given. */
export function resolveConfig(flags: RawValues, env: NodeJS.ProcessEnv = process.env): Config {
  const configFile = (flags.config as string | undefined) ?? env.KUBETRAIL_CONFIG ?? defaultConfigFile(env);
  const fromFile = configFile ? readConfigFile(configFile) : {};
  const out: Record<string, unknown> = {};
  for (const def of OPTIONS as readonly OptionDef[]) {
    let value: unknown = typeof def.default === 'function' ? def.default(env) : def.default;
    if (fromFile[def.key] !== undefined) value = fromFile[def.key];
    for (const name of def.env ?? []) {
      const v = env[name];
      if (v !== undefined && v !== '') {
        value = coerce(def, v, `environment ${name}`);
        break;
      }
    }
    if (flags[def.key] !== undefined) value = coerce(def, flags[def.key], `--${def.key}`);
    out[camel(def.key)] = value;
  }
  if (configFile) out.config = configFile;
  return Object.freeze(out) as Config;
}

export interface ListenAddress {
  host: string;
  port: number;
  /** False only with --allow-non-loopback: callers say what that exposes. */
  loopback: boolean;
}

export function parseListen(value: string, allowNonLoopback: boolean): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (!m || port > 65535)
    throw new KtError('KT_ERR_USAGE', `--listen "${value}": expected HOST:PORT, e.g. 127.0.0.1:17443`);
  const host = (m[1] ?? m[2]) as string;
  const loopback = host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
  if (!loopback && !allowNonLoopback) {
    throw new KtError(
      'KT_ERR_USAGE',
      `--listen "${value}" is not a loopback address: anyone who can reach it can use kubetrail to reach your clusters and read its request log; add --allow-non-loopback if you mean it`,
    );
  }
  return { host: host === 'localhost' ? '127.0.0.1' : host, port, loopback };
}

/** `10m`, `30s`, `1h`, `500ms`, `0` → milliseconds; undefined when it is none of these. */
export function parseDuration(value: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
  if (!m) return undefined;
  const n = Number(m[1]);
  if (n !== 0 && m[2] === undefined) return undefined;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 'ms'] ?? 1;
  return Math.round(n * unit);
}

/** --linger as milliseconds (0 = no background kubetrail), or a one-line usage error. */
export function lingerMs(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined)
    throw new KtError(
      'KT_ERR_USAGE',
      `--linger "${value}": expected a duration such as 10m, 30s or 0 (no background kubetrail)`,
    );
  return ms;
}
