// Docker for tests: uses the engine at /var/run/docker.sock if it answers, otherwise
// starts dockerd in the background, and builds a tiny busybox image locally with
// `docker import` (no registry). ava runs test files in parallel processes that share
// one engine: each registers itself in USERS_DIR, and what the tests started or
// imported (dockerd, the shared image) is stopped and removed by the last one to
// finish, never under another file that still uses it.
// Docker is shared with other test runs: a test file that removes or prunes images
// imports its own under a name of its own (importImage), never the shared one.
// Whether the machine has what this needs is asked first, through prerequisites.ts
// ('docker', 'busybox-static'); here a failure is an error, not a skip.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
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
  /** The last user of the engine removes the images the tests imported and stops a dockerd the tests started. */
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

/** Who uses a test-started engine now (`user-<pid>`), and what the tests started or imported on it. */
const USERS_DIR = join(tmpdir(), 'debughost-docker-users');
const DOCKERD_PID_FILE = join(USERS_DIR, 'dockerd-pid');
const DOCKERD_LOG_DIR_FILE = join(USERS_DIR, 'dockerd-log-dir');
const IMPORTED_PREFIX = 'imported-';

const alive = (pid: number): boolean => !exited(pid) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));

function otherLiveUsers(): number {
  let count = 0;
  for (const entry of existsSync(USERS_DIR) ? readdirSync(USERS_DIR) : []) {
    const pid = Number(entry.replace(/^user-/, ''));
    if (entry.startsWith('user-') && pid !== process.pid && Number.isInteger(pid) && (() => { try { return alive(pid); } catch { return false; } })()) count += 1;
  }
  return count;
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
  mkdirSync(USERS_DIR, { recursive: true });
  const userFile = join(USERS_DIR, `user-${process.pid}`);
  writeFileSync(userFile, '');
  if (!(await answers(DOCKER_SOCKET))) {
    const logDir = mkdtempSync(join(tmpdir(), 'debughost-dockerd-'));
    const log = openSync(join(logDir, 'dockerd.log'), 'a');
    const child = spawn('dockerd', [], { detached: true, stdio: ['ignore', log, log] });
    closeSync(log);
    child.unref();
    const startedPid = child.pid ?? null;
    const deadline = performance.now() + 60_000;
    while (!(await answers(DOCKER_SOCKET))) {
      if (performance.now() > deadline || (startedPid !== null && exited(startedPid) && !existsSync(DOCKER_SOCKET))) {
        const logTail = readFileSync(join(logDir, 'dockerd.log'), 'utf8').trim().split('\n').slice(-3).join(' | ');
        if (startedPid !== null && !exited(startedPid)) process.kill(startedPid, 'SIGKILL');
        rmSync(logDir, { recursive: true, force: true });
        rmSync(userFile, { force: true });
        throw new TestDockerError(`dockerd did not answer on ${DOCKER_SOCKET} within 60 s; its last log lines: ${logTail}`);
      }
      await sleep(200);
    }
    // Another process may have won the race and started its own: then ours exited and is not ours to stop.
    if (startedPid !== null && !exited(startedPid)) {
      writeFileSync(DOCKERD_PID_FILE, String(startedPid));
      writeFileSync(DOCKERD_LOG_DIR_FILE, logDir);
    } else rmSync(logDir, { recursive: true, force: true });
  }
  const docker = new Docker({ socketPath: DOCKER_SOCKET });
  try {
    await docker.getImage(image).inspect();
  } catch {
    importImage(image);
    writeFileSync(join(USERS_DIR, `${IMPORTED_PREFIX}${Buffer.from(image).toString('hex')}`), image);
  }
  return {
    socketPath: DOCKER_SOCKET,
    docker,
    async cleanUp() {
      rmSync(userFile, { force: true });
      // Another test file still uses the engine: the last one out cleans up.
      if (otherLiveUsers() > 0) return;
      for (const entry of existsSync(USERS_DIR) ? readdirSync(USERS_DIR) : []) {
        if (!entry.startsWith(IMPORTED_PREFIX)) continue;
        await docker.getImage(readFileSync(join(USERS_DIR, entry), 'utf8')).remove({ force: true }).catch(() => undefined);
        rmSync(join(USERS_DIR, entry), { force: true });
      }
      const startedPid = existsSync(DOCKERD_PID_FILE) ? Number(readFileSync(DOCKERD_PID_FILE, 'utf8')) : null;
      if (startedPid !== null && Number.isInteger(startedPid) && startedPid > 0 && !exited(startedPid)) {
        process.kill(startedPid, 'SIGTERM');
        for (let waitedMs = 0; waitedMs < 20_000 && !exited(startedPid); waitedMs += 100) await sleep(100);
        if (!exited(startedPid)) process.kill(startedPid, 'SIGKILL');
      }
      if (existsSync(DOCKERD_LOG_DIR_FILE)) rmSync(readFileSync(DOCKERD_LOG_DIR_FILE, 'utf8'), { recursive: true, force: true });
      if (otherLiveUsers() === 0) rmSync(USERS_DIR, { recursive: true, force: true });
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
