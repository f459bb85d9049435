// Projects survive their node on real processes: SIGKILL of an owner moves its projects to the others, which start them;
// the killed node rejoins without any project running twice; a fourth node takes over about a quarter with a hand-off.
// "Running" is counted from /proc: every workload carries a marker in its environment. Workloads ignore SIGTERM, so
// each stop takes the whole stop grace (5 s): a new owner that launched before the old copy was gone would show two.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import test from 'ava';
import { countMarked } from '../chaos/workload-mcp.ts';
import { LocalCluster, until, sleep, type Member } from './local-cluster.ts';

const PROJECTS = 12;
const MARK = `DH_ACTORS_TEST_${process.pid}`;
type Result = { isError?: boolean; content: { text: string }[]; structuredContent?: Record<string, unknown> };

let cluster: LocalCluster;
const clients = new Map<string, Client>();

async function clientOf(member: Member): Promise<Client> {
  const existing = clients.get(member.id);
  if (existing !== undefined) return existing;
  const client = new Client({ name: 'actors-test', version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`http://${member.mcp}/mcp`), { requestInit: { headers: { ...member.mcpHeaders } } }));
  clients.set(member.id, client);
  return client;
}

async function call(member: Member, name: string, args: Record<string, unknown>): Promise<Result> {
  return (await (await clientOf(member)).callTool({ name, arguments: args }, undefined, { timeout: 60_000 })) as Result;
}

/** Live workload processes per project, counted from /proc by the marker in their environment. */
const runningByProject = (): Map<string, number> => countMarked(MARK);

const names = Array.from({ length: PROJECTS }, (_, i) => `p${i + 1}`);

async function owners(via: Member): Promise<Map<string, string>> {
  const list = await call(via, 'project_list', {});
  const out = new Map<string, string>();
  for (const project of list.structuredContent?.projects as { name: string; owner: string | null; state: string }[]) out.set(project.name, project.owner ?? '');
  return out;
}

/** Samples the most copies of any one project every `everyMs` until stopped: the hand-off's copies at every moment. */
function sampleCopies(everyMs: number): { stop: () => number[] } {
  const samples: number[] = [];
  const timer = setInterval(() => samples.push(Math.max(0, ...runningByProject().values())), everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      return samples;
    },
  };
}

/** Every project runs exactly once, counted on this host. */
function exactlyOnce(): boolean {
  const counts = runningByProject();
  return names.every((name) => counts.get(name) === 1) && counts.size === names.length;
}

test.before(async () => {
  cluster = await LocalCluster.create(3, { extraArgs: ['--docker', 'off'] });
  for (const member of cluster.members) cluster.start(member);
  await cluster.waitForLeader(30_000);
});

test.after.always(async () => {
  for (const client of clients.values()) await client.close().catch(() => {});
  await cluster?.stop();
  // Workloads die with their nodes; this asserts the test left none behind.
  await until('no workload left', 10_000, () => (runningByProject().size === 0 ? true : null)).catch(() => {});
});

