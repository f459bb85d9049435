// The process entry point, and the build's (bin/build.js bundles it into dist/):
// run the CLI with this process's arguments.
import { main } from './cli.ts';

process.exitCode = await main(process.argv.slice(2));
