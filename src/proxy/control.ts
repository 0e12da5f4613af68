/**
 * kubetrail's own endpoints on the listener (`/.kubetrail/v1/…`): the CLI answers its wrappers' calls
 * through `onControl`, each authorized by the state dir's control token.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Routes } from './routing.ts';

export const CONTROL_PREFIX = '/.kubetrail/v1/';

/**
 * Control requests the core does not answer itself (`subpath` is the path after CONTROL_PREFIX, without
 * the query): return true when handled.
 */
export type ControlHandler = (subpath: string, req: IncomingMessage, res: ServerResponse) => boolean;

export function isControlRequest(url: string): boolean {
  return url.startsWith(CONTROL_PREFIX);
}

/**
 * Every control endpoint is the CLI's (`onControl`), and each needs the state dir's control token: any
 * local process can reach the listener, so none answers who listens (a pid) or which route ids exist
 * (404 for all of them without the token).
 */
export function handleControl(
  _routes: Routes,
  onControl: ControlHandler | undefined,
  req: IncomingMessage,
  res: ServerResponse,
): void {
  const path = (req.url ?? '').split('?')[0] ?? '';
  if (onControl?.(path.slice(CONTROL_PREFIX.length), req, res)) return;
  res.writeHead(404);
  res.end();
}
