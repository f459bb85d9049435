// Prometheus metrics of the actor layer, on the node's registry: projects per
// node and tenant, the ring, tenant quota use (gauges read at scrape time from a
// view the actor layer attaches once it runs), and what the routing and
// ownership code reports as it happens (placements, moves, failovers, MCP call
// latency, forwarded calls, quota and rate-limit rejections).
//
// Cardinality is bounded: no label names a project; tenants are capped at
// TENANT_SERIES_MAX series per metric (the rest add up under tenant="_other");
// tool names are capped at TOOL_SERIES_MAX (the rest count as tool="other").
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** Tenant series per metric and node: enough for a dashboard's top tenants, bounded for Prometheus. */
export const TENANT_SERIES_MAX = 50;
/** Tool series: the MCP surface has about twenty tools; anything past this is a bug or an attack. */
export const TOOL_SERIES_MAX = 64;
export const OTHER_TENANT = '_other';
export const OTHER_TOOL = 'other';

/** A failover: the old owner's last heartbeat to the workload running on its new owner; 0.5 s to 2 min. */
const FAILOVER_BUCKETS_SECONDS = [0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 120];
/** One MCP call: a cached status (1 ms) to a project_wait or a start that waits for health (minutes). */
const MCP_CALL_BUCKETS_SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export type CallRoute = 'local' | 'forwarded';
export type ForwardDirection = 'sent' | 'served';
export type MoveDirection = 'in' | 'out';
export type QuotaResource = 'projects' | 'ports' | 'memory';
export type RateLimitScope = 'tenant' | 'token';

export interface OwnedProject {
  readonly tenant: string;
  readonly desired: 'running' | 'stopped';
}

/** The latest resource sample of one workload on this node. */
export interface WorkloadUse {
  readonly tenant: string;
  /** Percent of one core (200 = two cores busy). */
  readonly cpuPercent: number;
  readonly memoryBytes: number;
}

export interface TenantQuotaUse {
  readonly tenant: string;
  /** usage / quota per resource; 1 means the quota is reached. */
  readonly ratios: Readonly<Record<QuotaResource, number>>;
}

/** What the scrape-time gauges read; the actor layer attaches it once it runs. */
export interface ActorMetricsView {
  /** Projects whose owner, under the current ring, is this node. */
  ownedProjects(): Iterable<OwnedProject>;
  /** Observed state of each workload on this node (running, exited, crashLoop, …). */
  workloadStates(): Iterable<string>;
  /** CPU and memory of each workload on this node that has been sampled. */
  workloadUsage(): Iterable<WorkloadUse>;
  /** Quota use of the tenants whose actor this node owns. */
  ownedTenants(): Iterable<TenantQuotaUse>;
  ring(): { readonly epoch: number; readonly live: number; readonly members: number };
  leaseValid(): boolean;
}

const TOOL_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;
const RESOURCES: readonly QuotaResource[] = ['projects', 'ports', 'memory'];

/**
 * The `limit` largest entries of `counts` as they are, the rest summed under `other`:
 * a dashboard sees the tenants that matter and the total stays right.
 */
export function capSeries(counts: ReadonlyMap<string, number>, limit: number, other: string): Map<string, number> {
  const sorted = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const kept = new Map(sorted.slice(0, limit));
  const rest = sorted.slice(limit).reduce((sum, [, count]) => sum + count, 0);
  if (sorted.length > limit) kept.set(other, (kept.get(other) ?? 0) + rest);
  return kept;
}

export class ActorMetrics {
  private view: ActorMetricsView | null = null;
  private readonly placements: Counter;
  private readonly moves: Counter<'direction'>;
  private readonly failovers: Histogram;
  private readonly mcpCalls: Histogram<'tool' | 'route'>;
  private readonly forwards: Counter<'direction'>;
  private readonly quotaRejections: Counter<'resource'>;
  private readonly rateLimitRejections: Counter<'scope'>;
  private readonly actorFailures: Counter;
  private readonly tools = new Set<string>();

