/**
 * `npm run demo`: the main job on a machine without a cluster. Starts the local stack (a real
 * kube-apiserver, etcd and Jaeger; built from Go modules the first time), runs `kubectl get pods` through
 * kubetrail as an allowed and as a forbidden user, and shows that Jaeger holds the traces. The stack keeps
 * running so the printed links work; `npm run stack -- down` stops it.
 *
 * kubetrail runs on a port of its own (--listen 127.0.0.1:0, so in-process, no background kubetrail): the
 * demo leaves nothing on the stable port for the user's next `kubetrail -- kubectl ...`, and works whatever
 * holds that port. It exits 1 when a command does not end as it should (kubetrail's own error, no trace).
 * KUBETRAIL_KUBECTL names the kubectl to run, as for the plugin.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readState, startStack, type StackInfo } from '../test/e2e/stack/stack.ts';

const runDir = process.env.KUBETRAIL_STACK_DIR ?? join(process.env.XDG_RUNTIME_DIR ?? tmpdir(), 'kubetrail-stack');
const kubetrailBin = fileURLToPath(new URL('../src/bin/kubetrail.ts', import.meta.url));
const kubectl = process.env.KUBETRAIL_KUBECTL ?? (existsSync('/usr/bin/kubectl') ? '/usr/bin/kubectl' : 'kubectl');

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function stack(): Promise<StackInfo> {
  const running = readState(runDir);
  if (running) {
    say(`== using the local stack already running in ${runDir}`);
    return running.info;
  }
  say('== starting the local stack (the first time, kube-apiserver, etcd and Jaeger are built from Go modules: ~7 min)');
  return startStack({ runDir, persist: true, log: (l) => say(`   ${l}`) });
}

/** Run kubetrail with kubectl's stdout passed through; echo its stderr; its exit code and the trace id it printed. */
function traced(info: StackInfo, context: string, args: string[]): Promise<{ code: number; traceId: string | undefined }> {
  const argv = [
    kubetrailBin,
    '--kubeconfig', info.kubeconfig,
    '--listen', '127.0.0.1:0',
    '--state-dir', join(runDir, 'kubetrail'),
    '--otlp-endpoint', `${info.otlpHttpEndpoint}/v1/traces`,
    '--jaeger-url', info.jaegerUrl,
    '--', kubectl, '--context', context, ...args,
  ];
  say(`\n$ kubetrail -- kubectl --context ${context} ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { stdio: ['ignore', 'inherit', 'pipe'], env: { ...process.env, KUBECONFIG: info.kubeconfig } });
    let err = '';
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
      process.stderr.write(c);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), traceId: /\/trace\/([0-9a-f]{32})/.exec(err)?.[1] }));
  });
}

/** Poll Jaeger for the trace; with `apiserverToo`, wait (up to ~10 s: it exports in batches) for its spans. */
async function spansInJaeger(info: StackInfo, traceId: string, apiserverToo: boolean): Promise<{ kubetrail: number; apiserver: number }> {
  let last = { kubetrail: 0, apiserver: 0 };
  for (let i = 0; i < 20; i++) {
    const res = await fetch(`${info.jaegerUrl}/api/traces/${traceId}`);
    if (res.ok) {
      const body = (await res.json()) as { data: { spans: { processID: string }[]; processes: Record<string, { serviceName: string }> }[] };
      const trace = body.data[0];
      if (trace) {
        const services = trace.spans.map((s) => trace.processes[s.processID]?.serviceName);
        last = { kubetrail: services.filter((s) => s === 'kubetrail').length, apiserver: services.filter((s) => s === 'apiserver').length };
        // kubetrail exports from a background process: its spans may arrive just after the apiserver's.
        if (last.kubetrail > 0 && (!apiserverToo || last.apiserver > 0)) return last;
      }
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return last;
}

const info = await stack();
let failures = 0;
// kubectl's exit code for each: mallory's list is Forbidden (1), as without kubetrail.
for (const [context, args, expected] of [
  ['alice', ['get', 'pods', '-A'], 0],
  ['mallory', ['get', 'pods'], 1],
  ['admin', ['get', 'namespaces'], 0],
] as const) {
  const { code, traceId: id } = await traced(info, context, [...args]);
  if (code !== expected || !id) {
    failures++;
    say(`   demo: this command ${code !== expected ? `exited ${code} (expected ${expected})` : 'printed no trace link'}`);
    continue;
  }
  const n = await spansInJaeger(info, id, context === 'admin');
  say(`   Jaeger has trace ${id}: ${n.kubetrail} kubetrail spans${n.apiserver ? ` and ${n.apiserver} apiserver spans (system:masters joins the trace)` : ''}`);
  say(`   ${info.jaegerUrl}/api/traces/${id}`);
}
say(`\nThe stack keeps running (Jaeger query API: ${info.jaegerUrl}). Stop it with: npm run stack -- down`);
if (failures > 0) {
  say(`demo: ${failures} of 3 commands failed`);
  process.exitCode = 1;
}
