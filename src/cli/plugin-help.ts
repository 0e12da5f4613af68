/**
 * `kubectl trail --help`: the plugin's own help. Every argument of the plugin is kubectl's, so kubetrail's
 * settings come from the environment (or the config file): listed here from the option registry.
 */
import { OPTIONS, type OptionDef } from '../config/schema.ts';
import { VERSION } from '../version.ts';

export function pluginHelp(): string {
  const rows: [string, string][] = [];
  for (const def of OPTIONS as readonly OptionDef[]) {
    for (const name of def.env ?? []) rows.push([name, `--${def.key}: ${def.help}`]);
  }
  // Read through the defaults (OpenTelemetry's and kubectl's own variables), not as KUBETRAIL_*.
  rows.push(['OTEL_EXPORTER_OTLP_ENDPOINT', 'where spans go (OTLP/HTTP base URL; default http://localhost:4318)']);
  rows.push(['KUBECONFIG', "the kubeconfig to proxy, as for kubectl (kubectl's own --kubeconfig works too)"]);
  rows.push(['KUBETRAIL_KUBECTL', 'the kubectl to run (default: kubectl on PATH)']);
  const width = Math.max(...rows.map(([n]) => n.length)) + 2;
  return [
    `kubectl trail ${VERSION}: run kubectl through kubetrail; kubectl's output and exit code are untouched, then`,
    'the waterfall of its requests and a trace link on stderr.',
    '',
    'Usage:',
    '  kubectl trail <kubectl arguments>',
    '',
    'Examples:',
    '  kubectl trail get pods',
    '  KUBETRAIL_JAEGER_URL=http://localhost:16686 kubectl trail --context staging get pods -A',
    "  kubectl trail get pods --help            # kubectl's own help for get",
    '',
    "Every argument is kubectl's: kubetrail's settings come from these environment variables (or the config file):",
    ...rows.map(([n, h]) => `  ${n.padEnd(width)}${h}`),
    '',
    'All of kubetrail (start, stop, doctor, every flag): kubetrail --help',
    '',
  ].join('\n');
}
