/**
 * Every error kubetrail reports on purpose, flat, with a stable code. Callers match on `code`,
 * never on the message. docs/errors.md lists each code; a unit test keeps the two in step.
 */
export const ERROR_CODES = {
  KT_ERR_USAGE: 'bad command-line usage',
  KT_ERR_CONFIG_INVALID: 'the kubetrail config file is malformed or has an invalid value',
  KT_ERR_KUBECONFIG_INVALID: 'a kubeconfig file is unreadable, malformed or refers to a missing entry',
  KT_ERR_LISTEN: 'the proxy could not listen on the requested address',
  KT_ERR_STATE_DIR: "the private state directory is missing, unwritable, full, or not this user's alone",
  KT_ERR_UPSTREAM: 'the kube-apiserver could not be reached or the connection failed',
  KT_ERR_UPSTREAM_TLS: "the kube-apiserver's certificate failed verification",
  KT_ERR_NO_ROUTE: 'a request arrived for a cluster kubetrail does not know',
  KT_ERR_CLIENT_CERT: 'the client certificate is not one the kubeconfig holds a key for',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class KtError extends Error {
  override readonly name = 'KtError';
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

export function isKtError(err: unknown, code?: ErrorCode): err is KtError {
  return err instanceof KtError && (code === undefined || err.code === code);
}

/** A one-line description of any thrown value, for the terminal. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message.split('\n')[0] ?? err.name;
  return String(err);
}

/** An error code of a failed TLS handshake or verification (OpenSSL's CERT_*, DEPTH_ZERO_SELF_SIGNED_CERT, Node's ERR_TLS_*, ERR_SSL_*). */
export function isTlsErrorCode(code: unknown): boolean {
  return typeof code === 'string' && /CERT|SELF_SIGNED|ALTNAME|HOSTNAME|ISSUER|VERIFY|SIGNATURE|SSL|TLS/.test(code);
}

/** describeError without the advice Node appends to TLS errors ("try --use-system-ca"): no help to a kubetrail user. */
export function describeWithoutNodeAdvice(err: unknown): string {
  return describeError(err).replace(/; if the root CA is installed locally.*$/, '');
}
