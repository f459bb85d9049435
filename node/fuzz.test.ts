// Issue 11 fuzz suite: random and mutated input against a live 3-node cluster of real node processes (gRPC messages to
// every service, MCP tool arguments from the tools' own schemas, garbage values under every system prefix), each batch
// followed by the checks that every node is alive, one leads, a sentinel workload runs exactly once and no node logged
// an uncaught exception. Seeded: DEBUGHOST_FUZZ_SEED replays a run's inputs, DEBUGHOST_FUZZ_RUNS sets batches per part.
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import { encodeCommand, type KvCommand } from '../consensus/kv-state-machine.ts';
import { systemValueError } from '../actors/records.ts';
import { SYSTEM_PREFIXES } from '../actors/system-keys.ts';
import { Actors, ProposeRequestSchema } from '../proto/gen/actor_pb.ts';
import { spawn } from 'node:child_process';
import { LocalCluster, codeOf, until, type Member } from './local-cluster.ts';
import { readClusterSecret } from './cluster-files.ts';
import { McpClients, resultText, type ToolResult } from './testing/mcp-clients.ts';
import { hostileValue, mutatedArguments, tamed, type JsonSchema } from './testing/fuzz-arbitraries.ts';
import { grpcCase, metadataFor, methodOf, RawGrpcClient, tame, type Credentials, type RawOutcome } from './testing/fuzz-grpc.ts';
import { clusterProblems, processesWithArgv, StderrCursor } from './testing/fuzz-health.ts';

/** fast-check's seed for every part; printed at the start and in every failure. */
const SEED = process.env.DEBUGHOST_FUZZ_SEED === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(process.env.DEBUGHOST_FUZZ_SEED);
/** Batches per part: 2 keeps `npm test` within its minute on a busy 2-core machine; the long run sets more. */
const RUNS = process.env.DEBUGHOST_FUZZ_RUNS === undefined ? 2 : Number(process.env.DEBUGHOST_FUZZ_RUNS);
const GRPC_CASES_PER_BATCH = 40;
const MCP_CASES_PER_BATCH = 24;
const KV_CASES_PER_BATCH = 30;
/** Calls of one batch in flight at once: enough to overlap, few enough for a loaded machine. */
const CALLS_IN_FLIGHT_MAX = 4;
/** A tool call's waits (waitMs, timeoutMs) are cut to this: a 30 s default wait would spend the budget on nothing. */
const TOOL_WAIT_MS_MAX = 1_000;
/** A call that takes this long is a wedge (the tamed waits are ~1 s; a busy machine gets a wide margin). */
const CALL_WEDGE_MS = 45_000;
/** The cluster's time to elect a leader and to restart a moved sentinel after a batch. */
const SETTLE_MS = 30_000;
const LEADER_WAIT_MS = 120_000;
/** Tools never fuzzed: image_prune removes images of the shared Docker engine. */
const TOOLS_NOT_FUZZED = new Set(['image_prune']);

/** Sentinels: with six, a phantom fourth member in the ring owns at least one of them in about 82 % of rings (1 - (3/4)^6). */
const SENTINELS = 6;
const SENTINEL_NAME = `sentinel-${process.pid}`;
/** Sleeps no other process on the machine runs: counted in /proc to see "exactly once". */
const SENTINEL_ARGVS = Array.from({ length: SENTINELS }, (_, index) => ['sleep', String(3_000_000 + process.pid * 10 + index)]);
/** The sentinel's own tenant, whose token the fuzz never holds. */
const KEEPER_TENANT = 'keep';
const FUZZ_TENANT = 'fuzz';

let cluster: LocalCluster;
let credentials: Credentials;
const adminMcp = new McpClients('debughost-fuzz-admin');
const tenantMcp = new McpClients('debughost-fuzz-tenant');
const keeperMcp = new McpClients('debughost-fuzz-keeper');
let tenantHeaders: Record<string, string>;
let keeperHeaders: Record<string, string>;
const raw = new Map<string, RawGrpcClient>();
const cursor = new StderrCursor();
const tally = { grpc: 0, mcp: 0, kv: 0 };

