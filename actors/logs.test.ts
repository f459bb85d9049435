// Goal: the log store answers tail, since-cursor, grep and stream queries with pages and cursors, caps lines and bytes, and keeps its lines across a restart (real files).
import test from 'ava';
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LineSplitter, LogQueryError, LogStore, type LogLine, type LogQuery, type LogStream } from './logs.ts';

const root = mkdtempSync(join(tmpdir(), 'debughost-logs-'));
const opened: LogStore[] = [];
test.after.always(async () => {
  // Close first: a store flushes on the next event-loop turn and would recreate its directory.
  for (const store of opened) await store.close().catch(() => undefined);
  rmSync(root, { recursive: true, force: true });
});

const project = { tenant: 't', name: 'p' };
let dirs = 0;
let fakeNowMs = 1_700_000_000_000;
const newDir = (): string => {
  dirs += 1;
  return join(root, `store-${dirs}`);
};
const open = (dir: string, options: Partial<ConstructorParameters<typeof LogStore>[0]> = {}): LogStore => {
  const store = new LogStore({ dir, wallNowMs: () => (fakeNowMs += 1), ...options });
  opened.push(store);
  return store;
};

/** The dumb reference: every line kept, filters applied by brute force. */
function reference(all: LogLine[], query: LogQuery, pageLinesMax: number): LogLine[] {
  const pattern = query.grep === undefined ? null : new RegExp(query.grep);
  const stream = query.stream ?? 'both';
  const matching = all.filter((line) => (stream === 'both' || line.stream === stream) && (pattern === null || pattern.test(line.line)));
  const limit = Math.min(query.limit ?? pageLinesMax, pageLinesMax);
  if (query.tail !== undefined) return matching.slice(-Math.min(query.tail, limit));
  return matching.filter((line) => line.seq > (query.since ?? 0)).slice(0, limit);
}

test('queries agree with a brute-force reference, in memory and when reaching into segments on disk', (t) => {
  const store = open(newDir(), { ringLinesMax: 50, pageLinesMax: 40, segmentBytesMax: 2048, projectBytesMax: 1024 * 1024 });
  const all: LogLine[] = [];
  for (let index = 0; index < 300; index += 1) {
    const stream: LogStream = index % 3 === 0 ? 'stderr' : 'stdout';
    all.push(store.append(project, stream, `line ${index} ${index % 7 === 0 ? 'ERROR' : 'ok'}`));
  }
  const queries: LogQuery[] = [
    {},
    { since: 0, limit: 10 },
    { since: 120 },
    { since: 260 },
    { tail: 5 },
    { tail: 100 },
    { tail: 30, grep: 'ERROR' },
    { since: 10, grep: 'ERROR', stream: 'stderr' },
    { since: 0, stream: 'stdout', limit: 25 },
    { tail: 10, stream: 'stderr' },
  ];
  for (const query of queries) {
    t.deepEqual(store.query(project, query).lines, reference(all, query, 40), JSON.stringify(query));
  }
});

test('paging with nextCursor visits every matching line exactly once', (t) => {
  const store = open(newDir(), { ringLinesMax: 64, pageLinesMax: 7, segmentBytesMax: 1024, projectBytesMax: 1024 * 1024 });
  for (let index = 0; index < 200; index += 1) store.append(project, 'stdout', index % 4 === 0 ? `match ${index}` : `other ${index}`);
  const seen: string[] = [];
  let cursor = 0;
  for (let pages = 0; pages < 100; pages += 1) {
    const page = store.query(project, { since: cursor, grep: '^match' });
    seen.push(...page.lines.map((line) => line.line));
    cursor = page.nextCursor;
    if (!page.hasMore) break;
  }
  t.deepEqual(seen, Array.from({ length: 50 }, (_, index) => `match ${index * 4}`));
  t.is(cursor, 200);
  // Following from the cursor returns only what comes after.
  store.append(project, 'stdout', 'match late');
  t.deepEqual(store.query(project, { since: cursor }).lines.map((line) => line.line), ['match late']);
});

test('long lines are truncated with a marker; the splitter handles CRLF, split UTF-8 and unterminated lines', (t) => {
  const store = open(newDir(), { lineCharsMax: 10 });
  const line = store.append(project, 'stdout', 'x'.repeat(25));
  t.is(line.line, `${'x'.repeat(10)} …[truncated 15 chars]`);
  const lines: string[] = [];
  const splitter = new LineSplitter(10, (text) => lines.push(text));
  const euro = Buffer.from('€');
  splitter.push(Buffer.concat([Buffer.from('a\r\nb'), euro.subarray(0, 1)]));
  splitter.push(Buffer.concat([euro.subarray(1), Buffer.from('\n')]));
  splitter.push('y'.repeat(14));
  splitter.push('y'.repeat(6));
  splitter.push('z\nlast');
  splitter.end();
  t.deepEqual(lines, ['a', 'b€', `${'y'.repeat(10)} …[truncated 11 chars]`, 'last']);
});

