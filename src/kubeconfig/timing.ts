/**
 * Timing files: what happened to a kubectl command outside its requests, written by processes other than
 * the proxy (credential-shim.ts has the format's writer, the shim; the wrapper writes `spawn`). Read by
 * telemetry when a command starts and ends. Imported by the wrapper's fast path: Node built-ins only.
 *
 *   spawn <epoch ms>                                      the wrapper started kubectl
 *   name <words>                                          the wrapped command's root name, from its
 *                                                         command line (telemetry/commands.ts
 *                                                         commandLineName: never its values)
 *   credential <start> <end> <exit code> <name>           an exec credential plugin ran (name: base name;
 *                                                         times: see stampMs)
 */
import { readFileSync, rmSync, statSync, truncateSync } from 'node:fs';
import { basename, join } from 'node:path';

export function timingDir(stateDir: string): string {
  return join(stateDir, 'timing');
}

/** The timing file of a kubeconfig not tagged for one command. */
export function untaggedTimingFile(stateDir: string): string {
  return join(timingDir(stateDir), 'untagged');
}

export interface CredentialRun {
  /** The run's line as the shim wrote it: one run read twice is recognised by it (times are converted). */
  id: string;
  /** Epoch ms. */
  start: number;
  end: number;
  exitCode: number;
  /** The plugin command's base name. */
  command: string;
}

export interface Timing {
  /** Epoch ms at which the wrapper started kubectl, when it said. */
  spawnedAt?: number;
  /** The wrapped command's name from its command line (`helm install`), when the wrapper said. */
  command?: string;
  credentials: CredentialRun[];
}

/** A program's name as a root's: its file name, lower-cased, of the characters a command name is made of. */
export function programName(file: string): string | undefined {
  const name = basename(file)
    .toLowerCase()
    .replace(/[^a-z0-9._+-]/g, '')
    .slice(0, 64);
  return name || undefined;
}

/** A plain sub-command word: lower-case letters and hyphens. A value (a name, a path, a token) rarely is. */
const SUBCOMMAND = /^[a-z][a-z-]{0,31}$/;

/**
 * A wrapped command's root name from its command line (wrap mode, when kubectl's own Kubectl-Command does
 * not name it; the wrapper writes it as the `name` line): the program's file name and, when the first
 * argument is a plain word (lower-case letters and hyphens), that word: `helm install`, `clientgo-demo`,
 * `gcloud container`. One word only: a program's later words may be values (`helm install <release>
 * <chart>`), and nothing here can tell which are, so no name, path, flag or value that could be a secret
 * reaches the trace. Kubectl-Command names kubectl's commands whole (`kubectl create secret generic`).
 */
export function commandLineName(argv: readonly string[]): string | undefined {
  const program = programName(argv[0] ?? '');
  if (program === undefined) return undefined;
  const first = argv[1];
  return first !== undefined && SUBCOMMAND.test(first) ? `${program} ${first}` : program;
}

/** A wrapped command's timing file as its wrapper writes it: when kubectl was started, and its name. */
export function spawnRecord(spawnedAt: number, argv: readonly string[]): string {
  const name = commandLineName(argv);
  return `spawn ${spawnedAt}\n${name !== undefined ? `name ${name}\n` : ''}`;
}

/** Parse a timing file; lines that are not ours (or cut short) are ignored. */
export function parseTiming(text: string): Timing {
  const out: Timing = { credentials: [] };
  let boot: number | undefined | null = null;
  const bootMs = (): number | undefined => (boot === null ? (boot = bootEpochMs()) : boot);
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f[0] === 'spawn' && f.length === 2 && /^\d+(\.\d+)?$/.test(f[1] ?? '')) {
      out.spawnedAt = Number(f[1]);
    } else if (
      f[0] === 'name' &&
      f.length >= 2 &&
      f.length <= 3 &&
      f.slice(1).every((w) => /^[a-z0-9._+-]{1,64}$/.test(w))
    ) {
      out.command = f.slice(1).join(' ');
    } else if (f[0] === 'credential' && f.length === 5 && /^\d+$/.test(f[3] ?? '')) {
      const start = stampMs(f[1] ?? '', bootMs);
      const end = stampMs(f[2] ?? '', bootMs);
      if (start === undefined || end === undefined) continue;
      // A base name only, whatever was written: the timing file is ours, but the command's name is the user's.
      if (end >= start)
        out.credentials.push({
          id: line,
          start,
          end,
          exitCode: Number(f[3]),
          command: basename(f[4] ?? '').slice(0, 64),
        });
    }
  }
  return out;
}

/**
 * A shim timestamp in epoch ms: `<s>.<µs>` ($EPOCHREALTIME), `up<s>.<cs>` (seconds since boot, Linux
 * /proc/uptime: `bootMs` is the epoch ms of boot), nanoseconds (GNU date) or `<s>N` (BSD date).
 */
function stampMs(t: string, bootMs: () => number | undefined): number | undefined {
  const up = /^up(\d+(?:\.\d+)?)$/.exec(t);
  if (up) {
    const boot = bootMs();
    return boot === undefined ? undefined : boot + Number(up[1]) * 1000;
  }
  if (/^\d{10,}$/.test(t)) return Number(BigInt(t) / 1000n) / 1000;
  const m = /^(\d+)[.,](\d{1,9})$/.exec(t);
  if (m) return Number(m[1]) * 1000 + Number(`0.${m[2]}`) * 1000;
  const s = /^(\d+)N$/.exec(t);
  return s ? Number(s[1]) * 1000 : undefined;
}

/** When the machine booted, epoch ms, on the clock /proc/uptime counts from (read once per file). */
function bootEpochMs(): number | undefined {
  try {
    const up = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]);
    // Wall clock minus time since boot: both count a suspended laptop's sleep (performance.now() does not).
    return Number.isFinite(up) ? Date.now() - up * 1000 : undefined;
  } catch {
    return undefined;
  }
}

export function readTiming(path: string): Timing | undefined {
  try {
    return parseTiming(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Read a per-command timing file and remove it: the command is over. */
export function takeTiming(path: string): Timing | undefined {
  const t = readTiming(path);
  try {
    rmSync(path, { force: true });
  } catch {
    // not ours to worry about
  }
  return t;
}

/** A shared timing file is read whole each time: keep it small (lines older than its readers' window go). */
export const SHARED_TIMING_MAX_BYTES = 64 * 1024;

export function trimShared(path: string): void {
  try {
    if (statSync(path).size > SHARED_TIMING_MAX_BYTES) truncateSync(path, 0);
  } catch {
    // not there
  }
}
