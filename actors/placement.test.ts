// Placement from the committed log: the same owner on every replica at one epoch, about 1/N keys move on a join, down and draining members own nothing.
import test from 'ava';
import { KvMachine, RING_EPOCH_KEY, kvMachineFactory } from '../consensus/kv-machine.ts';
import { encodeCommand, type KvCommand } from '../consensus/kv-state-machine.ts';
import { encodeConfChange } from '../consensus/raft.ts';
import { logIndex, nodeId, term, type ConfChange, type Entry } from '../consensus/types.ts';
import { livenessKey } from './messages.ts';
import { Placement, PlacementCache, readRingInputs } from './placement.ts';

/** Entries as the log would commit them: membership changes and KV commands. */
type Step = { readonly conf: ConfChange } | { readonly command: KvCommand };

function entries(steps: readonly Step[]): Entry[] {
  return steps.map((step, i): Entry => {
    const index = logIndex(i + 1);
    if ('conf' in step) return { term: term(1), index, type: 'confChange', data: encodeConfChange(step.conf) };
    return { term: term(1), index, type: 'normal', data: encodeCommand(step.command) };
  });
}

function replay(log: readonly Entry[]): KvMachine {
  const machine = kvMachineFactory.empty();
  for (const entry of log) machine.applyEntry(entry);
  return machine;
}

const join = (id: string): Step => ({ conf: { type: 'addVoter', node: nodeId(id), address: `${id}:7000` } });
const keys = Array.from({ length: 4000 }, (_, i) => `projects/t${i % 97}/p${i}`);

test('every replica that applied the same entries computes the same epoch and owners', (t) => {
  const log = entries([join('n1'), join('n2'), join('n3'), { command: { type: 'put', key: 'projects/t/p', value: '{}' } }, join('n4')]);
  const a = replay(log);
  // The second replica restores from a snapshot taken midway, then applies the rest.
  const midway = replay(log.slice(0, 3));
  const b = kvMachineFactory.restore({ meta: { index: logIndex(3), term: term(1), conf: { voters: [], learners: [] } }, data: midway.snapshot() });
  for (const entry of log.slice(3)) b.applyEntry(entry);
  const pa = new Placement(readRingInputs(a.kv));
  const pb = new Placement(readRingInputs(b.kv));
  t.is(pa.epoch, pb.epoch);
  t.true(pa.epoch > 0);
  t.deepEqual(pa.live, ['n1', 'n2', 'n3', 'n4']);
  for (const key of keys) t.is(pa.owner(key), pb.owner(key));
});

test('a membership change moves the epoch; a promotion does not', (t) => {
  const before = replay(entries([join('n1'), join('n2')]));
  const epoch = before.kv.get(RING_EPOCH_KEY)?.modRevision ?? 0;
  const promoted = replay(entries([join('n1'), join('n2'), { conf: { type: 'promote', node: nodeId('n2') } }]));
  t.is(promoted.kv.get(RING_EPOCH_KEY)?.modRevision, epoch);
  const removed = replay(entries([join('n1'), join('n2'), { conf: { type: 'remove', node: nodeId('n2') } }]));
  t.true((removed.kv.get(RING_EPOCH_KEY)?.modRevision ?? 0) > epoch);
  t.deepEqual(new Placement(readRingInputs(removed.kv)).live, ['n1']);
});

test('a fourth member takes about a quarter of the keys; no key moves between the other three', (t) => {
  const three = new Placement({ epoch: 1, members: ['n1', 'n2', 'n3'], down: [], draining: [] });
  const four = new Placement({ epoch: 2, members: ['n1', 'n2', 'n3', 'n4'], down: [], draining: [] });
  let moved = 0;
  for (const key of keys) {
    const before = three.owner(key);
    const after = four.owner(key);
    if (before === after) continue;
    moved += 1;
    t.is(after, 'n4', `${key} moved from ${String(before)} to ${String(after)}, not to the new member`);
  }
  const share = moved / keys.length;
  t.log(`${(share * 100).toFixed(1)}% of ${keys.length} keys moved to the new member`);
  t.true(share > 0.15 && share < 0.35, `${share} of the keys moved; expected about 1/4`);
});

test('keys spread over the members within a reasonable balance', (t) => {
  const placement = new Placement({ epoch: 1, members: ['n1', 'n2', 'n3'], down: [], draining: [] });
  const counts = new Map<string, number>();
  for (const key of keys) counts.set(placement.owner(key) as string, (counts.get(placement.owner(key) as string) ?? 0) + 1);
  for (const [member, count] of counts) t.true(count > keys.length / 3 / 1.6 && count < (keys.length / 3) * 1.6, `${member} owns ${count}`);
});

test('members marked down or draining own nothing; the others keep their keys', (t) => {
  const log = entries([
    join('n1'),
    join('n2'),
    join('n3'),
    { command: { type: 'txn', compare: [], success: [{ type: 'put', key: livenessKey('n2'), value: 'down' }, { type: 'put', key: RING_EPOCH_KEY, value: 'liveness' }], failure: [] } },
  ]);
  const all = new Placement({ epoch: 1, members: ['n1', 'n2', 'n3'], down: [], draining: [] });
  const placement = new Placement(readRingInputs(replay(log).kv));
  t.deepEqual(placement.live, ['n1', 'n3']);
  for (const key of keys) {
    t.not(placement.owner(key), 'n2');
    if (all.owner(key) !== 'n2') t.is(placement.owner(key), all.owner(key));
  }
  const draining = new Placement({ epoch: 1, members: ['n1', 'n2'], down: [], draining: ['n1'] });
  t.deepEqual(draining.live, ['n2']);
  t.is(new Placement({ epoch: 1, members: ['n1'], down: ['n1'], draining: [] }).owner('projects/a/b'), null);
});

test('the cache rebuilds the ring only when the epoch changes', (t) => {
  const machine = replay(entries([join('n1'), join('n2')]));
  const cache = new PlacementCache();
  const first = cache.at(machine.kv);
  t.is(cache.at(machine.kv), first);
  machine.applyEntry(entries([join('n1'), join('n2'), { command: { type: 'put', key: 'projects/t/p', value: '{}' } }])[2] as Entry);
  t.is(cache.at(machine.kv), first, 'a write that is not a ring input keeps the ring');
  machine.applyEntry({ term: term(1), index: logIndex(4), type: 'confChange', data: encodeConfChange({ type: 'addVoter', node: nodeId('n3'), address: '' }) });
  t.not(cache.at(machine.kv), first);
});
