// How a project's command becomes a process: the argv the spawner runs, the program the shell
// would look up (so a missing one is refused before anything runs), and the port variables.
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

/** Shell words that are not programs on PATH, so the command-not-found check leaves them alone. */
const SHELL_WORDS = new Set(
  '. : [ alias bg break cd command continue echo eval exec exit export false fg getopts hash jobs kill local printf pwd read readonly return set shift test times trap true type ulimit umask unalias unset wait if then else elif fi for while until do done case esac { } ! time'.split(' '),
);

/** PORT for 'default', PORT_<NAME> for the others (upper case, other characters as _). */
export function portEnv(ports: Readonly<Record<string, number>>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, port] of Object.entries(ports)) {
    env[name === 'default' ? 'PORT' : `PORT_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`] = String(port);
  }
  return env;
}

/** The program a command starts with, when it is a plain word we can look up; null otherwise. */
export function leadingProgram(command: string): string | null {
  const match = /^\s*([^\s;&|<>()]+)(?:\s|$)/.exec(command);
  const word = match?.[1];
  if (word === undefined || SHELL_WORDS.has(word) || /[$`"'\\=*?~{}[\]]/.test(word)) return null;
  return word;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

export function findProgram(program: string, path: string, cwd: string): boolean {
  if (program.includes('/')) return isExecutable(isAbsolute(program) ? program : join(cwd, program));
  return path.split(delimiter).some((dir) => dir !== '' && isExecutable(join(dir, program)));
}

export interface CommandArgv {
  readonly argv: readonly string[];
  /**
   * True when the shell stays as the first process (a list, a pipeline, a compound command): its
   * status 128+n then means its child died of signal n. False when the program replaces the shell.
   */
  readonly shellStays: boolean;
}

/** Shell syntax after which the shell must stay: lists, pipelines, background jobs, subshells, compound commands. */
const SHELL_CONTROL = /[;&|\n`()]|\$\(/;

/**
 * `/bin/sh -c` with the command; a single plain command gets `exec` in front, so that it replaces
 * the shell and a project costs one process, not two (dash does not do that on its own).
 */
export function commandArgv(command: string): CommandArgv {
  if (/^\s*exec\s/.test(command)) return { argv: ['/bin/sh', '-c', command], shellStays: false };
  if (leadingProgram(command) !== null && !SHELL_CONTROL.test(command)) return { argv: ['/bin/sh', '-c', `exec ${command}`], shellStays: false };
  return { argv: ['/bin/sh', '-c', command], shellStays: true };
}
