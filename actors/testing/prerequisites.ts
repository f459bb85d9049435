// What a test needs from the machine (root, iptables, a Docker engine, a static busybox, …), checked
// once per test file before its tests are declared. A test whose prerequisite is missing is registered
// as skipped, with the reason and what to install in its title, so every reporter (and the summary
// that actors/testing/run-ava.ts prints) tells the truth. Under CI (CI=true, as .ci/run runs) it is
// registered as a failing test instead: CI installs everything, so a missing prerequisite there is a bug
// in .ci/run, not a reason to run less.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, openSync, readSync, closeSync } from 'node:fs';
import { request } from 'node:http';
import { delimiter, join } from 'node:path';
import type { ExecutionContext, Implementation } from 'ava';

/** Every prerequisite a suite may name. Add one here, with its check and its Debian package. */
export const PREREQUISITES = [
  'root',
  'iptables',
  'netns',
  'libfaketime',
  'docker',
  'busybox-static',
  'python3',
  'openssl',
  'redis-server',
  'chromium',
  'etcd',
  'promtool',
  'docker-compose',
  'debootstrap',
] as const;
export type Prerequisite = (typeof PREREQUISITES)[number];

/** The marker in a skipped test's title; run-ava.ts reads the reason after it. */
export const SKIP_MARKER = ' [skipped: ';

/** Names listed here are reported missing whatever the machine has: how the helper's own test and a demo run pretend a bare machine. */
export const PRETEND_MISSING_ENV = 'DEBUGHOST_TEST_WITHOUT';

export const DOCKER_SOCKET = '/var/run/docker.sock';
/** The test image is busybox alone, with no libc: it must be the static build (actors/testing/dockerd.ts). */
export const BUSYBOX = '/bin/busybox';
/** libfaketime's multi-threaded build as Debian's libfaketime package installs it (chaos/cluster.ts preloads it). */
const FAKETIME_LIBRARY = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';
/** How long the Docker engine may take to answer a ping before it counts as not answering. */
const DOCKER_PING_TIMEOUT_MS = 3_000;
/** How long a probe command (iptables -S, ip netns list) may run. */
const PROBE_TIMEOUT_MS = 10_000;

/** The full path of `name` found on PATH, or null. */
export function executableOnPath(name: string, path = process.env.PATH ?? ''): string | null {
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

const isRoot = (): boolean => process.getuid?.() === 0;

function commandWorks(command: string, args: readonly string[], env: NodeJS.ProcessEnv): string | null {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: PROBE_TIMEOUT_MS, env });
  if (result.error !== undefined) return result.error.message;
  if (result.status !== 0) return `\`${command} ${args.join(' ')}\` exited ${result.status ?? result.signal}: ${(result.stderr ?? '').trim().split('\n')[0] ?? ''}`;
  return null;
}

/**
 * Whether an ELF file is statically linked: it has no PT_INTERP program header (the dynamic loader).
 * Read from the header itself, so the check needs no ldd or file(1).
 */
export function isStaticElf(path: string): boolean {
  const PT_INTERP = 3;
  const fd = openSync(path, 'r');
  try {
    const header = Buffer.alloc(64);
    readSync(fd, header, 0, 64, 0);
    if (header.readUInt32BE(0) !== 0x7f454c46 || header[4] !== 2 || header[5] !== 1) return false; // 64-bit little-endian ELF only
    const phoff = Number(header.readBigUInt64LE(32));
    const phentsize = header.readUInt16LE(54);
    const phnum = header.readUInt16LE(56);
    const table = Buffer.alloc(phentsize * phnum);
    readSync(fd, table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i += 1) if (table.readUInt32LE(i * phentsize) === PT_INTERP) return false;
    return true;
  } finally {
    closeSync(fd);
  }
}

