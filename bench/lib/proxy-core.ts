/**
 * Diagnostic path: kubetrail's forwarding core (src/proxy/server.ts startProxy) with no observer, so no
 * decode tap, no spans, no export. What is left is Node's HTTP/TLS stack plus kubetrail's routing: the
 * floor under any kubetrail figure. Prints `export KUBECONFIG=<path>` like `kubetrail start`.
 *
 *   node bench/lib/proxy-core.ts KUBECONFIG STATE_DIR
 */
import { prepare } from '../../src/cli/setup.ts';
import { resolveConfig } from '../../src/config/load.ts';
import { startProxy } from '../../src/proxy/server.ts';

const [kubeconfig = '', stateDir = ''] = process.argv.slice(2);
const config = resolveConfig({ kubeconfig, 'state-dir': stateDir, listen: '127.0.0.1:0', quiet: true });
const prepared = await prepare(config);
const proxy = await startProxy({ routes: prepared.routes, pki: prepared.pki, host: '127.0.0.1', port: 0, observer: undefined });
process.stdout.write(`export KUBECONFIG=${prepared.writeKubeconfig(proxy.url)}\n`);
await new Promise<void>((resolve) => {
  process.once('SIGTERM', resolve);
  process.once('SIGINT', resolve);
});
await proxy.close();