test('lines survive a restart with their sequence numbers; numbering continues', async (t) => {
  const dir = newDir();
  const first = open(dir, { ringLinesMax: 20, segmentBytesMax: 512, projectBytesMax: 64 * 1024 });
  for (let index = 1; index <= 100; index += 1) first.append(project, index % 2 === 0 ? 'stderr' : 'stdout', `before ${index}`);
  await first.close();
  const second = open(dir, { ringLinesMax: 20, segmentBytesMax: 512, projectBytesMax: 64 * 1024 });
  t.is(second.cursor(project), 100);
  t.deepEqual(second.query(project, { tail: 3 }).lines.map((line) => [line.seq, line.line, line.stream]), [
    [98, 'before 98', 'stderr'],
    [99, 'before 99', 'stdout'],
    [100, 'before 100', 'stderr'],
  ]);
  // Older than the ring (20 lines): read back from the segments.
  t.deepEqual(second.query(project, { since: 0, limit: 2 }).lines.map((line) => line.line), ['before 1', 'before 2']);
  t.is(second.append(project, 'stdout', 'after').seq, 101);
  await second.close();
});

test('a project keeps within its byte cap by dropping its oldest segments', async (t) => {
  const dir = newDir();
  const store = open(dir, { segmentBytesMax: 1024, projectBytesMax: 4096, ringLinesMax: 10_000 });
  for (let index = 1; index <= 1000; index += 1) store.append(project, 'stdout', `line number ${index} with some padding text`);
  await store.flush();
  const projectDir = join(dir, 't', 'p');
  const files = readdirSync(projectDir);
  t.true(files.length <= 4, files.join(','));
  const page = store.query(project, { since: 0, limit: 1 });
  t.true(page.firstSeq > 1);
  t.is(page.lines[0]?.seq, page.firstSeq);
  t.is(store.query(project, { tail: 1 }).lines[0]?.line, 'line number 1000 with some padding text');
  // After a restart the same window is there.
  await store.close();
  const reopened = open(dir, { segmentBytesMax: 1024, projectBytesMax: 4096, ringLinesMax: 10_000 });
  t.is(reopened.query(project, { since: 0, limit: 1 }).firstSeq, page.firstSeq);
  await reopened.drop(project);
  t.deepEqual(readdirSync(join(dir, 't')), []);
});

test('bad queries are refused with a message that says what to fix', (t) => {
  const store = open(newDir());
  store.append(project, 'stdout', 'x');
  const error = t.throws(() => store.query(project, { grep: '([' }), { instanceOf: LogQueryError });
  t.regex(error?.message ?? '', /is not a valid regular expression .*; fix it/);
  // A pattern that backtracks exponentially in a backtracking engine answers at once here (RE2 semantics).
  store.append(project, 'stdout', `${'a'.repeat(40_000)}c`);
  const started = performance.now();
  t.is(store.query(project, { grep: '(a+)+b' }).lines.length, 0);
  t.true(performance.now() - started < 2_000, 'a catastrophic pattern must not stall the query');
  t.throws(() => store.query(project, { grep: '(a)\\1' }), { instanceOf: LogQueryError }, 'backreferences are refused');
  t.throws(() => store.query(project, { since: -1 }), { instanceOf: LogQueryError });
  t.throws(() => store.query(project, { tail: 1.5 }), { instanceOf: LogQueryError });
  t.throws(() => new LogStore({ dir: newDir(), wallNowMs: () => 0, segmentBytesMax: 100, projectBytesMax: 150 }), { instanceOf: RangeError });
});

test('a record torn by a crash is skipped, and later appends go to a new segment so they stay readable', async (t) => {
  const dir = newDir();
  const first = open(dir, { ringLinesMax: 4 });
  for (let index = 1; index <= 10; index += 1) first.append(project, 'stdout', `line ${index}`);
  await first.close();
  const [segment] = readdirSync(join(dir, 't', 'p'));
  appendFileSync(join(dir, 't', 'p', segment as string), '[11,1700000000000,"o","half a rec');
  const second = open(dir, { ringLinesMax: 4 });
  t.is(second.cursor(project), 10);
  t.is(second.append(project, 'stdout', 'after the crash').seq, 11);
  await second.flush();
  t.is(readdirSync(join(dir, 't', 'p')).length, 2);
  const third = open(dir, { ringLinesMax: 4 });
  t.deepEqual(third.query(project, { since: 8 }).lines.map((line) => line.line), ['line 9', 'line 10', 'after the crash']);
  t.deepEqual(third.query(project, { since: 0, limit: 2 }).lines.map((line) => line.line), ['line 1', 'line 2']);
});
