// The log store: every stdout/stderr line of every project, with a wall-clock
// timestamp and a per-project sequence number, in a ring buffer for fast queries
// and in size-capped segment files on disk so that logs survive a node restart.
// Logs never go through Raft.
import { RE2JS } from 're2js';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { ProjectRef } from './runtime.ts';

export type LogStream = 'stdout' | 'stderr';

export interface LogLine {
  /** Per-project sequence number, from 1, never reused (also across restarts). */
  readonly seq: number;
  /** Wall-clock time in ms since the epoch. */
  readonly timeMs: number;
  readonly stream: LogStream;
  readonly line: string;
}

export interface LogQuery {
  /** The last N matching lines (ignores `since`). */
  readonly tail?: number;
  /** Lines with a sequence number above this cursor, oldest first (0 = from the oldest kept). */
  readonly since?: number;
  /** A JavaScript regular expression a line must match. */
  readonly grep?: string;
  readonly stream?: LogStream | 'both';
  /** Page size; capped at the store's pageLinesMax. */
  readonly limit?: number;
}

export interface LogPage {
  readonly lines: LogLine[];
  /** Pass as `since` to continue (for `tail`: the newest sequence, to follow from there). */
  readonly nextCursor: number;
  /** More lines match after this page. */
  readonly hasMore: boolean;
  /** The oldest sequence still kept (older lines were dropped with their segment). */
  readonly firstSeq: number;
  readonly lastSeq: number;
}

export interface LogStoreOptions {
  /** Directory for segments, e.g. `<dataDir>/logs`. */
  readonly dir: string;
  /** Wall clock for line timestamps (ms since the epoch); injected so tests can fix it. */
  readonly wallNowMs: () => number;
  readonly ringLinesMax?: number;
  readonly segmentBytesMax?: number;
  readonly projectBytesMax?: number;
  readonly lineCharsMax?: number;
  readonly pageLinesMax?: number;
  /** Parsed sealed segments kept in memory across queries (all projects together). */
  readonly segmentCacheMax?: number;
}

export const LOG_DEFAULTS = {
  ringLinesMax: 10_000,
  segmentBytesMax: 256 * 1024,
  projectBytesMax: 16 * 1024 * 1024,
  lineCharsMax: 8 * 1024,
  pageLinesMax: 1000,
  segmentCacheMax: 32,
} as const;

/**
 * Compile a user's pattern with RE2 semantics (re2js): matching takes time linear in the
 * line, so no pattern can backtrack for ever and stall the node. RE2 has no backreferences
 * or lookaround; such patterns are refused with a clear error.
 */
export function compileLinearRegex(pattern: string, what: string): { test(text: string): boolean } {
  let compiled: RE2JS;
  try {
    compiled = RE2JS.compile(pattern);
  } catch (error) {
    throw new LogQueryError(
      `${what} ${JSON.stringify(pattern)} is not a valid regular expression (RE2 syntax: no backreferences or lookaround); fix it`,
      { cause: error },
    );
  }
  return { test: (text) => compiled.matcher(text).find() };
}

/** A grep pattern that is not a valid regular expression. */
export class LogQueryError extends Error {
  override readonly name = 'LogQueryError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Cuts a line longer than the cap and says how much was dropped. */
export function truncateLine(line: string, lineCharsMax: number): string {
  if (line.length <= lineCharsMax) return line;
  return `${line.slice(0, lineCharsMax)} …[truncated ${line.length - lineCharsMax} chars]`;
}

/**
 * Splits a byte stream into lines (\n or \r\n), decoding UTF-8 across chunk boundaries.
 * A line that grows past the cap without a newline is emitted truncated at once and the
 * rest of it, up to the next newline, is counted but not kept (bounded memory).
 */
export class LineSplitter {
  private readonly decoder = new StringDecoder('utf8');
  private partial = '';
  private droppedChars = 0;

  constructor(
    private readonly lineCharsMax: number,
    private readonly emit: (line: string) => void,
  ) {}

  push(chunk: Buffer | string): void {
    let text = typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    for (;;) {
      const newline = text.indexOf('\n');
      if (newline < 0) break;
      this.finishLine(text.slice(0, newline));
      text = text.slice(newline + 1);
    }
    this.addPartial(text);
  }

  /** The stream ended: a last line without a newline is still a line. */
  end(): void {
    this.addPartial(this.decoder.end());
    if (this.partial.length > 0 || this.droppedChars > 0) this.finishLine('');
  }

