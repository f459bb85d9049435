// The Grafana dashboard reads only what nodes export: every query's metric names are checked against the live
// /metrics of a real node that has run a project through MCP (so the actor metrics carry samples), every query parses
// (promtool check rules, each query as a recording rule), and the checker names a metric no node exports.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import test from 'ava';
import { stringify } from 'yaml';
import { LocalCluster } from '../node/local-cluster.ts';
import { dashboardQueries, metricNamesOf, parseExposition, sampleValue, unexportedMetrics, type Exposition } from './testing/promql.ts';
import { testWith } from './testing/tools.ts';

const run = promisify(execFile);
const DASHBOARD = join(import.meta.dirname, 'grafana', 'dashboards', 'debughost.json');
const dashboard: unknown = JSON.parse(await readFile(DASHBOARD, 'utf8'));

test('metric names are read out of PromQL: functions, labels, durations and grouping left out', (t) => {
  t.deepEqual(metricNamesOf('histogram_quantile(0.99, sum by (node, le) (rate(debughost_storage_fsync_seconds_bucket{node=~"$node"}[5m])))'), ['debughost_storage_fsync_seconds_bucket']);
  t.deepEqual(metricNamesOf('debughost_data_dir_free_bytes{node="a"} / debughost_data_dir_size_bytes < 1e9 or up == bool 0'), ['debughost_data_dir_free_bytes', 'debughost_data_dir_size_bytes', 'up']);
  t.deepEqual(metricNamesOf('topk(10, max by (tenant, resource) (x_ratio)) > 0.9 unless on (tenant) y'), ['x_ratio', 'y']);
});

test('the exposition check knows histogram series and names what is missing', (t) => {
  const exposition = parseExposition('# TYPE a_seconds histogram\n# TYPE b gauge\nb{node="n1"} 1\n');
  const board = { panels: [{ title: 'p', targets: [{ expr: 'rate(a_seconds_bucket[5m]) + a_seconds_count + b' }, { expr: 'debughost_no_such_metric' }] }] };
  t.deepEqual(unexportedMetrics(board, exposition), ["panel 'p': debughost_no_such_metric"]);
});

test('the dashboard has panels for the cluster, storage, actors and MCP, and a node variable', (t) => {
  const queries = dashboardQueries(dashboard);
  t.true(queries.length >= 30, `${queries.length} queries`);
  const names = new Set(queries.flatMap((q) => metricNamesOf(q.expr)));
  for (const name of ['debughost_raft_has_leader', 'debughost_storage_fsync_seconds_bucket', 'debughost_projects', 'debughost_actor_failover_seconds_bucket', 'debughost_mcp_call_seconds_bucket', 'debughost_actor_forwarded_calls_total', 'debughost_quota_rejections_total', 'debughost_rate_limit_rejections_total', 'debughost_storage_nospace_alarm']) {
    t.true(names.has(name), `a panel shows ${name}`);
  }
  t.true(queries.some((q) => q.where === "variable 'node'"));
});

(await testWith('promtool'))('every dashboard query is valid PromQL (promtool check rules)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'debughost-dashboard-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // Grafana's $node is substituted before Prometheus sees a query; any regex will do for the syntax.
  const rules = dashboardQueries(dashboard).map((q, i) => ({ record: `debughost:dashboard_query_${i}`, expr: q.expr.replaceAll('$node', '.*') }));
  await writeFile(join(dir, 'queries.yml'), stringify({ groups: [{ name: 'dashboard', rules }] }));
  const { stdout } = await run('promtool', ['check', 'rules', join(dir, 'queries.yml')]);
  t.regex(stdout, new RegExp(`SUCCESS: ${rules.length} rules found`));
});

test('every metric the dashboard reads is on a live node\'s /metrics after a project ran through MCP', async (t) => {
  const cluster = await LocalCluster.create(1);
  t.teardown(() => cluster.stop());
  const member = cluster.members[0] as (typeof cluster.members)[number];
  cluster.start(member);
  await cluster.waitForLeader(30_000);
  const client = new Client({ name: 'debughost-dashboard-test', version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`http://${member.mcp}/mcp`), { requestInit: { headers: member.mcpHeaders } }));
  t.teardown(() => client.close());
  const started = (await client.callTool({ name: 'project_start', arguments: { name: 'sleeper', command: 'exec sleep 300', waitMs: 20_000 } }, undefined, { timeout: 60_000 })) as { isError?: boolean };
  t.not(started.isError, true, JSON.stringify(started));
  await client.callTool({ name: 'project_status', arguments: { name: 'sleeper' } });
  const text = await (await fetch(`http://${member.mcp}/metrics`)).text();
  const exposition: Exposition = parseExposition(text);
  t.deepEqual(unexportedMetrics(dashboard, exposition), []);
  // The actor metrics carry the project, not only their declarations.
  const sample = (name: string, labels: Record<string, string> = {}): number | undefined => sampleValue(text, name, { node: 'n1', ...labels });
  t.is(sample('debughost_projects', { tenant: 'default', desired: 'running' }), 1);
  t.is(sample('debughost_workloads', { state: 'running' }), 1);
  t.is(sample('debughost_mcp_call_seconds_count', { tool: 'project_start', route: 'local' }), 1);
  t.is(sample('debughost_mcp_call_seconds_count', { tool: 'project_status', route: 'local' }), 1);
  t.is(sample('debughost_tenant_quota_used_ratio', { tenant: 'default', resource: 'projects' }), 0.01, 'one project of the default quota of 100');
  t.is(sample('debughost_actor_lease_valid'), 1);
  t.is(sample('debughost_actor_ring_members', { state: 'live' }), 1);
  t.true((sample('debughost_data_dir_free_bytes') ?? 0) > 0);
});
