/**
 * Diagnostic path: kubetrail's forwarding core (src/proxy/server.ts startProxy) with no observer, so no
 * decode tap, no spans, no export. What is left is Node's HTTP/TLS stack plus kubetrail's routing: the
 * floor under any kubetrail figure. Prints `export KUBECONFIG=<path>` like `kubetrail start`.
 *
 *   node bench/lib/proxy-core.ts KUBECONFIG STATE_DIR [OTLP_ENDPOINT]
 *
 * BENCH_OBSERVER picks what observes the core, to split the observer's cost (bench/lib/cpu-variants.ts):
 *   none (default)  no observer: no tap, no spans
 *   noop            an observer that does nothing: the core builds the response facts and the decode tap
 *   headers         as noop, and adds traceparent and Audit-ID upstream like the span observer
 *   spans-off       the span observer with OTEL_SDK_DISABLED=true (spans built, never recorded)
 *   full            the telemetry `kubetrail start --quiet` builds (src/cli/telemetry-setup.ts instrument())
 * BENCH_SESSION_IDLE_MS overrides session-idle-ms.
 */
import { randomBytes } from 'node:crypto';
import { prepare } from '../../src/cli/setup.ts';
import { instrument } from '../../src/cli/telemetry-setup.ts';
import { resolveConfig } from '../../src/config/load.ts';
import type { StageObserver } from '../../src/proxy/events.ts';
import { startProxy } from '../../src/proxy/server.ts';

const [kubeconfig = '', stateDir = '', otlp = 'http://127.0.0.1:1/v1/traces'] = process.argv.slice(2);
const variant = process.env.BENCH_OBSERVER ?? 'none';
const idle = process.env.BENCH_SESSION_IDLE_MS;
const config = resolveConfig({
  kubeconfig,
  'state-dir': stateDir,
  listen: '127.0.0.1:0',
  quiet: true,
  'otlp-endpoint': otlp,
  ...(idle ? { 'session-idle-ms': Number(idle) } : {}),
});

function noop(headers: boolean): StageObserver {
  return {
    onRequestStart: () => undefined,
    upstreamHeaders(start) {
      if (!headers) return undefined;
      const traceId = randomBytes(16).toString('hex');
      const out: Record<string, string> = { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` };
      if (!start.clientAuditId) out['Audit-ID'] = traceId;
      return out;
    },
    onUpstreamConnected: () => undefined,
    onResponseStart: () => undefined,
    onRequestEnd: () => undefined,
  };
}

let finish: () => Promise<unknown> = () => Promise.resolve();
let observer: StageObserver | undefined;
if (variant === 'noop' || variant === 'headers') {
  observer = noop(variant === 'headers');
} else if (variant === 'spans-off' || variant === 'full') {
  const env = variant === 'spans-off' ? { ...process.env, OTEL_SDK_DISABLED: 'true' } : process.env;
  const t = instrument(config, 'start', env);
  observer = t.observer;
  finish = () => t.finish();
} else if (variant !== 'none') {
  throw new Error(`BENCH_OBSERVER: unknown variant ${variant}`);
}

const prepared = await prepare(config);
const proxy = await startProxy({ routes: prepared.routes, pki: prepared.pki, host: '127.0.0.1', port: 0, observer });
process.stdout.write(`export KUBECONFIG=${prepared.writeKubeconfig(proxy.url)}\n`);
await new Promise<void>((resolve) => {
  process.once('SIGTERM', resolve);
  process.once('SIGINT', resolve);
});
await proxy.close();
await finish();
