// TenantActor: the owner of one tenant's quota (`tenants/<tenant>/quota`) and
// the reader of its usage and project list. Usage itself is changed by the
// ProjectActors, in the txn that starts, stops or removes a project, so a
// reservation is atomic with the change it pays for.
import { prefixEnd } from '../consensus/kv-state-machine.ts';
import type { Actor, Reply } from './actor-system.ts';
import type { ActorStore } from './components.ts';
import { fencedWrite } from './fenced-write.ts';
import { QUOTA_DEFAULT, USAGE_ZERO, errorResponse, quotaKey, statusKey, usageKey, type ActorResponse, type ProjectView, type TenantQuota } from './messages.ts';
import type { ActorMessage } from './project-actor.ts';
import type { RecordReader } from './records.ts';

export interface TenantServices {
  readonly store: ActorStore;
  readonly records: RecordReader;
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

  receive(message: ActorMessage, reply: Reply<ActorResponse>): void {
    switch (message.kind) {
      case 'reconcile':
      case 'release':
      case 'lifecycle':
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
      case 'logs':
      case 'wait':
      case 'exec':
      case 'http':
      case 'events':
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
      quota: this.services.records.quota(view.get(quotaKey(this.tenant))) ?? QUOTA_DEFAULT,
      usage: this.services.records.usage(view.get(usageKey(this.tenant))) ?? USAGE_ZERO,
    };
  }

  private list(): ActorResponse {
    const view = this.services.store.view();
    const prefix = `projects/${this.tenant}/`;
    const projects: ProjectView[] = [];
    const entries = view.range(prefix, prefixEnd(prefix), LIST_PROJECTS_MAX + 1);
    for (const entry of entries.slice(0, LIST_PROJECTS_MAX)) {
      const record = this.services.records.project(entry);
      if (record === null) continue;
      const name = entry.key.slice(prefix.length);
      const status = this.services.records.status(view.get(statusKey(this.tenant, name)));
      projects.push({ tenant: this.tenant, name, version: entry.version, desired: record.desired, spec: record.spec, status, live: null, healthy: null, healthDetail: null });
    }
    return { type: 'list', tenant: this.tenant, projects, more: entries.length > LIST_PROJECTS_MAX };
  }

  private setQuota(quota: TenantQuota, reply: Reply<ActorResponse>): void {
    const invalid = validateQuota(quota);
    if (invalid !== null) return reply(errorResponse('InvalidRequestError', invalid));
    const epoch = this.services.ownedEpoch(this.key);
    if (epoch === null) return reply({ type: 'notOwner', epoch: 0, ownerHint: null });
    const write = { epoch, compare: [], success: [{ type: 'put' as const, key: quotaKey(this.tenant), value: JSON.stringify(quota) }], inspect: [] };
    fencedWrite(this.services.store, write, (outcome) => {
      switch (outcome.type) {
        case 'applied':
          return this.services.whenApplied(outcome.revision, () => reply(this.usage()));
        case 'fenced':
          return reply({ type: 'notOwner', epoch: outcome.epoch, ownerHint: null });
        case 'conflict':
          return reply(errorResponse('VersionConflictError', `quota of ${this.tenant} changed meanwhile; retry`));
        case 'unavailable':
          return reply(errorResponse('UnavailableError', `the quota was not recorded (${outcome.detail}); retry`));
        case 'unknown':
          return reply(errorResponse('OutcomeUnknownError', `the quota may or may not have been recorded (${outcome.detail}); read it with tenant_usage, then retry`));
        default: {
          const never: never = outcome;
          return never;
        }
      }
    });
  }
}
