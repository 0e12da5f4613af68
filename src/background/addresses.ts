/**
 * Which state dir the kubetrail on each listen address belongs to, recorded outside any one state dir.
 *
 * A background kubetrail's files live in the state dir it was started with. A command run with another
 * state dir (the default, after `npm run demo` or a script used `--state-dir`) would otherwise see only a
 * port held by "another program": it could neither use, replace, stop nor name that kubetrail. So every
 * kubetrail that publishes itself on an address also writes that address's entry here:
 *
 *   <default state dir>/addresses/<addr>   the absolute path of the state dir it was started with (0600)
 *
 * An entry is only a hint: a reader believes it only when that state dir's state file for the address names
 * a process that is still that kubetrail (client.ts owned), and its control calls still need that
 * state dir's token. Imported by the wrapper's fast path (eslint.config.js lists it): Node built-ins only.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { OPTIONS, type OptionDef } from '../config/schema.ts';
import { backgroundPaths, privateDir } from './paths.ts';
import { readState, replacePrivate, type BackgroundState } from './state.ts';

/** The state dir kubetrail uses when none is given (the option registry's default: XDG_STATE_HOME or HOME). */
export function defaultStateDir(env: NodeJS.ProcessEnv): string {
  const def = (OPTIONS as readonly OptionDef[]).find((o) => o.key === 'state-dir')?.default;
  return resolve(typeof def === 'function' ? (def(env) ?? '') : '');
}

function bookDir(env: NodeJS.ProcessEnv): string {
  return join(defaultStateDir(env), 'addresses');
}

/** Record that the kubetrail on host:port keeps its files in `stateDir`. Best effort: never fails a start. */
export function recordAddress(env: NodeJS.ProcessEnv, stateDir: string, host: string, port: number): void {
  try {
    const dir = bookDir(env);
    privateDir(defaultStateDir(env), dir);
    replacePrivate(join(dir, backgroundPaths(stateDir, host, port).key), `${resolve(stateDir)}\n`);
  } catch {
    // a read-only HOME: other state dirs just cannot find this kubetrail
  }
}

export interface Elsewhere {
  stateDir: string;
  state: BackgroundState;
}

/**
 * The kubetrail state recorded for host:port by a state dir other than `stateDir`, if any (its process is
 * not checked here: see client.ts owned).
 */
export function recordedElsewhere(
  env: NodeJS.ProcessEnv,
  stateDir: string,
  host: string,
  port: number,
): Elsewhere | undefined {
  const key = backgroundPaths(stateDir, host, port).key;
  let other: string;
  try {
    other = readFileSync(join(bookDir(env), key), 'utf8').trim();
  } catch {
    return undefined;
  }
  if (!isAbsolute(other) || other === resolve(stateDir)) return undefined;
  const state = readState(backgroundPaths(other, host, port).state);
  return state && state.host === host && state.port === port ? { stateDir: other, state } : undefined;
}

/** Every address recorded, with the state dir each names (for `kubetrail stop`). */
export function recordedAddresses(env: NodeJS.ProcessEnv): { key: string; stateDir: string }[] {
  const dir = bookDir(env);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: { key: string; stateDir: string }[] = [];
  for (const key of names) {
    if (key.endsWith('.tmp')) continue;
    try {
      const stateDir = readFileSync(join(dir, key), 'utf8').trim();
      if (isAbsolute(stateDir)) out.push({ key, stateDir });
    } catch {
      // removed meanwhile
    }
  }
  return out;
}
