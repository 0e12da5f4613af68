/**
 * The build the stand-in claims to be (`version` option): what /version answers, and the figures
 * `FakeApiserver.version` and the OpenAPI documents quote.
 */

export type ServerVersion = '1.32' | '1.33';

export const VERSIONS = {
  '1.32': {
    minor: '32',
    gitVersion: 'v1.32.5',
    gitCommit: '9894294ef13a5b32803e3ca2c0d620a088cc84d1',
    buildDate: '2025-05-15T09:42:20Z',
    goVersion: 'go1.23.8',
  },
  '1.33': {
    minor: '33',
    gitVersion: 'v1.33.1',
    gitCommit: '8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828',
    buildDate: '2025-05-15T08:19:08Z',
    goVersion: 'go1.24.2',
  },
} as const;

/** `version.Info` in its field order; 1.33 adds the emulation and compatibility fields. */
export function versionBody(versionKey: ServerVersion): Record<string, string> {
  const v = VERSIONS[versionKey];
  const b: Record<string, string> = { major: '1', minor: v.minor };
  if (versionKey === '1.33') {
    b['emulationMajor'] = '1';
    b['emulationMinor'] = v.minor;
    b['minCompatibilityMajor'] = '1';
    b['minCompatibilityMinor'] = String(Number(v.minor) - 1);
  }
  return {
    ...b,
    gitVersion: v.gitVersion,
    gitCommit: v.gitCommit,
    gitTreeState: 'clean',
    buildDate: v.buildDate,
    goVersion: v.goVersion,
    compiler: 'gc',
    platform: 'linux/amd64',
  };
}
