// Unit tests of the pure Raft core, step by step, one per rule of the paper.
import test from 'ava';
import { Raft, defaultRaftConfig } from './raft.ts';
import { TestNetwork, bytes, counterRandom, text } from './testing/network.ts';
import type { LogIndex, NodeId, Term } from './types.ts';

const normalData = (net: TestNetwork, id: string): string[] =>
  (net.applied.get(id as NodeId) ?? []).filter((e) => e.type === 'normal').map((e) => text(e.data));

test('5.2 a single node elects itself and commits', (t) => {
  const net = new TestNetwork(['a']);
  net.elect('a');
  t.is(net.node('a').role, 'leader');
  t.true(net.node('a').propose(bytes('x')).ok);
  net.settle();
  t.deepEqual(normalData(net, 'a'), ['x']);
});

test('5.2 three nodes elect one leader, pre-vote does not bump the term of others', (t) => {
  const net = new TestNetwork(['a', 'b', 'c']);
  net.elect('a');
  const leaders = [...net.nodes.values()].filter((n) => n.role === 'leader');
  t.is(leaders.length, 1);
  t.is(Number(net.node('a').term), 2, 'bootstrap is term 1; the first election makes term 2');
  t.is(String(net.node('b').leader), 'a');
  t.is(Number(net.node('c').term), 2);
});

test('5.3 replication commits on a quorum and applies everywhere in order', (t) => {
  const net = new TestNetwork(['a', 'b', 'c']);
  net.elect('a');
  for (const value of ['1', '2', '3']) t.true(net.node('a').propose(bytes(value)).ok);
  net.settle();
  for (const id of ['a', 'b', 'c']) t.deepEqual(normalData(net, id), ['1', '2', '3']);
});

test('5.3 proposals made before one ready travel in one append per follower (batching)', (t) => {
  const net = new TestNetwork(['a', 'b', 'c']);
  net.elect('a');
  net.delivered = [];
  for (let i = 0; i < 10; i += 1) net.node('a').propose(bytes(String(i)));
  net.settle();
  const appendsWithEntries = net.delivered.filter((m) => m.type === 'append' && m.entries.length > 0);
  t.is(appendsWithEntries.length, 2);
  t.true(net.delivered.length <= 40, `${net.delivered.length} messages`);
  t.is(normalData(net, 'c').length, 10);
});

test('5.4.2 figure 8: a leader does not commit an entry of an earlier term by counting replicas', (t) => {
  // One entry per append, so that an old entry can travel without the new one.
  const net = new TestNetwork(['a', 'b', 'c', 'd', 'e'], (config) => ({ ...config, appendBytesMax: 1 }));
  net.elect('a');
  // Indexes 1-5 are the bootstrap entries, 6 is a's empty entry; a (term 2) appends 'old' at 7, which reaches only b.
  net.drop = (m) => m.type === 'append' && m.from === 'a' && m.to !== 'b';
  net.node('a').propose(bytes('old'));
  net.settle();
  t.is(Number(net.node('b').log.lastIndex()), 7);
  t.is(Number(net.node('a').log.committed), 6);
  // b wins term 3 (a is cut off). Acknowledgements of its own entry (index 8) are lost; 'old' is acknowledged.
  net.isolate('a');
  net.drop = (m) => m.type === 'appendResp' && m.to === 'b' && m.index >= 8;
  net.elect('b');
  const b = net.node('b');
  t.is(Number(b.term), 3);
  t.deepEqual(b.status().progress.filter((p) => ['c', 'd', 'e'].includes(p.id)).map((p) => Number(p.match)), [7, 7, 7]);
  t.is(Number(b.log.committed), 6, 'index 7 (term 2) is on a majority but must not commit by counting');
  // Once b's own entry (index 8, term 3) reaches a majority, both commit.
  net.drop = () => false;
  net.tickAll(1);
  t.is(Number(b.log.committed), 8);
});

test('5.4 an old leader rejoining is deposed and its uncommitted entries are replaced', (t) => {
  const net = new TestNetwork(['a', 'b', 'c']);
  net.elect('a');
  net.isolate('a');
  net.node('a').propose(bytes('lost'));
  net.settle();
  net.elect('b');
  t.true(net.node('b').propose(bytes('kept')).ok);
  net.settle();
  net.heal();
  net.tickAll(3);
  t.is(net.node('a').role, 'follower');
  t.deepEqual(normalData(net, 'a'), ['kept']);
  t.deepEqual(normalData(net, 'c'), ['kept']);
});

test('check-quorum: a leader that cannot reach a quorum steps down', (t) => {
  const net = new TestNetwork(['a', 'b', 'c']);
  net.elect('a');
  net.isolate('a');
  net.node('a').tick();
  for (let i = 0; i < 25; i += 1) net.node('a').tick();
  net.settle();
  t.not(net.node('a').role, 'leader');
});

