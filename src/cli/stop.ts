/**
 * `kubetrail stop`: stop every background kubetrail that wrapped commands started with this state dir
 * (each also stops by itself once idle for --linger). A foreground `kubetrail start` is left alone.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../config/schema.ts';
import { owned, stopBackground } from './background.ts';
import { readState, removeQuietly, sameInstance } from './background-state.ts';
import { errLine } from './output.ts';

export async function runStop(config: Config): Promise<number> {
  const dir = join(config.stateDir, 'background');
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith('.json'));
  } catch {
    // no background kubetrail was ever started here
  }
  let found = 0;
  let failed = 0;
  for (const name of names) {
    const st = readState(join(dir, name));
    if (!st) continue;
    const where = `${st.host.includes(':') ? `[${st.host}]` : st.host}:${st.port}`;
    // Gone, or its pid reused by another process after an unclean exit (never signalled): stale.
    if (!(await owned(config.stateDir, st))) {
      if (sameInstance(readState(join(dir, name)), st)) removeQuietly(join(dir, name));
      continue;
    }
    found++;
    if (st.kind === 'start') {
      errLine(`kubetrail: the kubetrail on ${where} (pid ${st.pid}) is a foreground \`kubetrail start\`: stop it in its terminal`);
      continue;
    }
    if ((await stopBackground(config.stateDir, st)).stopped) {
      errLine(`kubetrail: stopped the background kubetrail on ${where} (pid ${st.pid})`);
    } else {
      failed++;
      errLine(`kubetrail: the background kubetrail on ${where} (pid ${st.pid}) did not stop`);
    }
  }
  if (found === 0) errLine('kubetrail: no background kubetrail is running');
  return failed > 0 ? 1 : 0;
}
