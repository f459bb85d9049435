// Running out of room on real nodes: past --quota-bytes the replicated NOSPACE alarm refuses puts (deletes and reads go on) and clears once space is freed; a full data disk (a small tmpfs) stops writes with a clear error and an alarm metric, loses nothing, and recovers by itself when space returns.
import { prerequisites } from '../actors/testing/prerequisites.ts';
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { create } from '@bufbuild/protobuf';
import { DeleteRangeRequestSchema } from '../proto/gen/kv_pb.ts';
import { callUnary } from '../proto/grpc.ts';
import { LocalCluster, sleep, until, type Member } from './local-cluster.ts';

const run = promisify(execFile);

async function alarm(member: Member, name: 'nospace' | 'diskfull'): Promise<number | null> {
  try {
    const text = await (await fetch(`http://${member.mcp}/metrics`)).text();
    const match = new RegExp(`^debughost_alarm_active\\{[^}]*alarm="${name}"[^}]*\\} (\\S+)$`, 'm').exec(text);
    return match === null ? null : Number(match[1]);
  } catch {
    return null;
  }
}

const allAlarms = async (cluster: LocalCluster, name: 'nospace' | 'diskfull'): Promise<(number | null)[]> => Promise.all(cluster.members.map((m) => alarm(m, name)));

const errorOf = async (promise: Promise<unknown>): Promise<{ code: number; details: string } | null> => {
  try {
    await promise;
    return null;
  } catch (error) {
    return { code: (error as { code: number }).code, details: (error as { details: string }).details };
  }
};

const RESOURCE_EXHAUSTED = 8;
const UNAVAILABLE = 14;

test('quota: past --quota-bytes puts are refused on every node, reads and deletes go on, and the alarm clears once space is freed', async (t) => {
  const quotaBytes = 1024 * 1024;
  const cluster = await LocalCluster.create(3, { extraArgs: ['--quota-bytes', String(quotaBytes), '--docker', 'off'] });
  t.teardown(() => cluster.stop());
  for (const member of cluster.members) cluster.start(member);
  const leader = await cluster.waitForLeader(60_000);
  const follower = cluster.members.find((m) => m !== leader) as Member;
  const value = 'v'.repeat(32 * 1024);
  const acknowledged: string[] = [];
  let refusal: { code: number; details: string } | null = null;
  for (let i = 0; i < 100 && refusal === null; i++) {
    const key = `q/${String(i).padStart(3, '0')}`;
    refusal = await errorOf(cluster.put(i % 2 === 0 ? leader : follower, key, value));
    if (refusal === null) acknowledged.push(key);
  }
  t.not(refusal, null, 'a put was refused');
  t.is(refusal?.code, RESOURCE_EXHAUSTED);
  t.regex(refusal?.details ?? '', /out of space.*quota.*delete keys/);
  t.false((refusal?.details ?? '').includes('\n'));
  // The quota is soft by the puts in flight when the alarm went up, no more.
  t.true(acknowledged.length * value.length >= quotaBytes * 0.9 && acknowledged.length * value.length <= quotaBytes * 1.2, `${acknowledged.length} puts of 32 KiB`);
  await until('the alarm on every node', 20_000, async () => ((await allAlarms(cluster, 'nospace')).every((v) => v === 1) ? true : null));
  // A put through any node is refused; reads everywhere see every acknowledged key.
  t.is((await errorOf(cluster.put(follower, 'q/late', 'x')))?.code, RESOURCE_EXHAUSTED);
  for (const member of cluster.members) {
    await cluster.waitCaughtUp(member, 20_000);
    t.deepEqual([...(await cluster.readPrefix(member, 'q/', 'q0')).keys()].sort(), acknowledged, `${member.id} keeps every acknowledged key`);
  }
  // Deletes work while the alarm is up; once under 90 % of the quota it clears by itself.
  const doomed = acknowledged.slice(0, Math.ceil(acknowledged.length / 2));
  for (const key of doomed) await callUnary(cluster.kvClient(leader), 'deleteRange', create(DeleteRangeRequestSchema, { key }), { deadline: Date.now() + 5000 });
  await until('the alarm to clear on every node', 20_000, async () => ((await allAlarms(cluster, 'nospace')).every((v) => v === 0) ? true : null));
  t.is(await errorOf(cluster.put(follower, 'q/after', 'x')), null, 'puts work again');
  const kept = [...(await cluster.readPrefix(leader, 'q/', 'q0')).keys()].sort();
  t.deepEqual(kept, [...acknowledged.slice(doomed.length), 'q/after'].sort());
});