  constructor(registry: Registry) {
    const registers = [registry];
    const read = (): ActorMetricsView | null => this.view;
    new Gauge({
      name: 'debughost_projects',
      help: `Projects this node owns under the current ring, by tenant (the ${TENANT_SERIES_MAX} largest; the rest under tenant="${OTHER_TENANT}") and desired state.`,
      labelNames: ['tenant', 'desired'],
      registers,
      collect() {
        this.reset();
        const view = read();
        if (view === null) return;
        for (const desired of ['running', 'stopped'] as const) {
          const counts = new Map<string, number>();
          for (const project of view.ownedProjects()) if (project.desired === desired) counts.set(project.tenant, (counts.get(project.tenant) ?? 0) + 1);
          for (const [tenant, count] of capSeries(counts, TENANT_SERIES_MAX, OTHER_TENANT)) this.set({ tenant, desired }, count);
        }
      },
    });
    const usageGauge = (name: string, help: string, figure: (use: WorkloadUse) => number): void => {
      new Gauge({
        name,
        help: `${help}, by tenant (the ${TENANT_SERIES_MAX} largest; the rest under tenant="${OTHER_TENANT}"; sum over tenant for the node's total). No project label: a project's own figures are in project_status.`,
        labelNames: ['tenant'],
        registers,
        collect() {
          this.reset();
          const view = read();
          if (view === null) return;
          const sums = new Map<string, number>();
          for (const use of view.workloadUsage()) sums.set(use.tenant, (sums.get(use.tenant) ?? 0) + figure(use));
          for (const [tenant, sum] of capSeries(sums, TENANT_SERIES_MAX, OTHER_TENANT)) this.set({ tenant }, sum);
        },
      });
    };
    usageGauge('debughost_workload_cpu_percent', "CPU of this node's workloads in percent of one core, from their runtimes' latest samples", (use) => use.cpuPercent);
    usageGauge('debughost_workload_memory_bytes', "Memory of this node's workloads in bytes, from their runtimes' latest samples", (use) => use.memoryBytes);
    new Gauge({
      name: 'debughost_workloads',
      help: 'Workloads (processes or containers) on this node, by observed state.',
      labelNames: ['state'],
      registers,
      collect() {
        this.reset();
        const view = read();
        if (view === null) return;
        const counts = new Map<string, number>();
        for (const state of view.workloadStates()) counts.set(state, (counts.get(state) ?? 0) + 1);
        for (const [state, count] of counts) this.set({ state }, count);
      },
    });
    new Gauge({
      name: 'debughost_tenant_quota_used_ratio',
      help: `Usage over quota of the tenants whose actor this node owns, by resource (1 = quota reached; the ${TENANT_SERIES_MAX} fullest tenants).`,
      labelNames: ['tenant', 'resource'],
      registers,
      collect() {
        this.reset();
        const view = read();
        if (view === null) return;
        const fullest = [...view.ownedTenants()].sort((a, b) => Math.max(...Object.values(b.ratios)) - Math.max(...Object.values(a.ratios))).slice(0, TENANT_SERIES_MAX);
        for (const use of fullest) for (const resource of RESOURCES) this.set({ tenant: use.tenant, resource }, use.ratios[resource]);
      },
    });
    new Gauge({
      name: 'debughost_actor_ring_epoch',
      help: 'Epoch of the actor ring this node routes by (it changes with every membership or liveness change).',
      registers,
      collect() {
        this.set(read()?.ring().epoch ?? 0);
      },
    });
    new Gauge({
      name: 'debughost_actor_ring_members',
      help: 'Members of the actor ring: live (given actors) and out (marked down or draining).',
      labelNames: ['state'],
      registers,
      collect() {
        const ring = read()?.ring() ?? { live: 0, members: 0 };
        this.set({ state: 'live' }, ring.live);
        this.set({ state: 'out' }, ring.members - ring.live);
      },
    });
    new Gauge({
      name: 'debughost_actor_lease_valid',
      help: '1 while this node holds a valid owner lease (it may run its projects); 0 when cut off from the leader or not started.',
      registers,
      collect() {
        this.set(read()?.leaseValid() === true ? 1 : 0);
      },
    });
    this.placements = new Counter({ name: 'debughost_actor_placements_total', help: 'Projects this node began to run as their owner (a new project, or one taken over).', registers });
    this.moves = new Counter({
      name: 'debughost_actor_moves_total',
      help: 'Projects that moved because the ring changed: in (taken over here) or out (handed to another node).',
      labelNames: ['direction'],
      registers,
    });
    this.failovers = new Histogram({
      name: 'debughost_actor_failover_seconds',
      help: 'From the last heartbeat of a failed owner to its project running here, its new owner.',
      buckets: FAILOVER_BUCKETS_SECONDS,
      registers,
    });
    this.mcpCalls = new Histogram({
      name: 'debughost_mcp_call_seconds',
      help: 'MCP tool calls answered by this node, by tool and route (local: this node owns the actor; forwarded: served by the owner).',
      labelNames: ['tool', 'route'],
      buckets: MCP_CALL_BUCKETS_SECONDS,
      registers,
    });
    this.forwards = new Counter({
      name: 'debughost_actor_forwarded_calls_total',
      help: 'Actor calls forwarded between nodes: sent (to the owner, retries included) or served (here, as the owner).',
      labelNames: ['direction'],
      registers,
    });
    this.quotaRejections = new Counter({ name: 'debughost_quota_rejections_total', help: 'Calls refused because a tenant quota would be exceeded, by resource.', labelNames: ['resource'], registers });
    this.actorFailures = new Counter({ name: 'debughost_actor_failures_total', help: 'Actor turns that threw: the actor failed and restarts after a back-off; the node goes on (a bug to report).', registers });
    this.rateLimitRejections = new Counter({ name: 'debughost_rate_limit_rejections_total', help: 'Calls refused by a rate limit, by scope (tenant or token).', labelNames: ['scope'], registers });
  }

  actorFailed(): void {
    this.actorFailures.inc();
  }

  /** The actor layer runs (a view) or stopped (null); the gauges read it at each scrape. */
  attach(view: ActorMetricsView | null): void {
    this.view = view;
  }

  placement(): void {
    this.placements.inc();
  }

  moved(direction: MoveDirection): void {
    this.moves.inc({ direction });
  }

  failover(seconds: number): void {
    this.failovers.observe(seconds);
  }

  mcpCall(tool: string, route: CallRoute, seconds: number): void {
    this.mcpCalls.observe({ tool: this.toolLabel(tool), route }, seconds);
  }

  forwarded(direction: ForwardDirection): void {
    this.forwards.inc({ direction });
  }

  quotaRejected(resource: QuotaResource): void {
    this.quotaRejections.inc({ resource });
  }

  rateLimited(scope: RateLimitScope): void {
    this.rateLimitRejections.inc({ scope });
  }

  private toolLabel(tool: string): string {
    if (this.tools.has(tool)) return tool;
    if (!TOOL_PATTERN.test(tool) || this.tools.size >= TOOL_SERIES_MAX) return OTHER_TOOL;
    this.tools.add(tool);
    return tool;
  }
}
