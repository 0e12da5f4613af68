// @ts-check
import { existsSync } from 'node:fs';
import { posix } from 'node:path';
import tseslint from 'typescript-eslint';

/**
 * The wrapped command's fast path (`kubetrail -- kubectl ...` served by a background kubetrail): every module
 * it loads before kubectl starts, relative to src/. Each may import (for its values) only Node built-ins,
 * commander and the others listed here; the proxy, OpenTelemetry, YAML and X.509 load only in the background
 * kubetrail, or with `await import()` where a slower path needs them (docs/decisions.md has the figures).
 */
const FAST_PATH = [
  'bin/kubetrail.ts',
  'bin/kubectl-trail.ts',
  'cli/stdio-guard.ts',
  'cli/node-version.ts',
  'cli/main.ts',
  'cli/wrap-argv.ts',
  'cli/output.ts',
  'cli/child.ts',
  'cli/node-flags.ts',
  'cli/allocator.ts',
  'config/load.ts',
  'config/schema.ts',
  'errors.ts',
  'command-tag.ts',
  'net/host.ts',
  'net/tcp-probe.ts',
  'version.ts',
  'fs/private.ts',
  'kubeconfig/timing.ts',
  'kubeconfig/credential-shim.ts',
  'proxy/control.ts',
  'background/protocol.ts',
  'background/paths.ts',
  'background/process.ts',
  'background/token.ts',
  'background/state.ts',
  'background/lock.ts',
  'background/launch.ts',
  'background/client.ts',
  'background/addresses.ts',
  'background/wrapper.ts',
];

/** One rule per directory: the fast-path modules as its files name them (`./x.ts`, `../dir/y.ts`). */
function fastPathRules() {
  // A file renamed or moved must be renamed here too, or its rule would silently check nothing.
  const missing = FAST_PATH.filter((f) => !existsSync(new URL(`src/${f}`, import.meta.url)));
  if (missing.length > 0) throw new Error(`eslint.config.js FAST_PATH: no such file: src/${missing.join(', src/')}`);
  const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return [...new Set(FAST_PATH.map((f) => posix.dirname(f)))].map((dir) => {
    const allowed = FAST_PATH.map((f) => {
      const rel = posix.relative(dir, f);
      return escape(rel.startsWith('.') ? rel : `./${rel}`);
    });
    return {
      files: FAST_PATH.filter((f) => posix.dirname(f) === dir).map((f) => `src/${f}`),
      rules: {
        '@typescript-eslint/no-restricted-imports': [
          'error',
          {
            patterns: [
              {
                regex: `^(?!node:|commander$|(${allowed.join('|')})$)`,
                allowTypeImports: true,
                message:
                  "The wrapped command's fast path loads only Node built-ins, commander and the modules in eslint.config.js FAST_PATH: load this with `await import()` where it is needed.",
              },
            ],
          },
        ],
      },
    };
  });
}

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'bench/results/**', 'eslint.config.js'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': ['error', 'ExportAllDeclaration'],
      'no-console': 'error',
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex:
                '^(?!node:)(fs|path|http|https|http2|net|tls|crypto|os|stream|url|util|events|zlib|child_process|diagnostics_channel|dns|readline|timers|perf_hooks|assert)(/.*)?$',
              message: 'Use the node: protocol.',
            },
          ],
        },
      ],
    },
  },
  ...fastPathRules(),
  {
    files: ['test/**', 'bench/**'],
    rules: {
      'no-console': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
    },
  },
);
