/**
 * Which command a request belongs to, and when a command ends: the open commands by key, a kubectl
 * session's adoption of its dispatcher's probe, the idle timers, the recently finished tagged commands
 * (CommandTable), and the grouping of session-less clients by process (ClientGroups). Plain data and
 * timers; spans.ts opens and closes the spans of the commands these say.
 */
import type { RequestStart } from '../proxy/events.ts';
import type { CommandSummary, RequestSummary } from './commands.ts';

/**
 * Start mode's commands for clients that send no Kubectl-Session (helm, client-go programs), grouped by
 * what a proxy can tell of a process: a request joins the command of the connection it came on; a request
 * on a new connection joins the command of the same client (identity, the credential it proved, and
 * User-Agent) while one of that command's connections is still open (the process lives and opened another
 * connection), else it begins a new command: a process that exited closed its connections, so
 * `helm install && helm upgrade` are two. A request whose connection is not known (no connection id)
 * joins its client's command. Idleness ends a command, as for kubectl's sessions (spans.ts), and its
 * connections then begin a new one (a long-lived program's next burst of work).
 */
export class ClientGroups {
  /** Connection id → its command's key. */
  readonly #byConnection = new Map<string, string>();
  /** Client (identity and User-Agent) → its latest command's key. */
  readonly #byClient = new Map<string, string>();
  /** Command key → its connections still open, and whether it has had any. */
  readonly #groups = new Map<string, { client: string; open: Set<string>; hadConnection: boolean }>();
  #next = 0;

  /** The key of the command this request belongs to (`client:<n>`), binding its connection to it. */
  keyFor(identity: string, userAgent: string | undefined, connection: string | undefined): string {
    const bound = connection !== undefined ? this.#byConnection.get(connection) : undefined;
    if (bound !== undefined) return bound;
    const client = `${identity}\n${userAgent ?? ''}`;
    let key = this.#byClient.get(client);
    const group = key !== undefined ? this.#groups.get(key) : undefined;
    if (key === undefined || !group || (group.hadConnection && group.open.size === 0)) {
      key = `client:${++this.#next}`;
      this.#byClient.set(client, key);
      this.#groups.set(key, { client, open: new Set(), hadConnection: false });
    }
    if (connection !== undefined) {
      const g = this.#groups.get(key);
      g?.open.add(connection);
      if (g) g.hadConnection = true;
      this.#byConnection.set(connection, key);
    }
    return key;
  }

  /** A client connection closed: its command takes no new connection once all of its have. */
  closed(connection: string): void {
    const key = this.#byConnection.get(connection);
    if (key === undefined) return;
    this.#byConnection.delete(connection);
    this.#groups.get(key)?.open.delete(connection);
  }

