// KV Watch: the event history and its replay (pure), then real processes: a watch on one node sees writes made through another, replays from a revision, and refuses one it no longer holds.
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { KvStateMachine, encodeCommand, type KvCommand, type KvResult } from '../consensus/kv-state-machine.ts';
import type { LogIndex } from '../consensus/types.ts';
import { LocalCluster, bin, until, type Member } from './local-cluster.ts';
import { WatchCompactedError, WatchHub, commandEvents, prefixSelector, type RevisionEvents } from './watch-hub.ts';

const run = promisify(execFile);

/** Apply `command` to `kv` and derive its events the way a node does. */
function applyAndDerive(kv: KvStateMachine, command: KvCommand): RevisionEvents | null {
  const before = new Map(kv.range('', '', 0).map((entry) => [entry.key, entry]));
  const covered = new Map(
    command.type === 'txn' ? [...command.success, ...command.failure].flatMap((op) => (op.type === 'deleteRange' ? [[op, kv.range(op.start, op.end, 0)] as const] : [])) : [],
  );
  const revision = kv.revision;
  const result: KvResult = kv.apply((kv.appliedIndex + 1) as LogIndex, encodeCommand(command));
  if (!result.ok || kv.revision === revision) return null;
  const { events, touched } = commandEvents(command, result, (key) => before.get(key) ?? null, covered);
  for (const [key, value] of touched) if (JSON.stringify(kv.get(key)) !== JSON.stringify(value)) throw new Error(`replay disagrees on ${key}`);
  return { revision: kv.revision, events };
}

test('events of puts, deletes and a txn that writes, deletes a range and rewrites a key match the store', (t) => {
  const kv = new KvStateMachine();
  const batches = [
    applyAndDerive(kv, { type: 'put', key: 'a/1', value: 'x' }),
    applyAndDerive(kv, { type: 'put', key: 'a/1', value: 'y' }),
    applyAndDerive(kv, { type: 'delete', key: 'missing' }),
    applyAndDerive(kv, {
      type: 'txn',
      compare: [],
      success: [
        { type: 'put', key: 'a/2', value: 'z' },
        { type: 'deleteRange', start: 'a/', end: 'a0' },
        { type: 'put', key: 'a/1', value: 'again' },
      ],
      failure: [],
    }),
  ];
  t.is(batches[2], null, 'deleting a missing key changes nothing and makes no event');
  t.deepEqual(
    batches.flatMap((batch) => (batch === null ? [] : batch.events.map((e) => `${batch.revision} ${e.type} ${e.kv.key}=${e.kv.value} v${e.kv.version} prev=${e.prevKv?.value ?? '-'}`))),
    ['1 put a/1=x v1 prev=-', '2 put a/1=y v2 prev=x', '3 put a/2=z v1 prev=-', '3 delete a/1= v0 prev=y', '3 delete a/2= v0 prev=z', '3 put a/1=again v1 prev=-'],
  );
});