const rawClient = (member: Member): RawGrpcClient => {
  let client = raw.get(member.grpc);
  if (client === undefined) {
    client = new RawGrpcClient(member.grpc);
    raw.set(member.grpc, client);
  }
  return client;
};

const as = (member: Member, headers: Record<string, string>): Member => ({ ...member, mcpHeaders: headers });

async function mustTool(clients: McpClients, member: Member, tool: string, args: Record<string, unknown>): Promise<ToolResult> {
  const result = await clients.call(member, tool, args);
  if (result.isError === true) throw new Error(`${tool}: ${resultText(result)}`);
  return result;
}

/** Run `work` over `items`, at most CALLS_IN_FLIGHT_MAX at once. */
async function inFlight<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(CALLS_IN_FLIGHT_MAX, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next] as T;
      next += 1;
      await work(item);
    }
  });
  await Promise.all(lanes);
}

async function withWedgeCheck<T>(what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const wedge = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${CALL_WEDGE_MS} ms`)), CALL_WEDGE_MS);
  });
  try {
    return await Promise.race([promise, wedge]);
  } finally {
    clearTimeout(timer);
  }
}

async function assertHealthy(part: string): Promise<void> {
  const problems = await clusterProblems(cluster, cursor, { sentinels: SENTINEL_ARGVS, settleMs: SETTLE_MS });
  if (problems.length > 0) throw new Error(`after a ${part} batch: ${problems.join('; ')}`);
}

/** Characters of a failing batch kept in the failure message (the whole batch is replayable from the seed). */
const COUNTEREXAMPLE_CHARS_MAX = 3000;

async function runFuzz<T>(t: ExecutionContext, batch: fc.Arbitrary<T[]>, run: (cases: T[]) => Promise<void>): Promise<void> {
  t.log(`seed ${SEED}, ${RUNS} batches (replay: DEBUGHOST_FUZZ_SEED=${SEED} DEBUGHOST_FUZZ_RUNS=${RUNS} npx ava node/fuzz.test.ts)`);
  // No shrinking: each try costs a batch against the live cluster; the seed replays the batch instead.
  const details = await fc.check(fc.asyncProperty(batch, run), { seed: SEED, numRuns: RUNS, endOnFailure: true });
  if (!details.failed) return;
  const batchText = JSON.stringify(details.counterexample?.[0] ?? null) ?? '';
  throw new Error(
    `fuzz batch ${details.numRuns} of seed ${details.seed} failed (replay: DEBUGHOST_FUZZ_SEED=${details.seed} DEBUGHOST_FUZZ_RUNS=${details.numRuns}): ` +
      `${(details.errorInstance as Error | null)?.message ?? 'no error'}\nbatch: ${batchText.slice(0, COUNTEREXAMPLE_CHARS_MAX)}${batchText.length > COUNTEREXAMPLE_CHARS_MAX ? '…' : ''}`,
  );
}

test.before(async () => {
  cluster = await LocalCluster.create(3, { extraArgs: ['--docker', 'off'] });
  for (const m of cluster.members) cluster.start(m);
  await cluster.waitForLeader(LEADER_WAIT_MS);
  for (const m of cluster.members) await cluster.waitCaughtUp(m, LEADER_WAIT_MS);
  const n1 = cluster.member('n1');
  const made = async (tenant: string, role: string): Promise<string> => String((await mustTool(adminMcp, n1, 'token_create', { tenant, role })).structuredContent?.token);
  const tenantToken = await made(FUZZ_TENANT, 'exec');
  keeperHeaders = { authorization: `Bearer ${await made(KEEPER_TENANT, 'developer')}` };
  tenantHeaders = { authorization: `Bearer ${tenantToken}` };
  credentials = { adminToken: cluster.adminToken, tenantToken, secret: await readClusterSecret(cluster.secretFile), memberIds: cluster.members.map((m) => m.id) };
  // A token made through n1 is known on n2 and n3 once they applied it.
  for (const m of cluster.members) await cluster.waitCaughtUp(m, LEADER_WAIT_MS);
  for (const [index, argv] of SENTINEL_ARGVS.entries()) await mustTool(keeperMcp, as(n1, keeperHeaders), 'project_start', { name: `${SENTINEL_NAME}-${index}`, command: argv.join(' '), restart: 'always' });
  await assertHealthy('setup');
});

test.after.always(async () => {
  await Promise.all([adminMcp.closeAll(), tenantMcp.closeAll(), keeperMcp.closeAll()]);
  for (const client of raw.values()) client.close();
  await cluster?.stop();
});

// ---- gRPC ------------------------------------------------------------------------------------

/** The lowest current term among the members: a message below it is stale on every node. */
async function termFloor(): Promise<bigint> {
  const statuses = await Promise.all(cluster.members.map((m) => cluster.status(m)));
  return statuses.reduce((low, status) => (status !== null && status.term < low ? status.term : low), 2n ** 62n);
}

test.serial('fuzz: random and mutated messages to every gRPC service (Raft, KV, Admin, Actors) leave the cluster whole', async (t) => {
  const codes = new Map<string, number>();
  const internals = new Map<string, string>();
  const leaks: string[] = [];
  await runFuzz(t, fc.array(grpcCase(cluster.members.length), { minLength: GRPC_CASES_PER_BATCH, maxLength: GRPC_CASES_PER_BATCH }), async (cases) => {
    const context = { termFloor: await termFloor(), sentinel: SENTINEL_NAME };
    await inFlight(cases, async (kase) => {
      const plan = tame(kase, context);
      if (plan === null) return;
      const member = cluster.members[kase.target] as Member;
      const method = methodOf(kase);
      const outcome: RawOutcome = await withWedgeCheck(`${kase.service}/${kase.method} on ${member.id}`, rawClient(member).call(method, plan.payloads, metadataFor(plan.credential, kase.peer, credentials)));
      const key = `${kase.method}:${outcome.code === 'ok' ? 'ok' : grpc.status[outcome.code]}`;
      codes.set(key, (codes.get(key) ?? 0) + 1);
      if (outcome.code === grpc.status.INTERNAL || outcome.code === grpc.status.UNKNOWN) internals.set(key, outcome.detail.slice(0, 160));
      if (/\n\s+at \S/.test(outcome.detail)) leaks.push(`${kase.service}/${kase.method}: ${outcome.detail.slice(0, 500)}`);
      tally.grpc += 1;
    });
    await assertHealthy('gRPC');
  });
  t.log(`outcomes: ${[...codes].sort().map(([k, n]) => `${k}=${n}`).join(' ')}`);
  t.log(`INTERNAL and UNKNOWN details, one per method: ${[...internals].map(([k, d]) => `${k}: ${d}`).join(' | ') || 'none'}`);
  t.deepEqual(leaks, [], 'no error detail carries a stack trace');
});

// ---- MCP -------------------------------------------------------------------------------------

interface McpCase {
  readonly tool: string;
  readonly args: Record<string, unknown>;
  readonly admin: boolean;
  readonly target: number;
}

test.serial('fuzz: random and mutated MCP tool arguments from the tools\' own input schemas, as admin and as a tenant', async (t) => {
  const listed = await (await adminMcp.of(cluster.member('n1'))).listTools();
  const tools = listed.tools.filter((tool) => !TOOLS_NOT_FUZZED.has(tool.name));
  t.true(tools.length >= 10, `tools/list names ${tools.length} tools`);
  const mcpCase: fc.Arbitrary<McpCase> = fc.constantFrom(...tools).chain((tool) =>
    fc.record({
      tool: fc.constant(tool.name),
      args: fc
        .tuple(mutatedArguments(tool.inputSchema as JsonSchema), fc.boolean())
        // Half the calls name the fuzz tenant, so that they reach the projects the fuzz made rather than a refusal of a random tenant.
        .map(([args, own]) => tamed(own && 'tenant' in args ? { ...args, tenant: FUZZ_TENANT } : args, TOOL_WAIT_MS_MAX) as Record<string, unknown>),
      admin: fc.boolean(),
      target: fc.nat({ max: cluster.members.length - 1 }),
    }),
  );
  const kinds = new Map<string, number>();
  /** The last error text of each tool, to read what the fuzz mostly hits. */
  const samples = new Map<string, string>();
  const leaks: string[] = [];
  await runFuzz(t, fc.array(mcpCase, { minLength: MCP_CASES_PER_BATCH, maxLength: MCP_CASES_PER_BATCH }), async (cases) => {
    await inFlight(cases, async (kase) => {
      const member = cluster.members[kase.target] as Member;
      const clients = kase.admin ? adminMcp : tenantMcp;
      const target = kase.admin ? member : as(member, tenantHeaders);
      let kind: string;
      try {
        const result = await withWedgeCheck(`${kase.tool} on ${member.id}`, clients.call(target, kase.tool, kase.args));
        kind = result.isError === true ? 'toolError' : 'ok';
        if (result.isError === true) samples.set(kase.tool, resultText(result).slice(0, 160));
        if (/\n\s+at \S/.test(resultText(result))) leaks.push(`${kase.tool}: ${resultText(result).slice(0, 500)}`);
      } catch (error) {
        if ((error as Error).message.includes('did not answer within')) throw error;
        kind = `thrown:${(error as { code?: unknown }).code ?? (error as Error).name}`;
        samples.set(`${kase.tool} thrown`, `${(error as Error).message.slice(0, 160)} cause ${String((error as { cause?: { code?: string; message?: string } }).cause?.code ?? (error as { cause?: { message?: string } }).cause?.message)} (args ${JSON.stringify(kase.args).slice(0, 200)}); ${member.id} stderr: ${member.stderrTail.slice(-1200)}`);
        if (/\n\s+at \S/.test((error as Error).message)) leaks.push(`${kase.tool}: ${(error as Error).message.slice(0, 500)}`);
      }
      kinds.set(`${kase.tool}:${kind}`, (kinds.get(`${kase.tool}:${kind}`) ?? 0) + 1);
      tally.mcp += 1;
    });
    await assertHealthy('MCP');
  });
  t.log(`outcomes: ${[...kinds].sort().map(([k, n]) => `${k}=${n}`).join(' ')}`);
  t.log(`last error of each tool: ${[...samples].sort().map(([k, d]) => `${k}: ${d}`).join(' | ')}`);
  t.deepEqual(leaks, [], 'no tool answer carries a stack trace');
});

// ---- garbage under every system prefix -------------------------------------------------------

/** Keys under each system prefix: real ones of this cluster, ones of no actor, and malformed ones. None names the sentinel's tenant. */
const SYSTEM_KEYS: Readonly<Record<string, readonly string[]>> = {
  'members/': ['members/n2', 'members/evil', 'members/', 'members/a/b'],
  'ring/': ['ring/epoch', 'ring/other'],
  'liveness/': ['liveness/n1', 'liveness/evil', 'liveness/'],
  'projects/': [`projects/${FUZZ_TENANT}/p1`, 'projects/evil/p', 'projects/evil', 'projects/a/b/c'],
  'status/': [`status/${FUZZ_TENANT}/p1`, 'status/evil/p', 'status/x'],
  'events/': [`events/${FUZZ_TENANT}/p1`, 'events/evil/p', 'events/x'],
  'ports/': ['ports/n1/40100', 'ports/n2/x', 'ports/evil/1', 'ports/n3/99999'],
  'tenants/': [`tenants/${FUZZ_TENANT}/quota`, `tenants/${FUZZ_TENANT}/usage`, 'tenants/evil', 'tenants/evil/other'],
  'tokens/': ['tokens/abcdef0123', 'tokens/'],
  'audit/': ['audit/n1/head', 'audit/n2/checkpoint', 'audit/n1/r/00000000000000000001', 'audit/evil/head'],
  'cluster/': ['cluster/alarms/nospace', 'cluster/other'],
};

/** A JSON value with one field replaced by a hostile value, or dropped, or left as it is (a valid copy under another key). */
function mutatedRecord(template: string): fc.Arbitrary<string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(template);
  } catch {
    return fc.constant(template);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return fc.constant(template);
  const fields = Object.keys(parsed);
  if (fields.length === 0) return fc.constant(template);
  return fc.tuple(fc.constantFrom(...fields), fc.option(hostileValue, { freq: 4 }), fc.boolean()).map(([field, value, keep]) => {
    const copy: Record<string, unknown> = { ...(parsed as Record<string, unknown>) };
    if (keep) return JSON.stringify(tamed(copy, TOOL_WAIT_MS_MAX));
    if (value === null) delete copy[field];
    else copy[field] = value;
    return JSON.stringify(tamed(copy, TOOL_WAIT_MS_MAX));
  });
}

interface KvCase {
  readonly key: string;
  readonly value: string;
  /** Through the client KV with the admin token (refused) or through Actors.Propose as a member (the path past the edge). */
  readonly path: 'client' | 'member';
}

test.serial('fuzz: garbage values under every system prefix, through the client KV and as a member\'s proposal, are refused and harm nothing', async (t) => {
  t.deepEqual(Object.keys(SYSTEM_KEYS).sort(), [...SYSTEM_PREFIXES].sort(), 'the fuzz writes under every system prefix the cluster has');
  // Real values of this cluster, to mutate: the sentinel's records, the members, tokens, audit heads.
  const stored = await cluster.readPrefix(cluster.member('n1'), '', '\0');
  const templates = [...stored.values()].filter((value) => value.length < 4096);
  const garbage = fc.oneof(
    hostileValue.map((value) => (typeof value === 'string' ? value : (JSON.stringify(value) ?? 'undefined'))),
    fc.string({ maxLength: 40 }),
    fc.constantFrom('', 'not json', '{}', '[]', 'null', '0', 'down', 'draining', '127.0.0.1:1', '{"seq":1,"hash":"x"}'),
    fc.constantFrom(...templates).chain(mutatedRecord),
  );
  const kvCase: fc.Arbitrary<KvCase> = fc.record({
    key: fc.constantFrom(...Object.values(SYSTEM_KEYS).flat()),
    value: garbage,
    path: fc.constantFrom<KvCase['path']>('client', 'member', 'member'),
  });
  const refusedByClientKv: string[] = [];
  const storedAgainstCheck: string[] = [];
  const proposeRefusals: string[] = [];
  const landed = new Set<string>();
  await runFuzz(t, fc.array(kvCase, { minLength: KV_CASES_PER_BATCH, maxLength: KV_CASES_PER_BATCH }), async (cases) => {
    const viaMember = cases.filter((kase) => kase.path === 'member');
    for (const kase of cases.filter((c) => c.path === 'client')) {
      const member = cluster.members[kase.value.length % cluster.members.length] as Member;
      const code = await codeOf(cluster.put(member, kase.key, kase.value));
      if (code !== grpc.status.PERMISSION_DENIED) refusedByClientKv.push(`${kase.key}: ${String(code)}`);
      tally.kv += 1;
    }
    // A member's proposals: each case its own command, sent to the leader in a few batches (as the actor layer sends them).
    const commands = viaMember.map((kase): KvCommand => ({ type: 'put', key: kase.key, value: kase.value }));
    for (let at = 0; at < commands.length; at += 8) {
      const proposed = await withWedgeCheck('Actors/Propose', proposeAsMember(commands.slice(at, at + 8)));
      if (proposed.code !== 'ok') proposeRefusals.push(`${grpc.status[proposed.code]}: ${proposed.detail}`);
      tally.kv += Math.min(8, commands.length - at);
    }
    await assertHealthy('system-prefix');
    const now = await cluster.readPrefix(cluster.member('n1'), '', '\0');
    for (const kase of viaMember) {
      if (now.get(kase.key) === kase.value) landed.add(kase.key);
      if (systemValueError(kase.key, kase.value) !== null && now.get(kase.key) === kase.value) storedAgainstCheck.push(`${kase.key} = ${kase.value.slice(0, 80)}`);
    }
  });
  t.log(`keys a member's garbage landed in: ${[...landed].sort().join(' ') || 'none'}`);
  t.deepEqual(proposeRefusals, [], 'the leader takes a member\'s proposals (the state machine judges them)');
  t.deepEqual(refusedByClientKv, [], 'the client KV refuses every write under a system prefix');
  t.deepEqual(storedAgainstCheck, [], 'no value the apply-time check refuses is in the state');
});

