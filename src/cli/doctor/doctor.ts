/**
 * `kubetrail doctor`: what stands between you and a trace of `kubectl get pods`, checked one by one, each
 * finding `ok`, `warn` or `fail` with what to do about it. Exit code 0 when nothing failed, else 1.
 *
 * - the kubetrail config (flags, environment, config file) resolves;
 * - the kubeconfig loads with kubectl's rules and kubetrail accepts it;
 * - for each context (or the one --context names): its cluster and credential type, then `GET /version`
 *   directly (TLS verified against the kubeconfig's CA, the user's credential) and through an in-process
 *   kubetrail on 127.0.0.1:0 using the route of the rewritten kubeconfig, and whether the two agree;
 * - the OTLP endpoint accepts an empty export, and the Jaeger UI answers;
 * - the state dir is 0700 and its files 0600;
 * - the --listen address is free, or held by a kubetrail;
 * - which malloc a long-running kubetrail gets (glibc's, or mimalloc when asked for: cli/allocator.ts), and on
 *   glibc whether the malloc_trim that gives a flood's memory back was built (proxy/reclaim.ts).
 *
 * Read-only: the in-process kubetrail uses a temporary state dir (removed afterwards), never the real one.
 * Never prints a credential: tokens, keys and passwords are only ever described by kind.
 *
 * Each check is a file of this folder returning findings (format.ts); this one runs them in order.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveConfig, type RawValues } from '../../config/load.ts';
import type { Config } from '../../config/schema.ts';
import { describeError } from '../../errors.ts';
import { ensureLocalPki } from '../../pki/local-ca.ts';
import type { Routes } from '../../proxy/routing.ts';
import { startProxy, type RunningProxy } from '../../proxy/server.ts';
import { redactUserinfo } from '../../redact.ts';
import { VERSION } from '../../version.ts';
import { outLine } from '../output.ts';
import { checkContext, type ContextPlan } from './context.ts';
import { formatFindings, type Finding } from './format.ts';
import { checkJaeger } from './jaeger.ts';
import { checkKubeconfig } from './kubeconfig.ts';
import { checkListen } from './listen.ts';
import { checkMemory } from './memory.ts';
import { checkOtlp } from './otlp.ts';
import { checkStateDir } from './state-dir.ts';

export interface DoctorResult {
  findings: Finding[];
  code: number;
}

export async function doctor(flags: RawValues, env: NodeJS.ProcessEnv = process.env): Promise<DoctorResult> {
  const findings: Finding[] = [];
  let config: Config;
  try {
    config = resolveConfig(flags, env);
  } catch (err) {
    findings.push({
      level: 'fail',
      subject: 'config',
      message: describeError(err),
      fix: 'fix the file or value named (config/kubetrail.yaml documents every key)',
    });
    return { findings, code: 1 };
  }
  if (config.config) findings.push({ level: 'ok', subject: 'config', message: `${config.config} loads` });

  // The state dir first, before anything could touch it.
  findings.push(...checkStateDir(config.stateDir));

  const kubeconfig = checkKubeconfig(config, env);
  findings.push(...kubeconfig.findings);
  const plans: ContextPlan[] = kubeconfig.plans;

  // One in-process kubetrail for every usable context, with a throwaway CA.
  const routes: Routes = { clusters: new Map(), identities: new Map() };
  for (const p of plans) {
    for (const [k, v] of p.routes?.clusters ?? []) routes.clusters.set(k, v);
    for (const [k, v] of p.routes?.identities ?? []) routes.identities.set(k, v);
  }
  let proxy: RunningProxy | undefined;
  let caPem: string | undefined;
  const tmpState = mkdtempSync(join(tmpdir(), 'kubetrail-doctor-'));
  try {
    if (routes.clusters.size > 0) {
      try {
        const pki = await ensureLocalPki(tmpState);
        caPem = pki.caPem;
        proxy = await startProxy({ routes, pki, host: '127.0.0.1', port: 0 });
      } catch (err) {
        findings.push({
          level: 'fail',
          subject: 'kubetrail',
          message: `cannot start an in-process kubetrail on 127.0.0.1: ${describeError(err)}`,
          fix: 'please report this with the output',
        });
      }
    }
    const contexts = async (): Promise<Finding[][]> => {
      // One at a time, so the latencies reported are not each other's.
      const out: Finding[][] = [];
      for (const p of plans) out.push(await checkContext(p, proxy, caPem));
      return out;
    };
    const [perContext, otlp, jaeger, listen] = await Promise.all([
      contexts(),
      checkOtlp(config, env),
      checkJaeger(config),
      checkListen(config),
    ]);
    for (const fs of perContext) findings.push(...fs);
    findings.push(otlp, jaeger, listen, checkMemory(env));
  } finally {
    await proxy?.close();
    rmSync(tmpState, { recursive: true, force: true });
  }
  return { findings, code: findings.some((f) => f.level === 'fail') ? 1 : 0 };
}

/** `kubetrail doctor`: print the findings on stdout; 0 when none failed, else 1. */
export async function runDoctor(flags: RawValues, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  outLine(`kubetrail doctor ${VERSION}`);
  const { findings, code } = await doctor(flags, env);
  // A last guard: no finding prints URL userinfo, whichever check quoted the URL.
  for (const line of formatFindings(findings)) outLine(redactUserinfo(line));
  return code;
}
