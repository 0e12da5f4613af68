import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { RequestStart } from '../../../src/proxy/events.ts';
import type { CommandSummary } from '../../../src/telemetry/commands.ts';
import { createSpanObserver } from '../../../src/telemetry/spans.ts';
import { requestEnd, requestStart, responseStart } from '../../helpers/events.ts';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = provider.getTracer('test');

function request(obs: ReturnType<typeof createSpanObserver>, over: Partial<RequestStart>): () => void {
  const s = requestStart(over);
  obs.onRequestStart(s);
  obs.onResponseStart(s.id, responseStart());
  return () => obs.onRequestEnd(s.id, requestEnd());
}

afterEach(() => exporter.reset());

describe('tagged commands (wrap mode with a background kubetrail)', () => {
  it('gives each tag its own trace, whatever the sessions, and finishes one tag without touching the other', async () => {
    const obs = createSpanObserver({ tracer, idleMs: 1000 });
    // The gcloud dispatcher's probe has no session; kubectl's requests have one; all carry the tag.
    request(obs, { commandTag: 'aaaaaa1', kubectlCommand: undefined, path: '/version' })();
    request(obs, { commandTag: 'bbbbbb2', kubectlSession: 's-b' })();
    request(obs, { commandTag: 'aaaaaa1', kubectlSession: 's-a' })();
    const a = await obs.finishCommand('aaaaaa1', 1000);
    expect(a?.requests.map((r) => r.path)).toEqual(['/version', '/api/v1/namespaces/default/pods']);
    expect(a?.command).toBe('kubectl get');
    const roots = exporter.getFinishedSpans().filter((s) => s.parentSpanContext === undefined);
    expect(roots.map((r) => r.spanContext().traceId)).toEqual([a?.traceId]);
    const b = await obs.finishCommand('bbbbbb2', 1000);
    expect(b?.requests).toHaveLength(1);
    expect(b?.traceId).not.toBe(a?.traceId);
  });

  it('waits for a request still open when the wrapper asks, and returns a command already ended by idle', async () => {
    const obs = createSpanObserver({ tracer, idleMs: 1 });
    const end = request(obs, { commandTag: 'cccccc3' });
    const finished = obs.finishCommand('cccccc3', 5000);
    let resolved = false;
    void finished.then(() => (resolved = true));
    await new Promise((r) => setTimeout(r, 30));
    expect(resolved).toBe(false);
    end();
    expect((await finished)?.requests).toHaveLength(1);
    // Asked again (a retried control call): the same summary, not a new trace.
    expect((await obs.finishCommand('cccccc3', 10))?.traceId).toBe((await finished)?.traceId);
    expect(await obs.finishCommand('neverseen', 10)).toBeUndefined();
  });

  it('stops waiting after waitMs when a request never ends', async () => {
    const obs = createSpanObserver({ tracer, idleMs: 1000 });
    request(obs, { commandTag: 'dddddd4', query: 'watch=true' });
    const t = performance.now();
    const sum = await obs.finishCommand('dddddd4', 50);
    expect(performance.now() - t).toBeGreaterThanOrEqual(45);
    expect(sum?.requests).toHaveLength(0);
  });

  it('idle ends a tagged command only once its wrapper is gone (kubectl edit can wait minutes in the editor)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance', 'Date'] });
    try {
      let alive = true;
      const finished: string[] = [];
      const obs = createSpanObserver({
        tracer,
        idleMs: 1000,
        tagAlive: () => alive,
        onCommandFinished: (c) => finished.push(c.traceId),
      });
      request(obs, { commandTag: 'eeeeee5', kubectlSession: 's-e' })();
      vi.advanceTimersByTime(5 * 60_000);
      expect(finished).toEqual([]);
      // The PATCH after the editor closes joins the same trace.
      request(obs, { commandTag: 'eeeeee5', kubectlSession: 's-e', method: 'PATCH' })();
      alive = false;
      vi.advanceTimersByTime(61_000);
      expect(finished).toHaveLength(1);
      expect((await obs.finishCommand('eeeeee5', 10))?.requests.map((r) => r.method)).toEqual(['GET', 'PATCH']);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('start mode: a request without Kubectl-Session (#12 item 6)', () => {
  function observe(adoptWindowMs = 1500): { obs: ReturnType<typeof createSpanObserver>; done: CommandSummary[] } {
    const done: CommandSummary[] = [];
    const obs = createSpanObserver({ tracer, idleMs: 20, adoptWindowMs, onCommandFinished: (c) => done.push(c) });
    return { obs, done };
  }
  // What the Google Cloud SDK's kubectl dispatcher sends before it runs the kubectl it picked.
  const probe = {
    path: '/version',
    query: 'timeout=5s',
    kubectlCommand: undefined,
    kubectlSession: undefined,
    userAgent: 'kubectl-dispatcher/v1.0 (linux/amd64)',
  };

  it("the gcloud dispatcher's /version joins the session that follows from the same identity: one trace, named after kubectl's command", async () => {
    const { obs, done } = observe();
    request(obs, { ...probe, clientIdentity: 'alice' })();
    await new Promise((r) => setTimeout(r, 50));
    request(obs, { kubectlSession: 's1', clientIdentity: 'alice' })();
    request(obs, { kubectlSession: 's1', clientIdentity: 'alice', path: '/api/v1/namespaces/default/configmaps' })();
    await vi.waitFor(() => expect(done).toHaveLength(1), { timeout: 3000 });
    expect(done[0]?.command).toBe('kubectl get');
    expect(done[0]?.requests.map((r) => r.path)).toEqual([
      '/version',
      '/api/v1/namespaces/default/pods',
      '/api/v1/namespaces/default/configmaps',
    ]);
    const roots = exporter.getFinishedSpans().filter((s) => s.parentSpanContext === undefined);
    expect(roots.map((r) => r.name)).toEqual(['kubectl get']);
  });

  it('another identity, or a session that comes too late, gets a trace of its own', async () => {
    const { obs, done } = observe(100);
    request(obs, { ...probe, clientIdentity: 'alice' })();
    request(obs, { kubectlSession: 's2', clientIdentity: 'bob' })();
    await new Promise((r) => setTimeout(r, 150));
    request(obs, { kubectlSession: 's3', clientIdentity: 'alice' })();
    await vi.waitFor(() => expect(done).toHaveLength(3), { timeout: 3000 });
    expect(done.map((c) => c.requests.length)).toEqual([1, 1, 1]);
  });
});

describe('start mode: clients that never send Kubectl-Session (helm, client-go programs: #19 item 1)', () => {
  function observe(idleMs = 30): { obs: ReturnType<typeof createSpanObserver>; done: CommandSummary[] } {
    const done: CommandSummary[] = [];
    const obs = createSpanObserver({ tracer, idleMs, adoptWindowMs: 0, onCommandFinished: (c) => done.push(c) });
    return { obs, done };
  }
  const helm = {
    kubectlCommand: undefined,
    kubectlSession: undefined,
    userAgent: 'Helm/4.3.2',
    clientIdentity: 'alice',
  };
  const roots = (): string[] =>
    exporter
      .getFinishedSpans()
      .filter((s) => s.parentSpanContext === undefined)
      .map((s) => s.name);

  it("one process's requests are one trace named after its program, over its connections, ended by idleness", async () => {
    const { obs, done } = observe();
    request(obs, { ...helm, path: '/version', query: '', clientConnection: 'c1' })();
    request(obs, { ...helm, path: '/api', query: '', clientConnection: 'c1' })();
    // A second connection while the first is open (HTTP/1.1 in parallel, or a watch): the same process.
    const watch = request(obs, { ...helm, query: 'watch=true', clientConnection: 'c2' });
    request(obs, {
      ...helm,
      method: 'POST',
      path: '/api/v1/namespaces/default/configmaps',
      query: '',
      clientConnection: 'c1',
    })();
    watch();
    await vi.waitFor(() => expect(done).toHaveLength(1), { timeout: 3000 });
    expect(done[0]?.command).toBe('helm');
    expect(done[0]?.requests).toHaveLength(4);
    expect(roots()).toEqual(['helm']);
  });

  it('the next process (its connections new, the last one closed) is another trace, even within the idle time', async () => {
    const { obs, done } = observe(200);
    request(obs, { ...helm, clientConnection: 'c1' })();
    request(obs, { ...helm, clientConnection: 'c2' })();
    obs.onConnectionClosed?.('c1');
    obs.onConnectionClosed?.('c2');
    // `helm install && helm upgrade`: the upgrade's first connection.
    request(obs, { ...helm, clientConnection: 'c3' })();
    request(obs, { ...helm, clientConnection: 'c3' })();
    await vi.waitFor(() => expect(done).toHaveLength(2), { timeout: 3000 });
    expect(done.map((c) => c.requests.length)).toEqual([2, 2]);
    expect(done[0]?.traceId).not.toBe(done[1]?.traceId);
  });

  it('a token refreshed on the same connection stays in the command; another program or identity is another', async () => {
    const { obs, done } = observe();
    request(obs, { ...helm, clientConnection: 'c1' })();
    request(obs, { ...helm, clientIdentity: 'alice-refreshed', clientConnection: 'c1' })();
    request(obs, {
      ...helm,
      userAgent: 'clientgo-demo/v0.0.0 (linux/amd64) kubernetes/$Format',
      clientConnection: 'c2',
    })();
    request(obs, { ...helm, clientIdentity: 'bob', clientConnection: 'c3' })();
    await vi.waitFor(() => expect(done).toHaveLength(3), { timeout: 3000 });
    expect(done.map((c) => [c.command, c.requests.length])).toEqual([
      ['helm', 2],
      ['clientgo-demo', 1],
      ['helm', 1],
    ]);
  });

  it("a long-lived program's next burst after idleness is another trace, on the same connection", async () => {
    const { obs, done } = observe(20);
    request(obs, { ...helm, clientConnection: 'c1' })();
    await vi.waitFor(() => expect(done).toHaveLength(1), { timeout: 3000 });
    request(obs, { ...helm, clientConnection: 'c1' })();
    await vi.waitFor(() => expect(done).toHaveLength(2), { timeout: 3000 });
    expect(done[1]?.traceId).not.toBe(done[0]?.traceId);
  });

  it("a dispatcher's probe is adopted once: the next kubectl of the same user is a trace of its own", async () => {
    const done: CommandSummary[] = [];
    const obs = createSpanObserver({ tracer, idleMs: 20, adoptWindowMs: 1500, onCommandFinished: (c) => done.push(c) });
    const dispatcher = {
      path: '/version',
      query: 'timeout=5s',
      kubectlCommand: undefined,
      kubectlSession: undefined,
      userAgent: 'kubectl-dispatcher/v1.0 (linux/amd64)',
      clientIdentity: 'alice',
    };
    request(obs, { ...dispatcher, clientConnection: 'd1' })();
    request(obs, { kubectlSession: 's1', clientIdentity: 'alice', path: '/api', query: '', clientConnection: 'k1' })();
    request(obs, { kubectlSession: 's2', clientIdentity: 'alice', path: '/api', query: '', clientConnection: 'k2' })();
    await vi.waitFor(() => expect(done).toHaveLength(2), { timeout: 5000 });
    expect(done.map((c) => c.requests.map((r) => r.path).join(' ')).sort()).toEqual(['/api', '/version /api']);
  });

  it("helm's discovery is not adopted by a kubectl session of the same identity started beside it", async () => {
    const done: CommandSummary[] = [];
    const obs = createSpanObserver({ tracer, idleMs: 20, adoptWindowMs: 1500, onCommandFinished: (c) => done.push(c) });
    request(obs, { ...helm, path: '/version', query: '', clientConnection: 'c1' })();
    request(obs, { kubectlSession: 's9', clientIdentity: 'alice', clientConnection: 'c2' })();
    await vi.waitFor(() => expect(done).toHaveLength(2), { timeout: 5000 });
    expect(done.map((c) => c.command).sort()).toEqual(['helm', 'kubectl get']);
  });
});

describe('wrap mode: a program that sends no Kubectl-Command is named after its command line (#19 item 1)', () => {
  it("the root is `helm install`, from the wrapper, not the first request; kubectl's own name still wins", () => {
    const done: CommandSummary[] = [];
    const obs = createSpanObserver({
      tracer,
      idleMs: 0,
      singleCommand: true,
      timing: () => ({ credentials: [], command: 'helm install' }),
      onCommandFinished: (c) => done.push(c),
    });
    request(obs, { path: '/version', query: '', kubectlCommand: undefined, userAgent: 'Helm/4.3.2' })();
    request(obs, {
      path: '/api/v1/namespaces/default/configmaps',
      query: '',
      kubectlCommand: undefined,
      userAgent: 'Helm/4.3.2',
    })();
    obs.finishAll();
    expect(done.map((c) => c.command)).toEqual(['helm install']);
    const tagged = createSpanObserver({
      tracer,
      idleMs: 0,
      timing: () => ({ credentials: [], command: 'kubectl get' }),
      onCommandFinished: (c) => done.push(c),
    });
    request(tagged, {
      commandTag: 'eeeeee5',
      path: '/version',
      query: '',
      kubectlCommand: undefined,
      userAgent: 'kubectl-dispatcher/v1.0 (linux/amd64)',
    })();
    request(tagged, { commandTag: 'eeeeee5', kubectlCommand: 'kubectl create', kubectlSession: 's5' })();
    tagged.finishAll();
    expect(done.map((c) => c.command)).toEqual(['helm install', 'kubectl create']);
  });
});
