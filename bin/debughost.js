#!/usr/bin/env node
// Entry point: runs the built CLI in dist/ (see bin/build.js). In a source
// checkout it first builds again when a source changed, so that `npm start`,
// the tests' node processes and a hand-run command never run stale code.
import { buildDist, readManifest, staleReason, DIST } from './build.js';

let manifest = await readManifest();
const stale = await staleReason(manifest);
if (stale !== null) {
  try {
    manifest = await buildDist();
  } catch (error) {
    const what = error.name === 'EsbuildMissingError' ? `${error.message}` : `the build failed: ${error.message.split('\n')[0]}`;
    process.stderr.write(`debughost: ${stale}, and ${what}; run \`npm install\` (with dev dependencies) and \`npm run build\`, or start from the Docker image\n`);
    process.exit(1);
  }
}
await import(new URL(`file://${DIST}/${manifest.entry}`).href);
