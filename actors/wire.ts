// The actor protocol on the wire: typed requests and responses to and from the
// protobuf messages of proto/actor.proto. Decoding is where a peer's bytes
// become our types, so it checks every 64-bit number fits and runs a decoded
// request through the same schema the MCP tools use; a bad field is a value
// (WireError), never an exception that escapes to the node.
import { create } from '@bufbuild/protobuf';
import * as pb from '../proto/gen/actor_pb.ts';
import type { ForwardCall } from './components.ts';
import {
  ACTOR_ERROR_NAMES,
  type ActorErrorName,
  type ActorKey,
  type ActorRequest,
  type ActorResponse,
  type HealthCheckSpec,
  type Identity,
  type LiveWorkload,
  type ProjectEvent,
  type ProjectSpec,
  type ProjectStatusRecord,
  type ProjectView,
  type TenantQuota,
} from './messages.ts';
import { actorRequestSchema } from './schemas.ts';
import type { RestartPolicy } from './runtime.ts';

/** A peer's message that does not fit the protocol or its bounds. */
export class WireError extends Error {
  override readonly name = 'WireError';
}

const u64 = (value: number): bigint => BigInt(Math.max(0, Math.trunc(value)));

function num(value: bigint, field: string): number {
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number < 0) throw new WireError(`${field} ${value} is not a safe non-negative integer`);
  return number;
}

const opt = <T>(value: T | null): T | undefined => (value === null ? undefined : value);
const orNull = <T>(value: T | undefined): T | null => (value === undefined ? null : value);

// ---- specs and checks -------------------------------------------------------------

function checkToWire(check: HealthCheckSpec | null): pb.HealthCheck | undefined {
  if (check === null) return undefined;
  switch (check.type) {
    case 'http':
      return create(pb.HealthCheckSchema, { check: { case: 'http', value: create(pb.HttpCheckSchema, { path: check.path, port: check.port }) } });
    case 'tcp':
      return create(pb.HealthCheckSchema, { check: { case: 'tcp', value: create(pb.TcpCheckSchema, { port: check.port }) } });
    case 'log':
      return create(pb.HealthCheckSchema, { check: { case: 'log', value: create(pb.LogCheckSchema, { regex: check.regex }) } });
    default: {
      const never: never = check;
      return never;
    }
  }
}

function checkFromWire(check: pb.HealthCheck | undefined): HealthCheckSpec | null {
  switch (check?.check.case) {
    case undefined:
      return null;
    case 'http':
      return { type: 'http', path: check.check.value.path, port: check.check.value.port };
    case 'tcp':
      return { type: 'tcp', port: check.check.value.port };
    case 'log':
      return { type: 'log', regex: check.check.value.regex };
    default:
      throw new WireError('a health check names no known kind');
  }
}

function specToWire(spec: ProjectSpec): pb.ProjectSpec {
  return create(pb.ProjectSpecSchema, {
    command: opt(spec.command),
    image: opt(spec.image),
    cwd: opt(spec.cwd),
    env: { ...spec.env },
    ports: [...spec.ports],
    restart: spec.restart,
    healthCheck: checkToWire(spec.healthCheck),
    memoryBytes: u64(spec.memoryBytes),
  });
}

function specFromWire(spec: pb.ProjectSpec | undefined): ProjectSpec {
  if (spec === undefined) throw new WireError('a start carries no spec');
  return {
    command: orNull(spec.command),
    image: orNull(spec.image),
    cwd: orNull(spec.cwd),
    env: { ...spec.env },
    ports: [...spec.ports],
    restart: spec.restart as RestartPolicy,
    healthCheck: checkFromWire(spec.healthCheck),
    memoryBytes: num(spec.memoryBytes, 'memory_bytes'),
  };
}

// ---- requests -----------------------------------------------------------------------

