/** Where the load generator sends requests: one per measured path (direct, kubetrail, nginx, ...). */
export interface Target {
  /** Path name, for messages. */
  name: string;
  scheme: 'https' | 'http';
  host: string;
  port: number;
  /** Prepended to every request path ('' or kubetrail's '/c/<route>'). */
  prefix: string;
  /** TLS: SNI and name checked in the server certificate. */
  servername?: string;
  /** TLS: PEM of the CA that signed the server certificate. */
  ca?: string;
  /** TLS: the client certificate and key to present (PEM). */
  cert?: string;
  key?: string;
  /** Sent on every request (e.g. Authorization for token users). */
  headers?: Record<string, string>;
}

export type Encoding = 'identity' | 'gzip';

export type Job =
  | { type: 'latency'; target: Target; path: string; count: number; warmup: number }
  | { type: 'throughput'; target: Target; path: string; concurrency: number; warmupMs: number; durationMs: number }
  | { type: 'large'; target: Target; path: string; encoding: Encoding; count: number }
  | { type: 'watch'; target: Target; path: string; n: number; openConcurrency: number; timeoutMs: number }
  | { type: 'watch-stop' };

export interface LargeRun {
  status: number;
  ttfbMs: number;
  ttlbMs: number;
  bytes: number;
}

export type JobResult =
  | { type: 'latency'; samples: number[]; errors: number; firstError?: string }
  | { type: 'window'; phase: 'start' | 'end' }
  | { type: 'throughput'; count: number; errors: number; ms: number; samples: number[]; firstError?: string }
  | { type: 'large'; runs: LargeRun[]; errors: number; firstError?: string }
  | { type: 'watch-ready'; opened: number; failed: number; ms: number; firstError?: string }
  | { type: 'watch-done'; latenciesUs: number[]; events: number; unparsed: number; ended: number; responses: number; failed: number; firstError?: string }
  | { type: 'error'; message: string };
