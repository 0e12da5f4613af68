#!/usr/bin/env node
import { main } from '../cli/main.ts';

// Exit as soon as main is done: telemetry has already flushed (bounded), and a collector that refused or
// hung must not keep the process alive through the exporter's retry timers. All output is synchronous.
process.exit(await main(process.argv.slice(2)));
