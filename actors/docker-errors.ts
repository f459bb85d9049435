// How Docker API failures become errors a user can act on: a dead engine is
// RuntimeUnavailableError with what to do; other failures keep the engine's
// HTTP status code (404 and 409 decide what a caller does next).
import { RuntimeError } from './runtime.ts';

export function statusCode(error: unknown): number | undefined {
  const code = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}

/** The socket is missing, refuses, or broke: the engine is not there (as opposed to answering with an error). */
export function isConnectionError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ECONNREFUSED' || code === 'EACCES' || code === 'ECONNRESET' || code === 'EPIPE';
}

export function unavailable(socketPath: string, error: unknown): RuntimeError {
  return new RuntimeError('RuntimeUnavailableError', `no Docker engine answers at ${socketPath} (${oneLine(error)}); start dockerd, point the node at a running engine, or use the process runtime`, { cause: error });
}

export function oneLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\s+/g, ' ').trim().slice(0, 300);
}

/** Where the engine is and how long one request may take, for the errors below. */
export interface DockerEndpoint {
  readonly socketPath: string;
  readonly requestMsMax: number;
  readonly nowMs: () => number;
}

/**
 * One Docker API call: a dead engine becomes RuntimeUnavailableError, other errors keep their status code.
 * docker-modem ends a request that outlived its timeout by destroying the socket ("socket hang up"), which
 * looks like a dead engine; the elapsed time tells the two apart, so the message says "too slow", not "gone".
 */
export async function dockerCall<T>(endpoint: DockerEndpoint, what: string, action: () => Promise<T>): Promise<T> {
  const startedMs = endpoint.nowMs();
  try {
    return await action();
  } catch (error) {
    if (isConnectionError(error) && endpoint.nowMs() - startedMs >= endpoint.requestMsMax) {
      throw new RuntimeError(
        'RuntimeUnavailableError',
        `the Docker engine at ${endpoint.socketPath} did not finish "${what}" within ${endpoint.requestMsMax} ms (overloaded or wedged); retry, and check dockerd if it persists`,
        { cause: error },
      );
    }
    if (isConnectionError(error)) throw unavailable(endpoint.socketPath, error);
    const code = statusCode(error);
    if (code !== undefined) throw Object.assign(new Error(`docker: ${what} failed: ${oneLine(error)}`, { cause: error }), { statusCode: code });
    throw error;
  }
}
