// The actor layer on a simulated cluster without faults: forwarding to the owner, quota races across nodes, failover and rejoin without a double run.
import test from 'ava';
import { isActiveState } from '../actors/components.ts';
import { projectActorKey, tenantActorKey, type ActorRequest, type ActorResponse } from '../actors/messages.ts';
import type { NodeId } from '../consensus/types.ts';
import { SimActorCluster } from './actor-cluster.ts';
import { ActorInvariants } from './actor-invariants.ts';
import { SIM_SPEC } from './actor-workload.ts';
import { changeMembership } from './scenario-harness.ts';

function cluster(seed: number, nodes = 3): SimActorCluster {
  const actors = new SimActorCluster({ seed, nodes, faults: new Set() });
  const ready = actors.cluster.runUntil(() => actors.cluster.leader() !== null && [...actors.hosts.values()].every((host) => host.leaseState() === 'valid'), 10_000);
  if (!ready) throw new Error('no leader and leases within 10 s of virtual time');
  return actors;
}

let calls = 0;

/** Call through node `id` and run the cluster until the answer comes. */
function call(actors: SimActorCluster, id: NodeId, key: ReturnType<typeof projectActorKey>, request: ActorRequest): ActorResponse {
  let answer: ActorResponse | null = null;
  calls += 1;
  actors.clientCall(id, key, request, 5000, `test-${calls}`, (outcome) => {
    answer = outcome.delivered ? outcome.response : { type: 'error', name: 'UnavailableError', message: outcome.reason };
  });
  actors.cluster.runUntil(() => answer !== null, 10_000);
  if (answer === null) throw new Error(`no answer for ${key} via ${id}`);
  return answer;
}

const runningOn = (actors: SimActorCluster, key: string): NodeId[] =>
  [...actors.runtimes].filter(([, runtime]) => runtime.activeKeys().includes(key)).map(([id]) => id);

test('a call to any node reaches the owner: it runs there, and only the owner serves it locally', (t) => {
  const actors = cluster(1);
  const key = projectActorKey('acme', 'web');
  const owner = actors.hosts.get('n1' as NodeId)?.placement().owner(key) as NodeId;
  const other = (['n1', 'n2', 'n3'] as NodeId[]).find((id) => id !== owner) as NodeId;
  const started = call(actors, other, key, { type: 'start', spec: SIM_SPEC, waitMs: 0 });
  t.is(started.type, 'project', JSON.stringify(started));
  t.is(actors.hosts.get(other)?.stats.forwardedCalls, 1);
  t.is(actors.hosts.get(owner)?.stats.servedForwarded, 1);
  actors.cluster.runFor(200);
  t.deepEqual(runningOn(actors, key), [owner]);
  const status = call(actors, owner, key, { type: 'status' });
  t.is(status.type === 'project' ? status.project.status?.node : null, owner);
  t.is(status.type === 'project' ? status.project.status?.state : null, 'running');
  // The owner answered its own caller without forwarding.
  t.is(actors.hosts.get(owner)?.stats.forwardedCalls, 0);
});

test('50 concurrent starts over all nodes against a quota of 10: exactly 10 start, 40 get a quota error', (t) => {
  const actors = cluster(2);
  const quota = call(actors, 'n1' as NodeId, tenantActorKey('acme') as ReturnType<typeof projectActorKey>, { type: 'quotaSet', quota: { projects: 10, ports: 100, memoryBytes: 1024 ** 4, storedBytes: 1024 ** 3 } });
  t.is(quota.type, 'usage', JSON.stringify(quota));
  const answers: ActorResponse[] = [];
  for (let i = 0; i < 50; i += 1) {
    const id = `n${(i % 3) + 1}` as NodeId;
    actors.clientCall(id, projectActorKey('acme', `p${i}`), { type: 'start', spec: SIM_SPEC, waitMs: 0 }, 30_000, `race-${i}`, (outcome) => {
      answers.push(outcome.delivered ? outcome.response : { type: 'error', name: 'UnavailableError', message: outcome.reason });
    });
  }
  t.true(actors.cluster.runUntil(() => answers.length === 50, 60_000));
  const started = answers.filter((answer) => answer.type === 'project').length;
  const quotaErrors = answers.filter((answer) => answer.type === 'error' && answer.name === 'QuotaExceededError');
  t.is(started, 10, JSON.stringify(answers.filter((answer) => answer.type === 'error' && answer.name !== 'QuotaExceededError').slice(0, 3)));
  t.is(quotaErrors.length, 40);
  t.regex(quotaErrors[0]?.type === 'error' ? quotaErrors[0].message : '', /tenant acme is at its quota \(projects: 11 would exceed the quota of 10\); stop or remove a project/);
  actors.cluster.runFor(500);
  const running = [...actors.runtimes.values()].flatMap((runtime) => runtime.activeKeys());
  t.is(running.length, 10);
  const usage = call(actors, 'n2' as NodeId, tenantActorKey('acme') as ReturnType<typeof projectActorKey>, { type: 'usage' });
  t.is(usage.type === 'usage' ? usage.usage.projects : -1, 10);
});

