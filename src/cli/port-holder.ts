/**
 * Who holds a listen address kubetrail could not bind, said in the KT_ERR_LISTEN line: a kubetrail of this
 * or another state dir (what to do about it differs), or another program, named when the OS says (Linux:
 * /proc, for this user's processes).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { ownedElsewhere, owned } from '../background/client.ts';
import { backgroundPaths } from '../background/paths.ts';
import { readState } from '../background/state.ts';

/** The listening TCP socket inodes for `port` (any local address), from /proc/net/tcp{,6}. */
function listeningInodes(port: number): Set<string> {
  const inodes = new Set<string>();
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // local_address is HEXADDR:HEXPORT; st 0A is LISTEN; the inode is field 10.
      if (f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A' && f[9] && f[9] !== '0') inodes.add(f[9]);
    }
  }
  return inodes;
}

/** The process (of this user: others' fds are unreadable) holding a listening socket on `port`. */
export function processOnPort(port: number): { pid: number; name: string } | undefined {
  const inodes = listeningInodes(port);
  if (inodes.size === 0) return undefined;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return undefined;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
      if (inode && inodes.has(inode)) return { pid: Number(pid), name: processName(pid) };
    }
  }
  return undefined;
}

function processName(pid: string): string {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    if (argv.length > 0)
      return argv
        .slice(0, 3)
        .map((a) => (a.length > 60 ? `…${a.slice(-59)}` : a))
        .join(' ');
  } catch {
    // gone
  }
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

/**
 * One KT_ERR_LISTEN message for an address in use: what holds it and what to do. `listen` is the address as
 * the user gave it (--listen or KUBETRAIL_LISTEN).
 */
export async function inUseMessage(listen: string, stateDir: string, host: string, port: number): Promise<string> {
  const other = `pass --listen 127.0.0.1:<port> for another (and keep it: kubectl's caches are keyed by it)`;
  const own = readState(backgroundPaths(stateDir, host, port).state);
  if (own && (await owned(stateDir, own))) {
    return own.kind === 'start'
      ? `--listen ${listen} is in use by a \`kubetrail start\` (pid ${own.pid}) with other settings (kubeconfig, context, collector): use the kubeconfig it printed, stop it, or ${other}`
      : `--listen ${listen} is in use by a background kubetrail (pid ${own.pid}) with other settings that is serving other commands: wait for them, run \`kubetrail stop\`, or ${other}`;
  }
  const elsewhere = await ownedElsewhere(stateDir, host, port);
  if (elsewhere) {
    const { state, stateDir: dir } = elsewhere;
    return state.kind === 'start'
      ? `--listen ${listen} is in use by a \`kubetrail start\` (pid ${state.pid}) started with --state-dir ${dir}: use the kubeconfig it printed, add --state-dir ${dir}, stop it, or ${other}`
      : `--listen ${listen} is in use by a background kubetrail (pid ${state.pid}, --state-dir ${dir}) that is serving other commands: wait for them, run \`kubetrail stop\`, or ${other}`;
  }
  const proc = processOnPort(port);
  const who = proc ? `another program (pid ${proc.pid}: ${proc.name})` : 'another program';
  return `--listen ${listen} is in use by ${who}: stop it, or ${other}`;
}
