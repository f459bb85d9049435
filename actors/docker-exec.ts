// project_exec in a container through the Docker exec API (not the docker CLI):
// the project's env and cwd, stdout and stderr demultiplexed and each capped,
// and a timeout that kills. The engine has no "kill this exec" call, so the
// command runs under a one-line wrapper that first reports its pid on stderr
// (an exec'd process leads its own session and process group inside the
// container); on timeout or abort a second exec kills that group.
import { Writable } from 'node:stream';
import type Docker from 'dockerode';
import type { Clock, TimerHandle } from '../consensus/types.ts';
import type { ExecOutcome, ExecSpec } from './runtime.ts';
import { decodeShellStatus } from './supervisor.ts';

/** `$$` is the exec'd process, which `exec` hands to the command: the pid is the command's, and it leads its group. */
const EXEC_WRAPPER = 'printf "%s\\n" "$$" >&2; exec /bin/sh -c "$1"';
/**
 * Kills a process group. dash needs `--` before a negative pid; busybox's kill rejects the `--`
 * with a message but still signals the group after it, so this one line works in both.
 */
const KILL_GROUP = 'kill -s KILL -- "-$1" 2>/dev/null; kill -s KILL "$1" 2>/dev/null; true';
/** The pid line is a handful of digits; more than this without a newline means the wrapper did not run. */
const PID_LINE_BYTES_MAX = 24;

/** Keeps the first `bytesMax` bytes written to it and counts the rest. */
class CappedOutput extends Writable {
  readonly #chunks: Buffer[] = [];
  #bytes = 0;
  truncated = false;

  constructor(private readonly bytesMax: number) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.take(chunk);
    callback();
  }

  take(chunk: Buffer): void {
    const room = this.bytesMax - this.#bytes;
    if (chunk.length > room) this.truncated = true;
    if (room > 0) {
      const kept = chunk.subarray(0, room);
      this.#chunks.push(kept);
      this.#bytes += kept.length;
    }
  }

  text(): string {
    return Buffer.concat(this.#chunks).toString('utf8');
  }
}

/** Stderr with the wrapper's first line (the pid) taken off and reported. */
class StderrWithPid extends Writable {
  #head = Buffer.alloc(0);
  #done = false;

  constructor(
    private readonly rest: CappedOutput,
    private readonly onPid: (pid: number | null) => void,
  ) {
    super();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    callback();
    if (this.#done) return this.rest.take(chunk);
    this.#head = Buffer.concat([this.#head, chunk]);
    const newline = this.#head.indexOf(10);
    if (newline < 0 && this.#head.length <= PID_LINE_BYTES_MAX) return;
    this.#done = true;
    const line = newline < 0 ? '' : this.#head.subarray(0, newline).toString('latin1');
    const pid = /^[1-9][0-9]*$/.test(line) ? Number(line) : null;
    this.onPid(pid);
    // Not a pid line (the shell failed before printing it): it is the command's own stderr.
    const rest = pid === null ? this.#head : this.#head.subarray(newline + 1);
    this.#head = Buffer.alloc(0);
    this.rest.take(rest);
  }

  /** The stream ended: a partial first line was the command's stderr, not a pid. */
  flush(): void {
    if (this.#done) return;
    this.#done = true;
    this.onPid(null);
    this.rest.take(this.#head);
  }
}

export interface ExecContext {
  /** A client without a request timeout (an exec may run for its whole timeoutMs); its modem demultiplexes. */
  readonly docker: Docker;
  readonly clock: Clock;
  /** How long the kill of a timed-out command and the end of its stream may take. */
  readonly killMsMax: number;
}

/** Runs `spec` in the (running) container `containerId`. An abort kills the command and rejects with the signal's reason. */
export async function execInContainer(containerId: string, spec: ExecSpec, signal: AbortSignal, context: ExecContext): Promise<ExecOutcome> {
  signal.throwIfAborted();
  const startedMs = context.clock.nowMs();
  const container = context.docker.getContainer(containerId);
  const exec = await container.exec({
    Cmd: ['/bin/sh', '-c', EXEC_WRAPPER, 'debughost-exec', spec.command],
    Env: Object.entries(spec.env).map(([name, value]) => `${name}=${value}`),
    ...(spec.cwd === undefined ? {} : { WorkingDir: spec.cwd }),
    AttachStdin: false,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
  });
  const stream = (await exec.start({ hijack: true, stdin: false })) as NodeJS.ReadWriteStream & { destroy(): void };
  const stdout = new CappedOutput(spec.outputBytesMax);
  const stderr = new CappedOutput(spec.outputBytesMax);
  let pid: number | null | undefined;
  const pidKnown: Array<(pid: number | null) => void> = [];
  const stderrWithPid = new StderrWithPid(stderr, (found) => {
    pid = found;
    for (const waiter of pidKnown.splice(0)) waiter(found);
  });
  context.docker.modem.demuxStream(stream, stdout, stderrWithPid);
  const ended = new Promise<void>((resolve) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', () => resolve());
  });

  let timer: TimerHandle | null = null;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = context.clock.setTimer(spec.timeoutMs, () => resolve('timeout'));
  });
  let onAbort: (() => void) | null = null;
  const aborted = new Promise<'abort'>((resolve) => {
    onAbort = () => resolve('abort');
    signal.addEventListener('abort', onAbort, { once: true });
  });
  const first = await Promise.race([ended.then(() => 'ended' as const), timedOut, aborted]);
  if (timer !== null) context.clock.clearTimer(timer);
  if (onAbort !== null) signal.removeEventListener('abort', onAbort);

  if (first !== 'ended') {
    const knownPid = pid !== undefined ? pid : await withinMs(context, new Promise<number | null>((resolve) => pidKnown.push(resolve)), null);
    if (knownPid !== null) await withinMs(context, killGroup(container, knownPid), undefined);
    await withinMs(context, ended, undefined);
    stream.destroy();
    if (first === 'abort') throw signal.reason;
  }
  // The engine may only half-close an exec's connection: ours is closed here, in every case.
  stream.destroy();
  stderrWithPid.flush();
  const info = await exec.inspect();
  const status = info.ExitCode === null || info.Running ? null : decodeShellStatus(info.ExitCode);
  return {
    exitCode: status?.exitCode ?? null,
    signal: status?.signal ?? null,
    timedOut: first === 'timeout',
    stdout: stdout.text(),
    stderr: stderr.text(),
    truncated: stdout.truncated || stderr.truncated,
    durationMs: Math.round(context.clock.nowMs() - startedMs),
  };

  function killGroup(target: Docker.Container, groupId: number): Promise<void> {
    return target
      .exec({ Cmd: ['/bin/sh', '-c', KILL_GROUP, 'debughost-kill', String(groupId)], AttachStdout: false, AttachStderr: false })
      .then((killer) => killer.start({ Detach: true }))
      // Detached, the answer is empty, but docker-modem still hands back its response: close it, or its socket keeps the process alive.
      .then((answer) => (answer as { destroy?: () => void } | undefined)?.destroy?.())
      .catch(() => undefined);
  }
}

/** `promise`, or `fallback` once killMsMax has passed. */
function withinMs<T>(context: ExecContext, promise: Promise<T>, fallback: T): Promise<T> {
  return new Promise<T>((resolve) => {
    const timer = context.clock.setTimer(context.killMsMax, () => resolve(fallback));
    void promise.then((value) => {
      context.clock.clearTimer(timer);
      resolve(value);
    });
  });
}
