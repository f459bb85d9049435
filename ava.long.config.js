// `npm run test:long`: the long suites (*.long.test.ts: chaos runs of every nemesis, 500-seed
// simulator runs), which `npm test` leaves out to stay within its time budget. Same settings as
// package.json's ava block otherwise. One file at a time: the chaos runs time real processes, and
// a 500-seed simulator run beside them on a 2-core machine would only make their timing noisier.
import { readFileSync } from 'node:fs';

const base = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8')).ava;

export default {
  ...base,
  files: ['**/*.long.test.ts', '!node_modules/**'],
  concurrency: 1,
  // ava's timeout is for inactivity: the longest single chaos test here takes about 3 minutes.
  timeout: '10m',
};
