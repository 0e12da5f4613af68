/**
 * `kubetrail [flags] -- <command...>`: serve the proxy, run the command with KUBECONFIG pointing at it, pass
 * its stdio through untouched and exit with its code.
 *
 * The listen address is stable (default 127.0.0.1:17443) because kubectl keys its discovery and HTTP
 * caches by server host:port. When the port is already held by a kubetrail that serves the same clusters
 * (e.g. a `kubetrail start` in another terminal, with the same state dir), the command is pointed at that
 * one instead: it traces the requests. When the port is held by anything else, kubetrail stops with a
 * clear error rather than quietly moving to another port and going cold.
 */
import type { StatusBody } from '../background/protocol.ts';
import type { Config } from '../config/schema.ts';
import { KtError } from '../errors.ts';
import { readPrivateTextQuietly } from '../fs/private.ts';
import { shimPathEnv } from '../kubeconfig/credential-shim.ts';
import { redactUrl } from '../redact.ts';
import type { StageObserver } from '../proxy/events.ts';
import { startProxy, type RunningProxy } from '../proxy/server.ts';
import type { KubectlLife } from '../telemetry/commands.ts';
import { epochNow, noCommandGiven, runChild, takeKubeconfigArg } from './child.ts';
import { errLine } from './output.ts';
import { exposureWarning, listenUrl, prepare, type Prepared } from './setup.ts';

export interface WrapHooks {
  /** Observers for this run's requests (telemetry, report). */
  observer?: StageObserver;
  /** kubectl is about to be started (epoch ms): its trace begins here. */
  spawning?: (at: number, argv: readonly string[]) => void;
  /** Called after the command exited and before kubetrail exits (flush, print the waterfall). */
  afterExit?: (info: { proxied: boolean; code: number; life: KubectlLife }) => Promise<void>;
  warn: (line: string) => void;
}

/**
 * The listener on this port, asked with the state dir's control token (over TLS verified against the state
 * dir's CA): `same` when it is a kubetrail serving every one of our routes with our telemetry settings,
 * `other-telemetry` when its spans would go elsewhere (another collector, other trace links or OTEL_*
 * settings), undefined when it is not a kubetrail of this state dir serving our clusters.
 */
async function sharedKubetrail(
  p: Prepared,
  config: Config,
  env: NodeJS.ProcessEnv,
): Promise<'same' | 'other-telemetry' | undefined> {
  const [{ controlCall }, { statusBody }, { resolveForBackground, telemetryKey }] = await Promise.all([
    import('../background/client.ts'),
    import('../background/protocol.ts'),
    import('../background/state.ts'),
  ]);
  let body: Partial<StatusBody> | undefined;
  try {
    body = statusBody(await controlCall(config.stateDir, p.listen.host, p.listen.port, { op: 'status' }, 2000));
  } catch {
    return undefined;
  }
  const served = Array.isArray(body?.routes) ? (body.routes as unknown[]) : undefined;
  if (!body || !served || ![...p.routes.clusters.keys()].every((id) => served.includes(id))) return undefined;
  const resolved = resolveForBackground(config, env);
  return body.telemetry === telemetryKey(resolved.config, resolved.env) ? 'same' : 'other-telemetry';
}

export async function wrap(
  config: Config,
  argv: string[],
  hooks: WrapHooks,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  if (argv.length === 0) throw noCommandGiven();
  const kcArg = takeKubeconfigArg(argv);
  const effective = kcArg.path !== undefined ? { ...config, kubeconfig: kcArg.path } : config;
  const prepared = await prepare(effective, env);
  if (!prepared.listen.loopback) hooks.warn(exposureWarning(listenUrl(prepared.listen)));
  let proxy: RunningProxy | undefined;
  const proxyOpts = {
    routes: prepared.routes,
    pki: prepared.pki,
    host: prepared.listen.host,
    port: prepared.listen.port,
    observer: hooks.observer,
    onInternalError: (e: unknown) => hooks.warn(`kubetrail: internal error: ${String(e)}`),
    onNotice: hooks.warn,
    reuseUpstream: config.reuseUpstream,
  };
  try {
    proxy = await startProxy(proxyOpts);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') {
      throw new KtError('KT_ERR_LISTEN', `--listen ${config.listen}: ${(err as Error).message}`, { cause: err });
    }
    const shared = await sharedKubetrail(prepared, effective, env);
    if (!shared) {
      const { inUseMessage } = await import('./port-holder.ts');
      throw new KtError(
        'KT_ERR_LISTEN',
        await inUseMessage(config.listen, config.stateDir, prepared.listen.host, prepared.listen.port),
      );
    }
    // This path serves in-process (--linger 0, or no background kubetrail could be used): another kubetrail on
    // the port is left alone and this command gets a port of its own, its own trace and waterfall. Handing
    // it to that kubetrail would leave it with neither here (#19 item 3), and, when that one exports
    // elsewhere, send its spans to a collector the user did not ask for (#15 item 5).
    if (!config.quiet) {
      hooks.warn(
        shared === 'other-telemetry'
          ? `kubetrail: the kubetrail on ${config.listen} exports elsewhere (another collector, trace link or OTEL_* setting); serving this command in-process, exporting to ${redactUrl(config.otlpEndpoint)}`
          : `kubetrail: ${config.listen} is served by another kubetrail; serving this command in-process on an ephemeral port`,
      );
    }
    proxy = await startProxy({ ...proxyOpts, port: 0 });
  }
  const kubeconfigPath = prepared.writeKubeconfig(proxy?.url ?? listenUrl(prepared.listen), 'on-path');
  const childArgv = kcArg.path !== undefined ? kcArg.rewrite(kubeconfigPath) : argv;
  let code: number;
  const spawnedAt = epochNow();
  hooks.spawning?.(spawnedAt, childArgv);
  let exitedAt: number;
  try {
    code = await runChild(childArgv, {
      ...shimPathEnv(env, config.stateDir, readPrivateTextQuietly(kubeconfigPath)),
      KUBECONFIG: kubeconfigPath,
    });
  } finally {
    exitedAt = epochNow();
    await proxy?.close();
  }
  await hooks.afterExit?.({ proxied: proxy !== undefined, code, life: { spawnedAt, exitedAt, exitCode: code } });
  return code;
}

/**
 * The whole in-process path: this process serves the command, traces it and prints its waterfall. Used
 * (with an ephemeral --listen) when the address's background kubetrail must be left alone.
 */
export async function wrapInProcess(
  config: Config,
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const { instrument } = await import('./telemetry-setup.ts');
  const telemetry = instrument(config, 'wrap', env);
  return wrap(
    config,
    argv,
    {
      observer: telemetry.observer,
      warn: errLine,
      spawning: (at, argv) => telemetry.spawning(at, argv),
      afterExit: async ({ life }) => {
        const commands = await telemetry.finish(life);
        if (config.quiet) return;
        for (const cmd of commands) for (const line of await telemetry.waterfall(cmd)) errLine(line);
      },
    },
    env,
  );
}