test('killing an owner moves its projects to the others; restarted, it rejoins without any project running twice', (t) => {
  const actors = cluster(3);
  const keys = Array.from({ length: 12 }, (_, i) => projectActorKey('acme', `p${i}`));
  for (const [i, key] of keys.entries()) t.is(call(actors, `n${(i % 3) + 1}` as NodeId, key, { type: 'start', spec: SIM_SPEC, waitMs: 0 }).type, 'project');
  actors.cluster.runFor(300);
  const victim = actors.hosts.get('n1' as NodeId)?.placement().owner(keys[0] as string) as NodeId;
  const victimKeys = keys.filter((key) => actors.hosts.get(victim)?.placement().owner(key) === victim);
  t.true(victimKeys.length > 0);
  actors.cluster.crash(victim);
  const exactlyOnceElsewhere = (): boolean =>
    keys.every((key) => {
      const nodes = runningOn(actors, key).filter((id) => id !== victim);
      return nodes.length === 1;
    });
  const crashedAt = actors.cluster.scheduler.nowMs();
  t.true(actors.cluster.runUntil(exactlyOnceElsewhere, 15_000), 'the victim\'s projects did not start elsewhere');
  const failoverMs = actors.cluster.scheduler.nowMs() - crashedAt;
  t.log(`${victimKeys.length} projects of ${victim} ran again elsewhere ${failoverMs.toFixed(0)} virtual ms after the crash (suspectMs 3000)`);
  // Its workloads outlived it (as containers do); once back, it stops those it no longer owns.
  actors.cluster.restart(victim);
  const leader = (): NonNullable<ReturnType<SimActorCluster['cluster']['leader']>> => actors.cluster.leader() as NonNullable<ReturnType<SimActorCluster['cluster']['leader']>>;
  const settled = (): boolean => actors.cluster.leader() !== null && ActorInvariants.exactlyOnceProblem(actors, leader().machine.kv, keys) === null && (actors.hosts.get(leader().id)?.placement().live.length ?? 0) === 3;
  t.true(actors.cluster.runUntil(settled, 20_000), ActorInvariants.exactlyOnceProblem(actors, leader().machine.kv, keys) ?? 'ring not whole');
  actors.cluster.runFor(1000);
  t.is(ActorInvariants.exactlyOnceProblem(actors, leader().machine.kv, keys), null);
  t.true(actors.runtimes.get(victim)?.list().some((status) => isActiveState(status.state)), 'the rejoined node owns and runs some projects again');
});

test('a drained node hands every project off before it reports drained', (t) => {
  const actors = cluster(4);
  const keys = Array.from({ length: 9 }, (_, i) => projectActorKey('acme', `p${i}`));
  for (const key of keys) t.is(call(actors, 'n2' as NodeId, key, { type: 'start', spec: SIM_SPEC, waitMs: 0 }).type, 'project');
  actors.cluster.runFor(300);
  const host = actors.hosts.get('n3' as NodeId);
  let drained = false;
  host?.drain(() => {
    drained = true;
  });
  t.true(actors.cluster.runUntil(() => drained, 10_000));
  t.deepEqual(actors.runtimes.get('n3' as NodeId)?.activeKeys(), []);
  t.true(actors.cluster.runUntil(() => keys.every((key) => runningOn(actors, key).length === 1), 5000));
  // While it drains, calls through it still succeed: they go to the new owners.
  t.is(call(actors, 'n3' as NodeId, keys[0] as ReturnType<typeof projectActorKey>, { type: 'status' }).type, 'project');
});

