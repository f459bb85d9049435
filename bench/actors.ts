// Actors at scale on a 3-node cluster of real processes: place many project actors
// across many tenants through concurrent MCP clients (each runs `exec sleep`), then
// read node memory, the cost of each workload, the latency of project_status through
// the owner and through another node, and the time from SIGKILL of one node until
// all its projects run again on the others (counted from /proc by an env marker).
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { seededRandom, sleep, type Member } from '../node/local-cluster.ts';
import { ToolCallError, connect, loadAverage, markedProcesses, pool, rssMbOf, startBenchCluster, summarize, timedCall, wholeNumberFlag, workloadsByNode } from './mcp-client.ts';
import { BenchUsageError } from './raft-stats.ts';

const USAGE = 'npm run bench -- actors [--json] [--projects 1000] [--tenants 100] [--clients 32] [--latency-calls 2000] [--failover-wait-s 60] [--kill most|follower]';
const NODES = 3;
/** The workload each project runs (the shell execs it, so /proc shows exactly this argv). */
const WORKLOAD_ARGV = ['sleep', '100000'] as const;
const RUNNING_WAIT_MS = 300_000;
/** How often /proc is read while waiting for the failover (each read costs CPU the nodes could use). */
const POLL_MS = 100;
const FAILOVER_SAMPLE_MS = 5000;
/**
 * Attempts of one placing start. A start refused as certainly not done or answered as outcome-unknown
 * (an election or a deadline on a loaded machine) is retried with the same requestId, as a client should;
 * the retries are counted in the result.
 */
const PLACE_ATTEMPTS_MAX = 5;
const RETRYABLE_ERRORS: ReadonlySet<string> = new Set(['UnavailableError', 'OutcomeUnknownError', 'DeadlineExceededError', 'OwnershipMovedError', 'MailboxFullError']);
/** The target, to extrapolate the measured per-project costs to. */
const PROJECTS_TARGET = 10_000;
/** The process runtime's log lines when its spawner's watchdog acted (actors/runtime-process.ts onFence). */
const WATCHDOG_LINE = /lease heartbeats stopped; workloads (frozen|killed)/g;

/** Counts the watchdog's freezes and kills in each node's log (stderr, warn level), from now on. */
function countWatchdog(members: readonly Member[]): { frozen: number[]; killed: number[] } {
  const counts = { frozen: members.map(() => 0), killed: members.map(() => 0) };
  members.forEach((member, index) => {
    let partial = '';
    member.process?.stderr?.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        for (const match of line.matchAll(WATCHDOG_LINE)) {
          const kind = counts[match[1] as 'frozen' | 'killed'];
          kind[index] = (kind[index] ?? 0) + 1;
        }
      }
    });
  });
  return counts;
}

interface ActorsOptions {
  readonly projects: number;
  readonly tenants: number;
  readonly clients: number;
  readonly latencyCalls: number;
  readonly failoverWaitMs: number;
  /** Which node gets SIGKILL: the one owning the most projects, or the follower owning the most (no election in the failover). */
  readonly kill: 'most' | 'follower';
}

function parseOptions(args: string[]): ActorsOptions {
  let values: Record<string, string | undefined>;
  try {
    values = parseArgs({ args, options: { projects: { type: 'string' }, tenants: { type: 'string' }, clients: { type: 'string' }, 'latency-calls': { type: 'string' }, 'failover-wait-s': { type: 'string' }, kill: { type: 'string' } }, strict: true }).values;
  } catch (error) {
    throw new BenchUsageError(`${(error as Error).message.split('\n')[0] ?? ''}; usage: ${USAGE}`);
  }
  const projects = wholeNumberFlag('projects', values.projects, 1000, 3, 10_000, USAGE);
  const tenants = wholeNumberFlag('tenants', values.tenants, 100, 1, projects, USAGE);
  // A tenant's default quota is 100 projects.
  if (Math.ceil(projects / tenants) > 100) throw new BenchUsageError(`--projects ${projects} over --tenants ${tenants} exceeds the default quota of 100 projects per tenant; give more tenants`);
  const kill = values.kill ?? 'most';
  if (kill !== 'most' && kill !== 'follower') throw new BenchUsageError(`--kill is most or follower, got '${kill}'; usage: ${USAGE}`);
  return {
    kill,
    projects,
    tenants,
    clients: wholeNumberFlag('clients', values.clients, 32, 1, 256, USAGE),
    latencyCalls: wholeNumberFlag('latency-calls', values['latency-calls'], 2000, 10, 1_000_000, USAGE),
    failoverWaitMs: wholeNumberFlag('failover-wait-s', values['failover-wait-s'], 60, 1, 3600, USAGE) * 1000,
  };
}

