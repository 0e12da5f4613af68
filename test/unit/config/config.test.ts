import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseListen, resolveConfig } from '../../../src/config/load.ts';
import { DEFAULT_LISTEN, OPTIONS } from '../../../src/config/schema.ts';
import { VERSION } from '../../../src/version.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'kt-cfg-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('resolveConfig', () => {
  it('layers defaults < file < environment < flags and freezes the result', () => {
    const file = join(dir, 'k.yaml');
    writeFileSync(file, 'listen: 127.0.0.1:2000\njaeger-url: http://jaeger:16686\nquiet: true\n');
    const env = { HOME: dir, KUBETRAIL_LISTEN: '127.0.0.1:3000' };
    const c = resolveConfig({ config: file, 'jaeger-url': 'http://other:1' }, env);
    expect(c.listen).toBe('127.0.0.1:3000');
    expect(c.jaegerUrl).toBe('http://other:1');
    expect(c.quiet).toBe(true);
    expect(c.stateDir).toBe(join(dir, '.local', 'state', 'kubetrail'));
    expect(Object.isFrozen(c)).toBe(true);
    expect(resolveConfig({}, { HOME: dir }).listen).toBe(DEFAULT_LISTEN);
  });

  it('follows the OTEL_* endpoint variables', () => {
    expect(resolveConfig({}, { HOME: dir }).otlpEndpoint).toBe('http://localhost:4318/v1/traces');
    expect(resolveConfig({}, { HOME: dir, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318/' }).otlpEndpoint).toBe(
      'http://c:4318/v1/traces',
    );
    expect(
      resolveConfig(
        {},
        { HOME: dir, OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t/x' },
      ).otlpEndpoint,
    ).toBe('http://t/x');
  });

  it('rejects an unknown key with the file, line and the known keys', () => {
    const file = join(dir, 'k.yaml');
    writeFileSync(file, 'quiet: true\nlisten-port: 1\n');
    expect(() => resolveConfig({ config: file }, { HOME: dir })).toThrow(
      new RegExp(`^config ${file}:2: "listen-port" is not a kubetrail option \\(known: .*listen`),
    );
  });

  it('rejects a value of the wrong type, and malformed YAML, naming the file', () => {
    const file = join(dir, 'k.yaml');
    writeFileSync(file, 'quiet: sometimes\n');
    expect(() => resolveConfig({ config: file }, { HOME: dir })).toThrow(
      `config ${file}:1: "quiet": expected a boolean, got "sometimes"`,
    );
    writeFileSync(file, 'listen: [1, 2\n');
    expect(() => resolveConfig({ config: file }, { HOME: dir })).toThrow(new RegExp(`^config ${file}:\\d+: `));
    expect(() => resolveConfig({ config: join(dir, 'missing.yaml') }, { HOME: dir })).toThrow(
      `config ${join(dir, 'missing.yaml')}: cannot read (ENOENT)`,
    );
  });

  it('refuses a config that is not a regular file without waiting on it (a FIFO; a directory as before)', () => {
    const fifo = join(dir, 'k.fifo');
    execFileSync('mkfifo', [fifo]);
    expect(() => resolveConfig({ config: fifo }, { HOME: dir })).toThrow(`config ${fifo}: not a regular file`);
    expect(() => resolveConfig({ config: dir }, { HOME: dir })).toThrow(`config ${dir}: cannot read (EISDIR)`);
  });

  it('config/kubetrail.yaml documents every option with its default, and loads as it is', () => {
    const path = new URL('../../../config/kubetrail.yaml', import.meta.url);
    const text = readFileSync(path, 'utf8');
    const doc = (parse(text) ?? {}) as Record<string, unknown>;
    for (const o of OPTIONS) {
      if ('flagOnly' in o && o.flagOnly) continue;
      expect(text, o.key).toContain(o.key);
    }
    expect(doc).toEqual({});
    expect(() => resolveConfig({ config: path.pathname }, { HOME: dir })).not.toThrow();
  });
});

describe('parseListen', () => {
  it('accepts loopback HOST:PORT, refuses others without the explicit flag', () => {
    expect(parseListen('127.0.0.1:17443', false)).toEqual({ host: '127.0.0.1', port: 17443, loopback: true });
    expect(parseListen('localhost:0', false)).toEqual({ host: '127.0.0.1', port: 0, loopback: true });
    expect(parseListen('[::1]:9', false)).toEqual({ host: '::1', port: 9, loopback: true });
    expect(() => parseListen('0.0.0.0:17443', false)).toThrow(/not a loopback address: .* --allow-non-loopback/);
    expect(() => parseListen('127.example.com:1', false)).toThrow(/not a loopback address/);
    expect(parseListen('0.0.0.0:17443', true)).toEqual({ host: '0.0.0.0', port: 17443, loopback: false });
    expect(() => parseListen('17443', false)).toThrow('--listen "17443": expected HOST:PORT');
    expect(() => parseListen('127.0.0.1:70000', false)).toThrow(/expected HOST:PORT/);
  });
});

describe('version', () => {
  it('matches package.json', () => {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    expect(VERSION).toBe(pkg.version);
  });
});
