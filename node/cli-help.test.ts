// Every command answers --help with its usage on stdout and exit code 0 (status, kv and leave once
// answered "Unknown option '--help'; run 'debughost kv --help' for the options", exit 2).
import test from 'ava';
import { commandNames, main } from './cli.ts';

async function capture(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const write = { out: process.stdout.write.bind(process.stdout), err: process.stderr.write.bind(process.stderr) };
  process.stdout.write = ((chunk: string) => out.push(String(chunk)) > 0) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string) => err.push(String(chunk)) > 0) as typeof process.stderr.write;
  try {
    const code = await main(argv);
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    process.stdout.write = write.out;
    process.stderr.write = write.err;
  }
}

test.serial('debughost CMD --help prints the usage of CMD and exits 0, for every command', async (t) => {
  t.true(commandNames().length >= 13);
  for (const name of commandNames()) {
    const result = await capture([name, '--help']);
    t.is(result.code, 0, `${name}: ${result.stderr}`);
    t.regex(result.stdout, new RegExp(`usage: debughost ${name}\\b`), name);
    t.is(result.stderr, '', name);
  }
});

test.serial('-h after a subcommand of kv shows the same usage', async (t) => {
  const result = await capture(['kv', 'put', '-h']);
  t.is(result.code, 0);
  t.regex(result.stdout, /debughost kv put KEY VALUE/);
});
