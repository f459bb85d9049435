// What the actor layer needs from the rest of a node, as small injected
// interfaces: the replicated store, a view of Raft, the forwarder to other
// nodes, a port allocator and the runtime. node/ gives the real ones; the
// simulator gives its own. All are callback-based so a simulated run stays
// synchronous (see actor-system.ts); `callbackRuntime` adapts a promise-based
// Runtime driver.
import type { KvCommand, KvResult } from '../consensus/kv-state-machine.ts';
import type { WriteOutcome } from '../consensus/raft-node.ts';
import type { ActorKey, ActorRequest, ActorResponse, ExecAnswer, HttpAnswer, HttpCall, Identity, ProgressFn } from './messages.ts';
import type { KvView } from './placement.ts';
import { RuntimeError, type ExecSpec, type ProjectRef, type Runtime, type RuntimeEvent, type WorkloadSpec, type WorkloadStatus } from './runtime.ts';

export type StoreWriteOutcome =
  | { readonly ok: true; readonly result: Extract<KvResult, { ok: true }> }
  /** Definitely not applied (no leader, refused, malformed). */
  | { readonly ok: false; readonly reason: 'unavailable'; readonly detail: string }
  /** May or may not have been applied (timeout, lost answer). */
  | { readonly ok: false; readonly reason: 'unknown'; readonly detail: string };

export interface ActorStore {
  /** The state applied on this node (may lag the leader). */
  view(): KvView & { readonly revision: number };
  /** Propose a command through the Raft leader (forwarded if this node is not it); answers once applied there. */
  propose(command: KvCommand, callback: (outcome: StoreWriteOutcome) => void): void;
}

/** What the host reads of the local Raft node, for its lease and the leader's failure detector. */
export interface RaftView {
  isLeader(): boolean;
  leader(): string | null;
}

export type ForwardOutcome =
  | { readonly ok: true; readonly response: ActorResponse }
  | { readonly ok: false; readonly reason: 'unreachable' | 'deadline'; readonly detail: string };

export interface ForwardCall {
  readonly key: ActorKey;
  readonly request: ActorRequest;
  /** The caller's ring epoch: the owner first catches up to it, so the two agree on the ring. */
  readonly callerEpoch: number;
  readonly deadlineMs: number;
  readonly requestId: string;
  readonly identity: Identity;
  /** Hops made so far, counting this one. */
  readonly hops: number;
  readonly fromNode: string;
  /** Whether the caller wants progress events before the answer. */
  readonly progress: boolean;
}

/** Carries a call to the owner node and its answer back (gRPC in actors/forwarder-grpc.ts, the simulated network in simulator/). */
export interface Forwarder {
  forward(owner: string, call: ForwardCall, onProgress: ProgressFn | null, callback: (outcome: ForwardOutcome) => void): void;
}

/** One attempt of a health check, as the owner sees it. */
export interface CheckResult {
  readonly ok: boolean;
  /** One line: what was seen (status code, error, matching line). */
  readonly detail: string;
}

/** A probe of a port on this node (the owner): HTTP GET of a path, or a TCP connect. */
export type PortProbe = { readonly kind: 'http'; readonly port: number; readonly path: string } | { readonly kind: 'tcp'; readonly port: number };

export interface LogPageView {
  readonly lines: readonly { readonly seq: number; readonly timeMs: number; readonly stream: 'stdout' | 'stderr'; readonly line: string }[];
  readonly nextCursor: number;
  readonly hasMore: boolean;
}

/** The owner node's captured log lines of its projects. */
export interface LogReader {
  query(project: ProjectRef, query: { tail?: number; since?: number; grep?: string; stream?: 'stdout' | 'stderr' | 'both'; limit?: number }): LogPageView;
  /** The newest line's cursor (0: no lines). */
  cursor(project: ProjectRef): number;
  lastLines(project: ProjectRef, count: number): string[];
  /** Whether any line of the project is kept on this node (so that a query does not allocate for a name that never ran here). */
  has(project: ProjectRef): boolean;
  /** Forget the project's lines (remove). */
  drop(project: ProjectRef, callback: () => void): void;
}

/** What the owner's actor does next to a workload besides running it: probes and HTTP calls. */
export interface ProjectIo {
  probe(probe: PortProbe, attemptMsMax: number, callback: (result: CheckResult) => void): void;
  http(port: number, call: HttpCall, callback: (outcome: { readonly ok: true; readonly answer: HttpAnswer } | { readonly ok: false; readonly error: string }) => void): void;
  readonly logs: LogReader;
}

