/**
 * Vitest global setup: every test file's temporary directories (fresh HOMEs, state dirs, kubeconfigs,
 * the stack's run dir) go under one directory per run, removed when the run ends, so no run leaves
 * thousands of directories behind in /tmp. Workers and the processes they start inherit TMPDIR.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'kubetrail-test-'));
  // Traversable, not listable: the packaging test runs the image's command as an unprivileged user
  // from a tree under here, as /tmp itself would allow.
  chmodSync(dir, 0o711);
  process.env.TMPDIR = dir;
  return () => rmSync(dir, { recursive: true, force: true });
}