/** null when the engine at the socket answers /_ping, otherwise why not. */
function pingDocker(socketPath: string): Promise<string | null> {
  if (!existsSync(socketPath)) return Promise.resolve(`no engine socket at ${socketPath}`);
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', timeout: DOCKER_PING_TIMEOUT_MS }, (response) => {
      response.resume();
      resolve(response.statusCode === 200 ? null : `the engine at ${socketPath} answered ${response.statusCode ?? '?'} to a ping`);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${DOCKER_PING_TIMEOUT_MS} ms`)));
    req.on('error', (error: NodeJS.ErrnoException) => resolve(`the engine at ${socketPath} does not answer (${error.code ?? error.message})`));
    req.end();
  });
}

interface Check {
  /** What makes it present, for the reason line: an apt-get line or another instruction. */
  readonly install: string;
  /** null when present, otherwise what is missing, in a few words. */
  readonly probe: (env: NodeJS.ProcessEnv) => Promise<string | null> | string | null;
}

const onPath =
  (name: string) =>
  (env: NodeJS.ProcessEnv): string | null =>
    executableOnPath(name, env.PATH) === null ? `${name} is not on PATH` : null;

const CHECKS: Record<Prerequisite, Check> = {
  root: { install: 'run the tests as root (CI does)', probe: () => (isRoot() ? null : 'not running as root') },
  iptables: {
    install: 'apt-get install -y iptables',
    probe: (env) => onPath('iptables')(env) ?? (isRoot() ? commandWorks('iptables', ['-w', '-S'], env) : null),
  },
  netns: {
    install: 'apt-get install -y iproute2',
    probe: (env) => onPath('ip')(env) ?? (isRoot() ? commandWorks('ip', ['netns', 'list'], env) : null),
  },
  libfaketime: { install: 'apt-get install -y faketime', probe: () => (existsSync(FAKETIME_LIBRARY) ? null : `${FAKETIME_LIBRARY} is missing`) },
  docker: {
    install: 'apt-get install -y docker.io, and start dockerd or run the tests as root so they start it',
    probe: async (env) => {
      const cli = onPath('docker')(env);
      if (cli !== null) return cli;
      const ping = await pingDocker(DOCKER_SOCKET);
      if (ping === null) return null;
      // The tests start an engine themselves (actors/testing/dockerd.ts) when they may.
      if (isRoot() && executableOnPath('dockerd', env.PATH) !== null) return null;
      return ping;
    },
  },
  'busybox-static': {
    install: 'apt-get install -y busybox-static',
    probe: () => {
      if (!existsSync(BUSYBOX)) return `${BUSYBOX} is missing`;
      return isStaticElf(BUSYBOX) ? null : `${BUSYBOX} is dynamically linked`;
    },
  },
  python3: { install: 'apt-get install -y python3', probe: onPath('python3') },
  openssl: { install: 'apt-get install -y openssl', probe: onPath('openssl') },
  'redis-server': { install: 'apt-get install -y redis-server', probe: onPath('redis-server') },
  chromium: {
    install: 'apt-get install -y chromium',
    probe: (env) => ((executableOnPath('chromium', env.PATH) ?? executableOnPath('chromium-browser', env.PATH)) === null ? 'chromium is not on PATH' : null),
  },
  etcd: { install: 'apt-get install -y etcd-server', probe: onPath('etcd') },
  promtool: { install: 'apt-get install -y prometheus', probe: onPath('promtool') },
  'docker-compose': { install: 'apt-get install -y docker-compose', probe: onPath('docker-compose') },
  debootstrap: { install: 'apt-get install -y debootstrap', probe: onPath('debootstrap') },
};

/** True under CI=true (as .ci/run runs): then a missing prerequisite fails instead of skipping. */
export function strictPrerequisites(env: NodeJS.ProcessEnv = process.env): boolean {
  const ci = env.CI;
  return ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0';
}

/** One line per missing prerequisite: what is missing and what to do. Empty when all are met. */
export async function missingPrerequisites(names: readonly Prerequisite[], env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const pretend = new Set((env[PRETEND_MISSING_ENV] ?? '').split(',').map((name) => name.trim()));
  const lines: string[] = [];
  for (const name of new Set(names)) {
    const check = CHECKS[name];
    const why = pretend.has(name) ? `pretended missing by ${PRETEND_MISSING_ENV}` : await check.probe(env);
    if (why !== null) lines.push(`needs ${name}: ${why} (${check.install})`);
  }
  return lines;
}

/** Something tests are declared with: ava's `test` or `test.serial`, with its `skip`. */
export interface Declare<Context> {
  (title: string, implementation: Implementation<[], Context>): void;
  skip(title: string, implementation: Implementation<[], Context>): void;
}

export interface Prerequisites {
  /** One line per missing prerequisite; empty when all are met. */
  readonly missing: readonly string[];
  /** All met: the tests run, and so should their setup hooks. */
  readonly met: boolean;
  /** `declare` with the guard: runs when met; else skipped with the reason in its title, or, under CI, failing. */
  guard<Context>(declare: Declare<Context>): (title: string, implementation: Implementation<[], Context>) => void;
}

/**
 * Checks the prerequisites of the tests that follow; await it at the top of the test file, before the
 * first test is declared (ava takes declarations only until the file's first tick after them).
 */
export function prerequisites(...names: Prerequisite[]): Promise<Prerequisites> {
  return prerequisitesIn(process.env, names);
}

/** prerequisites() against a given environment (CI, PATH, DEBUGHOST_TEST_WITHOUT). */
export async function prerequisitesIn(env: NodeJS.ProcessEnv, names: readonly Prerequisite[]): Promise<Prerequisites> {
  const missing = await missingPrerequisites(names, env);
  const strict = strictPrerequisites(env);
  return {
    missing,
    met: missing.length === 0,
    guard<Context>(declare: Declare<Context>) {
      return (title: string, implementation: Implementation<[], Context>): void => {
        if (missing.length === 0) return declare(title, implementation);
        const reason = missing.join('; ');
        if (strict) {
          return declare(title, (t: ExecutionContext<Context>) => {
            t.fail(`missing prerequisite under CI=true (.ci/run installs it): ${reason}`);
          });
        }
        declare.skip(`${title}${SKIP_MARKER}${reason}]`, implementation);
      };
    },
  };
}

/**
 * Tests run only when asked for (ENV=1), as slow ones that `npm test` would not fit: otherwise skipped
 * with `why` in the title (also under CI, which does not ask). Asked for, the prerequisites apply as usual.
 */
export async function optIn(envName: string, why: string, ...names: Prerequisite[]): Promise<Prerequisites> {
  if (process.env[envName] === '1') return prerequisites(...names);
  const reason = `set ${envName}=1 to run it: ${why}`;
  return {
    missing: [reason],
    met: false,
    guard<Context>(declare: Declare<Context>) {
      return (title: string, implementation: Implementation<[], Context>): void => declare.skip(`${title}${SKIP_MARKER}${reason}]`, implementation);
    },
  };
}

/**
 * A guard from a reason found some other way (a cgroup mode this kernel lacks, a controller not mounted):
 * null runs the tests; a reason skips them with it in the title, or, under CI=true, fails them. With
 * `kernelFact` the reason is how this kernel is built, which no package changes: skipped under CI too.
 */
export function guardFor(reason: string | null, options: { kernelFact?: boolean; env?: NodeJS.ProcessEnv } = {}): Prerequisites {
  const missing = reason === null ? [] : [reason];
  const strict = options.kernelFact !== true && strictPrerequisites(options.env ?? process.env);
  return {
    missing,
    met: reason === null,
    guard<Context>(declare: Declare<Context>) {
      return (title: string, implementation: Implementation<[], Context>): void => {
        if (reason === null) return declare(title, implementation);
        if (strict) return declare(title, (t: ExecutionContext<Context>) => t.fail(`cannot run under CI=true: ${reason}`));
        declare.skip(`${title}${SKIP_MARKER}${reason}]`, implementation);
      };
    },
  };
}
