/** A forked Node process driven by messages (the upstream, the load generator). */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export class Forked<In, Out extends { type: string }> {
  readonly child: ChildProcess;
  readonly #queue: Out[] = [];
  #waiter: ((m: Out) => void) | undefined;
  #exited = false;

  constructor(script: string, args: string[] = [], env: NodeJS.ProcessEnv = process.env) {
    const file = fileURLToPath(new URL(script, import.meta.url));
    this.child = fork(file, args, { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    this.child.on('message', (m: Out) => {
      const w = this.#waiter;
      if (w) {
        this.#waiter = undefined;
        w(m);
      } else {
        this.#queue.push(m);
      }
    });
    this.child.on('exit', () => (this.#exited = true));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  send(m: In): void {
    this.child.send(m as object);
  }

  /** The next message (bounded wait). */
  next(timeoutMs = 120_000): Promise<Out> {
    const queued = this.#queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.#exited) return Promise.reject(new Error(`bench: ${this.child.spawnfile} exited`));
    return new Promise((resolve, reject) => {
      const onExit = (): void => {
        clearTimeout(timer);
        this.#waiter = undefined;
        reject(new Error('bench: a helper process exited unexpectedly'));
      };
      const timer = setTimeout(() => {
        this.child.off('exit', onExit);
        this.#waiter = undefined;
        reject(new Error(`bench: no answer from a helper process within ${timeoutMs} ms`));
      }, timeoutMs);
      this.child.once('exit', onExit);
      this.#waiter = (m) => {
        clearTimeout(timer);
        this.child.off('exit', onExit);
        resolve(m);
      };
    });
  }

  /** Send and wait for a message of the given type (others in between are returned to `onOther`). */
  async call<T extends Out['type']>(m: In, type: T, timeoutMs = 120_000, onOther?: (o: Out) => void): Promise<Extract<Out, { type: T }>> {
    this.send(m);
    for (;;) {
      const r = await this.next(timeoutMs);
      if (r.type === type) return r as Extract<Out, { type: T }>;
      if (r.type === 'error') throw new Error(`bench: helper failed: ${(r as unknown as { message: string }).message}`);
      onOther?.(r);
    }
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
