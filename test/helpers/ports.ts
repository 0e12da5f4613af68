/**
 * Ports chosen before kubetrail starts. Everything else listens on port 0 itself.
 */
import { connect, createServer, type AddressInfo } from 'node:net';

/**
 * A loopback port nobody listens on right now (bound to port 0, read, released): for the stable-port
 * cases, where kubetrail must listen on a port named in advance. Another test may take it later.
 */
export async function unusedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * A loopback port that refuses connections and stays refusing for the whole run: a privileged port
 * below the ephemeral range, so no test listening on port 0 can be handed it (a released port-0 port
 * can, and once made a "connection refused" case meet another test's TLS server). None of these is
 * on fetch()'s blocked-port list, so a check that still used fetch would be caught, not excused.
 */
export async function refusedPort(): Promise<number> {
  for (const port of [2, 3, 4, 5, 6, 8, 10, 12, 14, 16]) {
    const refused = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
    });
    if (refused) return port;
  }
  throw new Error('no refusing privileged port on 127.0.0.1');
}
