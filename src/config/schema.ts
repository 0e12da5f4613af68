/**
 * Every kubetrail option, defined once: its YAML key (also the flag name), type, default, environment
 * variable and help. The CLI's flags and help text, the config-file validation and
 * config/kubetrail.yaml's documentation all come from this list.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface OptionDef {
  key: string;
  type: 'string' | 'boolean' | 'number';
  help: string;
  /** Default; a function is evaluated against the environment when the config is resolved. */
  default: string | boolean | number | undefined | ((env: NodeJS.ProcessEnv) => string | undefined);
  env?: string[];
  /** Only a flag (e.g. --config itself); not accepted in the YAML file. */
  flagOnly?: boolean;
  metavar?: string;
}

export const DEFAULT_LISTEN = '127.0.0.1:17443';

function stateHome(env: NodeJS.ProcessEnv): string {
  return env.XDG_STATE_HOME || join(env.HOME || homedir(), '.local', 'state');
}

export const OPTIONS = [
  {
    key: 'config',
    type: 'string',
    help: 'kubetrail config file (YAML); default $KUBETRAIL_CONFIG, else ~/.config/kubetrail/config.yaml if present',
    default: undefined,
    env: ['KUBETRAIL_CONFIG'],
    flagOnly: true,
    metavar: 'FILE',
  },
  {
    key: 'kubeconfig',
    type: 'string',
    help: 'kubeconfig to proxy (kubectl rules: else $KUBECONFIG, else ~/.kube/config)',
    default: undefined,
    metavar: 'FILE',
  },
  {
    key: 'context',
    type: 'string',
    help: 'current-context for the rewritten kubeconfig',
    default: undefined,
    metavar: 'NAME',
  },
  {
    key: 'listen',
    type: 'string',
    help: "host:port to listen on; stable by default so kubectl's discovery cache stays warm",
    default: DEFAULT_LISTEN,
    env: ['KUBETRAIL_LISTEN'],
    metavar: 'HOST:PORT',
  },
  {
    key: 'allow-non-loopback',
    type: 'boolean',
    help: 'allow --listen on a non-loopback address (exposes the proxy, and so your clusters, to whoever can reach that address)',
    default: false,
  },
  {
    key: 'state-dir',
    type: 'string',
    help: 'private directory (0700) for the local CA and rewritten kubeconfigs',
    default: (env) => join(stateHome(env), 'kubetrail'),
    env: ['KUBETRAIL_STATE_DIR'],
    metavar: 'DIR',
  },
  {
    key: 'otlp-endpoint',
    type: 'string',
    help: 'OTLP/HTTP traces endpoint (default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, else http://localhost:4318/v1/traces)',
    default: (env) =>
      env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ||
      (env.OTEL_EXPORTER_OTLP_ENDPOINT
        ? `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/$/, '')}/v1/traces`
        : 'http://localhost:4318/v1/traces'),
    metavar: 'URL',
  },
  {
    key: 'jaeger-url',
    type: 'string',
    help: 'Jaeger UI base URL for trace links',
    default: 'http://localhost:16686',
    env: ['KUBETRAIL_JAEGER_URL'],
    metavar: 'URL',
  },
  { key: 'quiet', type: 'boolean', help: 'print no waterfall, trace link or request lines', default: false },
  {
    key: 'linger',
    type: 'string',
    help: 'wrap mode: keep a background kubetrail serving later wrapped commands until it has been idle this long (e.g. 10m, 30s); 0 = none, serve each command in-process',
    default: '10m',
    env: ['KUBETRAIL_LINGER'],
    metavar: 'DURATION',
  },
  {
    key: 'reuse-upstream',
    type: 'boolean',
    help: 'share upstream connections across kubectl connections and commands (faster; connect and TLS then no longer show what kubectl alone would pay, and traces say so)',
    default: false,
    env: ['KUBETRAIL_REUSE_UPSTREAM'],
  },
  {
    key: 'session-idle-ms',
    type: 'number',
    help: 'a kubectl session with no request for this long is finished (start mode)',
    default: 3000,
    metavar: 'MS',
  },
] as const satisfies readonly OptionDef[];

type Def = (typeof OPTIONS)[number];
type ValueOf<D extends Def> = D['type'] extends 'boolean' ? boolean : D['type'] extends 'number' ? number : string;
type Camel<S extends string> = S extends `${infer A}-${infer B}` ? `${A}${Capitalize<Camel<B>>}` : S;

export type Config = {
  readonly [D in Def as Camel<D['key']>]: D['default'] extends undefined ? ValueOf<D> | undefined : ValueOf<D>;
};

export function camel(key: string): string {
  return key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
