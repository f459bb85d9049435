// A change whose answer is lost after the owner made it is done once when retried with the same requestId,
// on real node processes: through another entry node, after the entry node died, and after the owner died
// (the new owner finds the id in the project record). A fresh id does it again: the check can fail.
import test from 'ava';
import { countMarked } from '../chaos/workload-mcp.ts';
import { Placement } from '../actors/placement.ts';
import { projectActorKey } from '../actors/messages.ts';
import { LocalCluster, until, sleep, type Member } from './local-cluster.ts';
import { AnswerDropper } from './testing/answer-dropper.ts';
import { McpClients, resultText, type ToolResult } from './testing/mcp-clients.ts';

const MARK = `DH_IDEMPOTENCY_TEST_${process.pid}`;
const TENANT = 'idem';
/** Long enough for a loaded machine; the dropped call ends well before it. */
const DROPPED_CALL_TIMEOUT_MS = 15_000;

let cluster: LocalCluster;
const clients = new McpClients('idempotency-test');
const droppers: AnswerDropper[] = [];

test.before(async () => {
  cluster = await LocalCluster.create(3, { extraArgs: ['--docker', 'off'] });
  for (const member of cluster.members) cluster.start(member);
  await cluster.waitForLeader(30_000);
});

test.after.always(async () => {
  await clients.closeAll();
  for (const dropper of droppers) await dropper.close();
  await cluster?.stop();
  await until('no workload left', 10_000, () => (countMarked(MARK).size === 0 ? true : null)).catch(() => {});
});

const ids = (): Member[] => cluster.members;

/** Start any member a test before left dead, and wait until the ring has all of them live again. */
async function allMembersLive(): Promise<void> {
  const dead = ids().filter((m) => !cluster.running(m));
  if (dead.length === 0) return;
  await clients.closeAll();
  for (const member of dead) cluster.start(member);
  const via = ids().find((m) => !dead.includes(m)) as Member;
  await until('every member back in the ring', 60_000, async () => {
    const status = await clients.call(via, 'cluster_status', {}).catch(() => null);
    const ring = status?.structuredContent?.ring as { live: string[] } | null | undefined;
    return ids().every((m) => ring?.live.includes(m.id) === true) ? true : null;
  }, 200);
}

/** A project name that the ring of n1, n2, n3 (all live) gives to `owner`. */
function nameOwnedBy(owner: string, prefix: string): string {
  const placement = new Placement({ epoch: 0, members: ids().map((m) => m.id), down: [], draining: [] });
  for (let i = 0; i < 10_000; i += 1) if (placement.owner(projectActorKey(TENANT, `${prefix}${i}`)) === owner) return `${prefix}${i}`;
  throw new Error(`no name for ${owner}`);
}

async function ok(member: Member, tool: string, args: Record<string, unknown>): Promise<Record<string, unknown>> {
  const result = await clients.call(member, tool, { tenant: TENANT, ...args });
  if (result.isError === true) throw new Error(`${tool} via ${member.id}: ${resultText(result)}`);
  return result.structuredContent ?? {};
}

const startArgs = (name: string, command = 'exec sleep 600', extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  name, command, env: { [MARK]: name }, ports: [], restart: 'never', ...extra,
});

/** The project's version and pid once it runs with a version of at least `versionMin`, read through `via`. */
async function runningAt(via: Member, name: string, versionMin: number): Promise<{ version: number; pid: number; owner: string }> {
  return until(`${name} running at version >= ${versionMin}`, 60_000, async () => {
    const status = await clients.call(via, 'project_status', { tenant: TENANT, name }).catch(() => null);
    const out = status?.structuredContent;
    if (out === undefined || out.state !== 'running' || typeof out.pid !== 'number' || (out.version as number) < versionMin) return null;
    return { version: out.version as number, pid: out.pid, owner: String(out.owner) };
  }, 100);
}

/** A client of `target` whose answers the returned dropper can cut. */
async function droppingMember(target: Member): Promise<{ member: Member; dropper: AnswerDropper }> {
  const dropper = await AnswerDropper.start(target.mcp);
  droppers.push(dropper);
  return { member: { ...target, id: `${target.id}-via-dropper`, mcp: dropper.address }, dropper };
}

/** 'answered: …' or 'lost: …' (an error, or no answer within DROPPED_CALL_TIMEOUT_MS). */
function answerOrLoss(call: Promise<ToolResult>): Promise<string> {
  return Promise.race([
    call.then((result) => `answered: ${resultText(result)}`, (error: Error) => `lost: ${error.message}`),
    sleep(DROPPED_CALL_TIMEOUT_MS).then(() => 'lost: no answer'),
  ]);
}

/** Call `tool` with its answer cut after the node had it; the client must not see an answer. */
async function callLosingAnswer(t: { true(value: boolean, message?: string): void }, member: Member, dropper: AnswerDropper, tool: string, args: Record<string, unknown>): Promise<void> {
  await clients.of(member);
  dropper.arm();
  const dropsBefore = dropper.dropped;
  const outcome = await answerOrLoss(clients.call(member, tool, { tenant: TENANT, ...args }));
  dropper.disarm();
  t.true(outcome.startsWith('lost'), `the answer should have been cut, got ${outcome}`);
  t.true(dropper.dropped > dropsBefore, 'the dropper cut an answer');
  await clients.closeAll();
}

