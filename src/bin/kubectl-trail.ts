#!/usr/bin/env node
/**
 * kubectl plugin form: `kubectl trail get pods` runs `kubetrail -- kubectl get pods`. kubetrail's own
 * options come from the environment (KUBETRAIL_*) or the config file, since every argument is kubectl's.
 * Only `kubectl trail` alone or with just --help / -h prints the plugin's own help; `kubectl trail get
 * pods --help` is kubectl's.
 */
// First: nothing may open libuv handles on the stdio that kubectl shares (src/cli/stdio-guard.ts).
import '../cli/stdio-guard.ts';
import { writeSync } from 'node:fs';
import { checkNode } from '../cli/node-version.ts';

checkNode();
const args = process.argv.slice(2);
if (args.length === 0 || (args.length === 1 && ['--help', '-h', 'help'].includes(args[0] ?? ''))) {
  const { pluginHelp } = await import('../cli/plugin-help.ts');
  writeSync(1, pluginHelp());
  process.exit(args.length === 0 ? 2 : 0);
}
const argv = ['--', process.env.KUBETRAIL_KUBECTL ?? 'kubectl', ...args];
// Always the plain form, so commander is not loaded (cli/wrap-argv.ts).
process.exit(
  (await (await import('../cli/wrap-argv.ts')).wrapFast(argv)) ?? (await (await import('../cli/main.ts')).main(argv)),
);
