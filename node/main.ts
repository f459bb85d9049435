// The process entry point, and the build's (bin/build.js bundles it into dist/):
// run the CLI with this process's arguments, then exit with its code. Exit, not
// just set the code: a command that failed half-way through starting a node can
// leave a handle open (a timer, a child's pipe), and a process that printed its
// error but never ends hangs whoever waits for it (`debughost up` once waited
// forever for a node that could not bind its MCP port). Writes to pipes and
// files are synchronous on Linux, so nothing printed is lost.
import { main } from './cli.ts';

process.exit(await main(process.argv.slice(2)));
