/**
 * A loopback port nobody listens on right now (bound to port 0, read, released). Only for the few tests
 * that need a port chosen before kubetrail starts (the stable-port and refused-port cases); everything
 * else listens on port 0 itself.
 */
import { createServer, type AddressInfo } from 'node:net';

export async function unusedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}