/** No free port is left in the node's range. */
export class PortsExhaustedError extends Error {
  override readonly name = 'PortsExhaustedError';
}

/** Picks port numbers on one node; `inUse` is what the store records as taken there. */
export interface PortAllocator {
  allocate(node: string, names: readonly string[], inUse: ReadonlySet<number>): Record<string, number> | PortsExhaustedError;
}

/** A simple allocator: the lowest free ports of [firstPort, lastPort]. */
export function rangePortAllocator(firstPort: number, lastPort: number): PortAllocator {
  return {
    allocate(node, names, inUse) {
      const out: Record<string, number> = {};
      let port = firstPort;
      for (const name of names) {
        while (port <= lastPort && inUse.has(port)) port += 1;
        if (port > lastPort) return new PortsExhaustedError(`no free port in ${firstPort}-${lastPort} on node ${node}; stop or remove projects, or widen the range`);
        out[name] = port;
        port += 1;
      }
      return out;
    },
  };
}

export type RuntimeOutcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: RuntimeError };

/** The Runtime, in callback form. */
export interface RuntimeDriver {
  readonly kind: string;
  start(spec: WorkloadSpec, callback: (outcome: RuntimeOutcome<WorkloadStatus>) => void): void;
  stop(project: ProjectRef, graceMs: number, callback: (outcome: RuntimeOutcome<WorkloadStatus | null>) => void): void;
  remove(project: ProjectRef, callback: (outcome: RuntimeOutcome<null>) => void): void;
  status(project: ProjectRef): WorkloadStatus | null;
  list(): WorkloadStatus[];
  subscribe(listener: (event: RuntimeEvent) => void): () => void;
  /** A one-off command next to the workload; absent when the runtime cannot run one. */
  exec?(project: ProjectRef, spec: ExecSpec, callback: (outcome: RuntimeOutcome<ExecAnswer>) => void): void;
}

const asRuntimeError = (error: unknown): RuntimeError =>
  error instanceof RuntimeError ? error : new RuntimeError('RuntimeUnavailableError', `runtime failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });

/** Adapt a promise-based Runtime (process or Docker driver) to the callback form the actors use. */
export function callbackRuntime(runtime: Runtime): RuntimeDriver {
  const settle = <T>(promise: Promise<T>, callback: (outcome: RuntimeOutcome<T>) => void): void => {
    promise.then(
      (value) => callback({ ok: true, value }),
      (error: unknown) => callback({ ok: false, error: asRuntimeError(error) }),
    );
  };
  return {
    kind: runtime.kind,
    start: (spec, callback) => settle(runtime.start(spec), callback),
    stop: (project, graceMs, callback) => settle(runtime.stop(project, graceMs), callback),
    remove: (project, callback) => settle(runtime.remove(project).then(() => null), callback),
    status: (project) => runtime.status(project),
    list: () => runtime.list(),
    subscribe: (listener) => runtime.subscribe(listener),
    ...(runtime.exec === undefined
      ? {}
      : {
          exec: (project: ProjectRef, spec: ExecSpec, callback: (outcome: RuntimeOutcome<ExecAnswer>) => void) => {
            // The call's own deadline bounds it: the runtime kills the command at spec.timeoutMs.
            const controller = new AbortController();
            settle(runtime.exec?.(project, spec, controller.signal) ?? Promise.reject(new Error('no exec')), callback);
          },
        }),
  };
}

/** Workload states that count as "running here" for hand-off and exactly-once. */
export const isActiveState = (state: WorkloadStatus['state']): boolean => state === 'starting' || state === 'running' || state === 'crashLoop';
/** Nothing runs and nothing starts again by itself (an 'exited' workload may have a restart pending). */
export const isSettledState = (state: WorkloadStatus['state']): boolean => state === 'stopped' || state === 'failed';

/** Map the Raft driver's outcome to the store's: only "unknown" may have been applied. */
export function storeOutcome(outcome: WriteOutcome<KvResult>): StoreWriteOutcome {
  if (outcome.ok) {
    const result = outcome.result;
    return result.ok ? { ok: true, result } : { ok: false, reason: 'unavailable', detail: `${result.error.name}: ${result.error.message}` };
  }
  switch (outcome.reason) {
    case 'notLeader':
      return { ok: false, reason: 'unavailable', detail: `not the leader (leader ${outcome.leaderHint ?? 'unknown'})` };
    case 'rejected':
      return { ok: false, reason: 'unavailable', detail: outcome.detail };
    case 'unknown':
      return { ok: false, reason: 'unknown', detail: outcome.detail };
    default: {
      const never: never = outcome;
      return never;
    }
  }
}

