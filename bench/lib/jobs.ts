/**
 * The bench's helper protocol (parent ↔ a forked helper: the load generator, the stand-in apiserver), with
 * no process or socket in it so that it can be unit-tested (test/unit/bench/jobs.test.ts).
 *
 * Every call carries an id and every answer names the call it answers. A call that times out is cancelled:
 * the helper aborts that job (its loop stops, its requests are destroyed) and whatever the job still sends
 * is dropped on both sides, so a late answer is never taken for the next call's. Without ids, the 01:43Z run
 * (bench/RESULTS.md) handed a timed-out mitmproxy measurement's answer to the next measurement, and every
 * workload-3 figure after it was some other path's.
 */

/** A message that belongs to call `id` (0: sent unasked, e.g. the stand-in's `ready`). */
export type Tagged<M> = M & { id: number };
export interface Cancel {
  type: 'cancel';
  id: number;
}
export interface ErrorAnswer {
  type: 'error';
  message: string;
}

interface Pending<Out> {
  type: string;
  resolve: (m: Out) => void;
  reject: (e: Error) => void;
  onOther?: (m: Out) => void;
  timer: NodeJS.Timeout;
}

/** The parent's side: numbered calls, bounded waits, cancels, late answers dropped. */
export class Caller<In extends { type: string }, Out extends { type: string }> {
  readonly #post: (m: Tagged<In> | Cancel) => void;
  readonly #pending = new Map<number, Pending<Out>>();
  readonly #unasked: Out[] = [];
  #unaskedWaiter: ((m: Out) => void) | undefined;
  #nextId = 1;
  #gone: Error | undefined;
  /** Answers that arrived for no waiting call (cancelled or timed out): dropped. */
  dropped = 0;

  constructor(post: (m: Tagged<In> | Cancel) => void) {
    this.#post = post;
  }

  /** A message from the helper. */
  deliver(m: Tagged<Out> | Out): void {
    const id = (m as { id?: number }).id ?? 0;
    if (id === 0) {
      const w = this.#unaskedWaiter;
      this.#unaskedWaiter = undefined;
      if (w) w(m);
      else this.#unasked.push(m);
      return;
    }
    const p = this.#pending.get(id);
    if (!p) {
      this.dropped++;
      return;
    }
    if (m.type === p.type) {
      this.#settle(id);
      p.resolve(m);
    } else if (m.type === 'error') {
      this.#settle(id);
      p.reject(new Error(`bench: helper failed: ${(m as unknown as ErrorAnswer).message}`));
    } else {
      p.onOther?.(m);
    }
  }

  /** The helper is gone: every waiting call fails now rather than at its timeout. */
  exited(err: Error): void {
    this.#gone = err;
    for (const [id, p] of [...this.#pending]) {
      this.#settle(id);
      p.reject(err);
    }
  }

  /** Send `m` and wait (bounded) for its answer of type `type`; other answers to it go to `onOther`. */
  call<T extends Out['type']>(
    m: In,
    type: T,
    timeoutMs: number,
    onOther?: (o: Out) => void,
  ): Promise<Extract<Out, { type: T }>> {
    if (this.#gone) return Promise.reject(this.#gone);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#settle(id);
        this.#post({ type: 'cancel', id });
        reject(new Error(`bench: no answer to ${m.type} from a helper process within ${timeoutMs} ms (cancelled)`));
      }, timeoutMs);
      this.#pending.set(id, { type, resolve: resolve as (m: Out) => void, reject, onOther, timer });
      this.#post({ ...m, id });
    });
  }

  /** The next message sent unasked (bounded wait). */
  next(timeoutMs: number): Promise<Out> {
    const queued = this.#unasked.shift();
    if (queued) return Promise.resolve(queued);
    if (this.#gone) return Promise.reject(this.#gone);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#unaskedWaiter = undefined;
        reject(new Error(`bench: no message from a helper process within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#unaskedWaiter = (m) => {
        clearTimeout(timer);
        resolve(m);
      };
    });
  }

  #settle(id: number): void {
    const p = this.#pending.get(id);
    if (p) clearTimeout(p.timer);
    this.#pending.delete(id);
  }
}

/** What a job gets from the helper's side: an abort signal (its call was cancelled) and a way to report progress. */
export interface JobContext<Out> {
  signal: AbortSignal;
  /** A message before the answer (e.g. the load generator's measurement window); dropped once cancelled. */
  emit(m: Out): void;
}

/**
 * The helper's side: runs each call's job with its own AbortSignal, answers with the call's id, and sends
 * nothing more for a call once it is cancelled. `run` answering undefined sends no answer (e.g. `stop`).
 */
export class Runner<In extends { type: string }, Out extends { type: string }> {
  readonly #post: (m: Tagged<Out | ErrorAnswer>) => void;
  readonly #run: (m: In, ctx: JobContext<Out>) => Promise<Out | undefined>;
  readonly #running = new Map<number, AbortController>();

  constructor(
    post: (m: Tagged<Out | ErrorAnswer>) => void,
    run: (m: In, ctx: JobContext<Out>) => Promise<Out | undefined>,
  ) {
    this.#post = post;
    this.#run = run;
  }

  /** Jobs started and not yet answered or cancelled. */
  get running(): number {
    return this.#running.size;
  }

  receive(m: Tagged<In> | Cancel): void {
    if (m.type === 'cancel') {
      this.#running.get(m.id)?.abort();
      this.#running.delete(m.id);
      return;
    }
    const { id } = m;
    const ctrl = new AbortController();
    this.#running.set(id, ctrl);
    const live = (): boolean => !ctrl.signal.aborted;
    const ctx: JobContext<Out> = {
      signal: ctrl.signal,
      emit: (o) => {
        if (live()) this.#post({ ...o, id });
      },
    };
    let answer: Promise<Out | undefined>;
    try {
      answer = this.#run(m as unknown as In, ctx);
    } catch (err) {
      answer = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    answer
      .then(
        (o) => {
          if (live() && o) this.#post({ ...o, id });
        },
        (err: unknown) => {
          if (live()) this.#post({ type: 'error', message: String(err), id });
        },
      )
      .finally(() => {
        if (this.#running.get(id) === ctrl) this.#running.delete(id);
      });
  }
}