  private addPartial(text: string): void {
    if (this.droppedChars > 0) {
      this.droppedChars += text.length;
      return;
    }
    this.partial += text;
    if (this.partial.length > this.lineCharsMax) {
      this.droppedChars = this.partial.length - this.lineCharsMax;
      this.partial = this.partial.slice(0, this.lineCharsMax);
    }
  }

  private finishLine(tail: string): void {
    let line: string;
    if (this.droppedChars > 0) {
      line = `${this.partial} …[truncated ${this.droppedChars + tail.length} chars]`;
    } else {
      line = truncateLine(this.partial + tail, this.lineCharsMax);
    }
    if (line.endsWith('\r')) line = line.slice(0, -1);
    this.partial = '';
    this.droppedChars = 0;
    this.emit(line);
  }
}

interface Segment {
  readonly firstSeq: number;
  readonly path: string;
  bytes: number;
  /** Written by an earlier run: never appended to (a torn last record must not swallow the next one). */
  readonly sealed?: boolean;
}

/** One project's lines: a ring of the newest lines in memory, all kept lines in segments on disk. */
class ProjectLog {
  /** Grows as lines come, up to `capacity`: a project that never logs here costs no slots. */
  readonly ring: (LogLine | undefined)[] = [];
  /** Sequence of the oldest line in the ring (ring holds ringFirst..lastSeq contiguously). */
  ringFirst = 1;
  lastSeq = 0;
  readonly segments: Segment[] = [];

  constructor(
    readonly dir: string,
    private readonly capacity: number,
  ) {}

  at(seq: number): LogLine | undefined {
    if (seq < this.ringFirst || seq > this.lastSeq) return undefined;
    return this.ring[seq % this.capacity];
  }

  put(line: LogLine): void {
    this.ring[line.seq % this.capacity] = line;
    this.lastSeq = line.seq;
    if (this.lastSeq - this.ringFirst + 1 > this.capacity) this.ringFirst = this.lastSeq - this.capacity + 1;
  }

  firstSeq(): number {
    return this.segments[0]?.firstSeq ?? this.ringFirst;
  }
}

const SEGMENT_SUFFIX = '.jsonl';
const segmentName = (firstSeq: number): string => `${String(firstSeq).padStart(16, '0')}${SEGMENT_SUFFIX}`;
const streamCode = (stream: LogStream): string => (stream === 'stdout' ? 'o' : 'e');

function parseRecord(text: string): LogLine | null {
  try {
    const value: unknown = JSON.parse(text);
    if (!Array.isArray(value) || value.length !== 4) return null;
    const [seq, timeMs, stream, line] = value as unknown[];
    if (typeof seq !== 'number' || typeof timeMs !== 'number' || typeof line !== 'string') return null;
    return { seq, timeMs, stream: stream === 'e' ? 'stderr' : 'stdout', line };
  } catch {
    // A torn last record (crash during append) is skipped.
    return null;
  }
}

/**
 * A segment's records, split into lines but parsed only when read: a query that starts at a
 * cursor finds its first record by binary search on the sequence prefix (`[seq,`) and parses
 * only the records it returns.
 */
class SegmentView {
  private readonly parsed: (LogLine | null | undefined)[];

  constructor(private readonly records: string[]) {
    this.parsed = new Array<LogLine | null | undefined>(records.length);
  }

  get length(): number {
    return this.records.length;
  }

  /** The line at index, or null if that record is torn or unreadable. */
  line(index: number): LogLine | null {
    let line = this.parsed[index];
    if (line === undefined) {
      line = parseRecord(this.records[index] ?? '');
      this.parsed[index] = line;
    }
    return line;
  }

  /** The first index whose sequence is above `seq` (records are in sequence order). */
  indexAfter(seq: number): number {
    let low = 0;
    let high = this.records.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      // A record without a readable prefix counts as low: it is skipped when parsed anyway.
      const middleSeq = Number.parseInt((this.records[middle] ?? '').slice(1, 24), 10);
      if (Number.isNaN(middleSeq) || middleSeq <= seq) low = middle + 1;
      else high = middle;
    }
    return low;
  }
}

function readSegment(path: string, unwritten: readonly string[] = []): SegmentView {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    // Not written yet: its lines are all in `unwritten`.
  }
  text += unwritten.join('');
  const records = text.split('\n');
  if (records.at(-1) === '') records.pop();
  return new SegmentView(records);
}

