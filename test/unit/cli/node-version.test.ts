import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MIN_NODE_MAJOR, nodeProblem } from '../../../src/cli/node-version.ts';

describe('the Node.js version check at start', () => {
  it("is package.json's engines.node", () => {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      engines: { node: string };
    };
    expect(pkg.engines.node).toBe(`>=${MIN_NODE_MAJOR}`);
  });

  it('says what to do on an older Node, in one line naming the node binary and its version', () => {
    const line = nodeProblem('20.20.2', '/usr/bin/node');
    expect(line).toBe(
      'kubetrail: needs Node.js 22 or later, but /usr/bin/node is Node 20.20.2. Put a Node >= 22 first on PATH (nodejs.org, nvm, your package manager) and install kubetrail again, or run it from its clone with `npx kubetrail` (npm ci there brings Node 24).',
    );
    expect(nodeProblem('18.0.0', '/x/node')).toMatch(
      /^kubetrail: needs Node\.js 22 or later, but \/x\/node is Node 18\.0\.0\./,
    );
  });

  it('lets 22 and later through', () => {
    for (const v of ['22.0.0', '22.12.1', '24.21.0', '30.1.0']) expect(nodeProblem(v, '/usr/bin/node')).toBeUndefined();
  });
});