function requestToWire(request: ActorRequest): pb.ActorRequest {
  const make = (value: pb.ActorRequest['request']): pb.ActorRequest => create(pb.ActorRequestSchema, { request: value });
  switch (request.type) {
    case 'start':
      return make({ case: 'start', value: create(pb.StartRequestSchema, { spec: specToWire(request.spec), ifVersion: request.ifVersion === undefined ? undefined : u64(request.ifVersion), waitMs: request.waitMs }) });
    case 'stop':
      return make({ case: 'stop', value: create(pb.StopRequestSchema, { ifVersion: request.ifVersion === undefined ? undefined : u64(request.ifVersion) }) });
    case 'restart':
      return make({ case: 'restart', value: create(pb.RestartRequestSchema, { waitMs: request.waitMs }) });
    case 'remove':
      return make({ case: 'remove', value: create(pb.RemoveRequestSchema, { ifVersion: request.ifVersion === undefined ? undefined : u64(request.ifVersion) }) });
    case 'status':
      return make({ case: 'status', value: create(pb.StatusRequestSchema, {}) });
    case 'logs': {
      const q = request.query;
      return make({
        case: 'logs',
        value: create(pb.LogsRequestSchema, { tail: opt(q.tail), since: q.since === null ? undefined : u64(q.since), grep: opt(q.grep), stream: q.stream, limit: q.limit }),
      });
    }
    case 'wait':
      return make({ case: 'wait', value: create(pb.WaitRequestSchema, { condition: checkToWire(request.condition), timeoutMs: request.timeoutMs }) });
    case 'exec':
      return make({ case: 'exec', value: create(pb.ExecRequestSchema, { command: request.command, timeoutMs: request.timeoutMs }) });
    case 'http': {
      const c = request.call;
      return make({
        case: 'http',
        value: create(pb.HttpRequestSchema, { port: c.port, method: c.method, path: c.path, headers: { ...c.headers }, body: opt(c.body), timeoutMs: c.timeoutMs }),
      });
    }
    case 'events':
      return make({ case: 'events', value: create(pb.EventsRequestSchema, { since: u64(request.since), kinds: [...request.kinds], limit: request.limit, waitMs: request.waitMs }) });
    case 'usage':
      return make({ case: 'usage', value: create(pb.UsageRequestSchema, {}) });
    case 'list':
      return make({ case: 'list', value: create(pb.ListRequestSchema, {}) });
    case 'quotaSet':
      return make({ case: 'quotaSet', value: create(pb.QuotaSetRequestSchema, { quota: quotaToWire(request.quota) }) });
    default: {
      const never: never = request;
      return never;
    }
  }
}

function quotaToWire(quota: TenantQuota): pb.Quota {
  return create(pb.QuotaSchema, { projects: u64(quota.projects), ports: u64(quota.ports), memoryBytes: u64(quota.memoryBytes), storedBytes: u64(quota.storedBytes) });
}

function quotaFromWire(quota: pb.Quota | undefined): TenantQuota {
  if (quota === undefined) throw new WireError('a quota is missing');
  return { projects: num(quota.projects, 'projects'), ports: num(quota.ports, 'ports'), memoryBytes: num(quota.memoryBytes, 'memory_bytes'), storedBytes: num(quota.storedBytes, 'stored_bytes') };
}

function requestFromWire(request: pb.ActorRequest | undefined): ActorRequest {
  const value = request?.request;
  switch (value?.case) {
    case 'start':
      return { type: 'start', spec: specFromWire(value.value.spec), ...(value.value.ifVersion === undefined ? {} : { ifVersion: num(value.value.ifVersion, 'if_version') }), waitMs: value.value.waitMs };
    case 'stop':
      return { type: 'stop', ...(value.value.ifVersion === undefined ? {} : { ifVersion: num(value.value.ifVersion, 'if_version') }) };
    case 'restart':
      return { type: 'restart', waitMs: value.value.waitMs };
    case 'remove':
      return { type: 'remove', ...(value.value.ifVersion === undefined ? {} : { ifVersion: num(value.value.ifVersion, 'if_version') }) };
    case 'status':
      return { type: 'status' };
    case 'logs': {
      const q = value.value;
      return {
        type: 'logs',
        query: { tail: orNull(q.tail), since: q.since === undefined ? null : num(q.since, 'since'), grep: orNull(q.grep), stream: q.stream as 'stdout' | 'stderr' | 'both', limit: q.limit },
      };
    }
    case 'wait':
      return { type: 'wait', condition: checkFromWire(value.value.condition), timeoutMs: value.value.timeoutMs };
    case 'exec':
      return { type: 'exec', command: value.value.command, timeoutMs: value.value.timeoutMs };
    case 'http': {
      const c = value.value;
      return { type: 'http', call: { port: c.port, method: c.method, path: c.path, headers: { ...c.headers }, body: orNull(c.body), timeoutMs: c.timeoutMs } };
    }
    case 'events':
      return { type: 'events', since: num(value.value.since, 'since'), kinds: [...value.value.kinds] as ProjectEvent['kind'][], limit: value.value.limit, waitMs: value.value.waitMs };
    case 'usage':
      return { type: 'usage' };
    case 'list':
      return { type: 'list' };
    case 'quotaSet':
      return { type: 'quotaSet', quota: quotaFromWire(value.value.quota) };
    default:
      throw new WireError('the call carries no request of a known kind');
  }
}