test.serial('killing an owner moves its projects; it rejoins without duplicates; a fourth node takes a share with a hand-off', async (t) => {
  const [n1, n2, n3] = cluster.members as [Member, Member, Member];
  for (const name of names) {
    // `trap '' TERM` is inherited by the exec'd sleep: only the SIGKILL after the stop grace ends it.
    const started = await call(n1, 'project_start', { name, command: `trap '' TERM; exec sleep 600`, env: { [MARK]: name }, ports: [], restart: 'always' });
    t.falsy(started.isError, started.content[0]?.text);
  }
  await until('every project running once', 20_000, () => (exactlyOnce() ? true : null));
  const before = await owners(n1);
  // The node that owns the most projects dies.
  const victim = [n1, n2, n3].map((m) => ({ m, count: [...before.values()].filter((o) => o === m.id).length })).sort((a, b) => b.count - a.count)[0]?.m as Member;
  const moved = names.filter((name) => before.get(name) === victim.id);
  t.log(`owners before: ${JSON.stringify(Object.fromEntries(before))}; killing ${victim.id} with ${moved.length} projects`);
  t.true(moved.length > 0);
  const survivor = [n1, n2, n3].find((m) => m !== victim) as Member;
  const killedAt = performance.now();
  await cluster.kill(victim, 'SIGKILL');
  // Its workloads die with it (the supervisor watches a pipe from the node)...
  await until('the victim\'s workloads gone', 10_000, () => (moved.every((name) => (runningByProject().get(name) ?? 0) === 0) ? true : null));
  // ...and the others start them again.
  await until('moved projects running elsewhere', 60_000, () => (exactlyOnce() ? true : null), 100);
  const failoverMs = performance.now() - killedAt;
  t.log(`all ${moved.length} projects of ${victim.id} ran again elsewhere ${Math.round(failoverMs)} ms after SIGKILL`);
  const after = await owners(survivor);
  for (const name of moved) t.not(after.get(name), victim.id, `${name} moved away from ${victim.id}`);

  cluster.start(victim);
  await until('the victim back in the ring', 60_000, async () => {
    const status = await call(survivor, 'cluster_status', {});
    const ring = status.structuredContent?.ring as { live: string[] } | null;
    return ring?.live.includes(victim.id) === true ? true : null;
  });
  // Hand-off back to the rejoined node: never two copies at once, exactly one at the end.
  const rejoinSampler = sampleCopies(50);
  await sleep(8_000);
  await until('exactly once after the rejoin', 30_000, () => (exactlyOnce() ? true : null));
  const rejoinSamples = rejoinSampler.stop();
  t.log(`most copies of one project seen during the rejoin: ${Math.max(...rejoinSamples)} (${rejoinSamples.length} samples)`);
  t.true(rejoinSamples.every((copies) => copies <= 1), `two copies at once in ${rejoinSamples.filter((copies) => copies > 1).length} of ${rejoinSamples.length} samples during the rejoin`);

  const handOffSampler = sampleCopies(50);
  const fourth = await cluster.addMember();
  cluster.start(fourth);
  await until('the fourth node in the ring', 60_000, async () => {
    const status = await call(survivor, 'cluster_status', {});
    const ring = status.structuredContent?.ring as { live: string[] } | null;
    return ring?.live.includes(fourth.id) === true ? true : null;
  });
  await until('projects on the fourth node running once', 30_000, async () => {
    const current = await owners(survivor);
    return exactlyOnce() && [...current.values()].some((owner) => owner === fourth.id) ? current : null;
  });
  // The old owners' stops take their whole grace: keep sampling until they are surely over.
  await sleep(6_000);
  await until('exactly once after the hand-off', 30_000, () => (exactlyOnce() ? true : null));
  const handOffSamples = handOffSampler.stop();
  t.log(`most copies of one project seen during the hand-off to the fourth node: ${Math.max(...handOffSamples)} (${handOffSamples.length} samples)`);
  t.true(handOffSamples.every((copies) => copies <= 1), `two copies at once in ${handOffSamples.filter((copies) => copies > 1).length} of ${handOffSamples.length} samples during the hand-off`);
  const final = await owners(survivor);
  const onFourth = names.filter((name) => final.get(name) === fourth.id).length;
  t.log(`the fourth node took ${onFourth} of ${PROJECTS} projects`);
  t.true(onFourth >= 1 && onFourth <= PROJECTS * 0.6, `about a quarter moved, got ${onFourth}`);
  for (const name of names) {
    const status = await call(fourth, 'project_status', { name });
    t.is(status.structuredContent?.state, 'running', `${name} runs (${status.content[0]?.text})`);
  }
  // At once: each stop waits out its grace.
  await Promise.all(names.map((name) => call(survivor, 'project_remove', { name })));
  await until('nothing left running', 20_000, () => (runningByProject().size === 0 ? true : null));
});
