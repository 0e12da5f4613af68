/**
 * One stand-in cluster for a test file (or a describe block): the beforeAll/afterAll pair the integration
 * tests each wrote out. Before its tests: a temporary directory under the run's TMPDIR (global-tmp.ts, so
 * nothing lands in the caller's /tmp or HOME), the stand-in apiserver (fake-apiserver.ts: port 0,
 * certificates made per run), client certificates issued by its client CA, a kubeconfig in the directory
 * (the certificate and token files beside it, 0600), the objects the tests expect, and, when asked, an
 * OTLP receiver. After them: each closed and the directory removed, whatever failed on the way.
 *
 * The handle's fields are there once its beforeAll ran: read them in tests and in later hooks, never at
 * the top of the file. A hook of the caller's registered after `withFakeCluster()` runs after the fixture's
 * beforeAll, and its afterAll before the fixture's (vitest runs afterAll hooks in reverse): a kubetrail the
 * file starts in front of the cluster is stopped before the cluster goes.
 *
 * Environment: the fixture sets nothing in process.env and starts no kubectl or kubetrail; tests run those
 * with freshHome() and kubetrailEnv() (compare.ts) as before, so no caller's HOME, KUBECONFIG, KUBETRAIL_*
 * or OTEL_* reaches them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import type { KeyPairPem } from '../../src/pki/certs.ts';
import {
  startFakeApiserver,
  type FakeApiserver,
  type FakeApiserverOptions,
  type KubeconfigSpec,
  type KubeconfigUser,
} from './fake-apiserver.ts';
import { startOtlpReceiver, type OtlpReceiver } from './otlp-receiver.ts';

/** A kubeconfig user; `cert` is a client certificate the stand-in's client CA issues for it (CN = its name). */
export interface FakeClusterUser extends Omit<KubeconfigUser, 'cert'> {
  /** Groups (O=) of the user's client certificate. */
  cert?: { groups?: string[] };
}

export interface FakeClusterOptions {
  /** Prefix of the temporary directory, e.g. 'kt-cli-': says which file a leftover came from. */
  prefix: string;
  apiserver?: FakeApiserverOptions;
  /** The kubeconfig, written into the directory as `kubeconfig` unless it names another file. */
  kubeconfig: Omit<KubeconfigSpec, 'users'> & { users: FakeClusterUser[] };
  /** Objects, logs, files: whatever else the tests expect, once the kubeconfig is written. */
  seed?: (fake: FakeApiserver, dir: string) => void | Promise<void>;
  /** Start an OTLP/HTTP receiver too (`cluster.receiver`). */
  otlp?: boolean;
}

export interface FakeCluster {
  /** The temporary directory: the kubeconfig and its files; the tests may put their own files here too. */
  readonly dir: string;
  readonly fake: FakeApiserver;
  /** The kubeconfig's path. */
  readonly kubeconfig: string;
  /** The certificate users' key pairs, by user name. */
  readonly certs: Readonly<Record<string, KeyPairPem>>;
  /** The OTLP receiver (only with `otlp: true`). */
  readonly receiver: OtlpReceiver;
}

/** Registers the beforeAll/afterAll pair in the current scope (file or describe) and returns the handle. */
export function withFakeCluster(opts: FakeClusterOptions): FakeCluster {
  let dir: string | undefined;
  let fake: FakeApiserver | undefined;
  let kubeconfig: string | undefined;
  let receiver: OtlpReceiver | undefined;
  const certs: Record<string, KeyPairPem> = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), opts.prefix));
    if (opts.otlp) receiver = await startOtlpReceiver();
    fake = await startFakeApiserver(opts.apiserver);
    const users: KubeconfigUser[] = [];
    for (const { cert, ...user } of opts.kubeconfig.users) {
      if (cert) certs[user.name] = await fake.issueUser(user.name, cert.groups);
      users.push({ ...user, cert: certs[user.name] });
    }
    kubeconfig = await fake.writeKubeconfig(dir, { ...opts.kubeconfig, users });
    await opts.seed?.(fake, dir);
  });

  afterAll(async () => {
    // Each one, even when the beforeAll stopped half-way or another close threw: nothing left running.
    const closing = await Promise.allSettled([fake?.close(), receiver?.close()]);
    if (dir) rmSync(dir, { recursive: true, force: true });
    for (const c of closing) if (c.status === 'rejected') throw c.reason;
  });

  const ready = <T>(value: T | undefined, name: string): T => {
    if (value === undefined)
      throw new Error(
        name === 'receiver' && dir !== undefined
          ? `withFakeCluster(${opts.prefix}): no receiver: pass otlp: true`
          : `withFakeCluster(${opts.prefix}): ${name} read before its beforeAll ran (read it in a test or a hook)`,
      );
    return value;
  };
  return {
    get dir() {
      return ready(dir, 'dir');
    },
    get fake() {
      return ready(fake, 'fake');
    },
    get kubeconfig() {
      return ready(kubeconfig, 'kubeconfig');
    },
    get certs() {
      ready(kubeconfig, 'certs');
      return certs;
    },
    get receiver() {
      return ready(receiver, 'receiver');
    },
  };
}
