import { describe, expect, it } from 'vitest';
import { parseWrapArgv } from '../../../src/cli/wrap-argv.ts';

describe('the wrapped command parsed without commander (#18 W5)', () => {
  it('takes `[flags] -- command` with the registry’s flags, in both value forms', () => {
    expect(
      parseWrapArgv([
        '--kubeconfig',
        '/k/config',
        '--listen=127.0.0.1:18443',
        '--quiet',
        '--linger',
        '0',
        '--',
        'kubectl',
        'get',
        'pods',
        '--',
        'x',
      ]),
    ).toEqual({
      flags: { kubeconfig: '/k/config', listen: '127.0.0.1:18443', quiet: true, linger: '0' },
      // Everything after the first `--` is the command's, later `--` and kubectl's own flags included.
      command: ['kubectl', 'get', 'pods', '--', 'x'],
    });
    expect(parseWrapArgv(['--', 'kubectl', '--kubeconfig', '/a', 'get', 'pods'])).toEqual({
      flags: {},
      command: ['kubectl', '--kubeconfig', '/a', 'get', 'pods'],
    });
  });

  it('leaves everything else to commander, so its errors, help and subcommands stay the only ones', () => {
    const toCommander = [
      [], // no command: commander's usage error path
      ['--'], // an empty command
      ['start'], // a subcommand
      ['kubectl', 'get', 'pods'], // a command without `--`
      ['--help', '--', 'kubectl'],
      ['-h', '--', 'kubectl'],
      ['--version', '--', 'kubectl'],
      ['--nope', '--', 'kubectl'], // unknown flag: commander names it
      ['--quiet=true', '--', 'kubectl'], // a boolean flag given a value
      ['--context', '--', 'kubectl'], // a value missing (the next word is `--`)
      ['--context', '-x', '--', 'kubectl'], // a value that looks like a flag
      ['--context=', '--', 'kubectl'], // an empty value
      ['--context', 'a', '--context', 'b', '--', 'kubectl'], // given twice
      ['stray', '--', 'kubectl'], // a positional before `--`
    ];
    for (const argv of toCommander) expect(parseWrapArgv(argv), argv.join(' ')).toBeUndefined();
  });
});