// ---- regressions and the checker's own test ----------------------------------------------------

/** Propose `commands` on the leader as a member would (Actors.Propose), answering the gRPC outcome. */
async function proposeAsMember(commands: readonly KvCommand[]): Promise<RawOutcome> {
  const leader = (await cluster.leader()) ?? cluster.member('n1');
  const request = create(ProposeRequestSchema, { commands: commands.map(encodeCommand) });
  return rawClient(leader).call(Actors.method.propose, [toBinary(ProposeRequestSchema, request)], metadataFor('peer', cluster.members.indexOf(leader) === 0 ? 1 : 0, credentials));
}

test.serial('fuzz seed 2 (system prefixes): a member\'s proposal of members/evil, or of garbage under members/n2, changes no member of the ring', async (t) => {
  const outcome = await proposeAsMember([
    { type: 'put', key: 'members/evil', value: '$vWu9~' },
    { type: 'put', key: 'members/n2', value: '127.0.0.1:1' },
    { type: 'txn', compare: [], success: [{ type: 'delete', key: 'members/n3' }], failure: [] },
  ]);
  t.is(outcome.code, 'ok', outcome.detail);
  const members = await cluster.readPrefix(cluster.member('n1'), 'members/', 'members0');
  t.deepEqual([...members.keys()].sort(), ['members/n1', 'members/n2', 'members/n3']);
  t.is(members.get('members/n2'), cluster.member('n2').grpc);
  await assertHealthy('regression');
});