// ---- the envelope ----------------------------------------------------------------------

export function callToWire(call: ForwardCall): pb.CallRequest {
  return create(pb.CallRequestSchema, {
    key: call.key,
    requestId: call.requestId,
    callerEpoch: u64(call.callerEpoch),
    deadlineMs: Math.max(1, Math.min(0xffffffff, Math.round(call.deadlineMs))),
    hops: call.hops,
    fromNode: call.fromNode,
    identity: create(pb.IdentitySchema, { ...call.identity }),
    progress: call.progress,
    request: requestToWire(call.request),
  });
}

/** A call as a peer sent it, checked against the request schema; a WireError says what is wrong. */
export function callFromWire(call: pb.CallRequest): ForwardCall {
  const identity: Identity = { tokenId: call.identity?.tokenId ?? '', tokenName: call.identity?.tokenName ?? '', tenant: call.identity?.tenant ?? '', role: call.identity?.role ?? '' };
  const request = requestFromWire(call.request);
  const checked = actorRequestSchema.safeParse(request);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    throw new WireError(`the ${request.type} request is out of bounds: ${issue === undefined ? 'invalid' : `${issue.path.join('.') || '(root)'}: ${issue.message}`}`);
  }
  if (call.requestId.length === 0 || call.requestId.length > 128) throw new WireError('a call needs a request id of 1 to 128 characters');
  return {
    key: call.key as ActorKey,
    request,
    callerEpoch: num(call.callerEpoch, 'caller_epoch'),
    deadlineMs: call.deadlineMs,
    requestId: call.requestId,
    identity,
    hops: call.hops,
    fromNode: call.fromNode,
    progress: call.progress,
  };
}

// ---- responses ------------------------------------------------------------------------

function statusToWire(status: ProjectStatusRecord): pb.StatusRecord {
  return create(pb.StatusRecordSchema, {
    state: status.state,
    node: status.node,
    epoch: u64(status.epoch),
    ports: { ...status.ports },
    generation: u64(status.generation),
    restarts: status.restarts,
    exitCode: opt(status.exitCode),
    error: opt(status.error),
  });
}

function statusFromWire(status: pb.StatusRecord | undefined): ProjectStatusRecord | null {
  if (status === undefined) return null;
  return {
    state: status.state as ProjectStatusRecord['state'],
    node: status.node,
    epoch: num(status.epoch, 'epoch'),
    ports: { ...status.ports },
    generation: num(status.generation, 'generation'),
    restarts: status.restarts,
    exitCode: orNull(status.exitCode),
    error: orNull(status.error),
  };
}

function liveToWire(live: LiveWorkload): pb.Live {
  return create(pb.LiveSchema, {
    state: live.state,
    pid: opt(live.pid),
    containerId: opt(live.containerId),
    exitCode: opt(live.exitCode),
    signal: opt(live.signal),
    restarts: live.restarts,
    startedAtMs: live.startedAtMs === null ? undefined : u64(live.startedAtMs),
    error: opt(live.error),
    usage:
      live.usage === null
        ? undefined
        : create(pb.WorkloadUsageSchema, { cpuPercent: live.usage.cpuPercent, memoryBytes: u64(live.usage.memoryBytes), sampledAtMs: u64(live.usage.sampledAtMs), source: live.usage.source }),
  });
}