export class LogStore {
  private readonly projects = new Map<string, ProjectLog>();
  private readonly limits: Required<Omit<LogStoreOptions, 'dir' | 'wallNowMs'>>;
  /**
   * Records not yet on disk, by segment path. Appends between two event-loop turns go out as
   * one synchronous write per segment (one syscall per busy project per turn); queries that
   * reach into segments read the file plus these, so they never miss a line.
   */
  private pending = new Map<string, string[]>();
  private flushScheduled = false;
  private closed = false;
  private writeError: unknown = null;
  private readonly createdDirs = new Set<string>();
  /** Parsed sealed segments (they never change), newest use last: paging through old lines reads each file once. */
  private readonly segmentCache = new Map<string, SegmentView>();

  constructor(private readonly options: LogStoreOptions) {
    this.limits = { ...LOG_DEFAULTS, ...stripUndefined(options) };
    for (const [key, value] of Object.entries(this.limits)) {
      if (!Number.isInteger(value) || value <= 0) throw new RangeError(`log store: ${key} must be a positive integer, got ${String(value)}`);
    }
    if (this.limits.projectBytesMax < 2 * this.limits.segmentBytesMax) {
      throw new RangeError('log store: projectBytesMax must be at least twice segmentBytesMax (one segment is always being written)');
    }
    mkdirSync(options.dir, { recursive: true });
  }

  get pageLinesMax(): number {
    return this.limits.pageLinesMax;
  }

  get lineCharsMax(): number {
    return this.limits.lineCharsMax;
  }

  /** Records one line (truncated past the cap); returns it with its sequence number. */
  append(project: ProjectRef, stream: LogStream, text: string, timeMs: number = this.options.wallNowMs()): LogLine {
    const log = this.project(project);
    const line: LogLine = { seq: log.lastSeq + 1, timeMs, stream, line: truncateLine(text, this.limits.lineCharsMax) };
    log.put(line);
    this.persist(log, line);
    return line;
  }

  /** Whether any line of the project is held here, in memory or on disk (without loading or allocating anything). */
  has(project: ProjectRef): boolean {
    return this.projects.has(keyOf(project)) || existsSync(join(this.options.dir, encodeURIComponent(project.tenant), encodeURIComponent(project.name)));
  }

  /** The newest sequence number of a project (0 if it has no lines): a cursor to follow from. */
  cursor(project: ProjectRef): number {
    return this.project(project).lastSeq;
  }

  /** The last n lines as text, oldest first, from memory: for error messages. */
  lastLines(project: ProjectRef, n: number): string[] {
    const log = this.project(project);
    const lines: string[] = [];
    for (let seq = Math.max(log.ringFirst, log.lastSeq - n + 1); seq <= log.lastSeq; seq += 1) {
      const line = log.at(seq);
      if (line !== undefined) lines.push(line.line);
    }
    return lines;
  }

  /** The newest line's time (ms since the epoch), or null: Docker resumes its log stream from there. */
  lastTimeMs(project: ProjectRef): number | null {
    const log = this.project(project);
    return log.at(log.lastSeq)?.timeMs ?? null;
  }

  query(project: ProjectRef, query: LogQuery): LogPage {
    const log = this.project(project);
    const limit = Math.max(1, Math.min(query.limit ?? this.limits.pageLinesMax, this.limits.pageLinesMax));
    const matches = matcher(query);
    const firstSeq = log.firstSeq();
    if (query.tail !== undefined) {
      if (!Number.isInteger(query.tail) || query.tail < 0) throw new LogQueryError(`tail must be a whole number ≥ 0, got ${String(query.tail)}`);
      return { lines: this.tail(log, Math.min(query.tail, limit), matches), nextCursor: log.lastSeq, hasMore: false, firstSeq, lastSeq: log.lastSeq };
    }
    const since = query.since ?? 0;
    if (!Number.isInteger(since) || since < 0) throw new LogQueryError(`since must be a cursor (a whole number ≥ 0) from an earlier answer, got ${String(since)}`);
    const lines: LogLine[] = [];
    let examined = since;
    let hasMore = false;
    const visit = (line: LogLine): boolean => {
      if (line.seq <= examined) return true;
      if (lines.length === limit) {
        if (matches(line)) {
          hasMore = true;
          return false;
        }
        examined = line.seq;
        return true;
      }
      examined = line.seq;
      if (matches(line)) lines.push(line);
      return true;
    };
    if (since + 1 < log.ringFirst) this.scanDisk(log, since, log.ringFirst - 1, visit);
    for (let seq = Math.max(since + 1, log.ringFirst); seq <= log.lastSeq && !hasMore; seq += 1) {
      const line = log.at(seq);
      if (line !== undefined && !visit(line)) break;
    }
    const nextCursor = hasMore ? (lines.at(-1)?.seq ?? examined) : Math.max(examined, since);
    return { lines, nextCursor, hasMore, firstSeq, lastSeq: log.lastSeq };
  }

