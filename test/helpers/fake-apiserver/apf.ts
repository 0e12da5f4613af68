/**
 * API Priority and Fairness as far as answers show it: the flow schema and priority level UIDs of a run
 * (`X-Kubernetes-Pf-*` headers), and which of them classifies a request.
 */
import { randomUUID } from 'node:crypto';
import type { RequestInfo } from './request-info.ts';
import type { ApfUids } from './rest.ts';
import type { UserInfo } from './types.ts';

/** The health endpoints, classified by the `probes` flow schema. */
export const PROBE_PATHS = /^\/(healthz|livez|readyz)(\/|$)/;

export interface ApfTable {
  exempt: ApfUids;
  probes: ApfUids;
  globalDefault: ApfUids;
}

/** Fresh UUIDs; `exempt` and `probes` share the `exempt` priority level, as in a real cluster. */
export function newApfTable(): ApfTable {
  const exemptLevel = randomUUID();
  return {
    exempt: { flowSchemaUid: randomUUID(), priorityLevelUid: exemptLevel },
    probes: { flowSchemaUid: randomUUID(), priorityLevelUid: exemptLevel },
    globalDefault: { flowSchemaUid: randomUUID(), priorityLevelUid: randomUUID() },
  };
}

/**
 * The flow schema of an authenticated request: `exempt` for system:masters, `probes` for the health
 * endpoints, else `globalDefault`; none for long-running requests other than watches (logs, exec, attach,
 * port-forward, proxy), which APF does not classify.
 */
export function apfFor(apf: ApfTable, user: UserInfo, info: RequestInfo): ApfUids | undefined {
  const longRunningNonWatch =
    info.isResourceRequest && ['log', 'exec', 'attach', 'portforward', 'proxy'].includes(info.subresource);
  if (longRunningNonWatch) return undefined;
  return user.groups.includes('system:masters')
    ? apf.exempt
    : PROBE_PATHS.test(info.path)
      ? apf.probes
      : apf.globalDefault;
}
