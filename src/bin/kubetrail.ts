#!/usr/bin/env node
// First: nothing may open libuv handles on the stdio that kubectl shares (src/cli/stdio-guard.ts).
import '../cli/stdio-guard.ts';
import { main } from '../cli/main.ts';

// Exit as soon as main is done: telemetry has already flushed (bounded), and a collector that refused or
// hung must not keep the process alive through the exporter's retry timers. All output is synchronous.
process.exit(await main(process.argv.slice(2)));
