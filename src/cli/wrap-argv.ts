/**
 * The wrapped command's start without commander: `kubetrail [flags] -- <command...>` (and `kubectl trail`,
 * which is that with no flags) is parsed here when every flag before `--` is one of the option registry's
 * in its plain form. Anything else (a subcommand, -h, --version, an unknown or repeated flag, a value that
 * looks like a flag) returns undefined, and main() parses it with commander: its errors and help stay
 * the only ones. Measured on workload 5 (#18): loading and running commander is ~15 ms of CPU per wrapped
 * command on a loaded 2-core machine, for a parse this simple.
 */
import type { Config } from '../config/schema.ts';
import { OPTIONS, type OptionDef } from '../config/schema.ts';
import type { RawValues } from '../config/load.ts';
import { describeError, isKtError } from '../errors.ts';
import { noCommandGiven } from './child.ts';
import { errLine } from './output.ts';

/** Exit code of a failure that is the user's to fix (a flag, a file, the state dir). */
export const USAGE_EXIT = 2;

const BY_FLAG = new Map((OPTIONS as readonly OptionDef[]).map((d) => [`--${d.key}`, d]));

/** The flags and the command of `[flags] -- <command...>`; undefined when commander must decide. */
export function parseWrapArgv(argv: readonly string[]): { flags: RawValues; command: string[] } | undefined {
  const end = argv.indexOf('--');
  if (end === -1 || end === argv.length - 1) return undefined;
  const flags: RawValues = {};
  for (let i = 0; i < end; i++) {
    const arg = argv[i] ?? '';
    const eq = arg.indexOf('=');
    const def = BY_FLAG.get(eq === -1 ? arg : arg.slice(0, eq));
    if (!def || flags[def.key] !== undefined) return undefined;
    if (def.type === 'boolean') {
      if (eq !== -1) return undefined;
      flags[def.key] = true;
      continue;
    }
    const value = eq !== -1 ? arg.slice(eq + 1) : i + 1 < end ? argv[++i] : undefined;
    if (value === undefined || value === '' || value.startsWith('-')) return undefined;
    flags[def.key] = value;
  }
  return { flags, command: argv.slice(end + 1) };
}

/** A failure's one line and exit code, as main() reports it (commander's own errors aside). */
export function reportFailure(err: unknown): number {
  if (isKtError(err)) {
    // A state dir problem is never the user's typo: the code lets them look it up (docs/errors.md).
    errLine(`kubetrail: ${err.message}${err.code === 'KT_ERR_STATE_DIR' ? ' (KT_ERR_STATE_DIR)' : ''}`);
    return USAGE_EXIT;
  }
  errLine(`kubetrail: unexpected error: ${describeError(err)}`);
  return 1;
}

/** The wrapped command: through the background kubetrail when one can serve it, else in this process. */
export async function runWrap(config: Config, command: string[]): Promise<number> {
  if (command.length === 0) throw noCommandGiven();
  const viaBackground = await (await import('../background/wrapper.ts')).wrapViaBackground(config, command);
  if (viaBackground !== undefined) return viaBackground;
  return (await import('./wrap.ts')).wrapInProcess(config, command);
}

/** The wrapped command when argv is plain enough to skip commander; undefined: call main(). */
export async function wrapFast(argv: readonly string[]): Promise<number | undefined> {
  const parsed = parseWrapArgv(argv);
  if (!parsed) return undefined;
  try {
    const { resolveConfig } = await import('../config/load.ts');
    return await runWrap(resolveConfig(parsed.flags), parsed.command);
  } catch (err) {
    return reportFailure(err);
  }
}
