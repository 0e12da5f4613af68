/**
 * A foreground `kubetrail start` answers wrapped commands with the same configuration as a background
 * kubetrail would (the same control calls, its own state file and template), but is never stopped by them:
 * it has no idle clock and no stop call (control.ts Lingering).
 */
import type { Config } from '../config/schema.ts';
import { describeError } from '../errors.ts';
import type { ControlHandler } from '../proxy/control.ts';
import type { RunningProxy } from '../proxy/server.ts';
import { errLine } from '../cli/output.ts';
import type { Prepared } from '../cli/setup.ts';
import { controlHandler, newIdentity, type ControlDeps, type Finisher } from './control.ts';
import { backgroundPaths } from './paths.ts';
import { liveWrappers, publication } from './publish.ts';
import { ensureToken } from './token.ts';

export interface ForegroundControl {
  /** For the proxy's `onControl`. */
  onControl: ControlHandler;
  /** Once listening: the state file, template and socket that let wrapped commands find it. */
  publish(prepared: Prepared, proxy: RunningProxy): Promise<void>;
  unpublish(): void;
}

/** For `kubetrail start`: undefined when the state dir has no control token to give (nothing is published). */
export function foregroundControl(
  config: Config,
  env: NodeJS.ProcessEnv,
  routeIds: string[],
  finisher: Finisher,
): ForegroundControl | undefined {
  let token: string;
  try {
    token = ensureToken(backgroundPaths(config.stateDir, '', 0).token);
  } catch {
    return undefined;
  }
  const deps: ControlDeps = {
    token,
    identity: newIdentity(config, env, routeIds, 0),
    // Never stopped by a wrapper, so only reported (status); its requests are in its own log.
    busy: () => {
      const paths = published.paths;
      return { open: 0, wrappers: paths ? liveWrappers(paths.commands, paths.key) : 0 };
    },
    finisher,
  };
  const published = publication(deps, { config, env, say: errLine });
  return {
    onControl: controlHandler(deps),
    async publish(prepared, proxy) {
      if (proxy.port === 0) return;
      try {
        await published.publish(prepared, proxy);
      } catch (err) {
        errLine(`kubetrail: wrapped commands will not find this kubetrail: ${describeError(err)}`);
      }
    },
    unpublish: () => published.unpublish(),
  };
}
