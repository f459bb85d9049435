// A broken or hostile peer cannot move the core: messages out of bounds are dropped and counted, change nothing durable, and the node keeps working.
import test from 'ava';
import { INDEX_MAX, TERM_MAX, peerMessageProblem } from './peer-bounds.ts';
import { defaultRaftConfig, validateRaftConfig } from './raft.ts';
import { TestNetwork, bytes } from './testing/network.ts';
import type { Entry, LogIndex, Message, NodeId, Term } from './types.ts';

const limits = { snapshotBytesMax: 1024 };
const id = (value: string): NodeId => value as NodeId;

/** A 3-node cluster with a leader, and a follower to attack. */
function cluster(): { net: TestNetwork; leader: string; victim: string } {
  const net = new TestNetwork(['a', 'b', 'c']);
  net.elect('a');
  net.node('a').propose(bytes('before'));
  net.settle();
  return { net, leader: 'a', victim: 'b' };
}

/** Step one forged message into `node` and report what changed. */
function attack(net: TestNetwork, victim: string, message: Message): { termBefore: number; termAfter: number; dropped: number; hardStateWritten: boolean } {
  const node = net.node(victim);
  const termBefore = node.term;
  const droppedBefore = node.status().droppedPeerMessages;
  node.step(message);
  const ready = node.hasReady() ? node.ready() : null;
  if (ready !== null) node.advance(ready);
  return { termBefore, termAfter: node.term, dropped: node.status().droppedPeerMessages - droppedBefore, hardStateWritten: ready?.hardState !== null && ready !== null };
}

const stillWorks = (t: import('ava').ExecutionContext, net: TestNetwork): void => {
  net.settle();
  t.true(net.node('a').propose(bytes('after')).ok, 'the leader still takes writes');
  net.settle();
  const applied = (net.applied.get(id('b')) ?? []).filter((entry) => entry.type === 'normal').map((entry) => new TextDecoder().decode(entry.data));
  t.deepEqual(applied, ['before', 'after'], 'the attacked follower still applies what the leader commits');
};

test('a forged heartbeat with a term near 2^53 is dropped and counted, not persisted (it would overflow the next campaign)', (t) => {
  const { net, victim } = cluster();
  const result = attack(net, victim, { type: 'heartbeat', from: id('c'), to: id(victim), term: (2 ** 53 - 2) as Term, commit: 0 as LogIndex, readContext: null });
  t.is(result.termAfter, result.termBefore);
  t.is(result.dropped, 1);
  t.false(result.hardStateWritten);
  t.regex(net.node(victim).status().lastDroppedPeerMessage ?? '', /heartbeat from c: term .* is not a whole number in \[0, 2\^48\]/);
  stillWorks(t, net);
});

test('a snapshot chunk past the commit index whose size does not add up is dropped (it used to stop the receiver on an assertion)', (t) => {
  const { net, leader, victim } = cluster();
  const follower = net.node(victim);
  const meta = { index: 100 as LogIndex, term: follower.term, conf: { voters: [id('a'), id('b'), id('c')], learners: [] } };
  const result = attack(net, victim, { type: 'snapshotChunk', from: id(leader), to: id(victim), term: follower.term, meta, offset: 0, totalBytes: 10, chunk: new Uint8Array(3), done: true });
  t.is(result.dropped, 1);
  t.is(Number(follower.log.snapshotMeta.index), 0, 'no snapshot installed');
  stillWorks(t, net);
});

test('an append with entries that are not contiguous, or of a term newer than the leader, is dropped (it used to leave holes in the log)', (t) => {
  const { net, leader, victim } = cluster();
  const follower = net.node(victim);
  const lastBefore = follower.log.lastIndex();
  const entry = (index: number, term: number): Entry => ({ index: index as LogIndex, term: term as Term, type: 'normal', data: bytes('x') });
  const base = { type: 'append' as const, from: id(leader), to: id(victim), term: follower.term, prevLogIndex: lastBefore, prevLogTerm: follower.log.lastTerm(), commit: follower.log.committed };
  t.is(attack(net, victim, { ...base, entries: [entry(lastBefore + 50, follower.term)] }).dropped, 1);
  t.is(attack(net, victim, { ...base, entries: [entry(lastBefore + 1, follower.term + 5)] }).dropped, 1);
  t.is(follower.log.lastIndex(), lastBefore);
  stillWorks(t, net);
});

