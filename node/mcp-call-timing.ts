// Times every MCP tool call a node answers (debughost_mcp_call_seconds): an
// McpBackend around another, labelling each call with the tool its request
// stands for and whether this node owned the actor (local) or the call went to
// the owner (forwarded). The tool label comes from the typed request, so it is
// one of a fixed set, never free text.
import type { ActorRequest } from '../actors/messages.ts';
import type { CallRoute } from './actor-metrics.ts';
import type { McpBackend } from './mcp.ts';

export interface CallTimer {
  mcpCall(tool: string, route: CallRoute, seconds: number): void;
}

/** Route of a call to `key`: local when this node owns it under the current ring. */
export type RouteOf = (key: string) => CallRoute;

const TOOL_OF: Readonly<Record<ActorRequest['type'], string>> = {
  start: 'project_start',
  stop: 'project_stop',
  restart: 'project_restart',
  remove: 'project_remove',
  status: 'project_status',
  logs: 'project_logs',
  wait: 'project_wait',
  exec: 'project_exec',
  http: 'project_http',
  events: 'project_events',
  quotaSet: 'tenant_quota_set',
  usage: 'tenant_usage',
  list: 'project_list',
};

export function timedBackend(backend: McpBackend, timer: CallTimer, routeOf: RouteOf, nowMs: () => number = () => performance.now()): McpBackend {
  return {
    ...backend,
    call: (identity, call, progress) => {
      const route = routeOf(call.key);
      const started = nowMs();
      return backend.call(identity, call, progress).finally(() => timer.mcpCall(TOOL_OF[call.request.type], route, (nowMs() - started) / 1000));
    },
  };
}
