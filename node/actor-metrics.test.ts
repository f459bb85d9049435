// The actor layer's metrics on a registry of their own: gauges read the attached view at scrape time with bounded
// tenant and tool labels, the event methods feed their counters and histograms, and the API timer labels each call.
import test from 'ava';
import { Registry } from 'prom-client';
import { ActorMetrics, OTHER_TENANT, OTHER_TOOL, TENANT_SERIES_MAX, TOOL_SERIES_MAX, capSeries, type ActorMetricsView } from './actor-metrics.ts';
import { quotaRatio } from './actor-metrics-view.ts';
import type { ActorRequest, ActorResponse, Identity } from '../actors/messages.ts';
import type { McpBackend } from './mcp.ts';
import { timedBackend } from './mcp-call-timing.ts';

/** Value of the series `name{labels}` exactly as prom-client writes it, or undefined. */
async function series(registry: Registry, name: string, labels = ''): Promise<number | undefined> {
  const line = (await registry.metrics()).split('\n').find((l) => l.startsWith(labels === '' ? `${name} ` : `${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

const seriesCount = async (registry: Registry, name: string): Promise<number> => (await registry.metrics()).split('\n').filter((l) => l.startsWith(`${name}{`)).length;

function view(overrides: Partial<ActorMetricsView> = {}): ActorMetricsView {
  return {
    ownedProjects: () => [],
    workloadStates: () => [],
    workloadUsage: () => [],
    ownedTenants: () => [],
    ring: () => ({ epoch: 7, live: 2, members: 3 }),
    leaseValid: () => true,
    ...overrides,
  };
}

test('capSeries keeps the largest entries and sums the rest under other', (t) => {
  const counts = new Map([['a', 5], ['b', 1], ['c', 3], ['d', 2]]);
  t.deepEqual([...capSeries(counts, 2, '_other')], [['a', 5], ['c', 3], ['_other', 3]]);
  t.deepEqual([...capSeries(counts, 4, '_other')], [['a', 5], ['c', 3], ['d', 2], ['b', 1]]);
});

test('before the actor layer runs the gauges report nothing owned and no lease', async (t) => {
  const registry = new Registry();
  new ActorMetrics(registry);
  t.is(await seriesCount(registry, 'debughost_projects'), 0);
  t.is(await series(registry, 'debughost_actor_lease_valid'), 0);
  t.is(await series(registry, 'debughost_actor_ring_members', 'state="live"'), 0);
});

test('workload CPU and memory summed per tenant, no project label, tenants past the cap under _other', async (t) => {
  const registry = new Registry();
  const metrics = new ActorMetrics(registry);
  const uses = [
    { tenant: 'alice', cpuPercent: 90, memoryBytes: 200e6 },
    { tenant: 'alice', cpuPercent: 10, memoryBytes: 50e6 },
    { tenant: 'bob', cpuPercent: 5, memoryBytes: 1e6 },
  ];
  for (let i = 0; i < TENANT_SERIES_MAX + 3; i += 1) uses.push({ tenant: `t${i}`, cpuPercent: 0.1, memoryBytes: 1_000 });
  metrics.attach(view({ workloadUsage: () => uses }));
  t.is(await series(registry, 'debughost_workload_cpu_percent', 'tenant="alice"'), 100);
  t.is(await series(registry, 'debughost_workload_memory_bytes', 'tenant="alice"'), 250e6);
  t.is(await series(registry, 'debughost_workload_memory_bytes', 'tenant="bob"'), 1e6);
  t.is(await seriesCount(registry, 'debughost_workload_cpu_percent'), TENANT_SERIES_MAX + 1);
  t.false((await registry.metrics()).includes('project='), 'no series names a project');
  metrics.attach(view());
  t.is(await seriesCount(registry, 'debughost_workload_memory_bytes'), 0, 'no stale series once the workloads are gone');
});

test('projects by tenant and desired state, with tenants past the cap under _other', async (t) => {
  const registry = new Registry();
  const metrics = new ActorMetrics(registry);
  const projects = [{ tenant: 'big', desired: 'running' as const }, { tenant: 'big', desired: 'running' as const }, { tenant: 'big', desired: 'stopped' as const }];
  for (let i = 0; i < TENANT_SERIES_MAX + 5; i += 1) projects.push({ tenant: `t${i}`, desired: 'running' });
  metrics.attach(view({ ownedProjects: () => projects, workloadStates: () => ['running', 'running', 'exited'] }));
  t.is(await series(registry, 'debughost_projects', 'tenant="big",desired="running"'), 2);
  t.is(await series(registry, 'debughost_projects', 'tenant="big",desired="stopped"'), 1);
  t.is(await series(registry, 'debughost_projects', `tenant="${OTHER_TENANT}",desired="running"`), 6, 'the 6 smallest of 56 running tenants are summed');
  t.is(await seriesCount(registry, 'debughost_projects'), TENANT_SERIES_MAX + 1 + 1);
  t.is(await series(registry, 'debughost_workloads', 'state="running"'), 2);
  t.is(await series(registry, 'debughost_workloads', 'state="exited"'), 1);
  t.is(await series(registry, 'debughost_actor_ring_epoch'), 7);
  t.is(await series(registry, 'debughost_actor_ring_members', 'state="out"'), 1);
  t.is(await series(registry, 'debughost_actor_lease_valid'), 1);
  // A tenant whose last project went away leaves no stale series behind.
  metrics.attach(view({ ownedProjects: () => [{ tenant: 'big', desired: 'running' }] }));
  t.is(await seriesCount(registry, 'debughost_projects'), 1);
  metrics.attach(null);
  t.is(await seriesCount(registry, 'debughost_projects'), 0);
});

test('tenant quota use: the fullest tenants, a ratio per resource', async (t) => {
  const registry = new Registry();
  const metrics = new ActorMetrics(registry);
  const tenants = Array.from({ length: TENANT_SERIES_MAX + 1 }, (_, i) => ({ tenant: `t${i}`, ratios: { projects: i / 100, ports: 0, memory: 0 } }));
  metrics.attach(view({ ownedTenants: () => tenants }));
  t.is(await series(registry, 'debughost_tenant_quota_used_ratio', `tenant="t${TENANT_SERIES_MAX}",resource="projects"`), TENANT_SERIES_MAX / 100);
  t.is(await series(registry, 'debughost_tenant_quota_used_ratio', 'tenant="t0",resource="projects"'), undefined, 'the emptiest tenant is left out');
  t.is(await seriesCount(registry, 'debughost_tenant_quota_used_ratio'), TENANT_SERIES_MAX * 3);
  t.is(quotaRatio(90, 100), 0.9);
  t.is(quotaRatio(0, 0), 0);
  t.is(quotaRatio(1, 0), 1);
});

test('events feed their counters and histograms; tool labels are bounded', async (t) => {
  const registry = new Registry();
  const metrics = new ActorMetrics(registry);
  metrics.placement();
  metrics.moved('in');
  metrics.moved('out');
  metrics.moved('out');
  metrics.failover(4.2);
  metrics.forwarded('sent');
  metrics.quotaRejected('ports');
  metrics.rateLimited('tenant');
  metrics.mcpCall('project_status', 'forwarded', 0.004);
  metrics.mcpCall('project.status', 'local', 0.001);
  t.is(await series(registry, 'debughost_actor_placements_total'), 1);
  t.is(await series(registry, 'debughost_actor_moves_total', 'direction="out"'), 2);
  t.is(await series(registry, 'debughost_actor_failover_seconds_bucket', 'le="5"'), 1);
  t.is(await series(registry, 'debughost_actor_failover_seconds_bucket', 'le="3"'), 0);
  t.is(await series(registry, 'debughost_actor_forwarded_calls_total', 'direction="sent"'), 1);
  t.is(await series(registry, 'debughost_quota_rejections_total', 'resource="ports"'), 1);
  t.is(await series(registry, 'debughost_rate_limit_rejections_total', 'scope="tenant"'), 1);
  t.is(await series(registry, 'debughost_mcp_call_seconds_count', 'tool="project_status",route="forwarded"'), 1);
  t.is(await series(registry, 'debughost_mcp_call_seconds_count', `tool="${OTHER_TOOL}",route="local"`), 1, 'a name no tool has is not a label');
  for (let i = 0; i < TOOL_SERIES_MAX + 10; i += 1) metrics.mcpCall(`tool_${i}`, 'local', 0.001);
  const tools = new Set((await registry.metrics()).split('\n').filter((l) => l.startsWith('debughost_mcp_call_seconds_count{')).map((l) => /tool="([^"]*)"/.exec(l)?.[1]));
  t.is(tools.size, TOOL_SERIES_MAX + 1, 'the cap plus other');
});

test('the MCP call timer labels each call with the tool of its request and its route, and times failures too', async (t) => {
  const calls: [string, string, number][] = [];
  let now = 0;
  const backend = {
    call: async (_identity: Identity, call: { request: ActorRequest }) => {
      now += 250;
      if (call.request.type === 'stop') throw new Error('unavailable');
      return { type: 'usage' } as unknown as ActorResponse;
    },
  } as unknown as McpBackend;
  const timed = timedBackend(backend, { mcpCall: (tool, route, seconds) => calls.push([tool, route, seconds]) }, (key) => (key === 'projects/a/web' ? 'local' : 'forwarded'), () => now);
  const identity = {} as Identity;
  const call = (key: string, request: ActorRequest) => ({ key, request, deadlineMs: 1000, requestId: null }) as Parameters<McpBackend['call']>[1];
  await timed.call(identity, call('projects/a/web', { type: 'status' }), null);
  await timed.call(identity, call('tenants/a', { type: 'list' }), null);
  await t.throwsAsync(timed.call(identity, call('projects/b/api', { type: 'stop' }), null), { message: 'unavailable' });
  t.deepEqual(calls, [
    ['project_status', 'local', 0.25],
    ['project_list', 'forwarded', 0.25],
    ['project_stop', 'forwarded', 0.25],
  ]);
});
