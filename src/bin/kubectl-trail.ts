#!/usr/bin/env node
/**
 * kubectl plugin form: `kubectl trail get pods` runs `kubetrail -- kubectl get pods`. kubetrail's own
 * options come from the environment (KUBETRAIL_*) or the config file, since every argument is kubectl's.
 */
// First: nothing may open libuv handles on the stdio that kubectl shares (src/cli/stdio-guard.ts).
import '../cli/stdio-guard.ts';
import { main } from '../cli/main.ts';

process.exit(await main(['--', process.env.KUBETRAIL_KUBECTL ?? 'kubectl', ...process.argv.slice(2)]));