test.serial('the batch checks fail on planted faults: a second copy of a sentinel, a stack trace on stderr, a dead node', async (t) => {
  const quick = { sentinels: SENTINEL_ARGVS, settleMs: 2_000 };
  const first = SENTINEL_ARGVS[0] as string[];
  const copy = spawn(first[0] as string, first.slice(1), { stdio: 'ignore' });
  try {
    await until('the planted copy to run', 5_000, async () => ((await processesWithArgv(first)).length === 2 ? true : null));
    const problems = await clusterProblems(cluster, cursor, quick);
    t.true(problems.some((problem) => /sentinel 0 ran 2 times at once/.test(problem)), problems.join('; '));
  } finally {
    copy.kill('SIGKILL');
  }
  const n2 = cluster.member('n2');
  n2.stderrTail += 'TypeError: planted\n    at ActorHost.enqueue (file:///x/host.js:1:1)\n';
  t.true((await clusterProblems(cluster, cursor, quick)).some((problem) => /n2 wrote what an uncaught exception writes/.test(problem)));
  // Last: the cluster is not used after this.
  await cluster.kill(cluster.member('n3'));
  t.true((await clusterProblems(cluster, cursor, quick)).some((problem) => /n3 exited/.test(problem)));
});

test.after.always('figures', (t) => {
  t.log(`cases run: gRPC ${tally.grpc}, MCP ${tally.mcp}, system-prefix ${tally.kv}; seed ${SEED}`);
});
