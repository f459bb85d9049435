// Run trace: one line per event, "<virtualMs> <node> <event> <details>",
// hashed with SHA-256 as it goes so two runs of a seed compare by digest, and
// optionally streamed to a file. When off, recording costs a boolean check.
import assert from 'node:assert/strict';
import { createHash, type Hash } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';

export interface TraceOptions {
  readonly enabled: boolean;
  /** Stream lines to this file (created or truncated). */
  readonly filePath?: string;
  /** Keep up to this many lines in memory for `lines()` (default 0: keep none). */
  readonly linesKeptMax?: number;
}

/** Bytes buffered before hashing and writing a chunk. */
const FLUSH_BYTES = 64 * 1024;

/**
 * Virtual ms as text: integers as is, otherwise exactly three decimals
 * (`toFixed` is specified digit for digit, so this is the same everywhere).
 */
export const formatMs = (ms: number): string => (Number.isInteger(ms) ? String(ms) : ms.toFixed(3));

/**
 * Callers guard detail formatting with `if (trace.enabled)`, so a run without
 * tracing never builds the strings. Lines must not contain newlines.
 */
export class Trace {
  readonly enabled: boolean;
  private readonly hash: Hash;
  private readonly fd: number | null;
  private readonly linesKeptMax: number;
  private readonly kept: string[] = [];
  private buffer = '';
  private count = 0;
  private closed = false;

  constructor(options: TraceOptions) {
    this.enabled = options.enabled;
    this.hash = createHash('sha256');
    this.fd = options.enabled && options.filePath !== undefined ? openSync(options.filePath, 'w') : null;
    this.linesKeptMax = options.linesKeptMax ?? 0;
  }

  /** Append one line. A no-op when disabled. */
  record(virtualMs: number, node: string, event: string, details = ''): void {
    if (!this.enabled) return;
    assert.ok(!this.closed, 'trace: record after close');
    const line = details === '' ? `${formatMs(virtualMs)} ${node} ${event}` : `${formatMs(virtualMs)} ${node} ${event} ${details}`;
    if (line.includes('\n')) assert.fail(`trace: line contains a newline: ${JSON.stringify(line)}`);
    this.count++;
    if (this.kept.length < this.linesKeptMax) this.kept.push(line);
    // Hashing chunks rather than lines gives the same digest (SHA-256 is a stream) for less overhead.
    this.buffer += line + '\n';
    if (this.buffer.length >= FLUSH_BYTES) this.flush();
  }

  /** Lines recorded so far. */
  lineCount(): number {
    return this.count;
  }

  /** The first `linesKeptMax` lines. */
  lines(): readonly string[] {
    return this.kept;
  }

  /** SHA-256 (hex) of every line so far, each followed by "\n"; recording may continue. */
  digestHex(): string {
    this.flush();
    return this.hash.copy().digest('hex');
  }

  /** Flush and close the file. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    if (this.fd !== null) closeSync(this.fd);
  }

  private flush(): void {
    if (this.buffer === '') return;
    this.hash.update(this.buffer, 'utf8');
    if (this.fd !== null) writeSync(this.fd, this.buffer);
    this.buffer = '';
  }
}
