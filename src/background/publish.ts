/**
 * What makes a running kubetrail usable by wrapped commands: its state file and kubeconfig template
 * (paths.ts), written when it serves and removed when it stops; and what it reads back from the wrappers'
 * markers (which commands are alive).
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomTag } from '../command-tag.ts';
import type { Config } from '../config/schema.ts';
import { ensurePrivateDir, removeQuietly } from '../fs/private.ts';
import { installShim } from '../kubeconfig/credential-shim.ts';
import { rewriteKubeconfig } from '../kubeconfig/rewrite.ts';
import { timingDir } from '../kubeconfig/timing.ts';
import { writeKubeconfig } from '../kubeconfig/write.ts';
import type { RunningProxy } from '../proxy/server.ts';
import type { Prepared } from '../cli/setup.ts';
import { recordAddress } from './addresses.ts';
import type { Identity } from './control.ts';
import { parseMarker, templatePath, type BackgroundPaths } from './paths.ts';
import { pidAlive, procStartTime } from './process.ts';
import { fileDigest, kubeconfigCandidates, readState, replacePrivate, type BackgroundState } from './state.ts';

/**
 * Digests of the kubeconfig files taken before prepare() reads them: a file edited while kubetrail starts
 * then differs from its recorded digest and the next wrapper replaces this kubetrail (never the reverse: a
 * digest of the new content recorded for a kubetrail that loaded the old one).
 */
export function digestsBefore(config: Config, env: NodeJS.ProcessEnv): Map<string, string | null> {
  return new Map(kubeconfigCandidates(config.kubeconfig, env).map((f) => [f, fileDigest(f)]));
}

/** Files whose change makes a running kubetrail stale: kubeconfigs, what they point at, the local CA. */
export function dependedFiles(
  config: Config,
  env: NodeJS.ProcessEnv,
  p: Prepared,
  before: Map<string, string | null> = new Map(),
): BackgroundState['files'] {
  const paths = new Set<string>(kubeconfigCandidates(config.kubeconfig, env));
  for (const c of p.kubeconfig.clusters.values()) {
    const f = c.body['certificate-authority'];
    if (typeof f === 'string') paths.add(f);
  }
  for (const u of p.kubeconfig.users.values()) {
    for (const k of ['client-certificate', 'client-key', 'tokenFile']) {
      const f = u.body[k];
      if (typeof f === 'string') paths.add(f);
    }
  }
  paths.add(join(config.stateDir, 'ca.pem'));
  paths.add(join(config.stateDir, 'server.pem'));
  return [...paths].map((path) => ({ path, sha256: before.has(path) ? (before.get(path) ?? null) : fileDigest(path) }));
}

/** Write the kubeconfig template and the state file that let wrapped commands use this kubetrail. */
export function publish(opts: {
  kind: BackgroundState['kind'];
  config: Config;
  env: NodeJS.ProcessEnv;
  prepared: Prepared;
  proxy: RunningProxy;
  paths: BackgroundPaths;
  /** The identity its control calls answer with: the state file records the same. */
  identity: Identity;
  log: string | undefined;
  socket: string | undefined;
  before?: Map<string, string | null>;
}): BackgroundState {
  const { config, prepared, paths, identity } = opts;
  ensurePrivateDir(paths.dir);
  ensurePrivateDir(paths.commands);
  const placeholder = randomTag();
  const template = templatePath(paths, identity.instance);
  // Templates of this address's earlier instances: this process holds the port, so they serve nobody.
  for (const name of safeReaddir(paths.dir)) {
    if (name.startsWith(`${paths.key}.`) && name.endsWith('.kubeconfig') && join(paths.dir, name) !== template)
      removeQuietly(join(paths.dir, name));
  }
  // A wrapped command's credential plugins are timed into its own file (the tag replaces the placeholder).
  // Every command through it is one kubetrail starts (runThrough), with the shims' directory on its PATH.
  const credentialShim = {
    install: (command: string) => installShim(config.stateDir, command, opts.env.PATH, 'on-path'),
    timingFile: join(timingDir(config.stateDir), placeholder),
    mode: 'on-path' as const,
  };
  writeKubeconfig(
    template,
    rewriteKubeconfig(prepared.kubeconfig, {
      listenUrl: opts.proxy.url,
      caPem: prepared.pki.caPem,
      currentContext: config.context,
      commandTag: placeholder,
      credentialShim,
    }),
  );
  const state: BackgroundState = {
    v: 1,
    instance: identity.instance,
    procStart: procStartTime(process.pid) ?? null,
    kind: opts.kind,
    pid: process.pid,
    host: prepared.listen.host,
    port: opts.proxy.port,
    fingerprint: identity.fingerprint,
    files: dependedFiles(config, opts.env, prepared, opts.before),
    template,
    placeholder,
    socket: opts.socket,
    lingerMs: identity.lingerMs,
    log: opts.log,
    startedAt: Date.now(),
  };
  replacePrivate(paths.state, `${JSON.stringify(state)}\n`);
  // So that commands run with another state dir find this kubetrail on its address (addresses.ts).
  recordAddress(opts.env, config.stateDir, state.host, state.port);
  return state;
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/**
 * Remove the state file if it is still this instance's (or already gone: this process took it down itself
 * and still holds the port, so the socket is its own too); the instance's template always.
 */
export function unpublish(paths: BackgroundPaths, state: BackgroundState): void {
  const current = readState(paths.state);
  if (current === undefined || current.instance === state.instance) {
    if (current) removeQuietly(paths.state);
    if (state.socket) removeQuietly(state.socket);
  }
  removeQuietly(state.template);
}

/**
 * Wrapped commands of the address `key` still running (their kubeconfig files); files of wrappers that
 * died are removed (any address's).
 */
export function liveWrappers(dir: string, key: string): number {
  let live = 0;
  for (const name of safeReaddir(dir)) {
    const m = parseMarker(name);
    if (!m || !Number.isSafeInteger(m[1])) continue;
    if (!pidAlive(m[1])) removeQuietly(join(dir, name));
    else if (m[0] === key) live++;
  }
  return live;
}

/**
 * For the span observer's idle check: is the wrapper of the command tagged `tag` still running? Its
 * marker file exists and its pid is alive. Called only when a tagged command has been idle a while.
 */
export function tagAliveIn(dir: string, key: string): (tag: string) => boolean {
  return (tag) => {
    const suffix = `-${tag}.yaml`;
    for (const name of safeReaddir(dir)) {
      if (!name.endsWith(suffix)) continue;
      const m = parseMarker(name);
      if (m && m[0] === key && m[2] === tag && pidAlive(m[1])) return true;
    }
    return false;
  };
}
