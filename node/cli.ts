// The debughost command line: one entry per subcommand, each returning an exit
// code. Bad input gets one line on stderr saying what to do, never a stack trace.
import { HelpRequested, UsageError } from './usage-error.ts';

type Command = (args: string[]) => Promise<number>;

const commands: Record<string, { readonly summary: string; readonly load: () => Promise<Command> }> = {
  up: {
    summary: 'start a local N-node cluster on loopback (what npm start runs)',
    load: async () => (await import('./cli-node.ts')).upCommand,
  },
  node: {
    summary: 'start one member: bootstrap from --seeds or join through them',
    load: async () => (await import('./cli-node.ts')).nodeCommand,
  },
  status: {
    summary: 'show the cluster as a node sees it (--endpoints HOST:PORT)',
    load: async () => (await import('./cli-node.ts')).statusCommand,
  },
  kv: {
    summary: 'get | put | del | txn | watch against the replicated KV store',
    load: async () => (await import('./cli-node.ts')).kvCommand,
  },
  leave: {
    summary: 'remove a node from its cluster (it stops by itself); --force skips the live-quorum check',
    load: async () => (await import('./cli-node.ts')).leaveCommand,
  },
  snapshot: {
    summary: 'save a consistent backup, restore one into a new data dir, or check a file',
    load: async () => (await import('./cli-snapshot.ts')).snapshotCommand,
  },
  project: {
    summary: 'batch FILE: start, stop, restart or remove many projects in one call (over MCP)',
    load: async () => (await import('./cli-project.ts')).projectCommand,
  },
  token: {
    summary: 'create | revoke | list bearer tokens (roles per tenant; join tokens)',
    load: async () => (await import('./cli-trust.ts')).tokenCommand,
  },
  audit: {
    summary: 'verify the audit hash chains | query the audit trail',
    load: async () => (await import('./cli-trust.ts')).auditCommand,
  },
  init: {
    summary: 'make the cluster secret and first admin token for separately started founders',
    load: async () => (await import('./cli-trust.ts')).initCommand,
  },
  member: {
    summary: 'list | promote ID | remove ID members (--force skips the live-quorum check)',
    load: async () => (await import('./cli-node.ts')).memberCommand,
  },
  chaos: {
    summary: 'run a real cluster in network namespaces under faults and check it (root)',
    load: async () => (await import('../chaos/cli-chaos.ts')).chaosCommand,
  },
  sim: {
    summary: 'run the deterministic cluster simulator over seeds',
    load: async () => (await import('../simulator/cli-sim.ts')).simCommand,
  },
};

/** The subcommands, in the order usage() lists them. */
export const commandNames = (): string[] => Object.keys(commands);

export function usage(): string {
  const lines = ['usage: debughost <command> [options]', '', 'commands:'];
  for (const [name, command] of Object.entries(commands)) lines.push(`  ${name.padEnd(8)} ${command.summary}`);
  lines.push('', 'Run `debughost <command> --help` for the options of one command.');
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage()}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (command === undefined) {
    process.stderr.write(`debughost: unknown command '${name}'; run 'debughost --help' for the list\n`);
    return 2;
  }
  try {
    return await (await command.load())(rest);
  } catch (error) {
    if (error instanceof HelpRequested) {
      process.stdout.write(`${error.text}\n`);
      return 0;
    }
    if (error instanceof UsageError) {
      process.stderr.write(`debughost ${name}: ${error.message}\n`);
      return 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`debughost ${name}: ${message}\n`);
    if (process.env.DEBUGHOST_DEBUG === '1' && error instanceof Error) process.stderr.write(`${error.stack ?? ''}\n`);
    return 1;
  }
}