  /** The command ended (idle) or became a session's (adopted): forget it; its connections begin anew. */
  ended(key: string): void {
    const g = this.#groups.get(key);
    if (!g) return;
    this.#groups.delete(key);
    for (const c of g.open) this.#byConnection.delete(c);
    if (this.#byClient.get(g.client) === key) this.#byClient.delete(g.client);
  }

  /** Entries held (for tests: everything is forgotten once commands end and connections close). */
  get size(): number {
    return this.#byConnection.size + this.#byClient.size + this.#groups.size;
  }
}

/**
 * A tagged command is ended by its wrapper; idle only ends one whose wrapper vanished. Finished tagged
 * commands are kept for their wrappers this long, at most RECENT_MAX of them.
 */
const TAGGED_IDLE_MS = 60_000;
const RECENT_MS = 60_000;
const RECENT_MAX = 64;

/**
 * How soon after a session-less request a session of the same client identity must start to join its
 * trace: the gcloud kubectl dispatcher's `/version` probe, then the kubectl it picked, a new process.
 */
export const ADOPT_WINDOW_MS = 1500;

/** What CommandTable needs of a command (spans.ts's record adds its root span and timing facts). */
export interface GroupedCommand {
  key: string;
  /** Requests of the command that have not ended. */
  open: number;
  requests: RequestSummary[];
  /**
   * Armed when the command went idle and left armed while requests come and go (re-arming a timer per
   * request costs more than the request's spans): when it fires, it ends the command if it is still idle
   * and has been for the idle time since `idleSince`, or waits for the rest of it.
   */
  idleTimer: NodeJS.Timeout | undefined;
  /** performance.now() when `open` last went to 0. */
  idleSince: number;
  /** Set while a wrapper waits for the command's open requests to end (spans.ts finishCommand). */
  onIdle: (() => void) | undefined;
  /** Session-less, from a kubectl program (the dispatcher's probe): a session may adopt it. */
  kubectlProbe: boolean;
}

export interface CommandTableOptions<C> {
  /** A command whose requests have all ended ends after this long without another (0: never by idle). */
  idleMs: number;
  /** Wrap mode: every request is the one wrapped command's. */
  singleCommand?: boolean;
  /** A tagged command's wrapper still runs: idle does not end it (it is checked again later). */
  tagAlive?: (tag: string) => boolean;
  /** See ADOPT_WINDOW_MS. */
  adoptWindowMs?: number;
  /** A command went idle for good: end it. */
  onIdle: (cmd: C) => void;
}

/**
 * Which command a request belongs to, and when an idle one ends: the open commands by key (a wrapped
 * command's tag, kubectl's Kubectl-Session, a session-less client's process: ClientGroups), a kubectl
 * session's adoption of its dispatcher's probe, the idle timers, and the recently finished tagged commands
 * their wrappers ask for. No spans: spans.ts opens and closes those.
 */
export class CommandTable<C extends GroupedCommand> {
  readonly #commands = new Map<string, C>();
  readonly #recent = new Map<string, { summary: CommandSummary; at: number }>();
  /** Start mode: the commands of clients that send no Kubectl-Session (helm, client-go programs: #19). */
  readonly #groups = new ClientGroups();
  /**
   * Session-less commands a session may still adopt, by client identity (the last one each). Only a
   * kubectl program's discovery is adopted (the gcloud dispatcher's `/version`, User-Agent
   * `kubectl-dispatcher/…`): helm's first requests are discovery too, and a kubectl started beside it
   * must not take them.
   */
  readonly #unclaimed = new Map<string, { cmd: C; until: number }>();
  readonly #opts: CommandTableOptions<C>;
  readonly #adoptWindow: number;

  constructor(opts: CommandTableOptions<C>) {
    this.#opts = opts;
    this.#adoptWindow = opts.adoptWindowMs ?? ADOPT_WINDOW_MS;
  }

  keyOf(start: RequestStart): string {
    return start.commandTag
      ? `tag:${start.commandTag}`
      : this.#opts.singleCommand
        ? 'wrapped'
        : start.kubectlSession
          ? `session:${start.kubectlSession}`
          : start.clientIdentity !== undefined
            ? this.#groups.keyFor(start.clientIdentity, start.userAgent, start.clientConnection)
            : `request:${start.id}`;
  }

  get(key: string): C | undefined {
    return this.#commands.get(key);
  }

  has(key: string): boolean {
    return this.#commands.has(key);
  }

  add(cmd: C): void {
    this.#commands.set(cmd.key, cmd);
  }

