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
import { get } from 'node:https';
import type { Config } from '../config/schema.ts';
import { KtError } from '../errors.ts';
import type { StageObserver } from '../proxy/events.ts';
import { CONTROL_PREFIX, startProxy, type RunningProxy } from '../proxy/server.ts';
import type { KubectlLife } from '../telemetry/commands.ts';
import { epochNow, runChild, takeKubeconfigArg } from './child.ts';
import { errLine } from './output.ts';
import { exposureWarning, listenUrl, prepare, type Prepared } from './setup.ts';

export { takeKubeconfigArg } from './child.ts';

export interface WrapHooks {
  /** Observers for this run's requests (telemetry, report). */
  observer?: StageObserver;
  /** kubectl is about to be started (epoch ms): its trace begins here. */
  spawning?: (at: number) => void;
  /** Called after the command exited and before kubetrail exits (flush, print the waterfall). */
  afterExit?: (info: { proxied: boolean; code: number; life: KubectlLife }) => Promise<void>;
  warn: (line: string) => void;
}

/** Is the listener on this port a kubetrail serving every one of our routes? */
async function sharedKubetrail(p: Prepared): Promise<boolean> {
  const probe = (path: string): Promise<number> =>
    new Promise((resolve) => {
      const req = get(
        { host: p.listen.host, port: p.listen.port, path, ca: p.pki.caPem, servername: 'localhost', timeout: 2000 },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', () => resolve(0));
      req.on('timeout', () => req.destroy());
    });
  if ((await probe(`${CONTROL_PREFIX}info`)) !== 200) return false;
  const codes = await Promise.all([...p.routes.clusters.keys()].map((id) => probe(`${CONTROL_PREFIX}routes/${encodeURIComponent(id)}`)));
  return codes.every((c) => c === 204);
}

export async function wrap(config: Config, argv: string[], hooks: WrapHooks, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  if (argv.length === 0) throw new KtError('KT_ERR_USAGE', 'no command given: kubetrail [flags] -- kubectl get pods');
  const kcArg = takeKubeconfigArg(argv);
  const effective = kcArg.path !== undefined ? { ...config, kubeconfig: kcArg.path } : config;
  const prepared = await prepare(effective, env);
  if (!prepared.listen.loopback) hooks.warn(exposureWarning(listenUrl(prepared.listen)));
  let proxy: RunningProxy | undefined;
  try {
    proxy = await startProxy({ routes: prepared.routes, pki: prepared.pki, host: prepared.listen.host, port: prepared.listen.port, observer: hooks.observer, onInternalError: (e) => hooks.warn(`kubetrail: internal error: ${String(e)}`), reuseUpstream: config.reuseUpstream });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') {
      throw new KtError('KT_ERR_LISTEN', `--listen ${config.listen}: ${(err as Error).message}`, { cause: err });
    }
    if (!(await sharedKubetrail(prepared))) {
      const { inUseMessage } = await import('./port-holder.ts');
      throw new KtError('KT_ERR_LISTEN', await inUseMessage(config.listen, config.stateDir, prepared.listen.host, prepared.listen.port));
    }
    hooks.warn(`kubetrail: using the kubetrail already listening on ${config.listen}; its output shows this command's requests`);
  }
  const kubeconfigPath = prepared.writeKubeconfig(proxy?.url ?? listenUrl(prepared.listen));
  const childArgv = kcArg.path !== undefined ? kcArg.rewrite(kubeconfigPath) : argv;
  let code: number;
  const spawnedAt = epochNow();
  hooks.spawning?.(spawnedAt);
  let exitedAt: number;
  try {
    code = await runChild(childArgv, { ...env, KUBECONFIG: kubeconfigPath });
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
export async function wrapInProcess(config: Config, argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { instrument } = await import('./telemetry-setup.ts');
  const telemetry = instrument(config, 'wrap', env);
  return wrap(
    config,
    argv,
    {
      observer: telemetry.observer,
      warn: errLine,
      spawning: (at) => telemetry.spawning(at),
      afterExit: async ({ life }) => {
        const commands = await telemetry.finish(life);
        if (config.quiet) return;
        for (const cmd of commands) for (const line of await telemetry.waterfall(cmd)) errLine(line);
      },
    },
    env,
  );
}