test('a rolling restart of all three nodes under a steady load of calls ends with zero failed calls', (t) => {
  const actors = cluster(5);
  const sim = actors.cluster;
  const keys = Array.from({ length: 12 }, (_, i) => projectActorKey('acme', `p${i}`));
  for (const key of keys) t.is(call(actors, 'n1' as NodeId, key, { type: 'start', spec: SIM_SPEC, waitMs: 0 }).type, 'project');
  const ids = ['n1', 'n2', 'n3'] as NodeId[];
  // Clients call steadily through any node that accepts connections (a refused connection goes to another node).
  const failures: string[] = [];
  let answered = 0;
  let loading = true;
  let sequence = 0;
  const client = (): void => {
    if (!loading) return;
    sequence += 1;
    const key = keys[sequence % keys.length] as ReturnType<typeof projectActorKey>;
    const request: ActorRequest = sequence % 3 === 0 ? { type: 'start', spec: SIM_SPEC, waitMs: 0 } : { type: 'status' };
    const attempt = (tries: number): void => {
      const target = ids[(sequence + tries) % ids.length] as NodeId;
      actors.clientCall(target, key, request, 10_000, `load-${sequence}`, (outcome) => {
        if (!outcome.delivered && outcome.reason === 'refused' && tries < 3) return attempt(tries + 1);
        answered += 1;
        if (!outcome.delivered) failures.push(`${key} via ${target}: ${outcome.reason}`);
        else if (outcome.response.type === 'error') failures.push(`${key} via ${target}: ${outcome.response.name}: ${outcome.response.message}`);
        sim.scheduler.schedule(5, client, 'load');
      });
    };
    attempt(0);
  };
  for (let i = 0; i < 4; i += 1) client();
  sim.runFor(1000);
  const whole = (): boolean =>
    ids.every((id) => actors.hosts.get(id)?.leaseState() === 'valid') && actors.hosts.get('n1' as NodeId)?.placement().live.length === 3 && keys.every((key) => runningOn(actors, key).length === 1);
  for (const id of ids) {
    const raftNode = sim.node(id);
    // Leadership first, as the node's shutdown does: no election stalls the others.
    if (raftNode?.raft.role === 'leader') raftNode.transferLeadership(ids.find((other) => other !== id) as NodeId);
    let drained = false;
    actors.hosts.get(id)?.drain(() => {
      drained = true;
    });
    t.true(sim.runUntil(() => drained, 10_000), `${id} did not drain`);
    sim.restartGracefully(id);
    t.true(sim.runUntil(whole, 15_000), `the cluster did not become whole after restarting ${id}`);
    sim.runFor(1000);
  }
  loading = false;
  sim.runFor(2000);
  t.true(answered > 1000, `only ${answered} calls answered`);
  t.deepEqual(failures, []);
  t.log(`${answered} calls during the rolling restart, ${failures.length} failed`);
});

test('a fourth node joining takes over about a quarter of the projects; only those move', (t) => {
  const actors = new SimActorCluster({ seed: 6, nodes: 3, spareNodes: 1, faults: new Set() });
  const sim = actors.cluster;
  t.true(sim.runUntil(() => sim.leader() !== null && ['n1', 'n2', 'n3'].every((id) => actors.hosts.get(id as NodeId)?.leaseState() === 'valid'), 10_000));
  const keys = Array.from({ length: 60 }, (_, i) => projectActorKey(`t${i % 5}`, `p${i}`));
  for (const key of keys) t.is(call(actors, 'n1' as NodeId, key, { type: 'start', spec: SIM_SPEC, waitMs: 0 }).type, 'project');
  sim.runFor(500);
  const before = new Map(keys.map((key) => [key, runningOn(actors, key)[0]]));
  const stopsBefore = (['n1', 'n2', 'n3'] as NodeId[]).reduce((sum, id) => sum + (actors.runtimes.get(id)?.stats.stops ?? 0), 0);
  const n4 = 'n4' as NodeId;
  t.true(changeMembership(sim, { type: 'addLearner', node: n4, address: 'n4:7000' }, 5000));
  t.true(changeMembership(sim, { type: 'promote', node: n4 }, 5000));
  const settled = (): boolean =>
    actors.hosts.get('n1' as NodeId)?.placement().live.length === 4 && keys.every((key) => runningOn(actors, key).length === 1 && runningOn(actors, key)[0] === actors.hosts.get('n1' as NodeId)?.placement().owner(key));
  t.true(sim.runUntil(settled, 10_000));
  const moved = keys.filter((key) => runningOn(actors, key)[0] !== before.get(key));
  t.true(moved.every((key) => runningOn(actors, key)[0] === n4), 'every project that moved went to the new node');
  const share = moved.length / keys.length;
  t.true(share > 0.1 && share < 0.4, `${moved.length} of ${keys.length} moved`);
  const stops = (['n1', 'n2', 'n3'] as NodeId[]).reduce((sum, id) => sum + (actors.runtimes.get(id)?.stats.stops ?? 0), 0) - stopsBefore;
  t.is(stops, moved.length, 'the old owners stopped exactly the projects that moved');
  t.log(`${moved.length} of ${keys.length} projects moved to ${n4}`);
});