  all(): C[] {
    return [...this.#commands.values()];
  }

  /**
   * The command `start` belongs to under `key` if one is open; else, for a new kubectl session, the
   * session-less probe of the same client it adopts (re-keyed to the session), if any.
   */
  find(start: RequestStart, key: string): C | undefined {
    const cmd = this.#commands.get(key);
    if (cmd || this.#opts.singleCommand || start.commandTag) return cmd;
    const adopted = this.#adoptable(start);
    if (!adopted) return undefined;
    this.#commands.delete(adopted.key);
    this.#groups.ended(adopted.key);
    adopted.key = key;
    // A session's now: no other session may take it.
    adopted.kubectlProbe = false;
    this.#commands.set(key, adopted);
    return adopted;
  }

  /** The session-less command of this client identity that a new session joins, if any. */
  #adoptable(start: RequestStart): C | undefined {
    if (!start.kubectlSession || start.clientIdentity === undefined) return undefined;
    const u = this.#unclaimed.get(start.clientIdentity);
    if (!u) return undefined;
    this.#unclaimed.delete(start.clientIdentity);
    const live = this.#commands.get(u.cmd.key) === u.cmd && (u.cmd.open > 0 || performance.now() <= u.until);
    return live && u.cmd.requests.every((r) => r.discovery) && u.cmd.kubectlProbe ? u.cmd : undefined;
  }

  /** One of `cmd`'s requests ended (its summary already added): adoption window, idle timer, a waiting wrapper. */
  requestEnded(cmd: C, start: RequestStart): void {
    cmd.open--;
    if (cmd.kubectlProbe && start.clientIdentity !== undefined)
      this.#unclaimed.set(start.clientIdentity, { cmd, until: performance.now() + this.#adoptWindow });
    if (cmd.open === 0 && cmd.onIdle) {
      cmd.onIdle();
    } else if (cmd.open === 0 && this.#opts.idleMs > 0) {
      cmd.idleSince = performance.now();
      if (!cmd.idleTimer) this.#armIdle(cmd, this.#idleDelay(cmd));
    }
  }

  /** Forget an ending command (false if it had ended already): its timer, its client group, its adoption. */
  remove(cmd: C): boolean {
    if (!this.#commands.delete(cmd.key)) return false;
    this.#groups.ended(cmd.key);
    for (const [identity, u] of this.#unclaimed) if (u.cmd === cmd) this.#unclaimed.delete(identity);
    if (cmd.idleTimer) clearTimeout(cmd.idleTimer);
    cmd.onIdle = undefined;
    return true;
  }

  /** A client connection closed (session-less clients' grouping). */
  connectionClosed(connection: string): void {
    this.#groups.closed(connection);
  }

  /** Keep a finished tagged command's summary for its wrapper. */
  remember(key: string, summary: CommandSummary): void {
    const now = Date.now();
    for (const [k, v] of this.#recent)
      if (this.#recent.size >= RECENT_MAX || now - v.at > RECENT_MS) this.#recent.delete(k);
    this.#recent.set(key, { summary, at: now });
  }

  recent(key: string): CommandSummary | undefined {
    return this.#recent.get(key)?.summary;
  }

  hasRecent(key: string): boolean {
    return this.#recent.has(key);
  }

  #idleDelay(cmd: C): number {
    if (cmd.key.startsWith('tag:')) return Math.max(this.#opts.idleMs, TAGGED_IDLE_MS);
    // A kubectl program's session-less probe stays open for a session to adopt it.
    if (cmd.kubectlProbe) return Math.max(this.#opts.idleMs, this.#adoptWindow);
    return this.#opts.idleMs;
  }

  #armIdle(cmd: C, ms: number): void {
    cmd.idleTimer = setTimeout(() => this.#onIdleTimer(cmd), ms);
    cmd.idleTimer.unref();
  }

  #onIdleTimer(cmd: C): void {
    cmd.idleTimer = undefined;
    // Busy again: the end of its last open request arms the timer anew.
    if (cmd.open > 0 || cmd.onIdle) return;
    const left = cmd.idleSince + this.#idleDelay(cmd) - performance.now();
    // Timers fire up to a millisecond early or late; within that, the command has been idle long enough.
    if (left >= 1) this.#armIdle(cmd, left);
    else if (cmd.key.startsWith('tag:') && this.#opts.tagAlive?.(cmd.key.slice('tag:'.length)) === true)
      this.#armIdle(cmd, this.#idleDelay(cmd));
    else this.#opts.onIdle(cmd);
  }
}
