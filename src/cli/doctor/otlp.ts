/** The OTLP endpoint accepts an empty export, with the headers the exporter would send. */
import type { Config } from '../../config/schema.ts';
import { describeError } from '../../errors.ts';
import { redactUrl } from '../../redact.ts';
import type { Finding } from './format.ts';
import { probe } from './probe.ts';

const OTLP_TIMEOUT_MS = 3000;

export async function checkOtlp(config: Config, env: NodeJS.ProcessEnv): Promise<Finding> {
  const subject = 'otlp';
  const url = config.otlpEndpoint;
  // Sent with its userinfo (the exporter does too), never printed with it.
  const shown = redactUrl(url);
  if (/^true$/i.test(env.OTEL_SDK_DISABLED ?? '')) {
    return {
      level: 'warn',
      subject,
      message: 'export is off (OTEL_SDK_DISABLED=true): no traces reach Jaeger; the terminal waterfall still works',
      fix: 'unset OTEL_SDK_DISABLED to export',
    };
  }
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  // The exporter sends these (collector credentials): so must the check. Never printed.
  for (const pair of (env.OTEL_EXPORTER_OTLP_TRACES_HEADERS || env.OTEL_EXPORTER_OTLP_HEADERS || '').split(',')) {
    const eq = pair.indexOf('=');
    if (eq > 0) headers[decodeURIComponent(pair.slice(0, eq).trim())] = decodeURIComponent(pair.slice(eq + 1).trim());
  }
  const noCollector =
    'start one: `docker compose up -d jaeger` (the compose file in this repo) or `npm run stack -- up` then `eval "$(npm run -s stack -- env)"`, or point --otlp-endpoint / OTEL_EXPORTER_OTLP_ENDPOINT at yours; kubectl works without it, but no trace reaches Jaeger';
  let target: URL;
  try {
    target = new URL(url);
  } catch (err) {
    return {
      level: 'fail',
      subject,
      message: `${shown}: ${(err as NodeJS.ErrnoException).code ?? describeError(err)}`,
      fix: noCollector,
    };
  }
  const res = await probe(target, {
    method: 'POST',
    headers,
    body: '{"resourceSpans":[]}',
    timeoutMs: OTLP_TIMEOUT_MS,
  });
  if (res.kind === 'error') {
    const code =
      res.code === 'TIMEOUT'
        ? `no answer within ${OTLP_TIMEOUT_MS / 1000}s`
        : res.code === 'ECONNREFUSED'
          ? 'nothing listens there (connection refused)'
          : res.code !== 'ERROR'
            ? res.code
            : res.message;
    return { level: 'fail', subject, message: `${shown}: ${code}`, fix: noCollector };
  }
  if (res.status >= 200 && res.status < 300)
    return {
      level: 'ok',
      subject,
      message: `${shown} accepted an empty OTLP/HTTP export (${res.status}) in ${Math.round(res.ms)}ms`,
    };
  return {
    level: 'fail',
    subject,
    message: `${shown} answered ${res.status} to an OTLP/HTTP export`,
    fix:
      res.status === 404 || res.status === 405
        ? 'not an OTLP/HTTP traces endpoint: --otlp-endpoint takes the full URL (http://HOST:4318/v1/traces); OTEL_EXPORTER_OTLP_ENDPOINT takes the base (http://HOST:4318)'
        : res.status === 401 || res.status === 403
          ? 'the collector wants credentials: set OTEL_EXPORTER_OTLP_HEADERS (e.g. authorization=Bearer%20...)'
          : "check the collector's logs",
  };
}
