// Goal: the dashboard feed pushes every project and cluster change from the node's own apply path (no polling), each
// viewer sees only its tenant's projects, changes of one turn travel together, and a lost watch history resends all.
import test from 'ava';
import { encodeCommand, type KvCommand } from '../../consensus/kv-state-machine.ts';
import type { LogIndex, Term } from '../../consensus/types.ts';
import { WatchHub, watchedKvMachineFactory } from '../watch-hub.ts';
import { DashboardFeed, FeedLimitError, type DashboardMessage, type FeedSource } from './dashboard-feed.ts';
import { projectIdOf, projectView } from './dashboard-model.ts';

function fixture(viewersMax = 10) {
  const hub = new WatchHub();
  let machine = watchedKvMachineFactory(hub).empty();
  const raft = { role: 'follower', term: 3, leader: 'n1' as string | null, members: [{ id: 'n1', address: 'a:1', learner: false }, { id: 'n2', address: 'a:2', learner: false }] };
  const raftListeners = new Set<() => void>();
  const deferred: (() => void)[] = [];
  const source: FeedSource = {
    hub,
    raftListeners,
    cluster: () => ({ node: 'n2', clusterId: 'c1', ...raft, get: (key) => machine.kv.get(key) }),
    store: () => ({ get: (key) => machine.kv.get(key), range: (start, end) => machine.kv.range(start, end) }),
  };
  let now = 1000;
  const feed = new DashboardFeed(source, { viewersMax, nowMs: () => now, defer: (callback) => deferred.push(callback) });
  let index = 0;
  const apply = (command: KvCommand): void => {
    index += 1;
    machine.applyEntry({ index: index as LogIndex, term: 1 as Term, type: 'normal', data: encodeCommand(command) });
  };
  const turn = (): void => {
    for (const callback of deferred.splice(0)) callback();
  };
  const persisted = (): void => {
    for (const listener of raftListeners) listener();
  };
  return {
    feed,
    raft,
    apply,
    turn,
    persisted,
    raftListeners,
    hub,
    tick: (ms: number) => (now += ms),
    /** A snapshot from the leader replaces the state machine (the hub resets to its revision). */
    install: (commands: KvCommand[]) => {
      const other = watchedKvMachineFactory(new WatchHub()).empty();
      commands.forEach((command, i) => other.applyEntry({ index: (i + 1) as LogIndex, term: 1 as Term, type: 'normal', data: encodeCommand(command) }));
      machine = watchedKvMachineFactory(hub).restore({ meta: { index: other.appliedIndex, term: 1 as Term, conf: { voters: [], learners: [] } }, data: other.snapshot() });
      index = other.appliedIndex;
    },
  };
}

const put = (key: string, value: unknown): { type: 'put'; key: string; value: string } => ({ type: 'put', key, value: typeof value === 'string' ? value : JSON.stringify(value) });
const project = (tenant: string, name: string, desired = 'running') => put(`projects/${tenant}/${name}`, { spec: { command: 'sleep 1', image: null }, desired, generation: 1 });
const status = (tenant: string, name: string, state: string, node = 'n1') => put(`status/${tenant}/${name}`, { state, node, epoch: 1, ports: { default: 20001 }, generation: 1, restarts: 0, exitCode: null, error: null });

test('a viewer gets the whole state at once, then only changes, one message per turn', (t) => {
  const f = fixture();
  f.apply(project('acme', 'web'));
  f.apply(status('acme', 'web', 'starting'));
  const got: DashboardMessage[] = [];
  f.feed.subscribe({ name: 'admin', role: 'admin', tenant: null }, (message) => got.push(message));
  t.deepEqual(got.map((m) => m.type), ['hello', 'cluster', 'projects']);
  const first = got[2];
  t.true(first?.type === 'projects' && first.full && first.upsert.length === 1 && first.upsert[0]?.state === 'starting');
  got.length = 0;
  f.tick(5);
  f.apply(status('acme', 'web', 'running'));
  f.apply(project('acme', 'api'));
  t.is(got.length, 0, 'nothing is sent before the turn ends');
  f.turn();
  t.is(got.length, 1);
  const change = got[0];
  if (change?.type !== 'projects') return t.fail('a projects message');
  t.false(change.full);
  t.is(change.at, 1005);
  t.deepEqual(change.upsert.map((p) => [p.name, p.state]).sort(), [['api', 'unknown'], ['web', 'running']]);
  // A write that changes nothing shown sends nothing; a removal is named.
  got.length = 0;
  f.apply(put('tenants/acme/usage', '{}'));
  f.turn();
  t.is(got.length, 0);
  f.apply({ type: 'txn', compare: [], success: [{ type: 'delete', key: 'projects/acme/api' }], failure: [] });
  f.turn();
  t.deepEqual(got.map((m) => (m.type === 'projects' ? m.remove : [])), [['acme/api']]);
});

