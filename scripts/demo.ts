/**
 * `npm run demo`: the main job on a machine without a cluster. Starts the local stack (a real
 * kube-apiserver, controller-manager, scheduler, etcd and Jaeger, and three kwok nodes; built from Go
 * modules the first time), fills namespace `shop` with a Deployment of 300 pods that run and one whose
 * pods ask for more CPU than any node has, then tells the story through kubetrail: `get pods` (Running
 * and Pending, in pages), the scheduler's events, `logs` and `exec` (through the apiserver to the
 * kubelet), a forbidden user, and the apiserver's own spans joining the trace. The stack keeps running
 * so the printed links work; `npm run stack -- down` stops it.
 *
 * kubetrail runs on a port of its own (--listen 127.0.0.1:0, so in-process, no background kubetrail): the
 * demo leaves nothing on the stable port for the user's next `kubetrail -- kubectl ...`, and works whatever
 * holds that port. It exits 1 when a command does not end as it should (another exit code than kubectl's
 * own for that command, or no trace). KUBETRAIL_KUBECTL names the kubectl to run, as for the plugin.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { busyNamespace, type BusyNamespace } from '../test/e2e/stack/scenarios.ts';
import { adminClient, isStackRunning, readState, startStack, type StackInfo } from '../test/e2e/stack/stack.ts';

const NODES = 3;
const runDir = process.env.KUBETRAIL_STACK_DIR ?? join(process.env.XDG_RUNTIME_DIR ?? tmpdir(), 'kubetrail-stack');
const kubetrailBin = fileURLToPath(new URL('../src/bin/kubetrail.ts', import.meta.url));
const kubectl = process.env.KUBETRAIL_KUBECTL ?? (existsSync('/usr/bin/kubectl') ? '/usr/bin/kubectl' : 'kubectl');

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function stack(): Promise<StackInfo> {
  const running = readState(runDir);
  if (running && isStackRunning(running)) {
    say(`== using the local stack already running in ${runDir}`);
    return running.info;
  }
  say(
    `== starting the local stack with ${NODES} nodes (the first time, its six programs are built from Go modules:` +
      ' tens of minutes on 2 cores, see the README; a line every 30 s)',
  );
  return startStack({ runDir, persist: true, nodes: NODES, log: (l) => say(`   ${l}`) });
}

/**
 * Runs kubetrail -- kubectl, passing kubectl's stdout through (or `summarise`d: a few hundred rows
 * would bury the waterfall) and echoing its stderr; returns the trace id kubetrail printed.
 */
