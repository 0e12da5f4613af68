#!/usr/bin/env node
// First: nothing may open libuv handles on the stdio that kubectl shares (src/cli/stdio-guard.ts).
import '../cli/stdio-guard.ts';
import { writeSync } from 'node:fs';
import { settleAllocatorEnv } from '../cli/allocator.ts';
import { withNodeFlags } from '../cli/node-flags.ts';
import { checkNode } from '../cli/node-version.ts';

// Before anything else is loaded: on an older Node the rest may not even parse, and the user would get a
// stack trace instead of what to do.
checkNode();
// `kubetrail start` as a user runs it gets the background kubetrail's heap settings and allocator
// (src/cli/node-flags.ts); the process that has them gives the user's LD_PRELOAD back (cli/allocator.ts).
const wrongAllocator = withNodeFlags(process.argv.slice(2));
if (wrongAllocator !== undefined) {
  writeSync(2, `kubetrail: ${wrongAllocator}\n`);
  process.exit(2);
}
settleAllocatorEnv();
const args = process.argv.slice(2);
// A plainly written wrapped command (`kubetrail [flags] -- kubectl ...`) skips commander (cli/wrap-argv.ts).
const code =
  (await (await import('../cli/wrap-argv.ts')).wrapFast(args)) ?? (await (await import('../cli/main.ts')).main(args));
// Exit as soon as main is done: telemetry has already flushed (bounded), and a collector that refused or
// hung must not keep the process alive through the exporter's retry timers. All output is synchronous.
process.exit(code);