test('a tenant viewer never receives another tenant\'s projects', (t) => {
  const f = fixture();
  f.apply(project('alpha', 'a1'));
  f.apply(project('beta', 'b1'));
  const alpha: DashboardMessage[] = [];
  const admin: DashboardMessage[] = [];
  f.feed.subscribe({ name: 'alpha dev', role: 'developer', tenant: 'alpha' }, (m) => alpha.push(m));
  f.feed.subscribe({ name: 'admin', role: 'admin', tenant: null }, (m) => admin.push(m));
  f.apply(status('beta', 'b1', 'running'));
  f.apply({ type: 'txn', compare: [], success: [{ type: 'delete', key: 'projects/beta/b1' }, { type: 'delete', key: 'status/beta/b1' }], failure: [] });
  f.apply(status('alpha', 'a1', 'running'));
  f.turn();
  const names = (messages: DashboardMessage[]) => messages.flatMap((m) => (m.type === 'projects' ? [...m.upsert.map((p) => `${p.tenant}/${p.name}`), ...m.remove] : []));
  t.deepEqual([...new Set(names(alpha))], ['alpha/a1']);
  t.deepEqual([...new Set(names(admin))].sort(), ['alpha/a1', 'beta/b1']);
});

test('leader, term and ring epoch changes are pushed; an unchanged cluster sends nothing', (t) => {
  const f = fixture();
  const got: DashboardMessage[] = [];
  f.feed.subscribe({ name: 'admin', role: 'admin', tenant: null }, (m) => got.push(m));
  got.length = 0;
  f.persisted();
  f.turn();
  t.is(got.length, 0);
  f.raft.leader = 'n2';
  f.raft.term = 4;
  f.persisted();
  f.turn();
  const cluster = got[0];
  t.true(cluster?.type === 'cluster' && cluster.cluster.leader === 'n2' && cluster.cluster.term === 4 && cluster.cluster.members.find((m) => m.id === 'n2')?.leader === true);
  got.length = 0;
  f.apply({ type: 'txn', compare: [], success: [put('liveness/n1', 'down'), put('ring/epoch', 'n1 down')], failure: [] });
  f.turn();
  const marked = got[0];
  t.true(marked?.type === 'cluster' && marked.cluster.members.find((m) => m.id === 'n1')?.liveness === 'down' && marked.cluster.ringEpoch > 0);
});

test('a snapshot install that loses the watch history sends the whole state again', (t) => {
  const f = fixture();
  f.apply(project('acme', 'old'));
  const got: DashboardMessage[] = [];
  f.feed.subscribe({ name: 'admin', role: 'admin', tenant: null }, (m) => got.push(m));
  got.length = 0;
  f.install([project('acme', 'new'), project('acme', 'other'), status('acme', 'new', 'running')]);
  f.turn();
  const full = got.find((m) => m.type === 'projects' && m.full);
  t.deepEqual(full?.type === 'projects' ? full.upsert.map((p) => p.name).sort() : null, ['new', 'other']);
  // And it goes on from there.
  got.length = 0;
  f.apply(status('acme', 'other', 'running'));
  f.turn();
  t.is(got.length, 1);
});

test('the last viewer leaving closes the watch and the Raft listener; viewers are bounded', (t) => {
  const f = fixture(2);
  const before = f.hub.watcherCount;
  const leave = f.feed.subscribe({ name: 'a', role: 'admin', tenant: null }, () => undefined);
  const leaveToo = f.feed.subscribe({ name: 'b', role: 'admin', tenant: null }, () => undefined);
  t.is(f.hub.watcherCount, before + 1, 'one watch however many viewers');
  t.throws(() => f.feed.subscribe({ name: 'c', role: 'admin', tenant: null }, () => undefined), { instanceOf: FeedLimitError });
  leave();
  leaveToo();
  t.is(f.hub.watcherCount, before);
  t.is(f.raftListeners.size, 0);
});

test('project rows come from the desired and observed records; other keys are not projects', (t) => {
  t.is(projectIdOf('projects/acme/web'), 'acme/web');
  t.is(projectIdOf('status/acme/web'), 'acme/web');
  for (const key of ['projects/acme', 'projects/acme/web/x', 'tenants/acme/usage', 'ports/n1/20001', 'status//web']) t.is(projectIdOf(key), null, key);
  t.is(projectView('acme/web', null, null), null);
  const kv = (key: string, value: string) => ({ key, value, version: 2, createRevision: 1, modRevision: 3 });
  const row = projectView('acme/web', kv('projects/acme/web', '{"spec":{"command":"npm run dev","image":null},"desired":"stopped"}'), kv('status/acme/web', 'not json'));
  t.like(row, { tenant: 'acme', name: 'web', desired: 'stopped', version: 2, command: 'npm run dev', state: 'unknown', node: null });
});
