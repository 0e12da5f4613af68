/** The Jaeger UI that trace links point at answers (and is a UI, not the stack's placeholder). */
import type { Config } from '../../config/schema.ts';
import { describeError } from '../../errors.ts';
import { redactUrl, redactUserinfo, splitUserinfo } from '../../redact.ts';
import type { Finding } from './format.ts';
import { probe, type Probe } from './probe.ts';

const JAEGER_TIMEOUT_MS = 3000;

export async function checkJaeger(config: Config): Promise<Finding> {
  const subject = 'jaeger';
  // Printed without its userinfo, which goes as a header.
  const url = redactUrl(config.jaegerUrl);
  let res: Probe;
  try {
    const target = splitUserinfo(config.jaegerUrl);
    res = await probe(new URL(target.url), {
      headers: target.authorization ? { authorization: target.authorization } : {},
      timeoutMs: JAEGER_TIMEOUT_MS,
    });
  } catch (err) {
    res = { kind: 'error', code: 'ERROR', message: describeError(err), ms: 0, tls: false };
  }
  if (res.kind === 'error') {
    const why = res.code === 'TIMEOUT' ? 'TimeoutError' : res.code !== 'ERROR' ? res.code : redactUserinfo(res.message);
    return {
      level: 'warn',
      subject,
      message: `trace links point at ${url}, which does not answer (${why})`,
      fix: 'set --jaeger-url (or KUBETRAIL_JAEGER_URL) to your Jaeger (the local stack\'s: `eval "$(npm run -s stack -- env)"` sets it), or start one: `docker compose up -d jaeger`',
    };
  }
  const ok = res.status >= 200 && res.status < 300;
  if (ok && res.body.includes('not the Jaeger UI')) {
    return {
      level: 'warn',
      subject,
      message: `${url} is a Jaeger built without its UI (the local stack's, built from Go modules): trace links open a placeholder page`,
      fix: `read a trace with its query API: curl ${url.replace(/\/$/, '')}/api/traces/<id>; or use a Jaeger with the UI (\`docker compose up -d jaeger\`)`,
    };
  }
  if (ok)
    return {
      level: 'ok',
      subject,
      message: `trace links point at ${url.replace(/\/$/, '')}/trace/<id>; it answers ${res.status}`,
    };
  return {
    level: 'warn',
    subject,
    message: `trace links point at ${url}, which answers ${res.status}`,
    fix: 'set --jaeger-url (or KUBETRAIL_JAEGER_URL) to your Jaeger (the local stack\'s: `eval "$(npm run -s stack -- env)"` sets it)',
  };
}
