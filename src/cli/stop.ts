/**
 * `kubetrail stop`: stop every background kubetrail that wrapped commands started with this state dir, and
 * every one the address book (background/addresses.ts) records on an address with another state dir (the demo's, a
 * script's --state-dir): whichever state dir it was started with, a kubetrail holding the port is found.
 * Each also stops by itself once idle for --linger. A foreground `kubetrail start` is left alone.
 */
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Config } from '../config/schema.ts';
import { recordedAddresses } from '../background/addresses.ts';
import { owned, stopBackground } from '../background/client.ts';
import { readState, sameInstance } from '../background/state.ts';
import { removeQuietly } from '../fs/private.ts';
import { hostForUrl } from '../net/host.ts';
import { errLine } from './output.ts';

/** State files to look at: [state dir, state file], this state dir's first, each once. */
function candidates(stateDir: string, env: NodeJS.ProcessEnv): [string, string][] {
  const out = new Map<string, string>();
  const dir = join(stateDir, 'background');
  try {
    for (const n of readdirSync(dir)) if (n.endsWith('.json')) out.set(join(dir, n), stateDir);
  } catch {
    // no background kubetrail was ever started here
  }
  for (const { key, stateDir: other } of recordedAddresses(env)) {
    const file = join(other, 'background', `${key}.json`);
    if (!out.has(file)) out.set(file, other);
  }
  return [...out].map(([file, dir]) => [dir, file]);
}

export async function runStop(config: Config, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let found = 0;
  let failed = 0;
  for (const [stateDir, file] of candidates(resolve(config.stateDir), env)) {
    const st = readState(file);
    if (!st) continue;
    const where = `${hostForUrl(st.host)}:${st.port}`;
    const elsewhere = stateDir === resolve(config.stateDir) ? '' : ` (state dir ${stateDir})`;
    // Gone, or its pid reused by another process after an unclean exit (never signalled): stale.
    if (!(await owned(stateDir, st))) {
      if (sameInstance(readState(file), st)) removeQuietly(file);
      continue;
    }
    found++;
    if (st.kind === 'start') {
      errLine(
        `kubetrail: the kubetrail on ${where} (pid ${st.pid})${elsewhere} is a foreground \`kubetrail start\`: stop it in its terminal`,
      );
      continue;
    }
    if ((await stopBackground(stateDir, st)).stopped) {
      errLine(`kubetrail: stopped the background kubetrail on ${where} (pid ${st.pid})${elsewhere}`);
    } else {
      failed++;
      errLine(`kubetrail: the background kubetrail on ${where} (pid ${st.pid})${elsewhere} did not stop`);
    }
  }
  if (found === 0) errLine('kubetrail: no background kubetrail is running');
  return failed > 0 ? 1 : 0;
}
