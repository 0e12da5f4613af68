/**
 * Timing probes for kubetrail's start-up, each run in a fresh process by run.ts and printing one JSON line:
 *
 *   probe.ts import                    ms (and RSS) to import src/cli/main.ts (everything the CLI loads)
 *   probe.ts import-dist               the same for the built dist/cli/main.js
 *   probe.ts deps                      ms to import each heavy dependency, in the CLI's order (incremental)
 *   probe.ts setup KUBECONFIG STATEDIR ms for ensureLocalPki (existing CA), prepare(), instrument()
 */
import { readFileSync } from 'node:fs';

const mode = process.argv[2];

async function time(f: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await f();
  return performance.now() - t;
}

function rssMb(): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0) / 1024;
}

if (mode === 'import' || mode === 'import-dist') {
  // dist/ is the build users run (`npx kubetrail`); src/ runs through Node's type stripping.
  const specifier = mode === 'import' ? '../../src/cli/main.ts' : '../../dist/cli/main.js';
  const before = rssMb();
  const ms = await time(() => import(specifier));
  console.log(JSON.stringify({ importMs: ms, rssBeforeMb: before, rssAfterMb: rssMb() }));
} else if (mode === 'deps') {
  const steps: [string, () => Promise<unknown>][] = [
    ['commander', () => import('commander')],
    ['yaml', () => import('yaml')],
    ['@peculiar/x509 (+reflect-metadata)', () => import('../../src/pki/certs.ts')],
    ['@opentelemetry/api', () => import('@opentelemetry/api')],
    ['@opentelemetry/core', () => import('@opentelemetry/core')],
    ['@opentelemetry/resources', () => import('@opentelemetry/resources')],
    ['@opentelemetry/sdk-trace-base', () => import('@opentelemetry/sdk-trace-base')],
    ['@opentelemetry/exporter-trace-otlp-http', () => import('@opentelemetry/exporter-trace-otlp-http')],
    ['src/ (the rest of kubetrail)', () => import('../../src/cli/main.ts')],
  ];
  const out: Record<string, number> = {};
  for (const [name, f] of steps) out[name] = await time(f);
  console.log(JSON.stringify(out));
} else if (mode === 'setup') {
  const [kubeconfig = '', stateDir = ''] = process.argv.slice(3);
  const { ensureLocalPki } = await import('../../src/pki/local-ca.ts');
  const { prepare } = await import('../../src/cli/setup.ts');
  const { instrument } = await import('../../src/cli/telemetry-setup.ts');
  const { resolveConfig } = await import('../../src/config/load.ts');
  const config = resolveConfig({
    kubeconfig,
    'state-dir': stateDir,
    listen: '127.0.0.1:0',
    quiet: true,
    'otlp-endpoint': 'http://127.0.0.1:9/v1/traces',
  });
  const caMs = await time(() => ensureLocalPki(stateDir));
  const prepareMs = await time(() => prepare(config));
  let telemetry: ReturnType<typeof instrument> | undefined;
  const instrumentMs = await time(() => {
    telemetry = instrument(config, 'wrap');
    return Promise.resolve();
  });
  const finishEmptyMs = await time(() => telemetry?.finish() ?? Promise.resolve());
  console.log(JSON.stringify({ caMs, prepareMs, instrumentMs, finishEmptyMs }));
} else {
  console.error('probe.ts import | deps | setup KUBECONFIG STATEDIR');
  process.exitCode = 2;
}