test('pre-vote: a partitioned node does not raise its term and disrupt the cluster on return', (t) => {
  const net = new TestNetwork(['a', 'b', 'c']);
  net.elect('a');
  net.isolate('c');
  for (let i = 0; i < 100; i += 1) {
    net.node('c').tick();
    net.settle();
  }
  t.is(Number(net.node('c').term), 2);
  net.heal();
  net.tickAll(3);
  t.is(net.node('a').role, 'leader');
  t.is(Number(net.node('a').term), 2);
});

test('read index: a leader confirms with a quorum round; a deposed leader cannot', (t) => {
  const net = new TestNetwork(['a', 'b', 'c']);
  net.elect('a');
  net.node('a').propose(bytes('v'));
  net.settle();
  t.true(net.node('a').readIndex('r1').ok);
  net.settle();
  t.deepEqual(net.readStates.get('a' as NodeId), [{ requestId: 'r1', index: net.node('a').log.committed }]);
  net.isolate('a');
  t.true(net.node('a').readIndex('r2').ok);
  net.settle();
  t.is(net.readStates.get('a' as NodeId)?.length, 1, 'no quorum, no read state');
});

test('read index from a follower is forwarded and answered', (t) => {
  const net = new TestNetwork(['a', 'b', 'c']);
  net.elect('a');
  t.true(net.node('b').readIndex('b/1').ok);
  net.settle();
  t.deepEqual(net.readStates.get('b' as NodeId)?.map((r) => r.requestId), ['b/1']);
});

test('leadership transfer moves the leader with TimeoutNow', (t) => {
  const net = new TestNetwork(['a', 'b', 'c']);
  net.elect('a');
  net.node('a').propose(bytes('x'));
  net.settle();
  t.true(net.node('a').transferLeadership('c' as NodeId).ok);
  net.settle();
  t.is(net.node('c').role, 'leader');
  t.is(net.node('a').role, 'follower');
});

test('fast back-tracking: a follower with a long divergent log is repaired in few round trips', (t) => {
  const net = new TestNetwork(['a', 'b', 'c']);
  net.elect('a');
  net.isolate('a');
  for (let i = 0; i < 200; i += 1) net.node('a').propose(bytes(`stale${i}`));
  net.settle();
  net.elect('b');
  for (let i = 0; i < 200; i += 1) net.node('b').propose(bytes(`new${i}`));
  net.settle();
  net.heal();
  net.delivered = [];
  net.tickAll(2);
  const rejects = net.delivered.filter((m) => m.type === 'appendResp' && !m.success && m.to === 'b').length;
  t.true(rejects <= 3, `${rejects} rejections`);
  t.is(normalData(net, 'a').length, 200);
  t.is(normalData(net, 'a')[199], 'new199');
});

test('snapshots: a lagging follower is brought up to date by chunked InstallSnapshot', (t) => {
  const net = new TestNetwork(['a', 'b', 'c'], (config) => ({ ...config, snapshotChunkBytes: 7, snapshotTrailingEntries: 0 }));
  net.elect('a');
  net.isolate('c');
  for (let i = 0; i < 20; i += 1) net.node('a').propose(bytes(`v${i}`));
  net.settle();
  const snapshot = net.node('a').compact(bytes('state-machine-at-21-bytes-long!!'));
  t.is(Number(snapshot.meta.index), 24);
  t.is(Number(net.node('a').log.firstIndex()), 25);
  net.heal();
  net.delivered = [];
  net.tickAll(2);
  const chunks = net.delivered.filter((m) => m.type === 'snapshotChunk' && m.to === 'c');
  t.true(chunks.length >= 5, `${chunks.length} chunks`);
  t.is(Number(net.node('c').log.snapshotMeta.index), 24);
  t.is(Number(net.node('c').log.committed), 24);
});

test('membership: add a learner, promote it, remove a voter', (t) => {
  const net = new TestNetwork(['a', 'b', 'c']);
  const d = net.addEmpty('d');
  net.elect('a');
  net.node('a').propose(bytes('x'));
  net.settle();
  t.true(net.node('a').proposeConfChange({ type: 'addLearner', node: 'd' as NodeId }).ok);
  net.settle();
  t.deepEqual(net.node('a').confState().learners, ['d']);
  t.is(Number(d.log.committed), Number(net.node('a').log.committed));
  t.true(net.node('a').proposeConfChange({ type: 'promote', node: 'd' as NodeId }).ok);
  net.settle();
  t.deepEqual(net.node('a').confState().voters, ['a', 'b', 'c', 'd']);
  const second = net.node('a').proposeConfChange({ type: 'remove', node: 'b' as NodeId });
  t.true(second.ok);
  net.settle();
  t.deepEqual(net.node('a').confState().voters, ['a', 'c', 'd']);
  t.deepEqual(d.confState().voters, ['a', 'c', 'd']);
});

