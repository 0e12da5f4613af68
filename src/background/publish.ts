/**
 * What makes a running kubetrail usable by wrapped commands: its control socket (control.ts), state file and
 * kubeconfig template (paths.ts), opened and written when it serves and removed when it stops, the same for
 * both kinds (daemon.ts, foreground.ts); and what it reads back from the wrappers' markers (which commands
 * are alive).
 */
import { readdirSync } from 'node:fs';
import type { Server } from 'node:net';
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
import { listenControlSocket, type ControlDeps, type Identity } from './control.ts';
import { backgroundPaths, parseMarker, templatePath, type BackgroundPaths } from './paths.ts';
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

/** Once a kubetrail listens, what makes it usable by wrapped commands; taken down when it stops. */
export interface Publication {
  /** Where (set by publish()): a foreground kubetrail counts wrapped commands only from then on. */
  readonly paths: BackgroundPaths | undefined;
  /** What the state file says, once written. */
  readonly state: BackgroundState | undefined;
  /**
   * The control socket, then the template and the state file that name it (wrapped commands read the state
   * file first). Throws when they cannot be written, the socket closed again.
   */
  publish(prepared: Prepared, proxy: RunningProxy): Promise<BackgroundState>;
  /** The state file (if it is still this instance's), the template and the socket removed. */
  unpublish(): void;
}

/**
 * The publication of a kubetrail whose control calls `deps` answers: a background one (`deps.lingering`)
 * records its log file and the kubeconfig digests taken before it read them; a foreground one neither.
 */
export function publication(
  deps: ControlDeps,
  opts: {
    config: Config;
    env: NodeJS.ProcessEnv;
    /** For the control socket's failures. */
    say: (line: string) => void;
    logFile?: string;
    before?: Map<string, string | null>;
  },
): Publication {
  let paths: BackgroundPaths | undefined;
  let state: BackgroundState | undefined;
  let socket: Server | undefined;
  return {
    get paths() {
      return paths;
    },
    get state() {
      return state;
    },
    async publish(prepared, proxy) {
      const where = backgroundPaths(opts.config.stateDir, prepared.listen.host, proxy.port);
      paths = where;
      // Holding the port makes this the address's kubetrail: a socket left by a killed one is replaced.
      ensurePrivateDir(where.dir);
      socket = await listenControlSocket(where.socket, deps, opts.say);
      try {
        state = writeState({
          kind: deps.lingering ? 'linger' : 'start',
          config: opts.config,
          env: opts.env,
          prepared,
          proxy,
          paths: where,
          identity: deps.identity,
          log: opts.logFile,
          socket: socket ? where.socket : undefined,
          before: opts.before,
        });
      } catch (err) {
        socket?.close();
        socket = undefined;
        throw err;
      }
      return state;
    },
    unpublish() {
      if (paths && state) removeState(paths, state);
      socket?.close();
    },
  };
}

/** Write the kubeconfig template and the state file that let wrapped commands use this kubetrail. */
function writeState(opts: {
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
  // paths.dir: made by publish(), before the control socket in it.
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

export function safeReaddir(dir: string): string[] {
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
function removeState(paths: BackgroundPaths, state: BackgroundState): void {
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
