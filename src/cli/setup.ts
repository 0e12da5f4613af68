/**
 * What every command does first: read the kubeconfig, build routes, make sure the local CA exists and
 * write the rewritten kubeconfig into the private state dir.
 */
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { parseListen, type ListenAddress } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { describeError } from '../errors.ts';
import { installShim, type ShimMode } from '../kubeconfig/credential-shim.ts';
import { untaggedTimingFile } from '../kubeconfig/timing.ts';
import { loadKubeconfig, type LoadedKubeconfig } from '../kubeconfig/load.ts';
import { buildRoutes, rewriteKubeconfig } from '../kubeconfig/rewrite.ts';
import type { ControlHandler } from '../proxy/control.ts';
import type { StageObserver } from '../proxy/events.ts';
import type { Routes } from '../proxy/routing.ts';
import type { ProxyOptions } from '../proxy/server.ts';
import { ensurePrivateDir } from '../fs/private.ts';
import { hostForUrl } from '../net/host.ts';
import { writeKubeconfig } from '../kubeconfig/write.ts';
import { ensureLocalPki, type LocalPki } from '../pki/local-ca.ts';

export interface Prepared {
  listen: ListenAddress;
  kubeconfig: LoadedKubeconfig;
  routes: Routes;
  pki: LocalPki;
  /**
   * Write the rewritten kubeconfig for the address kubetrail really listens on (with --listen HOST:0 it is
   * known only after binding) and return its path (0600, in the 0700 state dir). `on-path`: for a kubectl
   * this process starts, with shimPathEnv's PATH (credential-shim.ts). `pathRoutes`: the /c/<route> form
   * for whatever kubetrail serves the address (`kubetrail kubeconfig`; rewrite.ts routeAddresses).
   */
  writeKubeconfig(url: string, shims?: ShimMode, pathRoutes?: boolean): string;
}

export function listenUrl(listen: ListenAddress): string {
  return `https://${hostForUrl(listen.host)}:${listen.port}`;
}

/** What binding beyond loopback exposes, said whenever kubetrail is about to do it. */
export function exposureWarning(url: string): string {
  return `kubetrail: listening on ${url}, beyond loopback: anyone who can reach it can use kubetrail to reach your clusters with the credentials they send, and read its request log`;
}

/**
 * The proxy a kubetrail that serves wrapped commands starts (`kubetrail start`, the background one) for
 * what prepare() found: on the prepared address, with its routes and CA, its internal errors and the
 * connection cap's notice as lines through `say`.
 */
export function servingProxyOptions(
  config: Config,
  prepared: Prepared,
  serving: { observer: StageObserver | undefined; say: (line: string) => void; onControl: ControlHandler | undefined },
): ProxyOptions {
  return {
    routes: prepared.routes,
    pki: prepared.pki,
    host: prepared.listen.host,
    port: prepared.listen.port,
    observer: serving.observer,
    onInternalError: (e) => serving.say(`kubetrail: internal error: ${describeError(e)}`),
    onNotice: serving.say,
    onControl: serving.onControl,
    reuseUpstream: config.reuseUpstream,
  };
}

export async function prepare(config: Config, env: NodeJS.ProcessEnv = process.env): Promise<Prepared> {
  const listen = parseListen(config.listen, config.allowNonLoopback);
  const kubeconfig = loadKubeconfig({ explicitPath: config.kubeconfig, env });
  const routes = buildRoutes(kubeconfig);
  ensurePrivateDir(config.stateDir);
  const pki = await ensureLocalPki(
    config.stateDir,
    listen.host === '127.0.0.1' || listen.host === '::1' ? [] : [listen.host],
  );
  // Fail on a bad --context now, before anything listens.
  rewriteKubeconfig(kubeconfig, { listenUrl: listenUrl(listen), caPem: pki.caPem, currentContext: config.context });
  return {
    listen,
    kubeconfig,
    routes,
    pki,
    writeKubeconfig(url, shims = 'by-path', pathRoutes = false) {
      const credentialShim = {
        install: (command: string) => installShim(config.stateDir, command, env.PATH, shims),
        timingFile: untaggedTimingFile(config.stateDir),
        mode: shims,
      };
      const rewritten = rewriteKubeconfig(kubeconfig, {
        listenUrl: url,
        caPem: pki.caPem,
        currentContext: config.context,
        credentialShim,
        ...(pathRoutes ? { routeAddresses: false } : {}),
      });
      // One file per (source files, context, listen address): stable across runs, so kubectl sees the
      // same server URLs and keeps its caches.
      const key = createHash('sha256')
        .update(
          JSON.stringify([
            kubeconfig.files,
            config.context ?? null,
            url,
            ...(shims === 'by-path' ? [] : [shims]),
            ...(pathRoutes ? ['path-routes'] : []),
          ]),
        )
        .digest('hex')
        .slice(0, 16);
      const path = join(config.stateDir, 'kubeconfigs', `${key}.yaml`);
      writeKubeconfig(path, rewritten);
      return path;
    },
  };
}