test('membership: one change at a time, and bad changes are refused as values', (t) => {
  const net = new TestNetwork(['a', 'b', 'c']);
  net.elect('a');
  const first = net.node('a').proposeConfChange({ type: 'addLearner', node: 'd' as NodeId });
  t.true(first.ok);
  const second = net.node('a').proposeConfChange({ type: 'addLearner', node: 'e' as NodeId });
  t.like(second, { ok: false, reason: 'pendingConfChange' });
  t.like(net.node('a').proposeConfChange({ type: 'promote', node: 'b' as NodeId }), { ok: false, reason: 'invalidConfChange' });
  t.like(net.node('b').proposeConfChange({ type: 'remove', node: 'c' as NodeId }), { ok: false, reason: 'notLeader', leaderHint: 'a' });
});

test('membership: a learner is promoted only once caught up, and not when the voters after it would have no live quorum (six voters, three live)', (t) => {
  const net = new TestNetwork(['a', 'b', 'c', 'd', 'e']);
  net.addEmpty('f');
  net.elect('a');
  const leader = net.node('a');
  net.isolate('f');
  t.true(leader.proposeConfChange({ type: 'addLearner', node: 'f' as NodeId }).ok);
  net.settle();
  const early = leader.proposeConfChange({ type: 'promote', node: 'f' as NodeId });
  t.like(early, { ok: false, reason: 'invalidConfChange' });
  t.regex(early.ok ? '' : 'detail' in early ? early.detail : '', /f has not caught up \(it has acknowledged nothing yet; at most 1000\)/);
  // f catches up, then f, d and e go silent for two election timeouts: three of six voters would be live.
  net.heal();
  net.tickAll(1);
  t.true(leader.status().progress.some((p) => p.id === 'f' && p.match === leader.log.lastIndex()));
  for (const id of ['d', 'e', 'f']) net.isolate(id);
  net.tickAll(2 * leader.config.electionTicks + 1);
  t.is(leader.role, 'leader', 'a, b and c are a quorum of five');
  const strict = leader.proposeConfChange({ type: 'promote', node: 'f' as NodeId });
  t.like(strict, { ok: false, reason: 'invalidConfChange' });
  t.regex(strict.ok ? '' : 'detail' in strict ? strict.detail : '', /after this change 3 of 6 voters would be live, fewer than a quorum of 4/);
  t.true(leader.proposeConfChange({ type: 'promote', node: 'f' as NodeId, force: true }).ok, 'an operator may force it');
});

test('membership: removing a live voter while others are down is refused unless forced; removing a down one is not', (t) => {
  const net = new TestNetwork(['a', 'b', 'c', 'd', 'e']);
  net.elect('a');
  const leader = net.node('a');
  net.isolate('d');
  net.isolate('e');
  net.tickAll(2 * leader.config.electionTicks + 1);
  const refused = leader.proposeConfChange({ type: 'remove', node: 'b' as NodeId });
  t.like(refused, { ok: false, reason: 'invalidConfChange' });
  t.regex(refused.ok ? '' : 'detail' in refused ? refused.detail : '', /after this change 2 of 4 voters would be live, fewer than a quorum of 3; bring members back first, or force the change/);
  t.true(leader.proposeConfChange({ type: 'remove', node: 'd' as NodeId }).ok, 'removing a down voter leaves 3 live of 4');
  net.settle();
  t.deepEqual(leader.confState().voters, ['a', 'b', 'c', 'e']);
  net.tickAll(1);
  t.true(leader.proposeConfChange({ type: 'remove', node: 'b' as NodeId, force: true }).ok, 'forced');
});

test('restart: a node rebuilt from its persisted state keeps term, vote and log', (t) => {
  const persisted = {
    hardState: { term: 5 as Term, vote: 'b' as NodeId, commit: 2 as LogIndex },
    snapshot: null,
    entries: [
      { term: 3 as Term, index: 1 as LogIndex, type: 'normal' as const, data: bytes('1') },
      { term: 5 as Term, index: 2 as LogIndex, type: 'normal' as const, data: bytes('2') },
    ],
  };
  const raft = new Raft(defaultRaftConfig('a' as NodeId), counterRandom(), persisted);
  t.is(Number(raft.term), 5);
  t.is(String(raft.vote), 'b');
  const ready = raft.ready();
  t.deepEqual(ready.committedEntries.map((e) => text(e.data)), ['1', '2']);
  t.is(ready.hardState, null);
  t.deepEqual(ready.entries, []);
});
