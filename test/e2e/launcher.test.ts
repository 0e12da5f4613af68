/**
 * The launcher (bin/kubetrail, the installed `kubetrail`) against the real kube-apiserver and Jaeger: the
 * first wrapped command starts the background kubetrail through the Node CLI; the next ones run no Node
 * process, print what kubectl prints direct (bytes, exit code, kubectl's stderr) and each gets its own
 * trace in Jaeger, with the telemetry contract's shape.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshHome } from '../helpers/compare.ts';
import { nodeRecorder, type NodeRecorder } from '../helpers/node-recorder.ts';
import { unusedPort } from '../helpers/ports.ts';
import { KUBETRAIL_BIN, runProcess, type RunResult } from '../helpers/run-kubetrail.ts';
import {
  adminClient,
  createNamespace,
  createPods,
  expectCommandTrace,
  kubectlBinary,
  maskAgeColumn,
  splitReport,
  type AdminClient,
} from './helpers.ts';
import { startStack, type Stack } from './stack/stack.ts';

const LAUNCHER = fileURLToPath(new URL('../../bin/kubetrail', import.meta.url));
const NS = 'kt-launcher';

let stack: Stack;
let admin: AdminClient;
let env: NodeJS.ProcessEnv;
let node: NodeRecorder;

beforeAll(async () => {
  stack = await startStack();
  admin = adminClient(stack);
  await createNamespace(admin, NS);
  await createPods(admin, NS, ['web-0', 'web-1']);
  const home = freshHome();
  node = nodeRecorder(home);
  env = {
    PATH: `${node.bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    HOME: home,
    KUBECONFIG: stack.kubeconfig,
    KUBETRAIL_STATE_DIR: join(home, 'state'),
    KUBETRAIL_LISTEN: `127.0.0.1:${await unusedPort()}`,
    KUBETRAIL_ENTRY: KUBETRAIL_BIN,
    KUBETRAIL_JAEGER_URL: stack.jaegerUrl,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${stack.otlpHttpEndpoint}/v1/traces`,
    NO_COLOR: '1',
  };
});

afterAll(async () => {
  if (env) await runProcess(LAUNCHER, ['stop'], { env, timeoutMs: 30_000 });
  admin?.close();
  await stack?.stop();
});

const nodeRuns = (): number => node.runs();
const kubectlArgs = (args: string[]): string[] => ['--context', 'alice', '-n', NS, ...args];
const direct = (args: string[]): Promise<RunResult> =>
  runProcess(kubectlBinary('1.33'), kubectlArgs(args), { env, timeoutMs: 60_000 });
const launched = (args: string[]): Promise<RunResult> =>
  runProcess(LAUNCHER, ['--', kubectlBinary('1.33'), ...kubectlArgs(args)], { env, timeoutMs: 60_000 });

describe('the launcher against the real kube-apiserver', () => {
  it('serves the commands after the first with no Node process, as direct, each with its trace', async () => {
    const first = await launched(['get', 'pods']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/^kubetrail: started a background kubetrail on /m);
    expect(nodeRuns()).toBe(1);

    for (const args of [
      ['get', 'pods'],
      ['get', 'pods', '-o', 'json'],
      ['get', 'pod', 'nope'],
    ]) {
      const d = await direct(args);
      const r = await launched(args);
      const what = args.join(' ');
      expect(nodeRuns(), `${what}: the Node CLI ran\n${r.stderr}`).toBe(1);
      expect(r.code, what).toBe(d.code);
      const json = args.includes('json');
      expect(json ? r.stdout.toString() : maskAgeColumn(r.stdout.toString()), what).toBe(
        json ? d.stdout.toString() : maskAgeColumn(d.stdout.toString()),
      );
      const split = splitReport(r.stderr);
      expect(split.kubectlStderr, what).toBe(d.stderr);
      const t = await expectCommandTrace(stack.jaegerUrl, split.traceId, {
        command: 'kubectl get',
        requests: split.requests,
      });
      expect(
        t.requests.map((q) => q.span.operationName),
        what,
      ).toContain(args.includes('nope') ? 'get pods' : 'list pods');
    }
  });
});
