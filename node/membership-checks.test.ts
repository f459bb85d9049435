// Membership changes that would hurt are refused on real processes: promoting a learner that has not caught up, and removing a live voter while another is down (fewer live voters than a quorum); --force overrides the second.
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { create } from '@bufbuild/protobuf';
import { MemberAddRequestSchema } from '../proto/gen/admin_pb.ts';
import { callUnary } from '../proto/grpc.ts';
import { LocalCluster, bin, sleep, until, type Member } from './local-cluster.ts';

const exec = promisify(execFile);

/** Run the CLI; resolves with its exit code and output instead of throwing on a non-zero exit. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [bin, ...args], { timeout: 30_000, env: { ...process.env, DEBUGHOST_LOG_LEVEL: 'warn' } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

test('promote refuses a learner that has not caught up; remove refuses to leave fewer live voters than a quorum unless forced', async (t) => {
  const cluster = await LocalCluster.create(3);
  t.teardown(() => cluster.stop());
  for (const member of cluster.members) cluster.start(member);
  const leader = await cluster.waitForLeader(30_000);
  const endpoints = ['--endpoints', leader.grpc, '--token', cluster.adminToken];

  // A learner that never starts: it acknowledges nothing, so it cannot be promoted (forced or not).
  await callUnary(cluster.adminClient(leader), 'memberAdd', create(MemberAddRequestSchema, { id: 'n9', address: '127.0.0.1:1' }), { deadline: Date.now() + 15_000 });
  for (const force of [[], ['--force']]) {
    const promote = await cli(['member', 'promote', 'n9', ...endpoints, ...force]);
    t.is(promote.code, 2, promote.stdout);
    t.is(promote.stderr.trim(), 'debughost member: n9 has not caught up (it has acknowledged nothing yet; at most 1000); retry once it has');
  }

  // One voter down: removing another live one would leave one live voter of two.
  const [down, live] = cluster.members.filter((m) => m !== leader) as [Member, Member];
  await cluster.kill(down);
  // Liveness is what the leader heard in the last two election timeouts.
  await sleep(3000);
  const refused = await until('the removal to be refused for liveness', 15_000, async () => {
    const attempt = await cli(['member', 'remove', live.id, ...endpoints]);
    return attempt.code === 2 && /fewer than a quorum/.test(attempt.stderr) ? attempt : null;
  }, 500);
  t.is(refused.stderr.trim(), 'debughost member: after this change 1 of 2 voters would be live, fewer than a quorum of 2; bring members back first, or force the change');
  const list = await cli(['member', 'list', ...endpoints]);
  t.deepEqual(list.stdout.trim().split('\n').map((line) => line.split('\t')[0]).sort(), ['n1', 'n2', 'n3', 'n9']);

  // The operator insists: the change commits (the old configuration still has a quorum) and the node stops.
  const gone = cluster.exited(live);
  const forced = await cli(['leave', '--id', live.id, '--force', ...endpoints]);
  t.is(forced.code, 0, forced.stderr);
  t.regex(forced.stdout, new RegExp(`removed ${live.id} from cluster`));
  await Promise.race([gone, sleep(20_000).then(() => Promise.reject(new Error(`${live.id} did not stop after its removal`)))]);
});
