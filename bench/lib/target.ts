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
  /** The path's listener offers `h2` by ALPN, as kube-apiserver does (kubectl then speaks HTTP/2 to it). */
  h2: boolean;
}

/** The load generator's protocol: HTTP/1.1 keep-alive agents, or one HTTP/2 connection as client-go uses. */
export type Proto = 'h1' | 'h2';

/** Connections opened, by the protocol ALPN chose ('http' for plain HTTP). */
export type ConnCounts = Record<string, number>;

export type Encoding = 'identity' | 'gzip';

export type Job =
  | { type: 'latency'; target: Target; proto: Proto; path: string; count: number; warmup: number }
  | {
      type: 'throughput';
      target: Target;
      proto: Proto;
      path: string;
      concurrency: number;
      warmupMs: number;
      durationMs: number;
    }
  | { type: 'large'; target: Target; proto: Proto; path: string; encoding: Encoding; count: number }
  | { type: 'watch'; target: Target; proto: Proto; path: string; n: number; openConcurrency: number; timeoutMs: number }
  | { type: 'watch-stop' };

export interface LargeRun {
  status: number;
  ttfbMs: number;
  ttlbMs: number;
  bytes: number;
}

export type JobResult =
  | { type: 'latency'; samples: number[]; errors: number; conns: ConnCounts; firstError?: string }
  | { type: 'window'; phase: 'start' | 'end' }
  | {
      type: 'throughput';
      count: number;
      errors: number;
      ms: number;
      samples: number[];
      conns: ConnCounts;
      firstError?: string;
    }
  | { type: 'large'; runs: LargeRun[]; errors: number; conns: ConnCounts; firstError?: string }
  | { type: 'watch-ready'; opened: number; failed: number; ms: number; conns: ConnCounts; firstError?: string }
  | {
      type: 'watch-done';
      latenciesUs: number[];
      events: number;
      unparsed: number;
      ended: number;
      responses: number;
      failed: number;
      firstError?: string;
    }
  | { type: 'error'; message: string };