function traced(
  info: StackInfo,
  context: string,
  args: string[],
  summarise?: (stdout: string) => string,
): Promise<{ code: number; traceId: string | undefined }> {
  const argv = [
    kubetrailBin,
    '--kubeconfig',
    info.kubeconfig,
    '--listen',
    '127.0.0.1:0',
    '--state-dir',
    join(runDir, 'kubetrail'),
    '--otlp-endpoint',
    `${info.otlpHttpEndpoint}/v1/traces`,
    '--jaeger-url',
    info.jaegerUrl,
    '--',
    kubectl,
    '--context',
    context,
    ...args,
  ];
  say(`\n$ kubetrail -- kubectl --context ${context} ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, {
      stdio: ['ignore', summarise ? 'pipe' : 'inherit', 'pipe'],
      env: { ...process.env, KUBECONFIG: info.kubeconfig },
    });
    let out = '';
    child.stdout?.on('data', (c: Buffer) => (out += c.toString()));
    let err = '';
    child.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
      // kubetrail's report comes after kubectl's output: print what kubectl printed first.
      if (!summarise) process.stderr.write(c);
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (summarise) {
        process.stdout.write(out === '' ? '' : summarise(out));
        process.stderr.write(err);
      }
      resolve({ code: code ?? (signal ? 128 : 1), traceId: /\/trace\/([0-9a-f]{32})/.exec(err)?.[1] });
    });
  });
}

/** A pod table cut to its head, a count by status, and every row that is not Running. */
function podTable(stdout: string): string {
  const [header = '', ...rows] = stdout.trimEnd().split('\n');
  const status = (row: string): string => row.split(/\s+/)[2] ?? '?';
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(status(r), (counts.get(status(r)) ?? 0) + 1);
  const notRunning = rows.filter((r) => status(r) !== 'Running');
  const head = rows.filter((r) => status(r) === 'Running').slice(0, 3);
  const summary = [...counts]
    .sort((a, b) => b[1] - a[1])
    .map(([s, n]) => `${n} ${s}`)
    .join(', ');
  return [
    header,
    ...head,
    `… ${rows.length} pods: ${summary} (demo's cut; kubectl printed every row) …`,
    ...notRunning,
    '',
  ].join('\n');
}

/** Poll Jaeger for the trace; with `apiserverToo`, wait (up to ~10 s: it exports in batches) for its spans. */
async function spansInJaeger(
  info: StackInfo,
  traceId: string,
  apiserverToo: boolean,
): Promise<{ kubetrail: number; apiserver: number }> {
  let last = { kubetrail: 0, apiserver: 0 };
  for (let i = 0; i < 20; i++) {
    const res = await fetch(`${info.jaegerUrl}/api/traces/${traceId}`);
    if (res.ok) {
      const body = (await res.json()) as {
        data: { spans: { processID: string }[]; processes: Record<string, { serviceName: string }> }[];
      };
      const trace = body.data[0];
      if (trace) {
        const services = trace.spans.map((s) => trace.processes[s.processID]?.serviceName);
        last = {
          kubetrail: services.filter((s) => s === 'kubetrail').length,
          apiserver: services.filter((s) => s === 'apiserver').length,
        };
        // kubetrail exports from a background process: its spans may arrive just after the apiserver's.
        if (last.kubetrail > 0 && (!apiserverToo || last.apiserver > 0)) return last;
      }
    } else {
      await res.arrayBuffer();
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return last;
}

interface Step {
  context: string;
  args: string[];
  /** What the reader should notice, printed before the command. */
  why: string;
  summarise?: (stdout: string) => string;
  /** kubectl's own exit code for it: mallory's list is Forbidden (1), as without kubetrail. */
  exitCode?: number;
}

function story(shop: BusyNamespace): Step[] {
  const ns = shop.namespace;
  return [
    {
      context: 'alice',
      args: ['get', 'pods', '-n', ns, '--chunk-size=100'],
      why: `${shop.web.replicas + shop.hungry.replicas} pods in pages of 100: ${shop.web.name}'s run, ${shop.hungry.name}'s ask for ${shop.hungry.cpu} CPUs and stay Pending`,
      summarise: podTable,
    },
    {
      context: 'alice',
      args: ['get', 'events', '-n', ns, '--field-selector=reason=FailedScheduling'],
      why: `why they are Pending: the scheduler's events`,
    },
    {
      context: 'alice',
      args: ['logs', `deployment/${shop.web.name}`, '-n', ns],
      why: 'logs: the apiserver streams them from the kubelet (kwok)',
    },
    {
      context: 'alice',
      args: ['exec', `deployment/${shop.web.name}`, '-n', ns, '--', 'echo', 'hello from a pod'],
      why: 'exec: an upgraded connection (WebSocket) through kubetrail and the apiserver to the kubelet',
    },
    {
      context: 'mallory',
      args: ['get', 'pods', '-n', ns],
      why: 'a user without rights: the 403 and what RBAC said',
      exitCode: 1,
    },
    {
      context: 'admin',
      args: ['logs', `deployment/${shop.web.name}`, '-n', ns, '--tail=1'],
      why: "system:masters: the apiserver's own spans join kubetrail's trace",
    },
  ];
}

const info = await stack();
if (info.nodes.length === 0) {
  say(
    `\nThe stack in ${runDir} has no nodes, and the demo needs them: npm run stack -- down, then npm run demo again.`,
  );
  process.exit(1);
}
const admin = adminClient(info);
say(
  `\n== namespace shop: a Deployment of 300 small pods on ${info.nodes.length} nodes of 2 CPUs, and one that cannot fit`,
);
const shop = await busyNamespace(admin).finally(() => admin.close());
const steps = story(shop);
let failures = 0;
for (const step of steps) {
  say(`\n# ${step.why}`);
  const expected = step.exitCode ?? 0;
  const { code, traceId: id } = await traced(info, step.context, step.args, step.summarise);
  if (code !== expected || !id) {
    failures++;
    say(
      `   demo: this command ${code !== expected ? `exited ${code} (expected ${expected})` : 'printed no trace link'}`,
    );
    continue;
  }
  const n = await spansInJaeger(info, id, step.context === 'admin');
  say(
    `   Jaeger has trace ${id}: ${n.kubetrail} kubetrail spans${n.apiserver ? ` and ${n.apiserver} apiserver spans (system:masters joins the trace)` : ''}`,
  );
  say(`   ${info.jaegerUrl}/api/traces/${id}`);
}
say(`\nThe stack keeps running (Jaeger query API: ${info.jaegerUrl}). Stop it with: npm run stack -- down`);
if (failures > 0) {
  say(`demo: ${failures} of ${steps.length} commands failed`);
  process.exitCode = 1;
}
