/**
 * kubetrail's command line. Flags come from the option registry (config/schema.ts); every failure that is
 * the user's to fix is one line naming the file, flag or field, and exit code 2.
 */
import { Command, CommanderError, Option } from 'commander';
import { resolveConfig, type RawValues } from '../config/load.ts';
import { OPTIONS, type Config, type OptionDef } from '../config/schema.ts';
import { describeError, isKtError, KtError } from '../errors.ts';
import { VERSION } from '../version.ts';
import { errLine, outLine, writeAll } from './output.ts';
import { reportFailure, runWrap, USAGE_EXIT } from './wrap-argv.ts';

// Everything else is imported where it is used: a wrapped command served by a background kubetrail loads
// neither the proxy nor OpenTelemetry nor the YAML parser (see background/wrapper.ts), and a plainly
// written one not even this module (cli/wrap-argv.ts).

export { USAGE_EXIT };

/** A key of the option registry: a misspelt one in the lists below fails the type check. */
type OptionKey = (typeof OPTIONS)[number]['key'];

/** What prepare() reads (cli/setup.ts): the kubeconfig and its context, kubetrail's address, the state dir. */
const PREPARE_OPTIONS = [
  'config',
  'kubeconfig',
  'context',
  'listen',
  'allow-non-loopback',
  'state-dir',
] as const satisfies readonly OptionKey[];

/** Where traces are sent, and where they are looked at. */
const TRACE_OPTIONS = ['otlp-endpoint', 'jaeger-url'] as const satisfies readonly OptionKey[];

/**
 * The options each command reads, so its --help lists those and no other (the wrapped command, the root,
 * reads them all). A config file may still set any key: a command ignores those it does not read.
 */
const COMMAND_OPTIONS = {
  start: [...PREPARE_OPTIONS, ...TRACE_OPTIONS, 'quiet', 'reuse-upstream', 'session-idle-ms'],
  kubeconfig: PREPARE_OPTIONS,
  stop: ['config', 'state-dir'],
  show: ['config', 'state-dir', 'jaeger-url'],
  // What start would use, without what only shapes serving.
  doctor: [...PREPARE_OPTIONS, ...TRACE_OPTIONS],
} as const satisfies Record<string, readonly OptionKey[]>;

/** Examples under each command's --help. */
const EXAMPLES: Record<'wrap' | keyof typeof COMMAND_OPTIONS, string[]> = {
  wrap: [
    "kubetrail -- kubectl get pods                      # kubectl's output, then the waterfall and a trace link",
    'kubetrail --context staging -- kubectl get pods -A',
    'kubetrail --quiet -- kubectl apply -f app.yaml     # no waterfall: the trace is still exported',
    'kubectl trail get pods                             # the same, as a kubectl plugin (kubectl trail --help)',
  ],
  start: [
    'kubetrail start                                    # then, in another terminal: export KUBECONFIG=<the path it printed>',
    'kubetrail start --listen 127.0.0.1:18443 --session-idle-ms 1000',
  ],
  kubeconfig: [
    'KUBECONFIG=$(kubetrail kubeconfig) kubectl get pods   # needs a running kubetrail start on the same address',
  ],
  stop: ['kubetrail stop'],
  show: [
    "kubetrail show last                                 # the last command's trace as a tree",
    'kubetrail show last --json > trace.json                # OTLP JSON, for a bug report',
  ],
  doctor: ['kubetrail doctor', 'kubetrail doctor --context staging --jaeger-url http://localhost:16686'],
};

function withExamples(cmd: Command, lines: string[]): Command {
  return cmd.addHelpText('after', `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}\n`);
}

function addOptions(cmd: Command, keys?: readonly string[]): Command {
  for (const def of (OPTIONS as readonly OptionDef[]).filter((d) => keys === undefined || keys.includes(d.key))) {
    const flag = def.type === 'boolean' ? `--${def.key}` : `--${def.key} <${def.metavar ?? 'VALUE'}>`;
    cmd.addOption(
      new Option(
        flag,
        def.default !== undefined && typeof def.default !== 'function' && def.type !== 'boolean'
          ? `${def.help} (default ${String(def.default)})`
          : def.help,
      ),
    );
  }
  return cmd;
}