test('an acknowledgement of an index the leader never sent is dropped (it would count towards a quorum)', (t) => {
  const { net, leader } = cluster();
  const node = net.node(leader);
  const result = attack(net, leader, { type: 'appendResp', from: id('c'), to: id(leader), term: node.term, success: true, index: 1_000_000 as LogIndex, rejectHint: 0 as LogIndex, rejectHintTerm: 0 as Term });
  t.is(result.dropped, 1);
  t.true(node.status().progress.every((progress) => progress.match <= node.log.lastIndex()));
  stillWorks(t, net);
});

test('the bounds: each field out of range is named, honest messages pass', (t) => {
  const base = { from: id('a'), to: id('b'), term: 5 as Term };
  t.is(peerMessageProblem({ ...base, type: 'heartbeat', commit: 3 as LogIndex, readContext: 'a/1' }, limits), null);
  t.regex(peerMessageProblem({ ...base, term: (TERM_MAX + 1) as Term, type: 'heartbeat', commit: 3 as LogIndex, readContext: null }, limits) ?? '', /term/);
  t.regex(peerMessageProblem({ ...base, term: -1 as Term, type: 'timeoutNow' }, limits) ?? '', /term/);
  t.regex(peerMessageProblem({ ...base, term: 1.5 as Term, type: 'timeoutNow' }, limits) ?? '', /term/);
  t.regex(peerMessageProblem({ ...base, type: 'vote', lastLogIndex: 3 as LogIndex, lastLogTerm: 6 as Term, transfer: false }, limits) ?? '', /lastLogTerm/);
  t.regex(peerMessageProblem({ ...base, type: 'heartbeat', commit: (INDEX_MAX + 1) as LogIndex, readContext: null }, limits) ?? '', /commit/);
  t.regex(peerMessageProblem({ ...base, type: 'readIndex', requestId: 'x'.repeat(300) }, limits) ?? '', /read id/);
  const meta = { index: 10 as LogIndex, term: 5 as Term, conf: { voters: [id('a')], learners: [] } };
  const chunk = { ...base, type: 'snapshotChunk' as const, meta, offset: 0, chunk: new Uint8Array(4) };
  t.is(peerMessageProblem({ ...chunk, totalBytes: 4, done: true }, limits), null);
  t.regex(peerMessageProblem({ ...chunk, totalBytes: 4096, done: false }, limits) ?? '', /exceeds the limit of 1024/);
  t.regex(peerMessageProblem({ ...chunk, offset: 2, totalBytes: 4, done: true }, limits) ?? '', /does not fit/);
  t.regex(peerMessageProblem({ ...chunk, totalBytes: 8, done: true }, limits) ?? '', /done=true/);
  t.regex(peerMessageProblem({ ...chunk, meta: { ...meta, conf: { voters: [], learners: [] } }, totalBytes: 4, done: true }, limits) ?? '', /no voters/);
  t.regex(peerMessageProblem({ ...chunk, meta: { ...meta, term: 6 as Term }, totalBytes: 4, done: true }, limits) ?? '', /snapshot index/);
});

test('snapshotBytesMax is validated with the other limits', (t) => {
  t.throws(() => validateRaftConfig({ ...defaultRaftConfig(id('x')), snapshotBytesMax: 2 ** 33 }), { message: /snapshotBytesMax must be at most/ });
  t.throws(() => validateRaftConfig({ ...defaultRaftConfig(id('x')), snapshotBytesMax: 0 }), { message: /snapshotBytesMax must be a positive integer/ });
});
