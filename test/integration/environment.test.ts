/**
 * The tests run isolated from the shell that starts them: whatever KUBETRAIL_*, OTEL_*, KUBECONFIG or HOME
 * the caller has set (a user with KUBETRAIL_LISTEN in their profile, a state dir they cannot write), the
 * suite sees none of it (test/helpers/global-tmp.ts), so `npm test` passes in any shell.
 */
import { spawnSync } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
/** Set only in the nested run below. */
const NESTED = process.env.KT_ENVIRONMENT_PROBE === '1';

/** What a careless or hostile shell might have set. */
const HOSTILE: Record<string, string> = {
  KUBETRAIL_LISTEN: '127.0.0.1:1',
  KUBETRAIL_STATE_DIR: '/dev/null/kubetrail-state',
  KUBETRAIL_CONFIG: '/nonexistent/kubetrail.yaml',
  KUBETRAIL_LINGER: 'forever',
  KUBETRAIL_JAEGER_URL: 'http://jaeger.invalid',
  KUBETRAIL_KUBECTL: '/nonexistent/kubectl',
  OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9',
  OTEL_SDK_DISABLED: 'true',
  KUBECONFIG: '/nonexistent/kubeconfig',
  XDG_STATE_HOME: '/dev/null/state',
  XDG_CONFIG_HOME: '/dev/null/config',
};

describe('the test environment', () => {
  it("holds none of the caller's kubetrail, OpenTelemetry or kubeconfig settings, and a private HOME", () => {
    const leaked = Object.keys(process.env).filter(
      (k) =>
        (k.startsWith('KUBETRAIL_') &&
          !['KUBETRAIL_STACK_CACHE', 'KUBETRAIL_GO', 'KUBETRAIL_FAULT_REPORT', 'KT_ENVIRONMENT_PROBE'].includes(k)) ||
        k.startsWith('OTEL_') ||
        k === 'KUBECONFIG' ||
        k === 'XDG_STATE_HOME' ||
        k === 'XDG_CONFIG_HOME',
    );
    expect(leaked).toEqual([]);
    // HOME is under this run's own temporary directory (removed at the end of the run).
    expect(realpathSync(process.env.HOME ?? '/')).toBe(realpathSync(join(tmpdir(), 'home')));
  });

  it.skipIf(NESTED)(
    'stays so when the caller sets hostile values: a nested run of the check above passes',
    () => {
      const r = spawnSync(
        join(REPO, 'node_modules', '.bin', 'vitest'),
        ['run', '--project', 'integration', 'test/integration/environment.test.ts'],
        {
          cwd: REPO,
          env: { ...process.env, ...HOSTILE, KT_ENVIRONMENT_PROBE: '1' },
          encoding: 'utf8',
          timeout: 120_000,
        },
      );
      expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stdout.replace(/\x1b\[[0-9;]*m/g, '')).toMatch(/Tests +1 passed \| 1 skipped/);
    },
    150_000,
  );
});