/** Commander's camelCased option values → option keys, leaving out what was not given. */
function flagValues(cmd: Command): RawValues {
  const opts = cmd.optsWithGlobals<Record<string, string | boolean | undefined>>();
  const out: RawValues = {};
  for (const def of OPTIONS as readonly OptionDef[]) {
    const v = opts[def.key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())];
    if (v !== undefined) out[def.key] = v;
  }
  return out;
}

async function giveWay(
  stateDir: string,
  host: string,
  port: number,
): Promise<{ stopped: boolean; busy?: { open: number; wrappers: number } }> {
  const [{ stopBackgroundOn }, { recordedElsewhere }] = await Promise.all([
    import('../background/client.ts'),
    import('../background/addresses.ts'),
  ]);
  const r = await stopBackgroundOn(stateDir, host, port);
  if (r.stopped || r.busy) return r;
  const other = recordedElsewhere(process.env, stateDir, host, port);
  return other !== undefined ? stopBackgroundOn(other.stateDir, host, port) : r;
}

async function runStart(given: Config): Promise<number> {
  const [
    { startProxy },
    { exposureWarning, listenUrl, prepare, servingProxyOptions },
    { instrument },
    { foregroundControl },
    { tagAliveIn },
    { resolveForBackground },
    { backgroundPaths },
    { busyText },
  ] = await Promise.all([
    import('../proxy/server.ts'),
    import('./setup.ts'),
    import('./telemetry-setup.ts'),
    import('../background/foreground.ts'),
    import('../background/publish.ts'),
    import('../background/state.ts'),
    import('../background/paths.ts'),
    import('../background/protocol.ts'),
  ]);
  // Absolute paths, so wrapped commands run from anywhere recognise the same configuration.
  const { config, env } = resolveForBackground(given, process.env);
  const prepared = await prepare(config, env);
  if (!prepared.listen.loopback) errLine(exposureWarning(listenUrl(prepared.listen)));
  // A wrapped command served here is ended by idle only once its wrapper is gone, as in the background.
  const bgPaths = backgroundPaths(config.stateDir, prepared.listen.host, prepared.listen.port);
  const telemetry = instrument(config, 'start', env, { tagAlive: tagAliveIn(bgPaths.commands, bgPaths.key) });
  const observer = telemetry.observer;
  // Wrapped commands with the same configuration use this kubetrail as they would a background one.
  const control = foregroundControl(config, env, [...prepared.routes.clusters.keys()], telemetry);
  const listen = (): ReturnType<typeof startProxy> =>
    startProxy(servingProxyOptions(config, prepared, { observer, say: errLine, onControl: control?.onControl }));
  let proxy;
  try {
    try {
      proxy = await listen();
    } catch (err) {
      // A background kubetrail that wrapped commands started (with this state dir or, as the address book
      // says, another) gives way to a foreground one, once idle: never one that other terminals' commands use.
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      const r = await giveWay(config.stateDir, prepared.listen.host, prepared.listen.port);
      if (r.busy)
        throw new KtError(
          'KT_ERR_LISTEN',
          `--listen ${config.listen}: the background kubetrail there is in use (${busyText(r.busy)}); stopping it would cut them: retry when they end, or stop it anyway with \`kubetrail stop\``,
        );
      if (!r.stopped) throw err;
      errLine(`kubetrail: stopped the background kubetrail on ${config.listen} to serve here`);
      proxy = await listen();
    }
  } catch (err) {
    if (isKtError(err)) throw err;
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE')
      throw new KtError('KT_ERR_LISTEN', `--listen ${config.listen}: ${describeError(err)}`, { cause: err });
    const { inUseMessage } = await import('./port-holder.ts');
    throw new KtError(
      'KT_ERR_LISTEN',
      await inUseMessage(config.listen, config.stateDir, prepared.listen.host, prepared.listen.port),
      { cause: err },
    );
  }
  if (prepared.listen.port !== 0) await control?.publish(prepared, proxy);
  outLine(`export KUBECONFIG=${prepared.writeKubeconfig(proxy.url)}`);
  errLine(`kubetrail: listening on ${proxy.url} for ${prepared.routes.clusters.size} cluster(s); Ctrl-C to stop`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  control?.unpublish();
  await proxy.close();
  await telemetry.finish();
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  // The background kubetrail a wrapped command starts (background/daemon.ts); not for users.
  if (argv.length === 1 && argv[0] === '__background') return (await import('../background/daemon.ts')).runBackground();
  let result: Promise<number> | undefined;
  const program = withExamples(addOptions(new Command('kubetrail')), EXAMPLES.wrap)
    .description(
      'Trace what kubectl does: a transparent HTTPS proxy that turns each kubectl command into one OpenTelemetry trace.',
    )
    .usage('[flags] -- <command...>   (or: kubetrail <subcommand> [flags])')
    .version(VERSION, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'print this help')
    .helpCommand('help [subcommand]', 'print the help of a subcommand')
    .argument('[command...]', 'the command to run through kubetrail, e.g. kubectl get pods')
    .passThroughOptions()
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ writeOut: (s) => writeAll(1, s), writeErr: (s) => writeAll(2, s), outputError: () => undefined })
    .action((command: string[], _opts, cmd: Command) => {
      result = runWrap(resolveConfig(flagValues(cmd)), command);
    });

  withExamples(addOptions(program.command('start'), COMMAND_OPTIONS.start), EXAMPLES.start)
    .description('serve until SIGINT/SIGTERM; print `export KUBECONFIG=<path>` and one line per request')
    .action((_opts, cmd: Command) => {
      result = runStart(resolveConfig(flagValues(cmd)));
    });

  withExamples(addOptions(program.command('kubeconfig'), COMMAND_OPTIONS.kubeconfig), EXAMPLES.kubeconfig)
    .description('write the rewritten kubeconfig and print its path')
    .action((_opts, cmd: Command) => {
      result = import('./setup.ts').then(async ({ listenUrl, prepare }) => {
        const p = await prepare(resolveConfig(flagValues(cmd)));
        // The path form: any kubetrail on the address serves it, a published Docker port included.
        outLine(p.writeKubeconfig(listenUrl(p.listen), 'by-path', true));
        return 0;
      });
    });

  withExamples(addOptions(program.command('stop'), COMMAND_OPTIONS.stop), EXAMPLES.stop)
    .description(
      'stop the background kubetrails that wrapped commands started (see --linger), whatever state dir they have',
    )
    .action((_opts, cmd: Command) => {
      result = import('./stop.ts').then((m) => m.runStop(resolveConfig(flagValues(cmd))));
    });

  withExamples(addOptions(program.command('show'), COMMAND_OPTIONS.show), EXAMPLES.show)
    .description(
      'print a trace as a tree of spans (kubetrail, apiserver, etcd) from Jaeger, or from the last commands kept in the state dir',
    )
    .argument('<trace>', 'a trace id, or `last` for the last command')
    .option('--json', 'print the trace as OTLP JSON (for a bug report)')
    .action((trace: string, _opts, cmd: Command) => {
      result = import('./show.ts').then((m) =>
        m.runShow(resolveConfig(flagValues(cmd)), trace, { json: cmd.opts<{ json?: boolean }>().json === true }),
      );
    });

  withExamples(addOptions(program.command('doctor'), COMMAND_OPTIONS.doctor), EXAMPLES.doctor)
    .description(
      "check the kubeconfig, each context's apiserver (direct and through kubetrail), the OTLP endpoint, the state dir and the listen address; say what to do",
    )
    .action((_opts, cmd: Command) => {
      // Loaded on demand: the wrapped command's start-up never pays for it.
      result = import('./doctor/doctor.ts').then((d) => d.runDoctor(flagValues(cmd)));
    });

  program
    .command('version')
    .description('print the version')
    .action(() => {
      outLine(VERSION);
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return result ? await result : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return 0;
      // `kubetrail help <no such subcommand>`: commander has printed the help on stderr.
      if (err.code === 'commander.help') return USAGE_EXIT;
      errLine(`kubetrail: ${err.message.replace(/^error: /, '')}`);
      return USAGE_EXIT;
    }
    return reportFailure(err);
  }
}
