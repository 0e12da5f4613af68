/**
 * Client-side throttling, inferred. kubectl sends nothing that says it waited: client-go's rate limiter
 * (a token bucket, golang.org/x/time/rate behind flowcontrol.NewTokenBucketRateLimiter) holds a request
 * back inside kubectl, and the proxy only sees it arrive later. What it does see is the start times, and a
 * token bucket leaves a fingerprint on them: once the burst is spent, requests leave exactly one token
 * interval (1/QPS) apart. So the bucket is replayed over the observed starts; a request that found it
 * empty (about one token, just refilled, when it arrived) while kubectl had been free to send it earlier
 * (the request before it had ended) waited the difference.
 *
 * The limits are kubectl's (1.30–1.33): ordinary requests use rest.Config's defaults, QPS 5 and burst 10
 * (client-go rest.DefaultQPS / DefaultBurst; kubectl sets neither); discovery gets its own client with
 * QPS 50 and burst 300 (cli-runtime genericclioptions.ConfigFlags discoveryQPS / discoveryBurst). Each
 * client has its own bucket, full when kubectl starts. Pure: times in, waits out.
 */

export interface Limiter {
  qps: number;
  burst: number;
}

export const KUBECTL_LIMITER: Limiter = { qps: 5, burst: 10 };
export const KUBECTL_DISCOVERY_LIMITER: Limiter = { qps: 50, burst: 300 };

export interface TimedRequest {
  /** Epoch ms when the request reached kubetrail. */
  startedAt: number;
  durationMs: number;
  discovery: boolean;
}

export interface ThrottleWait {
  /** Epoch ms: from when kubectl could have sent the request to when its limiter let it go. */
  from: number;
  to: number;
  discovery: boolean;
}

export interface Throttling {
  /** Total time requests waited in kubectl's limiters, ms (0.1 ms precision). */
  totalMs: number;
  waits: ThrottleWait[];
  /** The limiter the waits matched (the ordinary one when any ordinary request waited). */
  limiter: Limiter | undefined;
}

/**
 * A request may reach kubetrail this much before the bucket says it could leave kubectl (clocks, timer
 * granularity in Go's limiter) and still match it; earlier than that, the bucket does not explain the
 * starts (kubectl built with other limits) and no throttling is inferred from it.
 */
const EARLY_SLACK_MS = 20;
/** Waits shorter than this are scheduling noise, not throttling. */
const MIN_WAIT_MS = 2;

export function inferThrottling(
  requests: readonly TimedRequest[],
  limiters = { ordinary: KUBECTL_LIMITER, discovery: KUBECTL_DISCOVERY_LIMITER },
): Throttling {
  const waits = [
    ...replay(
      requests.filter((r) => !r.discovery),
      limiters.ordinary,
      false,
    ),
    ...replay(
      requests.filter((r) => r.discovery),
      limiters.discovery,
      true,
    ),
  ].sort((a, b) => a.from - b.from);
  const totalMs = Math.round(waits.reduce((n, w) => n + (w.to - w.from), 0) * 10) / 10;
  const limiter = waits.some((w) => !w.discovery)
    ? limiters.ordinary
    : waits.length > 0
      ? limiters.discovery
      : undefined;
  return { totalMs, waits, limiter };
}

/**
 * golang.org/x/time/rate's reservation model: a request takes a token when kubectl asks for it (tokens may
 * go negative) and leaves when the bucket is back at zero. kubectl asks when it is free to: when the
 * request before it has ended (kubectl's requests in one command are mostly sequential), or at once for
 * the first. The wait is from asking to the predicted release, and never beyond the observed start (what
 * is left after the release is kubectl's own time, or the machine's).
 */
function replay(requests: readonly TimedRequest[], limiter: Limiter, discovery: boolean): ThrottleWait[] {
  const sorted = [...requests].sort((a, b) => a.startedAt - b.startedAt);
  const perMs = limiter.qps / 1000;
  const waits: ThrottleWait[] = [];
  let tokens = limiter.burst;
  let last = sorted[0]?.startedAt ?? 0;
  let latestEnd = -Infinity;
  for (let i = 0; i < sorted.length; i++) {
    const r = sorted[i] as TimedRequest;
    const previous = sorted[i - 1];
    // When kubectl could have sent it: after the previous request (and anything that ended before this one).
    const asked = previous === undefined ? r.startedAt : Math.min(r.startedAt, Math.max(previous.startedAt, latestEnd));
    tokens = Math.min(limiter.burst, tokens + (asked - last) * perMs) - 1;
    last = asked;
    if (tokens < 0) {
      const release = asked - tokens / perMs;
      // It left before the bucket allowed: the bucket does not describe this kubectl.
      if (r.startedAt < release - EARLY_SLACK_MS) return [];
      const to = Math.min(release, r.startedAt);
      if (to - asked >= MIN_WAIT_MS) waits.push({ from: asked, to, discovery });
    }
    for (let j = 0; j <= i; j++) {
      const q = sorted[j] as TimedRequest;
      const end = q.startedAt + q.durationMs;
      const next = sorted[i + 1];
      if (next !== undefined && end <= next.startedAt && end > latestEnd) latestEnd = end;
    }
  }
  return waits;
}
