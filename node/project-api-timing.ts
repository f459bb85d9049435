// Times every call of the MCP front end into the cluster (debughost_mcp_call_seconds):
// a ProjectApi around another, labelling each call with its tool and whether this
// node owned the actor (local) or the call went to the owner (forwarded).
import { projectActorKey, tenantActorKey } from '../actors/messages.ts';
import type { CallRoute } from './actor-metrics.ts';
import type { ProjectApi } from './project-api.ts';

export interface CallTimer {
  mcpCall(tool: string, route: CallRoute, seconds: number): void;
}

/** Route of a call to `key`: local when this node owns it under the current ring. */
export type RouteOf = (key: string) => CallRoute;

export function timedProjectApi(api: ProjectApi, timer: CallTimer, routeOf: RouteOf, nowMs: () => number = () => performance.now()): ProjectApi {
  const time = <T>(tool: string, key: string, call: () => Promise<T>): Promise<T> => {
    const route = routeOf(key);
    const started = nowMs();
    const done = (): void => timer.mcpCall(tool, route, (nowMs() - started) / 1000);
    return call().finally(done);
  };
  const project = (ref: { tenant: string; name: string }): string => projectActorKey(ref.tenant, ref.name);
  return {
    start: (input, progress, signal) => time('project_start', project(input), () => api.start(input, progress, signal)),
    stop: (ref) => time('project_stop', project(ref), () => api.stop(ref)),
    restart: (ref, progress, signal) => time('project_restart', project(ref), () => api.restart(ref, progress, signal)),
    remove: (ref) => time('project_remove', project(ref), () => api.remove(ref)),
    status: (ref) => time('project_status', project(ref), () => api.status(ref)),
    list: (tenant) => time('project_list', tenantActorKey(tenant), () => api.list(tenant)),
    logs: (input) => time('project_logs', project(input), () => api.logs(input)),
    wait: (input, progress, signal) => time('project_wait', project(input), () => api.wait(input, progress, signal)),
    exec: (input, signal) => time('project_exec', project(input), () => api.exec(input, signal)),
    http: (input, signal) => time('project_http', project(input), () => api.http(input, signal)),
    usage: (tenant) => time('tenant_usage', tenantActorKey(tenant), () => api.usage(tenant)),
    setQuota: (tenant, quota) => time('tenant_quota_set', tenantActorKey(tenant), () => api.setQuota(tenant, quota)),
    // A subscription, not a call: it lasts as long as the client follows.
    followLogs: (ref, listener) => api.followLogs(ref, listener),
  };
}
