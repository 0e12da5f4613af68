/**
 * The kubeconfig loads with kubectl's rules, kubetrail accepts it, and --context or its current-context
 * names a context; the contexts to check one by one (context.ts).
 */
import type { Config } from '../../config/schema.ts';
import { describeError } from '../../errors.ts';
import { loadKubeconfig, type LoadedKubeconfig } from '../../kubeconfig/load.ts';
import { buildRoutes } from '../../kubeconfig/rewrite.ts';
import { planContext, type ContextPlan } from './context.ts';
import type { Finding } from './format.ts';

export function checkKubeconfig(config: Config, env: NodeJS.ProcessEnv): { findings: Finding[]; plans: ContextPlan[] } {
  const findings: Finding[] = [];
  let kc: LoadedKubeconfig;
  try {
    kc = loadKubeconfig({ explicitPath: config.kubeconfig, env });
  } catch (err) {
    findings.push({
      level: 'fail',
      subject: 'kubeconfig',
      message: describeError(err),
      fix: 'fix the file named (kubectl reads it the same way: `kubectl config view` shows the same problem), or pass --kubeconfig FILE',
    });
    return { findings, plans: [] };
  }
  const current = config.context ?? kc.currentContext;
  findings.push({
    level: 'ok',
    subject: 'kubeconfig',
    message: `${kc.files.join(':')}: ${kc.contexts.size} context(s), ${kc.clusters.size} cluster(s), ${kc.users.size} user(s); current-context ${current ? `"${current}"` : '(none)'}`,
  });
  try {
    buildRoutes(kc);
  } catch (err) {
    findings.push({
      level: 'fail',
      subject: 'kubeconfig',
      message: `kubetrail refuses it: ${describeError(err)}`,
      fix: 'fix the entry named (the contexts below that do not use it are still checked)',
    });
  }
  if (config.context !== undefined && !kc.contexts.has(config.context)) {
    findings.push({
      level: 'fail',
      subject: 'kubeconfig',
      message: `--context "${config.context}" does not exist (contexts: ${[...kc.contexts.keys()].join(', ') || 'none'})`,
      fix: 'pass one of those names',
    });
  } else if (kc.contexts.size === 0) {
    findings.push({
      level: 'warn',
      subject: 'kubeconfig',
      message: 'defines no context: kubectl needs --server or a context',
      fix: 'add a context (`kubectl config set-context`)',
    });
  } else if (current === undefined || !kc.contexts.has(current)) {
    findings.push({
      level: 'warn',
      subject: 'kubeconfig',
      message: `current-context ${current ? `"${current}" does not exist` : 'is not set'}: kubectl needs --context`,
      fix: '`kubectl config use-context NAME`, or pass --context NAME',
    });
  }
  const selected =
    config.context !== undefined
      ? [kc.contexts.get(config.context)].filter((c) => c !== undefined)
      : [...kc.contexts.values()];
  return { findings, plans: selected.map((c) => planContext(kc, c)) };
}