  /** Writes every appended line to its segment now (not fsynced: logs are best effort across power loss). */
  async flush(): Promise<void> {
    this.flushNow();
    if (this.writeError !== null) {
      const error = this.writeError;
      this.writeError = null;
      throw new Error(`log store: writing segments under ${this.options.dir} failed; check disk space and permissions`, { cause: error });
    }
  }

  /** Forgets a project's lines, in memory and on disk (project removed). */
  async drop(project: ProjectRef): Promise<void> {
    await this.flush();
    const log = this.project(project);
    this.projects.delete(keyOf(project));
    for (const segment of log.segments) this.segmentCache.delete(segment.path);
    rmSync(log.dir, { recursive: true, force: true });
    this.createdDirs.delete(log.dir);
  }

  /** Writes what is pending; lines appended after close stay in memory only (node shutting down). */
  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
  }

  private tail(log: ProjectLog, n: number, matches: (line: LogLine) => boolean): LogLine[] {
    const lines: LogLine[] = [];
    if (n === 0) return lines;
    let seq = log.lastSeq;
    for (; seq >= log.ringFirst && lines.length < n; seq -= 1) {
      const line = log.at(seq);
      if (line !== undefined && matches(line)) lines.push(line);
    }
    if (lines.length < n && seq >= 1) {
      // Older than the ring: read the segments, newest first, until enough match.
      for (let index = log.segments.length - 1; index >= 0 && lines.length < n; index -= 1) {
        const segment = log.segments[index];
        if (segment === undefined || segment.firstSeq > seq) continue;
        const view = this.segmentView(log, index);
        for (let at = view.indexAfter(seq) - 1; at >= 0 && lines.length < n; at -= 1) {
          const line = view.line(at);
          if (line !== null && matches(line)) lines.push(line);
        }
      }
    }
    return lines.reverse();
  }

  private scanDisk(log: ProjectLog, since: number, untilSeq: number, visit: (line: LogLine) => boolean): void {
    for (let index = 0; index < log.segments.length; index += 1) {
      const segment = log.segments[index];
      const next = log.segments[index + 1];
      if (segment === undefined || (next !== undefined && next.firstSeq <= since + 1)) continue;
      if (segment.firstSeq > untilSeq) return;
      const view = this.segmentView(log, index);
      for (let at = view.indexAfter(since); at < view.length; at += 1) {
        const line = view.line(at);
        if (line === null) continue;
        if (line.seq > untilSeq) return;
        if (!visit(line)) return;
      }
    }
  }

  private segmentView(log: ProjectLog, index: number): SegmentView {
    const segment = log.segments[index];
    if (segment === undefined) return new SegmentView([]);
    const sealed = index < log.segments.length - 1 || segment.sealed === true;
    if (!sealed) return readSegment(segment.path, this.pending.get(segment.path));
    const cached = this.segmentCache.get(segment.path);
    if (cached !== undefined) {
      this.segmentCache.delete(segment.path);
      this.segmentCache.set(segment.path, cached);
      return cached;
    }
    const view = readSegment(segment.path, this.pending.get(segment.path));
    this.segmentCache.set(segment.path, view);
    for (const path of this.segmentCache.keys()) {
      if (this.segmentCache.size <= this.limits.segmentCacheMax) break;
      this.segmentCache.delete(path);
    }
    return view;
  }

  private project(ref: ProjectRef): ProjectLog {
    const key = keyOf(ref);
    const existing = this.projects.get(key);
    if (existing !== undefined) return existing;
    const log = this.load(join(this.options.dir, encodeURIComponent(ref.tenant), encodeURIComponent(ref.name)));
    this.projects.set(key, log);
    return log;
  }

  /** Reads a project's segments after a restart: sizes, the newest lines into the ring, the last sequence. */
  private load(dir: string): ProjectLog {
    const log = new ProjectLog(dir, this.limits.ringLinesMax);
    if (!existsSync(dir)) return log;
    const names = readdirSync(dir).filter((name) => name.endsWith(SEGMENT_SUFFIX)).sort();
    for (const name of names) {
      const path = join(dir, name);
      log.segments.push({ firstSeq: Number.parseInt(name, 10), path, bytes: statSync(path).size, sealed: true });
    }
    const recent: LogLine[] = [];
    for (let index = log.segments.length - 1; index >= 0 && recent.length < this.limits.ringLinesMax; index -= 1) {
      const segment = log.segments[index];
      if (segment === undefined) continue;
      const view = readSegment(segment.path);
      const lines: LogLine[] = [];
      for (let at = 0; at < view.length; at += 1) {
        const line = view.line(at);
        if (line !== null) lines.push(line);
      }
      recent.unshift(...lines);
    }
    const kept = recent.slice(-this.limits.ringLinesMax);
    const first = kept[0];
    if (first !== undefined) {
      log.ringFirst = first.seq;
      for (const line of kept) log.put(line);
    } else {
      // Segments without a readable record: continue after the newest segment's start.
      const newest = log.segments.at(-1);
      if (newest !== undefined) log.lastSeq = newest.firstSeq - 1;
      log.ringFirst = log.lastSeq + 1;
    }
    return log;
  }

  private persist(log: ProjectLog, line: LogLine): void {
    if (this.closed) return;
    const record = `${JSON.stringify([line.seq, line.timeMs, streamCode(line.stream), line.line])}\n`;
    const bytes = Buffer.byteLength(record);
    let segment = log.segments.at(-1);
    if (segment === undefined || segment.sealed === true || segment.bytes + bytes > this.limits.segmentBytesMax) {
      segment = { firstSeq: line.seq, path: join(log.dir, segmentName(line.seq)), bytes: 0 };
      log.segments.push(segment);
      this.dropOldSegments(log);
    }
    segment.bytes += bytes;
    const chunks = this.pending.get(segment.path) ?? [];
    if (chunks.length === 0) this.pending.set(segment.path, chunks);
    chunks.push(record);
    this.scheduleFlush();
  }

  /** Keeps the project within its byte cap by dropping whole segments, oldest first (never the one being written). */
  private dropOldSegments(log: ProjectLog): void {
    let total = log.segments.reduce((sum, segment) => sum + segment.bytes, 0);
    while (log.segments.length > 1 && total > this.limits.projectBytesMax - this.limits.segmentBytesMax) {
      const oldest = log.segments.shift();
      if (oldest === undefined) break;
      total -= oldest.bytes;
      this.pending.delete(oldest.path);
      this.segmentCache.delete(oldest.path);
      rmSync(oldest.path, { force: true });
    }
    const first = log.segments[0];
    if (first !== undefined && log.ringFirst < first.firstSeq) {
      // Lines of a dropped segment are gone from queries, also from the ring.
      log.ringFirst = Math.min(first.firstSeq, log.lastSeq + 1);
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flushNow());
  }

  private flushNow(): void {
    this.flushScheduled = false;
    const batch = this.pending;
    this.pending = new Map();
    for (const [path, chunks] of batch) {
      try {
        const dir = join(path, '..');
        if (!this.createdDirs.has(dir)) {
          mkdirSync(dir, { recursive: true });
          this.createdDirs.add(dir);
        }
        appendFileSync(path, chunks.join(''));
      } catch (error) {
        this.writeError = error;
      }
    }
  }
}

const keyOf = (ref: ProjectRef): string => `${ref.tenant}/${ref.name}`;

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([key, entry]) => entry !== undefined && key !== 'dir' && key !== 'wallNowMs')) as Partial<T>;
}

function matcher(query: LogQuery): (line: LogLine) => boolean {
  const stream = query.stream ?? 'both';
  const pattern = query.grep !== undefined && query.grep !== '' ? compileLinearRegex(query.grep, 'grep pattern') : null;
  if (pattern === null) return stream === 'both' ? () => true : (line) => line.stream === stream;
  const regex = pattern;
  if (stream === 'both') return (line) => regex.test(line.line);
  return (line) => line.stream === stream && regex.test(line.line);
}