test.serial('a restart whose answer was lost is done once when retried with its requestId through another node; a new id restarts again', async (t) => {
  await allMembersLive();
  const [n1, n2, n3] = ids() as [Member, Member, Member];
  const name = nameOwnedBy(n1.id, 'lost');
  await ok(n3, 'project_start', startArgs(name));
  const before = await runningAt(n3, name, 1);
  t.is(before.owner, n1.id);

  const { member: viaDropper, dropper } = await droppingMember(n2);
  await callLosingAnswer(t, viaDropper, dropper, 'project_restart', { name, requestId: 'restart-lost-1', waitMs: 0 });
  // The owner did it: a new version and a new process.
  const restarted = await runningAt(n3, name, before.version + 1);
  t.not(restarted.pid, before.pid);

  const retried = await ok(n3, 'project_restart', { name, requestId: 'restart-lost-1', waitMs: 0 });
  t.is(retried.version, restarted.version, 'the retry recorded nothing new');
  await sleep(500);
  const after = await runningAt(n3, name, 1);
  t.deepEqual([after.version, after.pid], [restarted.version, restarted.pid], 'the retry did not restart the workload');
  t.is(countMarked(MARK).get(name), 1, 'one copy runs');

  // The planted client bug (a new id per attempt) does the work a second time: the check above can fail.
  const fresh = await ok(n3, 'project_restart', { name, requestId: 'restart-lost-2', waitMs: 0 });
  t.is(fresh.version, restarted.version + 1);
  t.not((await runningAt(n3, name, restarted.version + 1)).pid, restarted.pid);
  await ok(n3, 'project_remove', { name });
});

test.serial('the entry node dies while the owner settles a restart; the retry through another node waits for the same run', async (t) => {
  await allMembersLive();
  const [n1, n2, n3] = ids() as [Member, Member, Member];
  const name = nameOwnedBy(n1.id, 'entry');
  // Healthy five seconds after it starts: the answer waits that long on the owner.
  const healthCheck = { type: 'log', regex: 'ready' };
  await ok(n3, 'project_start', startArgs(name, 'sleep 5; echo ready; exec sleep 600', { healthCheck, waitMs: 30_000 }));
  const before = await runningAt(n3, name, 1);

  const pending = answerOrLoss(clients.call(n2, 'project_restart', { tenant: TENANT, name, requestId: 'restart-entry-1', waitMs: 30_000 }));
  // The owner recorded and launched it (a new version runs) and is waiting for its health check.
  const restarted = await runningAt(n3, name, before.version + 1);
  await cluster.kill(n2, 'SIGKILL');
  t.true((await pending).startsWith('lost'), 'the entry node died before it answered');

  const retried = await ok(n3, 'project_restart', { name, requestId: 'restart-entry-1', waitMs: 30_000 });
  t.is(retried.version, restarted.version, 'the retry recorded nothing new');
  t.is(retried.pid, restarted.pid, 'the retry answered for the run the first attempt started');
  t.is(retried.healthy, true);
  t.is(countMarked(MARK).get(name), 1, 'one copy runs');
  await ok(n3, 'project_remove', { name });
});

test.serial('the owner dies after a restart whose answer was lost; the new owner finds the requestId in the record and does not restart again', async (t) => {
  await allMembersLive();
  const [n1, n2, n3] = ids() as [Member, Member, Member];
  const name = nameOwnedBy(n1.id, 'owner');
  await ok(n3, 'project_start', startArgs(name));
  const before = await runningAt(n3, name, 1);
  t.is(before.owner, n1.id);

  const { member: viaDropper, dropper } = await droppingMember(n2);
  await callLosingAnswer(t, viaDropper, dropper, 'project_restart', { name, requestId: 'restart-owner-1', waitMs: 0 });
  const restarted = await runningAt(n3, name, before.version + 1);

  await cluster.kill(n1, 'SIGKILL');
  // Its workload dies with it; the new owner starts the project again (a move, not a change: same version).
  const moved = await until('the project running on a new owner', 60_000, async () => {
    const now = await runningAt(n3, name, 1);
    return now.owner !== n1.id && countMarked(MARK).get(name) === 1 ? now : null;
  }, 200);
  t.is(moved.version, restarted.version);

  const retried = await ok(n3, 'project_restart', { name, requestId: 'restart-owner-1', waitMs: 0 });
  t.is(retried.version, restarted.version, 'the new owner recorded nothing new');
  await sleep(500);
  const after = await runningAt(n3, name, 1);
  t.deepEqual([after.version, after.pid, after.owner], [moved.version, moved.pid, moved.owner], 'the retry did not restart the workload');
  t.is(countMarked(MARK).get(name), 1, 'one copy runs');
  await ok(n3, 'project_remove', { name });
});