test('the hub replays from a revision, filters by key range, and names the oldest revision it still holds', (t) => {
  const hub = new WatchHub({ historyEventsMax: 3, historyBytesMax: 1 << 20, watchersMax: 2 });
  const kv = new KvStateMachine();
  hub.reset(0);
  for (const [key, value] of [['a', '1'], ['b/1', '2'], ['b/2', '3'], ['c', '4']] as const) {
    hub.record(applyAndDerive(kv, { type: 'put', key, value }) as RevisionEvents);
  }
  // Four revisions, three events kept: revision 1 is gone.
  t.is(hub.oldestRevision, 2);
  const error = t.throws(() => hub.watch(prefixSelector(''), 1, () => undefined, () => undefined), { instanceOf: WatchCompactedError });
  t.regex(error?.message ?? '', /revision 1 is no longer in this node's watch history \(it replays from revision 2 on\)/);
  const seen: string[] = [];
  const watch = hub.watch(prefixSelector('b/'), 2, (batch) => seen.push(...batch.events.map((e) => `${batch.revision}:${e.kv.key}`)), () => undefined);
  t.is(watch.startRevision, 2);
  hub.record(applyAndDerive(kv, { type: 'put', key: 'b/3', value: '5' }) as RevisionEvents);
  hub.record(applyAndDerive(kv, { type: 'put', key: 'd', value: '6' }) as RevisionEvents);
  t.deepEqual(seen, ['2:b/1', '3:b/2', '5:b/3']);
  // A snapshot that skips revisions ends the watches that needed them.
  const lost: WatchCompactedError[] = [];
  hub.watch(prefixSelector(''), 0, () => undefined, (e) => lost.push(e));
  watch.cancel();
  hub.reset(10);
  t.is(lost.length, 1);
  t.is(lost[0]?.oldestRevision, 11);
  t.is(hub.watcherCount, 0);
});

test.serial('real nodes: `kv watch` on one node sees writes made through another, replays from --rev, and refuses a revision it no longer holds', async (t) => {
  const cluster = await LocalCluster.create(3, { extraArgs: ['--snapshot-entries', '20'] });
  t.teardown(() => cluster.stop());
  for (const member of cluster.members) cluster.start(member);
  await cluster.waitForLeader(30_000);
  const [n1, n2, n3] = cluster.members as [Member, Member, Member];
  const env = { ...process.env, DEBUGHOST_LOG_LEVEL: 'warn', DEBUGHOST_TOKEN: cluster.adminToken };
  const cli = (args: string[]) => run(process.execPath, [bin, ...args], { timeout: 20_000, env });

  // A live watch through n2, for 4 events under app/.
  const watcher = spawn(process.execPath, [bin, 'kv', 'watch', 'app/', '--prefix', '--prev-kv', '--count', '4', '--endpoints', n2.grpc], { stdio: ['ignore', 'pipe', 'pipe'], env });
  t.teardown(() => {
    if (watcher.exitCode === null && watcher.signalCode === null) watcher.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  watcher.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  watcher.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => watcher.once('exit', (code) => resolve(code)));
  await until('the watch to open', 15_000, () => (err.includes('watching from revision') ? true : null));
  // Writes through n3 (a different node; followers forward to the leader).
  await cli(['kv', 'put', 'app/a', '1', '--endpoints', n3.grpc]);
  await cli(['kv', 'put', 'other', 'ignored', '--endpoints', n3.grpc]);
  await cli(['kv', 'put', 'app/a', '2', '--endpoints', n1.grpc]);
  await cli(['kv', 'txn', '{"success":[{"put":{"key":"app/b","value":"3"}},{"del":{"key":"app/a"}}]}', '--endpoints', n3.grpc]);
  t.is(await exited, 0, err);
  const lines = out.trim().split('\n');
  t.is(lines.length, 4, out);
  t.regex(lines[0] ?? '', /^PUT app\/a 1 rev=(\d+) version=1$/);
  t.regex(lines[1] ?? '', /^PUT app\/a 2 rev=\d+ version=2 prev=1$/);
  t.regex(lines[2] ?? '', /^PUT app\/b 3 rev=(\d+) version=1$/);
  t.regex(lines[3] ?? '', /^DELETE app\/a rev=\d+ prev=2$/);
  const firstRevision = Number(/rev=(\d+)/.exec(lines[0] ?? '')?.[1]);

  // Replay from the first revision, through n1 this time: the same events.
  const replay = await cli(['kv', 'watch', 'app/', '--prefix', '--rev', String(firstRevision), '--count', '4', '--endpoints', n1.grpc]);
  t.deepEqual(replay.stdout.trim().split('\n'), lines.map((line) => line.replace(/ prev=.*$/, '')));

  // A restarted node rebuilds its history from its snapshot on: older revisions are refused, clearly.
  for (let i = 0; i < 60; i += 1) await cluster.put(n1, `fill/${i}`, 'x');
  await cluster.kill(n3, 'SIGKILL');
  cluster.start(n3);
  await cluster.waitCaughtUp(n3, 30_000);
  const refused = await cli(['kv', 'watch', 'app/', '--prefix', '--rev', '1', '--endpoints', n3.grpc]).then(
    () => null,
    (error: { code: number; stderr: string }) => error,
  );
  t.not(refused, null, 'a watch from revision 1 on the restarted node must fail');
  t.is(refused?.code, 2);
  t.regex(refused?.stderr ?? '', /revision 1 is no longer in this node's watch history \(it replays from revision \d+ on\); read the range again and watch from the revision in its header \+ 1/);
});
