/**
 * The Node.js check both bins make before loading anything else. kubetrail needs what Node 22 brought
 * (package.json engines); on an older Node, as a globally installed or `npm link`ed kubetrail finds
 * whatever `node` is first on PATH, it would half-work or fail with a stack trace. Plain syntax only: this
 * module must load on any Node that runs ES modules.
 */
import { writeSync } from 'node:fs';

/** package.json's engines.node (`>=22`); a unit test keeps the two equal. */
export const MIN_NODE_MAJOR = 22;

/** What is wrong with this Node, in one line, or undefined when it will do. */
export function nodeProblem(version: string, execPath: string): string | undefined {
  const major = Number(version.split('.')[0]);
  if (major >= MIN_NODE_MAJOR) return undefined;
  return (
    `kubetrail: needs Node.js ${MIN_NODE_MAJOR} or later, but ${execPath} is Node ${version}. ` +
    `Put a Node >= ${MIN_NODE_MAJOR} first on PATH (nodejs.org, nvm, your package manager) and install kubetrail again, ` +
    'or run it from its clone with `npx kubetrail` (npm ci there brings Node 24).'
  );
}

/** Exit 1 with that line when this Node is too old. */
export function checkNode(): void {
  const problem = nodeProblem(process.versions.node, process.execPath);
  if (problem === undefined) return;
  writeSync(2, `${problem}\n`);
  process.exit(1);
}