function liveFromWire(live: pb.Live | undefined): LiveWorkload | null {
  if (live === undefined) return null;
  return {
    state: live.state as LiveWorkload['state'],
    pid: orNull(live.pid),
    containerId: orNull(live.containerId),
    exitCode: orNull(live.exitCode),
    signal: orNull(live.signal),
    restarts: live.restarts,
    startedAtMs: live.startedAtMs === undefined ? null : num(live.startedAtMs, 'started_at_ms'),
    error: orNull(live.error),
    usage:
      live.usage === undefined
        ? null
        : {
            cpuPercent: live.usage.cpuPercent,
            memoryBytes: num(live.usage.memoryBytes, 'memory_bytes'),
            sampledAtMs: num(live.usage.sampledAtMs, 'sampled_at_ms'),
            source: live.usage.source as 'cgroup' | 'proc' | 'docker-stats',
          },
  };
}

function viewToWire(view: ProjectView): pb.ProjectView {
  return create(pb.ProjectViewSchema, {
    tenant: view.tenant,
    name: view.name,
    version: u64(view.version),
    desired: view.desired,
    spec: specToWire(view.spec),
    status: view.status === null ? undefined : statusToWire(view.status),
    live: view.live === null ? undefined : liveToWire(view.live),
    healthy: opt(view.healthy),
    healthDetail: opt(view.healthDetail),
  });
}

function viewFromWire(view: pb.ProjectView | undefined): ProjectView {
  if (view === undefined) throw new WireError('an answer lacks its project');
  return {
    tenant: view.tenant,
    name: view.name,
    version: num(view.version, 'version'),
    desired: view.desired === 'stopped' ? 'stopped' : 'running',
    spec: specFromWire(view.spec),
    status: statusFromWire(view.status),
    live: liveFromWire(view.live),
    healthy: orNull(view.healthy),
    healthDetail: orNull(view.healthDetail),
  };
}

export function eventToWire(event: ProjectEvent): pb.ProjectEvent {
  return create(pb.ProjectEventSchema, {
    seq: u64(event.seq),
    timeMs: u64(event.timeMs),
    kind: event.kind,
    node: event.node,
    exitCode: opt(event.exitCode),
    signal: opt(event.signal),
    detail: event.detail,
  });
}

export function eventFromWire(event: pb.ProjectEvent): ProjectEvent {
  return {
    seq: num(event.seq, 'seq'),
    timeMs: num(event.timeMs, 'time_ms'),
    kind: event.kind as ProjectEvent['kind'],
    node: event.node,
    exitCode: orNull(event.exitCode),
    signal: orNull(event.signal),
    detail: event.detail,
  };
}

