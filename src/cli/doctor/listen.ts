/** The --listen address is free, or held by a kubetrail (told only to the state dir's control token). */
import { parseListen } from '../../config/load.ts';
import type { Config } from '../../config/schema.ts';
import { describeError } from '../../errors.ts';
import { tcpProbe } from '../../net/tcp-probe.ts';
import type { Finding } from './format.ts';

export async function checkListen(config: Config): Promise<Finding> {
  const subject = 'listen';
  let listen;
  try {
    listen = parseListen(config.listen, config.allowNonLoopback);
  } catch (err) {
    return { level: 'fail', subject, message: describeError(err), fix: 'pass --listen 127.0.0.1:PORT' };
  }
  if (listen.port === 0)
    return {
      level: 'ok',
      subject,
      message: `${config.listen}: a new port each run (kubectl's discovery cache stays cold)`,
    };
  const host = listen.host === '0.0.0.0' || listen.host === '::' ? '127.0.0.1' : listen.host;
  const held = await tcpProbe(host, listen.port, 1000);
  if (held === 'refused' || held === 'unreachable')
    return { level: 'ok', subject, message: `${config.listen} is free` };
  // Who listens is told only to the state dir's control token (read here, never written).
  let pid: number | undefined;
  try {
    const [{ controlCall }, { statusBody }] = await Promise.all([
      import('../../background/client.ts'),
      import('../../background/protocol.ts'),
    ]);
    const body = statusBody(await controlCall(config.stateDir, host, listen.port, { op: 'status' }, 2000));
    pid = typeof body?.pid === 'number' ? body.pid : undefined;
  } catch {
    pid = undefined;
  }
  if (pid !== undefined) {
    return {
      level: 'ok',
      subject,
      message: `${config.listen}: a kubetrail (pid ${pid}) listens there; wrapped commands use it when it serves the same clusters`,
    };
  }
  return {
    level: 'warn',
    subject,
    message: `${config.listen} is in use by another program: \`kubetrail -- kubectl ...\` would stop with KT_ERR_LISTEN`,
    fix: 'stop that program, or pass --listen 127.0.0.1:PORT (and keep that port: kubectl keys its caches by it)',
  };
}
