// The wire between a node and its spawner (actors/spawner.pl): command lines one way, binary
// frames the other. Pure: no processes here, so the parser is tested byte by byte.
import { constants } from 'node:os';

/** Frame types the spawner sends (see the header of spawner.pl). */
export type FrameType = 'R' | 'L' | 'P' | 'F' | 'O' | 'D' | 'X' | 'k' | 'Z' | 'W';
const FRAME_TYPES = new Set<string>(['R', 'L', 'P', 'F', 'O', 'D', 'X', 'k', 'Z', 'W']);

export interface Frame {
  readonly type: FrameType;
  readonly id: number;
  readonly payload: Buffer;
}

const HEADER_BYTES = 9;
/** The spawner reads at most 64 KiB per frame; anything much larger means the stream is corrupt. */
export const FRAME_PAYLOAD_BYTES_MAX = 1024 * 1024;

export class SpawnerProtocolError extends Error {
  override readonly name = 'SpawnerProtocolError';
}

/** Splits the spawner's stdout into frames; keeps an incomplete tail for the next chunk. */
export class FrameReader {
  #pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const frames: Frame[] = [];
    let offset = 0;
    while (this.#pending.length - offset >= HEADER_BYTES) {
      const type = String.fromCharCode(this.#pending[offset] as number);
      const id = this.#pending.readUInt32BE(offset + 1);
      const length = this.#pending.readUInt32BE(offset + 5);
      if (!FRAME_TYPES.has(type) || length > FRAME_PAYLOAD_BYTES_MAX) {
        throw new SpawnerProtocolError(`the spawner sent a bad frame header (type ${JSON.stringify(type)}, ${length} bytes); it is restarted`);
      }
      if (this.#pending.length - offset - HEADER_BYTES < length) break;
      const start = offset + HEADER_BYTES;
      frames.push({ type: type as FrameType, id, payload: this.#pending.subarray(start, start + length) });
      offset = start + length;
    }
    this.#pending = offset === this.#pending.length ? Buffer.alloc(0) : this.#pending.subarray(offset);
    return frames;
  }
}

/** Encodes one frame as the spawner would (tests and fakes). */
export function encodeFrame(type: FrameType, id: number, payload: Buffer | string = ''): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const header = Buffer.alloc(HEADER_BYTES);
  header.write(type, 0, 'latin1');
  header.writeUInt32BE(id, 1);
  header.writeUInt32BE(body.length, 5);
  return Buffer.concat([header, body]);
}

/** Free text in a command: hex, or '-' for empty (so that spaces and newlines cannot break a line). */
export const hexField = (text: string): string => (text === '' ? '-' : Buffer.from(text, 'utf8').toString('hex'));
const hexList = (items: readonly string[]): string => hexField(items.join('\0'));

/** Whom a signal or kill reaches: a cgroup directory with its subtree, or a process group. */
export type Target = { readonly kind: 'cgroup'; readonly dir: string } | { readonly kind: 'group'; readonly pgid: number };

export const targetWord = (target: Target): string => (target.kind === 'cgroup' ? `cg:${Buffer.from(target.dir).toString('hex')}` : `pg:${target.pgid}`);

export interface SpawnRequest {
  /** -1 keeps the spawner's (the node's) user. */
  readonly uid: number;
  readonly gid: number;
  readonly cwd: string;
  /** The cgroup the run lives in (tracking hierarchy), or null: its own new process group is its target. */
  readonly target: Extract<Target, { kind: 'cgroup' }> | null;
  /** `cgroup.procs` files the child writes itself into before it runs anything. */
  readonly procsFiles: readonly string[];
  readonly argv: readonly string[];
  readonly env: Readonly<Record<string, string>>;
}

export function spawnCommand(run: number, request: SpawnRequest): string {
  for (const [name, value] of Object.entries(request.env)) {
    if (name === '' || name.includes('=') || name.includes('\0') || value.includes('\0')) {
      throw new SpawnerProtocolError(`environment variable ${JSON.stringify(name)} cannot be passed to a process (empty name, '=' in the name, or a NUL byte)`);
    }
  }
  if (request.argv.some((word) => word.includes('\0'))) throw new SpawnerProtocolError('a command cannot hold a NUL byte');
  const env = Object.entries(request.env).map(([name, value]) => `${name}=${value}`);
  const target = request.target === null ? 'pg' : targetWord(request.target);
  return `S ${run} ${request.uid} ${request.gid} ${hexField(request.cwd)} ${target} ${hexList(request.procsFiles)} ${hexList(request.argv)} ${hexList(env)}\n`;
}

export const heartbeatCommand = (freezeAfterMs: number, killAfterMs: number): string => `H ${Math.max(0, Math.round(freezeAfterMs))} ${Math.max(0, Math.round(killAfterMs))}\n`;
export const signalCommand = (signal: number, target: Target): string => `G ${signal} ${targetWord(target)}\n`;
export const killCommand = (request: number, target: Target): string => `K ${request} ${targetWord(target)}\n`;
export const muteCommand = (run: number): string => `M ${run}\n`;

const signalNames = new Map<number, string>(Object.entries(constants.signals).map(([name, number]) => [number, name]));

export interface ProcessExit {
  readonly exitCode: number | null;
  readonly signal: string | null;
}

/** A wait(2) status: exited with a code, or killed by a signal. */
export function decodeWaitStatus(status: number): ProcessExit {
  const signal = status & 0x7f;
  if (signal === 0) return { exitCode: (status >> 8) & 0xff, signal: null };
  return { exitCode: null, signal: signalNames.get(signal) ?? `signal ${signal}` };
}

export function signalNumber(signal: NodeJS.Signals): number {
  const number = constants.signals[signal];
  if (number === undefined) throw new SpawnerProtocolError(`unknown signal ${signal}`);
  return number;
}
