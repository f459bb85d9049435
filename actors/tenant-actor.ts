// TenantActor: the owner of one tenant's quota (`tenants/<tenant>/quota`) and
// the reader of its usage and project list. Usage itself is changed by the
// ProjectActors, in the txn that starts, stops or removes a project, so a
// reservation is atomic with the change it pays for.
import { prefixEnd } from '../consensus/kv-state-machine.ts';
import type { Actor } from './actor-system.ts';
import type { ActorStore } from './components.ts';
import { fencedWrite } from './fenced-write.ts';
import {
  QUOTA_DEFAULT,
  USAGE_ZERO,
  errorResponse,
  parseRecord,
  quotaKey,
  statusKey,
  usageKey,
  type ActorResponse,
  type ProjectRecord,
  type ProjectStatusRecord,
  type ProjectView,
  type TenantQuota,
  type TenantUsage,
} from './messages.ts';
import type { ActorMessage } from './project-actor.ts';

export interface TenantServices {
  readonly store: ActorStore;
  readonly fencing: boolean;
  ownedEpoch(key: string): number | null;
  whenApplied(revision: number, callback: (reached: boolean) => void): void;
}

/** Most projects one list answer carries. */
export const LIST_PROJECTS_MAX = 1000;

export function validateQuota(quota: TenantQuota): string | null {
  for (const [name, value] of Object.entries(quota)) {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) return `quota ${name} is ${String(value)}; give a whole number >= 0`;
  }
  return null;
}

export class TenantActor implements Actor<ActorMessage, ActorResponse> {
  private readonly key: string;

  constructor(
    readonly tenant: string,
    private readonly services: TenantServices,
  ) {
    this.key = `tenants/${tenant}`;
  }

  receive(message: ActorMessage, reply: (response: ActorResponse) => void): void {
    switch (message.kind) {
      case 'reconcile':
      case 'release':
        // A tenant holds no workload: nothing to start or stop.
        return reply(this.usage());
      case 'call':
        break;
      default: {
        const never: never = message;
        return never;
      }
    }
    const request = message.request;
    switch (request.type) {
      case 'usage':
        return reply(this.usage());
      case 'list':
        return reply(this.list());
      case 'quotaSet':
        return this.setQuota(request.quota, reply);
      case 'start':
      case 'stop':
      case 'restart':
      case 'remove':
      case 'status':
        return reply(errorResponse('InvalidRequestError', `request '${request.type}' goes to a project key, not ${this.key}`));
      default: {
        const never: never = request;
        return never;
      }
    }
  }

  private usage(): ActorResponse {
    const view = this.services.store.view();
    return {
      type: 'usage',
      tenant: this.tenant,
      quota: parseRecord<TenantQuota>(view.get(quotaKey(this.tenant))?.value) ?? QUOTA_DEFAULT,
      usage: parseRecord<TenantUsage>(view.get(usageKey(this.tenant))?.value) ?? USAGE_ZERO,
    };
  }

  private list(): ActorResponse {
    const view = this.services.store.view();
    const prefix = `projects/${this.tenant}/`;
    const projects: ProjectView[] = [];
    for (const entry of view.range(prefix, prefixEnd(prefix), LIST_PROJECTS_MAX)) {
      const record = parseRecord<ProjectRecord>(entry.value);
      if (record === null) continue;
      const name = entry.key.slice(prefix.length);
      const status = parseRecord<ProjectStatusRecord>(view.get(statusKey(this.tenant, name))?.value);
      projects.push({ tenant: this.tenant, name, version: entry.version, desired: record.desired, spec: record.spec, status });
    }
    return { type: 'list', tenant: this.tenant, projects };
  }

  private setQuota(quota: TenantQuota, reply: (response: ActorResponse) => void): void {
    const invalid = validateQuota(quota);
    if (invalid !== null) return reply(errorResponse('InvalidRequestError', invalid));
    const epoch = this.services.ownedEpoch(this.key);
    if (epoch === null) return reply({ type: 'notOwner', epoch: 0, ownerHint: null });
    const write = { epoch, compare: [], success: [{ type: 'put' as const, key: quotaKey(this.tenant), value: JSON.stringify(quota) }], inspect: [] };
    fencedWrite(this.services.store, this.services.fencing, write, (outcome) => {
      switch (outcome.type) {
        case 'applied':
          return this.services.whenApplied(outcome.revision, () => reply(this.usage()));
        case 'fenced':
          return reply({ type: 'notOwner', epoch: outcome.epoch, ownerHint: null });
        case 'conflict':
          return reply(errorResponse('VersionConflictError', `quota of ${this.tenant} changed meanwhile; retry`));
        case 'unavailable':
        case 'unknown':
          return reply(errorResponse('UnavailableError', `the quota may not have been recorded (${outcome.detail}); retry`));
        default: {
          const never: never = outcome;
          return never;
        }
      }
    });
  }
}