export function responseToWire(response: ActorResponse): pb.ActorResponse {
  const make = (value: pb.ActorResponse['response']): pb.ActorResponse => create(pb.ActorResponseSchema, { response: value });
  switch (response.type) {
    case 'project':
      return make({ case: 'project', value: create(pb.ProjectResultSchema, { project: viewToWire(response.project), settleDetail: opt(response.settleDetail) }) });
    case 'removed':
      return make({ case: 'removed', value: create(pb.RemovedSchema, { tenant: response.tenant, name: response.name, existed: response.existed }) });
    case 'logs':
      return make({
        case: 'logs',
        value: create(pb.LogsResultSchema, {
          lines: response.lines.map((line) => create(pb.LogLineSchema, { seq: u64(line.seq), timeMs: u64(line.timeMs), stream: line.stream, line: line.line })),
          nextCursor: u64(response.nextCursor),
          more: response.more,
        }),
      });
    case 'wait':
      return make({
        case: 'wait',
        value: create(pb.WaitResultSchema, {
          ok: response.ok,
          condition: response.condition,
          elapsedMs: response.elapsedMs,
          detail: response.detail,
          lastLines: [...response.lastLines],
          project: viewToWire(response.project),
        }),
      });
    case 'exec':
      return make({
        case: 'exec',
        value: create(pb.ExecResultSchema, {
          exitCode: opt(response.exitCode),
          signal: opt(response.signal),
          timedOut: response.timedOut,
          stdout: response.stdout,
          stderr: response.stderr,
          truncated: response.truncated,
          durationMs: Math.round(response.durationMs),
        }),
      });
    case 'http':
      return make({
        case: 'http',
        value: create(pb.HttpResultSchema, { status: response.status, headers: { ...response.headers }, body: response.body, truncated: response.truncated, durationMs: Math.round(response.durationMs) }),
      });
    case 'events':
      return make({ case: 'events', value: create(pb.EventsResultSchema, { events: response.events.map(eventToWire), nextCursor: u64(response.nextCursor), more: response.more }) });
    case 'usage':
      return make({ case: 'usage', value: create(pb.UsageResultSchema, { tenant: response.tenant, quota: quotaToWire(response.quota), usage: quotaToWire(response.usage) }) });
    case 'list':
      return make({ case: 'list', value: create(pb.ListResultSchema, { tenant: response.tenant, projects: response.projects.map(viewToWire), more: response.more }) });
    case 'notOwner':
      return make({ case: 'notOwner', value: create(pb.NotOwnerSchema, { epoch: u64(response.epoch), ownerHint: opt(response.ownerHint) }) });
    case 'error':
      return make({ case: 'error', value: create(pb.ActorErrorSchema, { name: response.name, message: response.message }) });
    default: {
      const never: never = response;
      return never;
    }
  }
}

export function responseFromWire(response: pb.ActorResponse | undefined): ActorResponse {
  const value = response?.response;
  switch (value?.case) {
    case 'project':
      return { type: 'project', project: viewFromWire(value.value.project), settleDetail: orNull(value.value.settleDetail) };
    case 'removed':
      return { type: 'removed', tenant: value.value.tenant, name: value.value.name, existed: value.value.existed };
    case 'logs':
      return {
        type: 'logs',
        lines: value.value.lines.map((line) => ({ seq: num(line.seq, 'seq'), timeMs: num(line.timeMs, 'time_ms'), stream: line.stream === 'stderr' ? 'stderr' : 'stdout', line: line.line })),
        nextCursor: num(value.value.nextCursor, 'next_cursor'),
        more: value.value.more,
      };
    case 'wait': {
      const w = value.value;
      return { type: 'wait', ok: w.ok, condition: w.condition, elapsedMs: w.elapsedMs, detail: w.detail, lastLines: [...w.lastLines], project: viewFromWire(w.project) };
    }
    case 'exec': {
      const e = value.value;
      return { type: 'exec', exitCode: orNull(e.exitCode), signal: orNull(e.signal), timedOut: e.timedOut, stdout: e.stdout, stderr: e.stderr, truncated: e.truncated, durationMs: e.durationMs };
    }
    case 'http': {
      const h = value.value;
      return { type: 'http', status: h.status, headers: { ...h.headers }, body: h.body, truncated: h.truncated, durationMs: h.durationMs };
    }
    case 'events':
      return { type: 'events', events: value.value.events.map(eventFromWire), nextCursor: num(value.value.nextCursor, 'next_cursor'), more: value.value.more };
    case 'usage':
      return { type: 'usage', tenant: value.value.tenant, quota: quotaFromWire(value.value.quota), usage: quotaFromWire(value.value.usage) };
    case 'list':
      return { type: 'list', tenant: value.value.tenant, projects: value.value.projects.map(viewFromWire), more: value.value.more };
    case 'notOwner':
      return { type: 'notOwner', epoch: num(value.value.epoch, 'epoch'), ownerHint: orNull(value.value.ownerHint) };
    case 'error': {
      // A name we do not know keeps its message; it travels as unavailable, which callers may retry.
      const name = (ACTOR_ERROR_NAMES as readonly string[]).includes(value.value.name) ? (value.value.name as ActorErrorName) : 'UnavailableError';
      return { type: 'error', name, message: value.value.message.slice(0, 4096) };
    }
    default:
      throw new WireError('the answer carries no response of a known kind');
  }
}