test('issue 11 attack: stopped projects keep their specs stored and count against the stored-bytes quota, so big specs cannot pile up while stopped', (t) => {
  const actors = cluster(5);
  const tenant = tenantActorKey('acme') as ReturnType<typeof projectActorKey>;
  t.is(call(actors, 'n1' as NodeId, tenant, { type: 'quotaSet', quota: { projects: 10, ports: 100, memoryBytes: 1024 ** 4, storedBytes: 300_000 } }).type, 'usage');
  // Each spec carries ~100 KB of env: two stopped ones and a third start pass 300 KB.
  const spec = { ...SIM_SPEC, env: { BIG1: 'x'.repeat(50_000), BIG2: 'y'.repeat(50_000) } };
  for (const name of ['p0', 'p1']) {
    const key = projectActorKey('acme', name);
    const started = call(actors, 'n2' as NodeId, key, { type: 'start', spec, waitMs: 0 });
    t.is(started.type, 'project', JSON.stringify(started).slice(0, 300));
    t.is(call(actors, 'n3' as NodeId, key, { type: 'stop' }).type, 'project');
  }
  const usage = call(actors, 'n1' as NodeId, tenant, { type: 'usage' });
  t.is(usage.type === 'usage' ? usage.usage.projects : -1, 0, 'nothing runs');
  t.true(usage.type === 'usage' && usage.usage.storedBytes > 200_000, JSON.stringify(usage));
  const third = call(actors, 'n2' as NodeId, projectActorKey('acme', 'p2'), { type: 'start', spec, waitMs: 0 });
  t.is(third.type === 'error' ? third.name : third.type, 'QuotaExceededError');
  t.regex(third.type === 'error' ? third.message : '', /storedBytes: \d+ would exceed the quota of 300000/);
  // Removing a stopped project frees its stored bytes.
  t.is(call(actors, 'n1' as NodeId, projectActorKey('acme', 'p0'), { type: 'remove' }).type, 'removed');
  t.is(call(actors, 'n2' as NodeId, projectActorKey('acme', 'p2'), { type: 'start', spec, waitMs: 0 }).type, 'project');
});

test('a start whose record the state machine refuses (a spec past its bounds that skipped the MCP check) is a definite InvalidRequestError, not "retry"', (t) => {
  const actors = cluster(6);
  const key = projectActorKey('acme', 'big');
  const owner = actors.hosts.get('n1' as NodeId)?.placement().owner(key) as NodeId;
  const other = (['n1', 'n2', 'n3'] as NodeId[]).find((id) => id !== owner) as NodeId;
  const spec = { ...SIM_SPEC, env: { BIG: 'x'.repeat(100_000) } };
  // On the owner the record reaches the state machine, which refuses it.
  const refused = call(actors, owner, key, { type: 'start', spec, waitMs: 0 });
  t.is(refused.type === 'error' ? refused.name : refused.type, 'InvalidRequestError');
  t.regex(refused.type === 'error' ? refused.message : '', /^the cluster refused the record: value of projects\/acme\/big does not fit its schema: spec\.env\.BIG: .*; change the request$/);
  // Forwarded, the owner's wire decoder refuses it first, with the same kind of error.
  const forwarded = call(actors, other, key, { type: 'start', spec, waitMs: 0 });
  t.is(forwarded.type === 'error' ? forwarded.name : forwarded.type, 'InvalidRequestError');
  t.regex(forwarded.type === 'error' ? forwarded.message : '', /out of bounds: spec\.env\.BIG/);
  const status = call(actors, 'n2' as NodeId, projectActorKey('acme', 'big'), { type: 'status' });
  t.is(status.type === 'error' ? status.name : status.type, 'NotFoundError', 'nothing was recorded');
});
