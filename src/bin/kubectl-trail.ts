#!/usr/bin/env node
/**
 * kubectl plugin form: `kubectl trail get pods` runs `kubetrail -- kubectl get pods`. kubetrail's own
 * options come from the environment (KUBETRAIL_*) or the config file, since every argument is kubectl's.
 */
import { main } from '../cli/main.ts';

process.exit(await main(['--', process.env.KUBETRAIL_KUBECTL ?? 'kubectl', ...process.argv.slice(2)]));
