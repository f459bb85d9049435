// Lint rules: typescript-eslint's recommended set, plus the rule that keeps the
// consensus core pure (no clock, timer or randomness reaches it except through
// injected interfaces).
import tseslint from 'typescript-eslint';

const impure = [
  { name: 'Date', message: 'The consensus core takes time only as ticks.' },
  { name: 'setTimeout', message: 'The consensus core has no timers; use ticks.' },
  { name: 'setInterval', message: 'The consensus core has no timers; use ticks.' },
  { name: 'setImmediate', message: 'The consensus core has no timers; use ticks.' },
  { name: 'performance', message: 'The consensus core takes time only as ticks.' },
  { name: 'process', message: 'The consensus core does no I/O.' },
];

export default tseslint.config(
  { ignores: ['node_modules/**', 'proto/gen/**', 'bench/etcd/gen/**', 'data/**', 'dist/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/switch-exhaustiveness-check': 'off',
    },
  },
  {
    // A skipped test must say why: through actors/testing/prerequisites.ts, which puts the reason in
    // its title and fails it under CI=true instead. ava's own skip would be silent.
    files: ['**/*.test.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: "MemberExpression[object.name='test'][property.name='skip'], MemberExpression[object.property.name='serial'][property.name='skip']", message: 'Skip through actors/testing/prerequisites.ts, so the skip names its reason.' },
        { selector: "CallExpression[callee.property.name='pass'] > TemplateLiteral:first-child > TemplateElement[value.raw=/^skipped/]", message: 'A skipped test is not a pass: use actors/testing/prerequisites.ts.' },
      ],
    },
  },
  {
    files: ['consensus/raft*.ts', 'consensus/quorum.ts', 'consensus/log.ts', 'consensus/progress.ts', 'consensus/kv-state-machine.ts', 'consensus/types.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-globals': ['error', ...impure],
      'no-restricted-properties': ['error', { object: 'Math', property: 'random', message: 'Use the injected Random.' }],
      'no-restricted-syntax': ['error', { selector: 'FunctionDeclaration[async=true], ArrowFunctionExpression[async=true], FunctionExpression[async=true]', message: 'The consensus core is synchronous.' }],
    },
  },
);
