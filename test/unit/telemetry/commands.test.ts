import { describe, expect, it } from 'vitest';
import { commandLineName } from '../../../src/kubeconfig/timing.ts';
import { ClientGroups } from '../../../src/telemetry/command-table.ts';
import { programOf } from '../../../src/telemetry/commands.ts';

describe('root names of programs that send no Kubectl-Command (#19 item 1)', () => {
  it('from a User-Agent: its program, lower-cased, and nothing else', () => {
    expect(programOf('Helm/4.3.2')).toBe('helm');
    expect(programOf('clientgo-demo/v0.0.0 (linux/amd64) kubernetes/$Format')).toBe('clientgo-demo');
    expect(programOf('kubectl-dispatcher/v1.0 (linux/amd64)')).toBe('kubectl-dispatcher');
    expect(programOf('Go-http-client/2.0')).toBe('go-http-client');
    expect(programOf(undefined)).toBeUndefined();
    expect(programOf('')).toBeUndefined();
    expect(programOf(`${'x'.repeat(100)}/1`)).toHaveLength(64);
  });

  it('from a command line: the file name and a first word that is a plain sub-command, never a value', () => {
    expect(commandLineName(['helm', 'install', 'web', './chart', '--set', 'password=hunter2'])).toBe('helm install');
    expect(commandLineName(['/tmp/bin/clientgo-demo', '-n', 'default'])).toBe('clientgo-demo');
    expect(commandLineName(['helm', 'upgrade', '--install', 'web'])).toBe('helm upgrade');
    // A first argument that is not a plain word could be anything: a token, a path, a name with digits.
    expect(commandLineName(['vault-login', 's.AbC123xyz'])).toBe('vault-login');
    expect(commandLineName(['deploy', 'ghp_Secret0'])).toBe('deploy');
    expect(commandLineName(['mytool', 'release-42'])).toBe('mytool');
    expect(commandLineName(['sh', '-c', 'helm install x'])).toBe('sh');
    expect(commandLineName(['env', 'TOKEN=abc', 'helm'])).toBe('env');
    expect(commandLineName([])).toBeUndefined();
  });
});

describe('ClientGroups: a session-less client grouped by connection, identity and User-Agent', () => {
  it('connections of one live client share a command; once all closed, a new connection begins another', () => {
    const g = new ClientGroups();
    const a = g.keyFor('alice', 'Helm/4.3.2', 'c1');
    expect(g.keyFor('alice', 'Helm/4.3.2', 'c2')).toBe(a);
    g.closed('c1');
    expect(g.keyFor('alice', 'Helm/4.3.2', 'c3')).toBe(a);
    g.closed('c2');
    g.closed('c3');
    const b = g.keyFor('alice', 'Helm/4.3.2', 'c4');
    expect(b).not.toBe(a);
    // The old command ending (idle) does not touch the new one.
    g.ended(a);
    expect(g.keyFor('alice', 'Helm/4.3.2', 'c5')).toBe(b);
  });

  it('a connection keeps its command whatever its later requests carry; other clients are apart', () => {
    const g = new ClientGroups();
    const a = g.keyFor('alice', 'Helm/4.3.2', 'c1');
    expect(g.keyFor('alice-new-token', 'Helm/4.3.2', 'c1')).toBe(a);
    expect(g.keyFor('bob', 'Helm/4.3.2', 'c2')).not.toBe(a);
    expect(g.keyFor('alice', 'clientgo-demo/v0.0.0', 'c3')).not.toBe(a);
    expect(g.keyFor('alice', undefined, undefined)).not.toBe(a);
    expect(g.keyFor('alice', undefined, undefined)).toBe(g.keyFor('alice', undefined, undefined));
  });

  it('forgets everything once commands end and connections close (bounded by what is live)', () => {
    const g = new ClientGroups();
    const keys = new Set<string>();
    for (let i = 0; i < 50; i++) keys.add(g.keyFor(`id${i % 5}`, 'Helm/4.3.2', `c${i}`));
    for (let i = 0; i < 50; i++) g.closed(`c${i}`);
    for (const k of keys) g.ended(k);
    expect(g.size).toBe(0);
    // Ended while its connections are still open: they begin a new command.
    const k = g.keyFor('alice', 'Helm/4.3.2', 'c1');
    g.ended(k);
    expect(g.keyFor('alice', 'Helm/4.3.2', 'c1')).not.toBe(k);
  });
});