/** Fill a file system with a file of zeros until it refuses more; returns its path. */
async function fill(dir: string): Promise<string> {
  const path = join(dir, 'filler');
  const handle = await open(path, 'w');
  const chunk = new Uint8Array(64 * 1024);
  try {
    for (;;) await handle.write(chunk);
  } catch (error) {
    if ((error as { code?: string }).code !== 'ENOSPC') throw error;
  } finally {
    await handle.close();
  }
  return path;
}

// Mounting a tmpfs needs root.
(await prerequisites('root')).guard(test)('disk full: a node on a full tmpfs refuses writes with a clear error and an alarm, keeps its data, and recovers when space returns', async (t) => {
  // Each node's data dir on a tmpfs of its own, as small as its LevelDB, two 256 KiB WAL segments and a little room allow.
  const cluster = await LocalCluster.create(3, { extraArgs: ['--wal-segment-bytes', String(256 * 1024), '--docker', 'off'] });
  const mounted: string[] = [];
  t.teardown(async () => {
    await cluster.stop().catch(() => undefined);
    for (const dir of mounted) await run('umount', [dir]).catch(() => undefined);
    await rm(cluster.root, { recursive: true, force: true });
  });
  for (const member of cluster.members) {
    await mkdir(member.dataDir, { recursive: true });
    await run('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', member.dataDir]);
    mounted.push(member.dataDir);
  }
  for (const member of cluster.members) cluster.start(member);
  const leader = await cluster.waitForLeader(60_000);
  const acknowledged = new Map<string, string>();
  for (let i = 0; i < 20; i++) {
    await cluster.put(leader, `d/${i}`, `before-${i}`);
    acknowledged.set(`d/${i}`, `before-${i}`);
  }
  const fillers = await Promise.all(cluster.members.map((m) => fill(m.dataDir)));
  // The nodes still have room in their current segments; writes go on until one needs the next.
  let refusal: { code: number; details: string } | null = null;
  for (let i = 0; i < 2000 && refusal === null; i++) {
    const key = `d/full-${i}`;
    const value = 'x'.repeat(1024);
    refusal = await errorOf(cluster.put(leader, key, value, 3000));
    if (refusal === null) acknowledged.set(key, value);
  }
  t.not(refusal, null, 'writes were refused once the disks were full');
  t.is(refusal?.code, UNAVAILABLE);
  t.regex(refusal?.details ?? '', /is full .*writes are refused until space is freed/);
  t.false((refusal?.details ?? '').includes('\n'));
  t.true((await allAlarms(cluster, 'diskfull')).some((v) => v === 1), 'the diskfull alarm is up');
  t.true(cluster.members.every((m) => cluster.running(m)), 'no node stopped');
  // Space returns: the nodes take writes again by themselves.
  for (const path of fillers) await rm(path);
  await until('a write to succeed again', 30_000, async () => ((await errorOf(cluster.put(leader, 'd/after', 'after', 3000))) === null ? true : null), 500);
  acknowledged.set('d/after', 'after');
  await until('the diskfull alarm to clear', 20_000, async () => ((await allAlarms(cluster, 'diskfull')).every((v) => v === 0) ? true : null));
  for (const member of cluster.members) {
    await cluster.waitCaughtUp(member, 20_000);
    const stored = await cluster.readPrefix(member, 'd/', 'd0');
    t.deepEqual([...acknowledged].filter(([key, value]) => stored.get(key) !== value), [], `${member.id} keeps every acknowledged write`);
  }
  // And after a restart, from disk.
  await cluster.kill(leader);
  cluster.start(leader);
  await sleep(500);
  await cluster.waitCaughtUp(leader, 30_000);
  const restored = await cluster.readPrefix(leader, 'd/', 'd0');
  t.deepEqual([...acknowledged].filter(([key, value]) => restored.get(key) !== value), []);
});
