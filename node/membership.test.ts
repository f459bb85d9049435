// Membership changes under write load on real processes: 3 founders, 2 joiners promoted, 2 members removed (one of them the leader); no acknowledged write is lost.
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { create } from '@bufbuild/protobuf';
import { MemberRemoveRequestSchema } from '../proto/gen/admin_pb.ts';
import { callUnary } from '../proto/grpc.ts';
import { LocalCluster, WriteLoad, bin, missingWrites, seededRandom, sleep, until, type Member } from './local-cluster.ts';

const run = promisify(execFile);

test('5 members with 2 joins and 2 removals (the leader among them) while clients write: every acknowledged write is on every remaining node', async (t) => {
  const seed = Number(process.env.DEBUGHOST_TEST_SEED ?? Date.now() % 1_000_000);
  t.log(`seed ${seed} (DEBUGHOST_TEST_SEED=${seed} replays the workload's choices)`);
  // A low snapshot threshold makes the joiners catch up through a snapshot, not only the log.
  const cluster = await LocalCluster.create(3, { extraArgs: ['--snapshot-entries', '300'] });
  t.teardown(() => cluster.stop());
  const [n1, n2, n3] = cluster.members as [Member, Member, Member];
  for (const member of [n1, n2, n3]) cluster.start(member);
  await cluster.waitForLeader(30_000);

  const targets = new Set<Member>([n1, n2, n3]);
  const load = new WriteLoad(cluster, targets, 6, seededRandom(seed));
  // Teardowns run last-in first-out: the writers stop before the processes are killed.
  t.teardown(() => load.stop());
  const acknowledgedAt = (): number => load.acknowledged.size;
  await until('writes to flow', 20_000, () => (acknowledgedAt() >= 50 ? true : null));

  // Two joiners: learners first, promoted to voters by the leader once caught up.
  const before = acknowledgedAt();
  const n4 = await cluster.addMember();
  const n5 = await cluster.addMember();
  cluster.start(n4);
  cluster.start(n5);
  const five = await until('5 voters', 60_000, async () => {
    const leader = await cluster.leader();
    const status = leader === null ? null : await cluster.status(leader);
    return status !== null && status.members.length === 5 && status.members.every((m) => !m.learner) ? status : null;
  });
  t.deepEqual(five.members.map((m) => m.id).sort(), ['n1', 'n2', 'n3', 'n4', 'n5']);
  targets.add(n4);
  targets.add(n5);
  const duringJoins = acknowledgedAt() - before;
  t.true(duringJoins > 0, 'writes were acknowledged while the nodes joined');
  await sleep(1000);

  // The leader leaves through the CLI: it hands leadership over, is removed, and stops by itself.
  const leader = await cluster.waitForLeader(10_000);
  targets.delete(leader);
  const afterJoins = acknowledgedAt();
  const leaderGone = cluster.exited(leader);
  const leave = await run(process.execPath, [bin, 'leave', '--endpoints', leader.grpc], { timeout: 30_000, env: { ...process.env, DEBUGHOST_LOG_LEVEL: 'warn', DEBUGHOST_TOKEN: cluster.adminToken } });
  t.regex(leave.stdout, new RegExp(`removed ${leader.id} from cluster`));
  await Promise.race([leaderGone, sleep(20_000).then(async () => Promise.reject(new Error(`${leader.id} did not stop after its removal: ${JSON.stringify(await cluster.status(leader), (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))} ${leader.stderrTail.slice(-3000)}`)))]);
  const remaining = cluster.members.filter((m) => targets.has(m));
  const newLeader = await cluster.waitForLeader(10_000, remaining);
  t.not(newLeader.id, leader.id);

  // A follower is removed through Admin.MemberRemove sent to another member (forwarded to the leader).
  const follower = remaining.find((m) => m !== newLeader) as Member;
  const via = remaining.find((m) => m !== follower) as Member;
  targets.delete(follower);
  const followerGone = cluster.exited(follower);
  await callUnary(cluster.adminClient(via), 'memberRemove', create(MemberRemoveRequestSchema, { id: follower.id }), { deadline: Date.now() + 15_000 });
  await Promise.race([followerGone, sleep(20_000).then(() => Promise.reject(new Error(`${follower.id} did not stop after its removal: ${follower.stderrTail}`)))]);
  await sleep(1000);
  await load.stop();
  const duringRemovals = acknowledgedAt() - afterJoins;
  t.true(duringRemovals > 0, 'writes were acknowledged while members left');

  const survivors = cluster.members.filter((m) => targets.has(m));
  t.is(survivors.length, 3);
  const final = await cluster.status(survivors[0] as Member);
  t.deepEqual(final?.members.map((m) => m.id).sort(), survivors.map((m) => m.id).sort());
  for (const member of survivors) {
    const wrong = await missingWrites(cluster, member, load.acknowledged);
    t.deepEqual(wrong.slice(0, 10), [], `${wrong.length} acknowledged writes missing or wrong on ${member.id}`);
  }
  t.log(
    `${load.acknowledged.size} writes acknowledged (${duringJoins} while n4, n5 joined, ${duringRemovals} while ${leader.id} (leader) and ${follower.id} left), ${load.failed} failed or unacknowledged; all present on ${survivors.map((m) => m.id).join(', ')}`,
  );
});
