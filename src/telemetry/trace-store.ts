/**
 * The local trace store: the last commands' traces, as the OTLP JSON kubetrail exports, in the state dir,
 * so `kubetrail show` has something to show without a Jaeger (or when the collector was down).
 *
 * Bounded: at most STORE_MAX_TRACES files (the oldest go), and at most STORE_MAX_BUFFERED spans held in
 * memory until their trace's root span ends, all traces together (as the export queue is): beyond it a
 * trace is kept without its later spans. The spans are the exported ones, so
 * they carry what export carries and nothing more: never a token, a body or a continue token
 * (telemetry/spans.ts). The directory is 0700, each file 0600, written to a fresh name and renamed.
 * Writing is asynchronous and never fails a command: a failure is reported once and the store stops.
 */
import { open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Context } from '@opentelemetry/api';
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ensurePrivateDir } from '../fs/private.ts';

export const STORE_MAX_TRACES = 20;
export const STORE_MAX_BUFFERED = 4096;
/** Traces whose root has not ended, at most (spans that end after their root start one that never will). */
const STORE_MAX_OPEN = 64;
const TRACE_ID = /^[0-9a-f]{32}$/;

export function traceStoreDir(stateDir: string): string {
  return join(stateDir, 'traces');
}

/** Keeps each trace's ended spans and writes the trace once its root span (the command) has ended. */
export function traceStoreProcessor(dir: string, warn: (line: string) => void): SpanProcessor {
  const open = new Map<string, ReadableSpan[]>();
  let buffered = 0;
  let failed = false;
  let writing = Promise.resolve();

  const save = async (traceId: string, spans: ReadableSpan[]): Promise<void> => {
    ensurePrivateDir(dir);
    const body = Buffer.from(JsonTraceSerializer.serializeRequest(spans) ?? new Uint8Array());
    await writeFileAtomically(join(dir, `${traceId}.json`), body);
    await prune(dir);
  };

  return {
    onStart(_span: Span, _ctx: Context) {},
    onEnd(span) {
      if (failed) return;
      const id = span.spanContext().traceId;
      const isRoot = span.parentSpanContext === undefined;
      let spans = open.get(id);
      if (!spans) {
        if (open.size >= STORE_MAX_OPEN) {
          const oldest = open.keys().next().value as string;
          buffered -= open.get(oldest)?.length ?? 0;
          open.delete(oldest);
        }
        spans = [];
        open.set(id, spans);
      }
      if (buffered < STORE_MAX_BUFFERED || isRoot) {
        spans.push(span);
        buffered++;
      }
      if (!isRoot) return;
      open.delete(id);
      buffered -= spans.length;
      // One write at a time, in order: the newest file is the last command's.
      writing = writing
        .then(() => save(id, spans))
        .catch((err: unknown) => {
          if (failed) return;
          failed = true;
          warn(
            `kubetrail: cannot keep traces in ${dir} (${(err as Error).message}); \`kubetrail show\` needs a reachable Jaeger`,
          );
        });
    },
    forceFlush: () => writing,
    shutdown: () => writing,
  };
}

async function writeFileAtomically(file: string, body: Buffer): Promise<void> {
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(body);
  } finally {
    await fh.close();
  }
  await rename(tmp, file);
}

/** Keep the newest STORE_MAX_TRACES traces. */
async function prune(dir: string): Promise<void> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.json'));
  if (names.length <= STORE_MAX_TRACES) return;
  const dated = await Promise.all(
    names.map(async (n) => ({
      n,
      t: await stat(join(dir, n)).then(
        (s) => s.mtimeMs,
        () => 0,
      ),
    })),
  );
  dated.sort((a, b) => b.t - a.t);
  for (const { n } of dated.slice(STORE_MAX_TRACES)) await unlink(join(dir, n)).catch(() => undefined);
}

/** The newest stored trace's id, if any. */
export function lastStoredTrace(dir: string): string | undefined {
  let best: { id: string; t: number } | undefined;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return undefined;
  }
  for (const n of names) {
    const id = n.slice(0, -'.json'.length);
    if (!n.endsWith('.json') || !TRACE_ID.test(id)) continue;
    try {
      const t = statSync(join(dir, n)).mtimeMs;
      if (!best || t > best.t) best = { id, t };
    } catch {
      // pruned meanwhile
    }
  }
  return best?.id;
}

/** A stored trace as OTLP JSON text, if it is kept. */
export function readStoredTrace(dir: string, traceId: string): string | undefined {
  if (!TRACE_ID.test(traceId)) return undefined;
  try {
    return readFileSync(join(dir, `${traceId}.json`), 'utf8');
  } catch {
    return undefined;
  }
}
