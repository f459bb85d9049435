// One-off commands and HTTP requests against a project, run on its owner node:
// project_exec and project_http. Output and bodies are capped so that a result
// always fits an MCP answer.
import { spawn } from 'node:child_process';
import type { ExecAnswer as ExecResult, HttpAnswer as HttpResult } from './messages.ts';

export const EXEC_OUTPUT_BYTES_MAX = 32 * 1024;
export const HTTP_BODY_BYTES_MAX = 32 * 1024;

/** Collects up to `bytesMax` bytes of a stream and remembers whether more came. */
class CappedBuffer {
  readonly #chunks: Buffer[] = [];
  #bytes = 0;
  truncated = false;

  constructor(private readonly bytesMax: number) {}

  push(chunk: Buffer): void {
    const room = this.bytesMax - this.#bytes;
    if (room <= 0) {
      this.truncated = true;
      return;
    }
    const part = chunk.byteLength > room ? chunk.subarray(0, room) : chunk;
    if (part !== chunk) this.truncated = true;
    this.#chunks.push(part);
    this.#bytes += part.byteLength;
  }

  text(): string {
    // A cut may split a UTF-8 sequence; the decoder replaces the tail with U+FFFD.
    return Buffer.concat(this.#chunks).toString('utf8');
  }
}

export interface ExecTarget {
  /** argv to run, e.g. ['/bin/sh', '-c', command]. */
  readonly argv: readonly string[];
  readonly cwd?: string;
  readonly env: Readonly<Record<string, string>>;
}

/** Run a command in its own process group; kill the whole group at the timeout or on abort. */
export function runExec(target: ExecTarget, timeoutMs: number, signal: AbortSignal, outputBytesMax = EXEC_OUTPUT_BYTES_MAX): Promise<ExecResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    const [file, ...args] = target.argv;
    if (file === undefined) throw new Error('runExec needs a command');
    const child = spawn(file, args, {
      cwd: target.cwd,
      // Only what the caller gives: never the node's own environment.
      env: { ...target.env },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stdout = new CappedBuffer(outputBytesMax);
    const stderr = new CappedBuffer(outputBytesMax);
    let timedOut = false;
    const killGroup = (): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timeoutMs);
    const onAbort = (): void => killGroup();
    signal.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    const finish = (exitCode: number | null, signalName: string | null, spawnError: string | null): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve({
        exitCode,
        signal: signalName,
        timedOut,
        stdout: stdout.text(),
        stderr: spawnError === null ? stderr.text() : `${stderr.text()}${spawnError}`,
        truncated: stdout.truncated || stderr.truncated,
        durationMs: Math.round(performance.now() - started),
      });
    };
    child.once('error', (error: NodeJS.ErrnoException) => {
      const why = error.code === 'ENOENT' ? `cannot run ${file}: ${target.cwd !== undefined ? `not found, or the cwd ${target.cwd} does not exist` : 'not found'}` : error.message;
      finish(null, null, why);
    });
    child.once('close', (code, signalName) => finish(code, signalName, null));
  });
}

export interface HttpTarget {
  readonly port: number;
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
}

/** One HTTP request to a port on this host, with the body read up to the cap. */
export async function runHttp(target: HttpTarget, timeoutMs: number, signal: AbortSignal, bodyBytesMax = HTTP_BODY_BYTES_MAX): Promise<HttpResult> {
  const started = performance.now();
  const timeout = AbortSignal.timeout(timeoutMs);
  const combined = AbortSignal.any([signal, timeout]);
  let response: Response;
  try {
    response = await fetch(`http://127.0.0.1:${target.port}${target.path}`, {
      method: target.method,
      headers: { ...target.headers },
      body: target.body === undefined || target.method === 'GET' || target.method === 'HEAD' ? undefined : target.body,
      signal: combined,
      redirect: 'manual',
    });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause;
    if (timeout.aborted) throw new HttpTargetError(`no answer from port ${target.port} within ${timeoutMs} ms; check the project is up (project_wait) or raise timeoutMs`);
    if (cause?.code === 'ECONNREFUSED') throw new HttpTargetError(`nothing listens on port ${target.port}; is the project running and bound to that port? (see project_logs)`);
    throw new HttpTargetError(`request to port ${target.port} failed: ${(error as Error).message}`);
  }
  const body = new CappedBuffer(bodyBytesMax);
  if (response.body !== null) {
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      body.push(Buffer.from(value));
      if (body.truncated) {
        await reader.cancel();
        break;
      }
    }
  }
  const headers: Record<string, string> = {};
  response.headers.forEach((value, key) => {
    headers[key] = value;
  });
  return { status: response.status, headers, body: body.text(), truncated: body.truncated, durationMs: Math.round(performance.now() - started) };
}

export class HttpTargetError extends Error {
  override readonly name = 'HttpTargetError';
}
