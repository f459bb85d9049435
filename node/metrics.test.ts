// /metrics on real nodes: Raft gauges, proposal and gRPC counters and the fsync histogram are served and move with writes; a dead peer shows as stream errors.
import test from 'ava';
import { LocalCluster, until, type Member } from './local-cluster.ts';

/** Parse the Prometheus text format into `name{labels}` → value (labels as written). */
function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}

async function scrape(member: Member): Promise<{ contentType: string; values: Map<string, number> }> {
  const response = await fetch(`http://${member.mcp}/metrics`);
  return { contentType: response.headers.get('content-type') ?? '', values: parseMetrics(await response.text()) };
}

/** Sum of every series of `name` whose labels contain all of `labels`. */
function sum(values: Map<string, number>, name: string, labels: string[] = []): number {
  let total = 0;
  for (const [series, value] of values) {
    if (series !== name && !series.startsWith(`${name}{`)) continue;
    if (labels.every((label) => series.includes(label))) total += value;
  }
  return total;
}

test('each node serves its own metrics; they move after writes and when a peer dies', async (t) => {
  const cluster = await LocalCluster.create(3);
  t.teardown(() => cluster.stop());
  for (const member of cluster.members) cluster.start(member);
  const leader = await cluster.waitForLeader(30_000);
  const follower = cluster.members.find((m) => m !== leader) as Member;
  const before = await scrape(leader);
  t.regex(before.contentType, /^text\/plain; version=0\.0\.4/);
  const node = `node="${leader.id}"`;
  t.is(sum(before.values, 'debughost_raft_role', ['role="leader"', node]), 1);
  t.is(sum(before.values, 'debughost_raft_role', ['role="follower"', node]), 0);
  t.true(sum(before.values, 'debughost_raft_term') >= 1);
  t.true(sum(before.values, 'debughost_raft_leader_changes_total') >= 1, 'the leader saw itself become leader');

  for (let i = 0; i < 50; i += 1) await cluster.put(follower, `m/${i}`, 'x');
  const after = await scrape(leader);
  const grew = (name: string, labels: string[] = []): number => sum(after.values, name, labels) - sum(before.values, name, labels);
  t.true(grew('debughost_raft_commit_index') >= 50, 'commit index advanced by the writes');
  t.true(grew('debughost_raft_applied_index') >= 50);
  // The follower forwarded the 50 puts; the leader proposed them.
  t.true(grew('debughost_raft_proposals_total', ['kind="command"', 'outcome="ok"']) >= 50);
  t.true(grew('debughost_storage_fsync_seconds_count') > 0, 'fsyncs were timed');
  t.true(grew('debughost_storage_fsync_seconds_sum') > 0);
  t.true(grew('debughost_storage_synced_entries_total') >= 50);
  t.true(grew('debughost_grpc_requests_total', ['method="/debughost.kv.v1.KV/Put"', 'code="OK"']) >= 50);
  // Another node's registry is its own: the follower's metrics carry its id and its role.
  const followerMetrics = await scrape(follower);
  t.is(sum(followerMetrics.values, 'debughost_raft_role', ['role="follower"', `node="${follower.id}"`]), 1);
  t.true(sum(followerMetrics.values, 'debughost_grpc_requests_total', ['method="/debughost.kv.v1.KV/Put"']) >= 50);

  // A dead peer: the leader's stream to it breaks and is retried.
  const victim = cluster.members.find((m) => m !== leader && m !== follower) as Member;
  await cluster.kill(victim, 'SIGKILL');
  const errors = await until('peer stream errors', 15_000, async () => {
    await cluster.put(follower, 'm/after', 'x').catch(() => undefined);
    const now = await scrape(leader);
    const count = sum(now.values, 'debughost_peer_stream_errors_total', [`peer="${victim.id}"`]);
    return count > 0 ? count : null;
  });
  t.true(errors > 0);
});
