/**
 * kubetrail's own endpoints on the listener (`/.kubetrail/v1/…`): whether this is a kubetrail and which
 * routes it serves; the CLI's background kubetrail answers its wrappers' calls through `onControl`.
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

export function handleControl(routes: Routes, onControl: ControlHandler | undefined, req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '').split('?')[0] ?? '';
  if (path === `${CONTROL_PREFIX}info`) {
    const body = JSON.stringify({ kubetrail: true, pid: process.pid });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  if (path.startsWith(`${CONTROL_PREFIX}routes/`)) {
    const id = decodeURIComponent(path.slice(`${CONTROL_PREFIX}routes/`.length));
    res.writeHead(routes.clusters.has(id) ? 204 : 404);
    res.end();
    return;
  }
  if (onControl?.(path.slice(CONTROL_PREFIX.length), req, res)) return;
  res.writeHead(404);
  res.end();
}
