// A throwaway redis-server for tests: a free loopback port, a temp dir, no
// persistence; stopped by its pid, its dir removed. Tests that need it are
// registered as skipped where the Debian package redis-server is missing.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, until } from '../local-cluster.ts';

export interface TestRedis {
  readonly url: string;
  readonly port: number;
  readonly process: ChildProcess;
  /** SIGKILL (Redis dies as a crashed server would) and wait for the exit. */
  kill(): Promise<void>;
  /** Kill if running, and remove the temp dir. */
  stop(): Promise<void>;
}

/** A running redis-server on a free port. */
export async function startRedis(): Promise<TestRedis> {
  const dir = await mkdtemp(join(tmpdir(), 'debughost-redis-'));
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  try {
    await until('redis-server to accept connections', 20_000, () =>
      new Promise<true | null>((resolve) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.end();
          resolve(true);
        });
        socket.once('error', () => resolve(null));
      }),
    );
  } catch (error) {
    await kill();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    process: child,
    kill,
    stop: async () => {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
