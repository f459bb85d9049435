#!/usr/bin/env node
// Entry point: runs the built CLI in dist/ (see bin/build.js). In a source
// checkout it first builds again when a source changed, so that `npm start`,
// the tests' node processes and a hand-run command never run stale code.
import { buildDist, readManifest, staleReason, DIST } from './build.js';

let manifest = await readManifest();
const stale = await staleReason(manifest);
if (stale !== null) {
  try {
    manifest = await buildDist({ logLevel: 'silent' });
  } catch (error) {
    if (error.name === 'EsbuildMissingError') {
      process.stderr.write(`debughost: ${stale}, and ${error.message}; run \`npm install\` (with dev dependencies), or start from a packed release or the Docker image\n`);
    } else {
      const first = error.errors?.[0];
      const where = first?.location === undefined || first.location === null ? '' : `${first.location.file}:${first.location.line}: `;
      process.stderr.write(`debughost: ${stale}, and the build failed: ${where}${first?.text ?? error.message.split('\n')[0]}; fix it (\`npm run build\` shows every error)\n`);
    }
    process.exit(1);
  }
}
await import(new URL(`file://${DIST}/${manifest.entry}`).href);
