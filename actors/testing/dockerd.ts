// Docker for tests: uses the engine at /var/run/docker.sock if it answers, otherwise
// starts dockerd in the background (its own pid, stopped afterwards only if we started
// it), and builds a tiny busybox image locally with `docker import` (no registry).
// Docker is shared with other test runs: a test file that removes or prunes images
// imports its own under a name of its own (importImage), never the shared one.
// Whether the machine has what this needs is asked first, through prerequisites.ts
// ('docker', 'busybox-static'); here a failure is an error, not a skip.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { BUSYBOX, DOCKER_SOCKET } from './prerequisites.ts';

export { DOCKER_SOCKET } from './prerequisites.ts';
export const TEST_IMAGE = 'debughost-test/busybox:1';
const APPLETS = ['sh', 'echo', 'sleep', 'httpd', 'cat', 'mkdir', 'true', 'false', 'ls', 'head', 'tail', 'dd', 'yes', 'kill', 'ps', 'id', 'env', 'grep', 'pwd'];

export interface TestDocker {
  readonly socketPath: string;
  readonly docker: Docker;
  /** Removes the test image if this helper imported it, and stops dockerd if this helper started it. */
  cleanUp(): Promise<void>;
}

async function answers(socketPath: string): Promise<boolean> {
  if (!existsSync(socketPath)) return false;
  try {
    await new Docker({ socketPath, timeout: 3000 }).ping();
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function exited(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch {
    return true;
  }
}

/** Thrown when an engine that should be there does not come up. */
export class TestDockerError extends Error {
  override readonly name = 'TestDockerError';
}

/**
 * A Docker engine and the test image; call it only when prerequisites('docker', 'busybox-static')
 * are met. `image` names the test image: the shared TEST_IMAGE by default, or one of the caller's own.
 */
export async function testDocker(image: string = TEST_IMAGE): Promise<TestDocker> {
  let startedPid: number | null = null;
  let logDir: string | null = null;
  if (!(await answers(DOCKER_SOCKET))) {
    logDir = mkdtempSync(join(tmpdir(), 'debughost-dockerd-'));
    const log = openSync(join(logDir, 'dockerd.log'), 'a');
    const child = spawn('dockerd', [], { detached: true, stdio: ['ignore', log, log] });
    closeSync(log);
    child.unref();
    startedPid = child.pid ?? null;
    const deadline = performance.now() + 60_000;
    while (!(await answers(DOCKER_SOCKET))) {
      if (performance.now() > deadline || (startedPid !== null && exited(startedPid) && !existsSync(DOCKER_SOCKET))) {
        const logTail = readFileSync(join(logDir, 'dockerd.log'), 'utf8').trim().split('\n').slice(-3).join(' | ');
        if (startedPid !== null && !exited(startedPid)) process.kill(startedPid, 'SIGKILL');
        rmSync(logDir, { recursive: true, force: true });
        throw new TestDockerError(`dockerd did not answer on ${DOCKER_SOCKET} within 60 s; its last log lines: ${logTail}`);
      }
      await sleep(200);
    }
    // Another process may have won the race and started its own: then ours exited and is not ours to stop.
    if (startedPid !== null && exited(startedPid)) startedPid = null;
  }
  const docker = new Docker({ socketPath: DOCKER_SOCKET });
  let imported = false;

  try {
    await docker.getImage(image).inspect();
  } catch {
    importImage(image);
    imported = true;
  }
  return {
    socketPath: DOCKER_SOCKET,
    docker,
    async cleanUp() {
      if (imported) await docker.getImage(image).remove({ force: true }).catch(() => undefined);
      if (startedPid !== null) {
        process.kill(startedPid, 'SIGTERM');
        for (let waitedMs = 0; waitedMs < 20_000 && !exited(startedPid); waitedMs += 100) await sleep(100);
        if (!exited(startedPid)) process.kill(startedPid, 'SIGKILL');
      }
      if (logDir !== null) rmSync(logDir, { recursive: true, force: true });
    },
  };
}

/**
 * rootfs = busybox + applet symlinks (+ a file of `extraBytes` at /extra, to make images of
 * different sizes), imported as a one-layer image named `reference`. Returns the image id.
 */
export function importImage(reference: string, extraBytes = 0): string {
  const root = mkdtempSync(join(tmpdir(), 'debughost-rootfs-'));
  try {
    mkdirSync(join(root, 'bin'));
    mkdirSync(join(root, 'tmp'));
    mkdirSync(join(root, 'proc'));
    copyFileSync(BUSYBOX, join(root, 'bin', 'busybox'));
    for (const applet of APPLETS) symlinkSync('busybox', join(root, 'bin', applet));
    if (extraBytes > 0) writeFileSync(join(root, 'extra'), Buffer.alloc(extraBytes, 1));
    const result = spawnSync('/bin/sh', ['-c', `tar -C "$1" -c . | docker -H unix://${DOCKER_SOCKET} import - "$2"`, 'import', root, reference], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`docker import of ${reference} failed: ${result.stderr.trim()}`);
    return result.stdout.trim();
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