interface Project {
  readonly tenant: string;
  readonly name: string;
  /** The marker value in its environment. */
  readonly key: string;
}

export async function actorsBench(args: string[]): Promise<Record<string, number | string>> {
  const options = parseOptions(args);
  const marker = `DH_BENCH_ACTORS_${process.pid}`;
  const projects: Project[] = Array.from({ length: options.projects }, (_, i) => {
    const tenant = `t${i % options.tenants}`;
    const name = `p${i}`;
    return { tenant, name, key: `${tenant}.${name}` };
  });
  const loadBefore = loadAverage();
  const bench = await startBenchCluster(NODES, ['--docker', 'off'], marker);
  const clients: Client[] = [];
  try {
    const members = bench.members;
    const nodePid = (member: Member): number => member.process?.pid ?? 0;
    const rssIdleMb = members.map((m) => rssMbOf(nodePid(m)));
    const watchdog = countWatchdog(members);
    for (let i = 0; i < options.clients; i += 1) clients.push(await connect(members[i % NODES] as Member, `bench-actors-${i}`));

    // 1. Place and start every project through concurrent clients spread over the nodes.
    const placeStarted = performance.now();
    let placeRetries = 0;
    await pool(projects, options.clients, async (project, worker) => {
      const args = {
        tenant: project.tenant, name: project.name, command: `exec ${WORKLOAD_ARGV.join(' ')}`, env: { [marker]: project.key }, ports: [], restart: 'never', waitMs: 0, requestId: `place-${project.key}`,
      };
      for (let attempt = 1; ; attempt += 1) {
        const result = await (clients[worker] as Client).callTool({ name: 'project_start', arguments: args }, undefined, { timeout: 120_000 });
        const errorName = result.isError === true ? String(result._meta?.['debughost/error'] ?? '') : null;
        if (errorName === null) break;
        if (!RETRYABLE_ERRORS.has(errorName) || attempt >= PLACE_ATTEMPTS_MAX) {
          throw new ToolCallError(`project_start ${project.key} failed after ${attempt} attempts: ${JSON.stringify(result.content).slice(0, 300)}`);
        }
        placeRetries += 1;
      }
    });
    const placedMs = performance.now() - placeStarted;
    const nodePids = new Set(members.map(nodePid));
    const runsOnce = (running: ReadonlyMap<string, number[]>, among: ReadonlySet<number>): boolean =>
      running.size === projects.length && [...running.values()].every((owners) => owners.length === 1 && among.has(owners[0] as number));
    const allRunningOnce = (among: ReadonlySet<number>): boolean => runsOnce(workloadsByNode(marker, WORKLOAD_ARGV, among), among);
    while (!allRunningOnce(nodePids)) {
      if (performance.now() - placeStarted > RUNNING_WAIT_MS) {
        throw new Error(`not every project ran within ${RUNNING_WAIT_MS} ms (${workloadsByNode(marker, WORKLOAD_ARGV, nodePids).size} of ${projects.length}); watchdog freezes ${watchdog.frozen.join('/')}, kills ${watchdog.killed.join('/')} (n1/n2/n3), load ${loadAverage()}`);
      }
      await sleep(POLL_MS * 2);
    }
    const allRunningMs = performance.now() - placeStarted;
    // Let the nodes settle (status write-backs, GC) before reading memory.
    await sleep(2000);
    const rssPlacedMb = members.map((m) => rssMbOf(nodePid(m)));
    const marked = markedProcesses(marker, true);
    const workloadRssKb = marked.reduce((sum, p) => sum + p.rssKb, 0);
    const workloadPssKb = marked.reduce((sum, p) => sum + p.pssKb, 0);

    // 2. Owners, from the processes' parents; then project_status through the owner and through another node, one call at a time.
    const ownerPid = new Map([...workloadsByNode(marker, WORKLOAD_ARGV, nodePids)].map(([key, owners]) => [key, owners[0] as number]));
    const memberByPid = new Map(members.map((m) => [nodePid(m), m]));
    const perNode = members.map((m) => [...ownerPid.values()].filter((pid) => pid === nodePid(m)).length);
    const clientOf = new Map<Member, Client>(members.map((m, i) => [m, clients[i] as Client]));
    const random = seededRandom(4);
    const local: number[] = [];
    const forwarded: number[] = [];
    for (let i = 0; i < options.latencyCalls; i += 1) {
      const project = projects[Math.floor(random() * projects.length)] as Project;
      const owner = memberByPid.get(ownerPid.get(project.key) ?? 0) as Member;
      const isLocal = i % 2 === 0;
      const others = members.filter((m) => m !== owner);
      const via = isLocal ? owner : (others[Math.floor(random() * others.length)] as Member);
      const { ms, result } = await timedCall(clientOf.get(via) as Client, 'project_status', { tenant: project.tenant, name: project.name });
      if (result.structuredContent?.owner !== owner.id) throw new Error(`${project.key}: project_status says owner ${String(result.structuredContent?.owner)}, its process runs under ${owner.id}`);
      (isLocal ? local : forwarded).push(ms);
    }
    const localLatency = summarize(local);
    const forwardedLatency = summarize(forwarded);

    // 3. SIGKILL the node that owns the most; time until each of its projects runs exactly once on a survivor.
    const leaderId = (await bench.cluster.leader())?.id;
    const candidates = members.map((m, i) => ({ m, i, count: perNode[i] as number })).filter(({ m }) => options.kill === 'most' || m.id !== leaderId);
    const victimIndex = candidates.sort((a, b) => b.count - a.count)[0]?.i ?? 0;
    const victim = members[victimIndex] as Member;
    const movedCount = perNode[victimIndex] as number;
    const survivors = new Set(members.filter((m) => m !== victim).map(nodePid));
    // Before the kill: kill() forgets the member's process.
    const victimKeys = new Set([...ownerPid].filter(([, pid]) => pid === nodePid(victim)).map(([key]) => key));
    // A leader's death adds an election before the ring can change.
    const victimWasLeader = leaderId === victim.id;
    const loadAtKill = loadAverage();
    const watchdogAtKill = { frozen: [...watchdog.frozen], killed: [...watchdog.killed] };
    const killedAt = performance.now();
    await bench.cluster.kill(victim, 'SIGKILL');
    let firstMovedMs = Number.NaN;
    let failoverMs = Number.NaN;
    // Projects running exactly once on a survivor, every FAILOVER_SAMPLE_MS: where the move stalls, if it does.
    const timeline: number[] = [];
    while (performance.now() - killedAt < options.failoverWaitMs) {
      // The first moved project running again shows when the ring changed; the rest is restart throughput.
      const running = workloadsByNode(marker, WORKLOAD_ARGV, survivors);
      const elapsedMs = performance.now() - killedAt;
      if (elapsedMs >= timeline.length * FAILOVER_SAMPLE_MS) {
        timeline.push([...running.values()].filter((owners) => owners.length === 1 && survivors.has(owners[0] as number)).length);
      }
      if (Number.isNaN(firstMovedMs) && [...running].some(([key, owners]) => victimKeys.has(key) && survivors.has(owners[0] as number))) firstMovedMs = elapsedMs;
      if (runsOnce(running, survivors)) {
        failoverMs = elapsedMs;
        break;
      }
      await sleep(POLL_MS);
    }
    const runningAfter = [...workloadsByNode(marker, WORKLOAD_ARGV, survivors).values()].filter((owners) => owners.length === 1 && survivors.has(owners[0] as number)).length;

    const processesPerProject = marked.length / projects.length;
    const round = (n: number, digits = 1): number => Number(n.toFixed(digits));
    return {
      benchmark: 'actors',
      nodes: NODES,
      projects: projects.length,
      tenants: options.tenants,
      clients: options.clients,
      placeMs: Math.round(placedMs),
      placePerSecond: round(projects.length / (placedMs / 1000)),
      placeRetries,
      allRunningMs: Math.round(allRunningMs),
      projectsPerNode: perNode.join('/'),
      nodeRssIdleMb: rssIdleMb.map((mb) => round(mb)).join('/'),
      nodeRssPlacedMb: rssPlacedMb.map((mb) => round(mb)).join('/'),
      nodeRssMaxMb: round(Math.max(...rssPlacedMb)),
      nodeRssGoalMet: Math.max(...rssPlacedMb) < 300 ? 'yes' : 'no',
      nodeKbPerProject: round(((rssPlacedMb.reduce((a, b) => a + b, 0) - rssIdleMb.reduce((a, b) => a + b, 0)) * 1024) / projects.length),
      workloadProcessesPerProject: round(processesPerProject, 2),
      workloadRssKbPerProject: round(workloadRssKb / projects.length),
      workloadPssKbPerProject: round(workloadPssKb / projects.length),
      extrapolatedWorkloadPssMbAt10k: round((workloadPssKb / projects.length) * PROJECTS_TARGET / 1024),
      // Linear in the measured per-project growth; a third of the target on each node.
      extrapolatedNodeRssMbAt10k: round(Math.max(...rssIdleMb) + (((rssPlacedMb.reduce((a, b) => a + b, 0) - rssIdleMb.reduce((a, b) => a + b, 0)) / projects.length) * PROJECTS_TARGET) / NODES),
      extrapolatedProcessesAt10k: Math.round(processesPerProject * PROJECTS_TARGET),
      statusLocalP50Ms: localLatency.p50Ms,
      statusLocalP99Ms: localLatency.p99Ms,
      statusForwardedP50Ms: forwardedLatency.p50Ms,
      statusForwardedP99Ms: forwardedLatency.p99Ms,
      statusForwardedMaxMs: forwardedLatency.maxMs,
      statusCallsEach: localLatency.count,
      forwardedGoalMet: forwardedLatency.p99Ms < 10 ? 'yes' : 'no',
      victim: victim.id,
      victimProjects: movedCount,
      victimWasLeader: victimWasLeader ? 'yes' : 'no',
      failoverMs: Number.isNaN(failoverMs) ? `not within ${options.failoverWaitMs} ms (${runningAfter}/${projects.length} running)` : Math.round(failoverMs),
      failoverFirstMovedMs: Math.round(firstMovedMs),
      failoverRunningEvery5s: timeline.join('/'),
      // Per node n1/n2/n3: the spawner's watchdog froze (killed) that node's workloads, while placing and after the kill.
      watchdogFreezesPlacing: watchdogAtKill.frozen.join('/'),
      watchdogKillsPlacing: watchdogAtKill.killed.join('/'),
      watchdogFreezesFailover: watchdog.frozen.map((n, i) => n - (watchdogAtKill.frozen[i] ?? 0)).join('/'),
      watchdogKillsFailover: watchdog.killed.map((n, i) => n - (watchdogAtKill.killed[i] ?? 0)).join('/'),
      failoverGoalMet: !Number.isNaN(failoverMs) && failoverMs < 5000 ? 'yes' : 'no',
      loadAverageBefore: loadBefore,
      loadAverageAtKill: loadAtKill,
      loadAverageAfter: loadAverage(),
    };
  } finally {
    for (const client of clients) await client.close().catch(() => {});
    await bench.stop();
  }
}
