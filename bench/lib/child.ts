/** A forked Node process driven by numbered calls (the upstream, the load generator): bench/lib/jobs.ts. */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Caller, Runner, type Cancel, type ErrorAnswer, type JobContext, type Tagged } from './jobs.ts';

export class Forked<In extends { type: string }, Out extends { type: string }> {
  readonly child: ChildProcess;
  readonly #caller: Caller<In, Out>;
  #exited = false;

  constructor(script: string, args: string[] = [], env: NodeJS.ProcessEnv = process.env) {
    const file = fileURLToPath(new URL(script, import.meta.url));
    this.child = fork(file, args, { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    this.#caller = new Caller<In, Out>((m) => {
      if (this.child.connected) this.child.send(m);
    });
    this.child.on('message', (m: Tagged<Out>) => this.#caller.deliver(m));
    this.child.on('exit', () => {
      this.#exited = true;
      this.#caller.exited(new Error(`bench: a helper process (${script}) exited`));
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** Answers that came for a call already timed out and cancelled (dropped, never taken for another's). */
  get dropped(): number {
    return this.#caller.dropped;
  }

  /** The next message the helper sent unasked (bounded wait). */
  next(timeoutMs = 120_000): Promise<Out> {
    return this.#caller.next(timeoutMs);
  }

  /** Send and wait for the answer of the given type (others to the same call are passed to `onOther`); cancelled on timeout. */
  call<T extends Out['type']>(
    m: In,
    type: T,
    timeoutMs = 120_000,
    onOther?: (o: Out) => void,
  ): Promise<Extract<Out, { type: T }>> {
    return this.#caller.call(m, type, timeoutMs, onOther);
  }

  /** Send with no answer expected (e.g. `stop`). */
  send(m: In): void {
    if (this.child.connected) this.child.send({ ...m, id: -1 });
  }

  async stop(): Promise<void> {
    if (this.#exited) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    if (this.child.connected) this.child.disconnect();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/** In a helper process: serve the parent's calls with `run` (see Runner). */
export function serveParent<In extends { type: string }, Out extends { type: string }>(
  run: (m: In, ctx: JobContext<Out>) => Promise<Out | undefined>,
): void {
  const runner = new Runner<In, Out>((m) => process.send?.(m), run);
  process.on('message', (m: Tagged<In> | Cancel) => runner.receive(m));
  process.on('disconnect', () => process.exit(0));
}

/** In a helper process: a message to the parent that answers no call (id 0). */
export function sendUnasked<Out extends { type: string }>(m: Out | ErrorAnswer): void {
  process.send?.({ ...m, id: 0 });
}
