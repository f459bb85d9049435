// What the actor-layer gauges read at scrape time, from the applied store, the
// ring and the runtimes of a running NodeActors. Scrapes are rare (seconds apart)
// and the store holds at most the projects the quotas allow, so each scrape scans.
// Records are read through the host's RecordReader (schema-checked, cached by revision).
import type { ActorStore } from '../actors/components.ts';
import type { ActorHost } from '../actors/host.ts';
import { PROJECTS_PREFIX, QUOTA_DEFAULT, USAGE_ZERO, parseActorKey, tenantActorKey, type TenantQuota, type TenantUsage } from '../actors/messages.ts';
import type { CompositeRuntime } from '../actors/runtime-composite.ts';
import { prefixEnd } from '../consensus/kv-state-machine.ts';
import type { ActorMetricsView, OwnedProject, TenantQuotaUse, WorkloadUse } from './actor-metrics.ts';

const TENANTS_PREFIX = 'tenants/';

/** usage / quota; a quota of 0 with nothing used is empty, with something used full. */
export function quotaRatio(used: number, quota: number): number {
  if (quota <= 0) return used > 0 ? 1 : 0;
  return used / quota;
}

export function actorMetricsView(node: string, host: ActorHost, store: ActorStore, runtime: CompositeRuntime): ActorMetricsView {
  return {
    *ownedProjects(): Iterable<OwnedProject> {
      const placement = host.placement();
      for (const entry of store.view().range(PROJECTS_PREFIX, prefixEnd(PROJECTS_PREFIX))) {
        if (placement.owner(entry.key) !== node) continue;
        const parsed = parseActorKey(entry.key);
        const record = host.records.project(entry);
        if (parsed?.kind !== 'project' || record === null) continue;
        yield { tenant: parsed.tenant, desired: record.desired };
      }
    },
    *workloadStates(): Iterable<string> {
      for (const status of runtime.list()) yield status.state;
    },
    *workloadUsage(): Iterable<WorkloadUse> {
      for (const status of runtime.list()) {
        if (status.usage === undefined) continue;
        yield { tenant: status.project.tenant, cpuPercent: status.usage.cpuPercent, memoryBytes: status.usage.memoryBytes };
      }
    },
    *ownedTenants(): Iterable<TenantQuotaUse> {
      const placement = host.placement();
      const records = new Map<string, { quota?: TenantQuota; usage?: TenantUsage }>();
      for (const entry of store.view().range(TENANTS_PREFIX, prefixEnd(TENANTS_PREFIX))) {
        const [, tenant, kind] = entry.key.split('/');
        if (tenant === undefined || (kind !== 'quota' && kind !== 'usage')) continue;
        if (placement.owner(tenantActorKey(tenant)) !== node) continue;
        const record = records.get(tenant) ?? {};
        if (kind === 'quota') record.quota = host.records.quota(entry) ?? QUOTA_DEFAULT;
        else record.usage = host.records.usage(entry) ?? USAGE_ZERO;
        records.set(tenant, record);
      }
      for (const [tenant, { quota = QUOTA_DEFAULT, usage = USAGE_ZERO }] of records) {
        yield {
          tenant,
          ratios: {
            projects: quotaRatio(usage.projects, quota.projects),
            ports: quotaRatio(usage.ports, quota.ports),
            memory: quotaRatio(usage.memoryBytes, quota.memoryBytes),
          },
        };
      }
    },
    ring() {
      const placement = host.placement();
      return { epoch: placement.epoch, live: placement.live.length, members: placement.members.length };
    },
    leaseValid: () => host.leaseState() === 'valid',
  };
}
