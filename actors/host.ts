// The actor host of one node. It routes every call to the key's owner (local
// delivery without a network hop, or through the Forwarder), follows moved
// ownership with bounded retries, keeps this node's workloads in line with
// the ring (hand-off on ring changes, at most movesInFlightMax at a time),
// holds the owner lease, and, on the Raft leader, runs the failure detector
// that commits liveness changes. Callback-based and driven by the injected
// clock, so the simulator runs the same code deterministically.
import { RING_EPOCH_KEY } from '../consensus/kv-machine.ts';
import { prefixEnd, type KvOp } from '../consensus/kv-state-machine.ts';
import type { Clock, Random, TimerHandle } from '../consensus/types.ts';
import { ActorSystem, type Actor, type ActorContext, type Delivery } from './actor-system.ts';
import { isActiveState, type ActorStore, type ForwardCall, type Forwarder, type PortAllocator, type ProjectIo, type RaftView, type RuntimeDriver } from './components.ts';
import { handoff, type Handoff } from './handoff.ts';
import { FailureDetector, OwnerLease, type LeaseState } from './liveness.ts';
import {
  PROJECTS_PREFIX,
  STATUS_PREFIX,
  errorResponse,
  isChange,
  livenessKey,
  parseActorKey,
  projectActorKey,
  statusKey,
  type ActorKey,
  type ActorRequest,
  type ActorResponse,
  type Identity,
  type ProgressFn,
  type ProjectEvent,
  type ProjectStatusRecord,
} from './messages.ts';
import { PlacementCache, readRingInputs, type Placement } from './placement.ts';
import { ProjectActor, type ActorMessage, type OwnerServices } from './project-actor.ts';
import { RecordReader } from './records.ts';
import type { ProjectRef } from './runtime.ts';
import { TenantActor } from './tenant-actor.ts';

/**
 * The owner's check of a call's identity: null when `identity` may make
 * `request` on `key` (and its token is still valid here), else the error to
 * answer. The entry node checked it too; this is what keeps a node reached
 * directly from skipping the check.
 */
export interface Authorizer {
  check(identity: Identity, key: ActorKey, request: ActorRequest): ActorResponse | null;
}

export interface HostComponents {
  readonly clock: Clock;
  /** Jitter of retries after a lost compare-and-set race. */
  readonly random: Random;
  readonly store: ActorStore;
  readonly raft: RaftView;
  readonly runtime: RuntimeDriver;
  readonly ports: PortAllocator;
  readonly forwarder: Forwarder;
  readonly io: ProjectIo;
  readonly authorizer: Authorizer;
}

export interface HostOptions {
  readonly node: string;
  readonly mailboxDepthMax: number;
  readonly idleMs: number;
  readonly turnMsMax: number;
  readonly activationsMax: number;
  /** Attempts of one call across ownership moves and unreachable owners. */
  readonly callAttemptsMax: number;
  /** First wait before a retry; doubles per attempt. */
  readonly retryBackoffMs: number;
  /** Attempts of one write when its compare-and-set loses a race. */
  readonly casAttemptsMax: number;
  /**
   * After a lost race the next attempt waits a random time below
   * casBackoffMs × attempt (at most casBackoffMsMax): concurrent starts of one
   * tenant all compare its usage counter, and without the spread they would
   * collide again in the next group commit.
   */
  readonly casBackoffMs: number;
  readonly casBackoffMsMax: number;
  /** Act as owner only while the leader was heard within this. */
  readonly leaseMs: number;
  /** The leader marks a member down after hearing nothing from it for this long. */
  readonly suspectMs: number;
  /** How often the host checks its lease, the ring epoch and (on the leader) liveness. */
  readonly pollMs: number;
  /** How often it compares every owned project with the runtime, besides ring changes. */
  readonly fullScanMs: number;
  /** Hand-offs (stop here, or start here) in progress at once. */
  readonly movesInFlightMax: number;
  readonly stopGraceMs: number;
  /** Longest wait for this node to apply a revision it needs. */
  readonly applyWaitMsMax: number;
  /** Answers to changes this node made, kept by request id so that a retry after a lost answer gets the same answer. */
  readonly answersRememberedMax: number;
  /** Pause between two checks while a start settles or a wait waits. */
  readonly settleIntervalMs: number;
  /** Events kept per project in the replicated state. */
  readonly eventsKept: number;
  /** Characters of log lines in one logs answer. */
  readonly logPageCharsMax: number;
  /** stdout and stderr bytes each of one exec. */
  readonly execOutputBytesMax: number;
  /** Concurrent execs of one tenant on this node. */
  readonly execsPerTenantMax: number;
  /** Answers one actor may owe after their turns (settles, waits, execs, long polls in flight). */
  readonly detachedMax: number;
  /** Back-off before a failed actor activates again (doubling up to the max). */
  readonly failureBackoffMs: number;
  readonly failureBackoffMsMax: number;
  /** Hops of one forwarded call: the owner answers notOwner instead of forwarding again. */
  readonly hopsMax: number;
}

export const hostOptionsDefault = (node: string): HostOptions => ({
  node,
  mailboxDepthMax: 64,
  idleMs: 60_000,
  turnMsMax: 30_000,
  activationsMax: 100_000,
  callAttemptsMax: 6,
  retryBackoffMs: 50,
  casAttemptsMax: 50,
  casBackoffMs: 4,
  casBackoffMsMax: 100,
  leaseMs: 2000,
  suspectMs: 3000,
  pollMs: 100,
  fullScanMs: 5000,
  movesInFlightMax: 32,
  stopGraceMs: 5000,
  applyWaitMsMax: 2000,
  answersRememberedMax: 10_000,
  settleIntervalMs: 50,
  eventsKept: 50,
  // About 10,000 tokens of text: far below Claude Code's 25,000-token limit for one result.
  logPageCharsMax: 30_000,
  execOutputBytesMax: 32 * 1024,
  execsPerTenantMax: 8,
  detachedMax: 32,
  failureBackoffMs: 200,
  failureBackoffMsMax: 30_000,
  hopsMax: 1,
});

export class InvalidHostOptionsError extends Error {
  override readonly name = 'InvalidHostOptionsError';
}

function validateHostOptions(options: HostOptions): HostOptions {
  for (const [name, value] of Object.entries(options)) {
    if (typeof value === 'number' && (!Number.isSafeInteger(value) || value < 1)) {
      throw new InvalidHostOptionsError(`host option ${name} is ${value}; give a whole number >= 1`);
    }
  }
  if (options.leaseMs >= options.suspectMs) {
    throw new InvalidHostOptionsError(`leaseMs (${options.leaseMs}) must be below suspectMs (${options.suspectMs}): a cut-off owner must stop before others take over`);
  }
  return options;
}

export interface CallOptions {
  readonly deadlineMs: number;
  /** The caller's id of the request: the same on every hop and retry, so a change is applied once. */
  readonly requestId: string;
  readonly identity: Identity;
  /** Progress before the answer; null when the caller does not want it. */
  readonly progress: ProgressFn | null;
}

type WorkKind = 'reconcile' | 'release';

/** What the simulator and metrics watch. */
export interface HostStats {
  localCalls: number;
  forwardedCalls: number;
  servedForwarded: number;
  retries: number;
  moves: number;
  leaseExpiries: number;
  livenessChanges: number;
  forbidden: number;
  /** Forwarded calls refused for too many hops or a malformed request. */
  refused: number;
  /** Launches held back because another node might still run the project (actors/handoff.ts). */
  handoffWaits: number;
}

export class ActorHost {
  readonly node: string;
  readonly actors: ActorSystem<ActorMessage, ActorResponse>;
  readonly stats: HostStats = { localCalls: 0, forwardedCalls: 0, servedForwarded: 0, retries: 0, moves: 0, leaseExpiries: 0, livenessChanges: 0, forbidden: 0, refused: 0, handoffWaits: 0 };
  /** Stored records read back through their schemas (shared by this node's actors). */
  readonly records: RecordReader;
  private readonly eventListeners = new Set<(ref: ProjectRef, event: ProjectEvent) => void>();
  private readonly options: HostOptions;
  private readonly components: HostComponents;
  private readonly placements = new PlacementCache();
  private readonly lease: OwnerLease;
  private readonly detector: FailureDetector;
  private readonly started = new Map<string, number>();
  private readonly services: OwnerServices;
  private readonly work = new Map<string, WorkKind>();
  private readonly working = new Set<string>();
  private readonly appliedWaiters: { revision: number; deadlineMs: number; callback: (reached: boolean) => void }[] = [];
  private pollTimer: TimerHandle | null = null;
  private wakeTimer: TimerHandle | null = null;
  private unsubscribe: (() => void) | null = null;
  private lastEpoch = -1;
  private leaseExpired = false;
  private wasLeader = false;
  private livenessInFlight = false;
  private nextFullScanMs = 0;
  private draining: { readonly callback: () => void } | null = null;
  /** Insertion-ordered, so the oldest answer is forgotten first. */
  private readonly answers = new Map<string, ActorResponse>();
  private rejoining = false;
  private stopped = false;
  /** Projects this node owns and waits to launch: another node may still run a copy (actors/handoff.ts). */
  private readonly awaitingHandoff = new Set<string>();
  /** When this node first found each former member out of the configuration, by its clock. */
  private readonly goneSinceMs = new Map<string, number>();

  constructor(components: HostComponents, options: HostOptions, onInvalidRecord: (key: string, detail: string) => void = () => undefined) {
    this.options = validateHostOptions(options);
    this.components = components;
    this.node = options.node;
    this.records = new RecordReader(onInvalidRecord);
    const now = components.clock.nowMs();
    this.lease = new OwnerLease(options.leaseMs, now);
    this.detector = this.createFailureDetector(this.options);
    this.services = {
      node: options.node,
      clock: components.clock,
      store: components.store,
      runtime: components.runtime,
      ports: components.ports,
      random: components.random,
      records: this.records,
      io: components.io,
      limits: {
        stopGraceMs: options.stopGraceMs,
        casAttemptsMax: options.casAttemptsMax,
        casBackoffMs: options.casBackoffMs,
        casBackoffMsMax: options.casBackoffMsMax,
        settleIntervalMs: options.settleIntervalMs,
        eventsKept: options.eventsKept,
        logPageCharsMax: options.logPageCharsMax,
        execOutputBytesMax: options.execOutputBytesMax,
        execsPerTenantMax: options.execsPerTenantMax,
      },
      started: this.started,
      runCursors: new Map(),
      execsRunning: new Map(),
      ownedEpoch: (key) => this.ownedEpoch(key),
      whenApplied: (revision, callback) => this.whenApplied(revision, callback),
      handoff: (status) => this.handoffFor(status),
      awaitHandoff: (key) => {
        if (this.awaitingHandoff.has(key)) return;
        this.awaitingHandoff.add(key);
        this.stats.handoffWaits += 1;
      },
      emit: (ref, event) => {
        for (const listener of [...this.eventListeners]) listener(ref, event);
      },
    };
    this.actors = new ActorSystem<ActorMessage, ActorResponse>(
      components.clock,
      {
        mailboxDepthMax: options.mailboxDepthMax,
        idleMs: options.idleMs,
        turnMsMax: options.turnMsMax,
        activationsMax: options.activationsMax,
        detachedMax: options.detachedMax,
        failureBackoffMs: options.failureBackoffMs,
        failureBackoffMsMax: options.failureBackoffMsMax,
      },
      (context) => this.createActor(context),
    );
  }

  /** The leader's failure detector; a seam for the simulator's planted bugs (simulator/mutations.ts). */
  protected createFailureDetector(options: HostOptions): FailureDetector {
    return new FailureDetector(options.node, options.suspectMs);
  }

  start(): void {
    this.unsubscribe = this.components.runtime.subscribe((event) => {
      if (this.stopped) return;
      if (event.type === 'status') {
        // A workload changed on its own (exited, crash loop): its owner records it.
        this.enqueue(projectActorKey(event.status.project.tenant, event.status.project.name), 'reconcile');
      } else if (event.type === 'lifecycle') {
        const key = projectActorKey(event.project.tenant, event.project.name);
        if (this.ownedEpoch(key) !== null) this.actors.tell(key, { kind: 'lifecycle', event }, () => undefined);
      }
    });
    this.schedulePoll();
  }

  /** Every project event this node's actors see, as it happens (live subscriptions); returns an unsubscribe function. */
  onEvent(listener: (ref: ProjectRef, event: ProjectEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Stop timers and actors; workloads stay as they are (a crash or the node's own shutdown decides about them). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.pollTimer !== null) this.components.clock.clearTimer(this.pollTimer);
    if (this.wakeTimer !== null) this.components.clock.clearTimer(this.wakeTimer);
    this.unsubscribe?.();
    this.actors.deactivateAll('node stopped');
    for (const waiter of this.appliedWaiters.splice(0)) waiter.callback(false);
  }

  // ---- what the node feeds in ------------------------------------------------------

  /** The transport got a Raft message from `from`: feeds the failure detector and the lease. */
  raftMessageReceived(from: string): void {
    const now = this.components.clock.nowMs();
    this.detector.heard(from, now);
    if (from === this.components.raft.leader()) this.lease.contact(now);
  }

  /** The local state machine applied entries: wake waiters soon (never inside the Raft driver's apply loop). */
  applied(): void {
    if (this.stopped || this.wakeTimer !== null) return;
    this.wakeTimer = this.components.clock.setTimer(0, () => {
      this.wakeTimer = null;
      this.resolveWaiters();
      this.checkAwaiting();
      if (this.placement().epoch !== this.lastEpoch) this.poll(false);
    });
  }

  // ---- reading ------------------------------------------------------------------------

  placement(): Placement {
    return this.placements.at(this.components.store.view());
  }

  leaseState(): LeaseState {
    return this.lease.state(this.components.clock.nowMs());
  }

  /** On the clock: the lease is 'valid' before this time, unless contact renews it; null before the first contact. */
  leaseValidUntilMs(): number | null {
    return this.lease.validUntilMs();
  }

  /** May this node launch a project whose status record is `status`, or must it wait for the node it names? */
  handoffFor(status: ProjectStatusRecord | null): Handoff {
    const placement = this.placement();
    // Nobody marks a former member down: suspectMs after this node found it gone, its copies are fenced as surely.
    return handoff(status, this.node, (holder) => ({ markedDown: placement.down.has(holder), goneForMs: this.goneForMs(holder, placement) }), this.options.suspectMs);
  }

  /** How long ago this node first found `node` out of the configuration (at the earliest it could have left); null for a member. */
  private goneForMs(node: string, placement: Placement): number | null {
    if (placement.members.includes(node)) {
      this.goneSinceMs.delete(node);
      return null;
    }
    const now = this.components.clock.nowMs();
    const since = this.goneSinceMs.get(node) ?? now;
    this.goneSinceMs.set(node, since);
    return now - since;
  }

  /** The epoch this node owns `key` at, or null (not the owner, no valid lease, or draining). */
  ownedEpoch(key: string): number | null {
    if (this.leaseState() !== 'valid') return null;
    const placement = this.placement();
    return placement.owner(key) === this.node ? placement.epoch : null;
  }

  // ---- calls ----------------------------------------------------------------------------

  /** Answer `request` for `key` from whichever node owns it; `callback` runs exactly once. */
  call(key: ActorKey, request: ActorRequest, options: CallOptions, callback: (response: ActorResponse) => void): void {
    if (parseActorKey(key) === null) return callback(errorResponse('InvalidRequestError', `'${key}' names no actor; use projects/<tenant>/<name> or tenants/<tenant>`));
    const clock = this.components.clock;
    const deadline = clock.nowMs() + options.deadlineMs;
    let finished = false;
    // An earlier attempt may have been applied though its answer was lost: a retried remove then finds nothing.
    let ambiguous = false;
    const finish = (response: ActorResponse): void => {
      if (finished) return;
      finished = true;
      clock.clearTimer(timer);
      // An earlier attempt may have been applied: say so, whatever the last attempt said.
      if (ambiguous && isChange(request) && response.type === 'error' && response.name === 'UnavailableError') {
        return callback(errorResponse('OutcomeUnknownError', `${response.message.replace(/; retry$/, '')}; an earlier attempt may have been applied: check its status, then retry with the same requestId`));
      }
      callback(response);
    };
    const timer = clock.setTimer(options.deadlineMs, () =>
      finish(
        isChange(request)
          ? errorResponse('OutcomeUnknownError', `no answer for ${key} within ${options.deadlineMs} ms; the change may or may not have been made: check its status, then retry with the same requestId`)
          : errorResponse('DeadlineExceededError', `no answer for ${key} within ${options.deadlineMs} ms; retry, perhaps with a longer timeout`),
      ),
    );
    const attempt = (number: number): void => {
      if (finished || this.stopped) return;
      const remaining = deadline - clock.nowMs();
      const retry = (why: ActorResponse, waitRevision: number): void => {
        if (number >= this.options.callAttemptsMax) {
          if (why.type === 'notOwner') return finish(errorResponse('OwnershipMovedError', `${key} kept moving over ${number} attempts; retry`));
          return finish(why);
        }
        this.stats.retries += 1;
        const backoff = this.options.retryBackoffMs * 2 ** (number - 1);
        if (waitRevision > this.components.store.view().revision) this.whenApplied(waitRevision, () => attempt(number + 1));
        else clock.setTimer(backoff, () => attempt(number + 1));
      };
      const owner = this.placement().owner(key);
      if (owner === null) return retry(errorResponse('UnavailableError', 'no live member owns actors yet; retry shortly'), 0);
      if (owner === this.node) {
        this.stats.localCalls += 1;
        return this.deliverLocal(key, request, options.requestId, options.identity, options.progress, deadline, (response) => {
          if (response.type === 'notOwner') return retry(response, response.epoch);
          if (response.type === 'error' && response.name === 'UnavailableError' && this.leaseState() !== 'valid') return retry(response, 0);
          if (response.type === 'error' && response.name === 'OutcomeUnknownError') {
            ambiguous = true;
            return retry(response, 0);
          }
          finish(response);
        });
      }
      this.stats.forwardedCalls += 1;
      const call: ForwardCall = {
        key,
        request,
        callerEpoch: this.placement().epoch,
        deadlineMs: remaining,
        requestId: options.requestId,
        identity: options.identity,
        hops: 1,
        fromNode: this.node,
        progress: options.progress !== null,
      };
      this.components.forwarder.forward(owner, call, options.progress, (outcome) => {
        if (!outcome.ok) {
          // A refused connection never reached the owner; a lost answer may follow an applied change.
          if (outcome.reason === 'deadline') ambiguous = true;
          const why = errorResponse(ambiguous && isChange(request) ? 'OutcomeUnknownError' : 'UnavailableError', `owner ${owner} of ${key} did not answer (${outcome.detail}); retry`);
          return retry(why, 0);
        }
        const response = outcome.response;
        if (response.type === 'notOwner') return retry(response, response.epoch);
        if (response.type === 'error' && response.name === 'UnavailableError') return retry(response, 0);
        if (response.type === 'error' && response.name === 'OutcomeUnknownError') {
          ambiguous = true;
          return retry(response, 0);
        }
        finish(response);
      });
    };
    attempt(1);
  }

  /**
   * A call forwarded from another node: serve it if this node owns the key
   * once caught up to the caller's epoch. A forwarded call is never forwarded
   * again: a non-owner answers notOwner and the caller re-routes.
   */
  serveForwarded(call: ForwardCall, onProgress: ProgressFn | null, callback: (response: ActorResponse) => void): void {
    this.stats.servedForwarded += 1;
    if (call.hops > this.options.hopsMax || parseActorKey(call.key) === null) {
      this.stats.refused += 1;
      return callback(errorResponse('InvalidRequestError', `call for '${call.key}' refused (hops ${call.hops}, at most ${this.options.hopsMax}); the caller must re-route`));
    }
    const deadline = this.components.clock.nowMs() + call.deadlineMs;
    const serve = (): void => {
      if (this.stopped) return callback(errorResponse('UnavailableError', `node ${this.node} is stopping; retry`));
      const placement = this.placement();
      const owner = placement.owner(call.key);
      if (owner !== this.node) return callback({ type: 'notOwner', epoch: placement.epoch, ownerHint: owner });
      this.deliverLocal(call.key, call.request, call.requestId, call.identity, call.progress ? onProgress : null, deadline, callback);
    };
    if (this.components.store.view().revision >= call.callerEpoch) return serve();
    this.whenApplied(call.callerEpoch, serve);
  }

  private deliverLocal(
    key: ActorKey,
    request: ActorRequest,
    requestId: string,
    identity: Identity,
    progress: ProgressFn | null,
    deadline: number,
    callback: (response: ActorResponse) => void,
  ): void {
    if (this.leaseState() !== 'valid') {
      return callback(errorResponse('UnavailableError', `node ${this.node} has not heard from the cluster's leader within its lease; retry on another node`));
    }
    if (this.draining !== null) return callback({ type: 'notOwner', epoch: this.placement().epoch, ownerHint: null });
    const refusal = this.components.authorizer.check(identity, key, request);
    if (refusal !== null) {
      this.stats.forbidden += 1;
      return callback(refusal);
    }
    const changes = isChange(request);
    const answerKey = `${requestId}\u0000${key}\u0000${request.type}`;
    const remembered = changes ? this.answers.get(answerKey) : undefined;
    if (remembered !== undefined) return callback(remembered);
    this.actors.tell(
      key,
      { kind: 'call', request, requestId, identity, progress, deadlineAtMs: deadline },
      (delivery) => {
        const response = this.responseOf(delivery);
        if (changes && (response.type === 'project' || response.type === 'removed' || response.type === 'usage')) this.remember(answerKey, response);
        callback(response);
      },
      deadline,
    );
  }

  private remember(answerKey: string, response: ActorResponse): void {
    this.answers.set(answerKey, response);
    if (this.answers.size > this.options.answersRememberedMax) {
      const oldest = this.answers.keys().next();
      if (oldest.done !== true) this.answers.delete(oldest.value);
    }
  }

  private responseOf(delivery: Delivery<ActorResponse>): ActorResponse {
    if (delivery.ok) return delivery.response;
    const error = delivery.error;
    switch (error.name) {
      case 'MailboxFullError':
        return errorResponse('MailboxFullError', error.message);
      case 'DeactivatedError':
        return { type: 'notOwner', epoch: this.placement().epoch, ownerHint: null };
      case 'TurnTimeoutError':
      case 'ActivationsFullError':
        return errorResponse('UnavailableError', error.message);
      case 'ExpiredError':
        return errorResponse('DeadlineExceededError', error.message);
      case 'ActorFailedError':
        return errorResponse('ActorFailedError', error.message);
      default: {
        const never: never = error;
        return never;
      }
    }
  }

  private createActor(context: ActorContext): Actor<ActorMessage, ActorResponse> {
    const parsed = parseActorKey(context.key);
    if (parsed === null) throw new InvalidHostOptionsError(`no actor for key '${context.key}'`);
    if (parsed.kind === 'tenant') return new TenantActor(parsed.tenant, this.services);
    return new ProjectActor({ tenant: parsed.tenant, name: parsed.name }, this.services, context);
  }

  // ---- waiting for the local state machine ---------------------------------------------

  whenApplied(revision: number, callback: (reached: boolean) => void): void {
    if (this.components.store.view().revision >= revision) return callback(true);
    this.appliedWaiters.push({ revision, deadlineMs: this.components.clock.nowMs() + this.options.applyWaitMsMax, callback });
  }

  private resolveWaiters(): void {
    if (this.appliedWaiters.length === 0) return;
    const revision = this.components.store.view().revision;
    const now = this.components.clock.nowMs();
    const due = this.appliedWaiters.filter((waiter) => waiter.revision <= revision || waiter.deadlineMs <= now);
    if (due.length === 0) return;
    const rest = this.appliedWaiters.filter((waiter) => !due.includes(waiter));
    this.appliedWaiters.splice(0, this.appliedWaiters.length, ...rest);
    for (const waiter of due) waiter.callback(waiter.revision <= revision);
  }

  // ---- the poll loop: lease, ring changes, liveness ---------------------------------------

  private schedulePoll(): void {
    if (this.stopped) return;
    this.pollTimer = this.components.clock.setTimer(this.options.pollMs, () => {
      this.poll(true);
      this.schedulePoll();
    });
  }

  private poll(periodic: boolean): void {
    if (this.stopped) return;
    const now = this.components.clock.nowMs();
    const raft = this.components.raft;
    // check-quorum makes a leader step down once it misses a quorum: leading is contact.
    if (raft.isLeader()) this.lease.contact(now);
    const lease = this.lease.state(now);
    if (lease === 'expired' && !this.leaseExpired) {
      this.leaseExpired = true;
      this.stats.leaseExpiries += 1;
      this.stopAllHere('lease expired');
    }
    let scan = false;
    if (lease === 'valid' && this.leaseExpired) {
      this.leaseExpired = false;
      scan = true;
    }
    const placement = this.placement();
    if (placement.epoch !== this.lastEpoch) {
      this.lastEpoch = placement.epoch;
      scan = true;
    }
    if (periodic && now >= this.nextFullScanMs) scan = true;
    if (scan && lease === 'valid') {
      this.nextFullScanMs = now + this.options.fullScanMs;
      this.scan(placement);
    }
    if (periodic) {
      this.resolveWaiters();
      if (lease === 'valid') this.checkAwaiting();
      this.leaderDuties(now);
      this.checkDrained();
      if (lease === 'valid') this.rejoinIfDrained();
    }
  }

  /** Lease gone: this node may no longer be the owner of anything, so it runs nothing. */
  private stopAllHere(reason: string): void {
    this.work.clear();
    this.actors.deactivateAll(reason);
    for (const status of this.components.runtime.list()) {
      if (!isActiveState(status.state)) continue;
      this.started.delete(projectActorKey(status.project.tenant, status.project.name));
      this.components.runtime.stop(status.project, this.options.stopGraceMs, () => undefined);
    }
  }

  /** Compare the ring with what runs here; queue a reconcile or release where they differ. */
  private scan(placement: Placement): void {
    const view = this.components.store.view();
    const me = this.node;
    for (const entry of view.range(PROJECTS_PREFIX, prefixEnd(PROJECTS_PREFIX))) {
      if (placement.owner(entry.key) !== me) continue;
      const record = this.records.project(entry);
      const parsed = parseActorKey(entry.key);
      // A record that does not fit its schema is reported (once) and left alone: no actor sees it half-formed.
      if (record === null || parsed === null || parsed.kind !== 'project') continue;
      const runtime = this.components.runtime.status({ tenant: parsed.tenant, name: parsed.name });
      const active = runtime !== null && isActiveState(runtime.state);
      if (record.desired === 'running' && !active && (runtime === null || runtime.state === 'stopped')) this.enqueue(entry.key, 'reconcile');
      else if (record.desired === 'stopped' && active) this.enqueue(entry.key, 'reconcile');
      else if (record.desired === 'running' && active) {
        const status = this.records.status(view.get(statusKey(parsed.tenant, parsed.name)));
        if (status === null || status.node !== me || status.state !== runtime.state) this.enqueue(entry.key, 'reconcile');
      }
    }
    for (const status of this.components.runtime.list()) {
      if (!isActiveState(status.state)) continue;
      const key = projectActorKey(status.project.tenant, status.project.name);
      if (placement.owner(key) !== me) this.enqueue(key, 'release');
      else if (view.get(key) === null) this.enqueue(key, 'reconcile');
    }
    for (const key of this.actors.activeKeys()) if (placement.owner(key) !== me) this.enqueue(key, 'release');
    // Records that name this node as the holder of a project it no longer owns: its new owner waits for the release.
    const mine = `"node":${JSON.stringify(me)}`;
    for (const entry of view.range(STATUS_PREFIX, prefixEnd(STATUS_PREFIX))) {
      // A cheap filter before the schema read: most records name other nodes.
      if (!entry.value.includes(mine)) continue;
      const status = this.records.status(entry);
      if (status === null || status.node !== me || status.released === true) continue;
      const key = PROJECTS_PREFIX + entry.key.slice(STATUS_PREFIX.length);
      if (placement.owner(key) !== me) this.enqueue(key, 'release');
    }
  }

  /** Reconcile the projects whose hand-off now clears: a release applied, or the holder marked down or long gone. */
  private checkAwaiting(): void {
    if (this.awaitingHandoff.size === 0) return;
    const view = this.components.store.view();
    for (const key of [...this.awaitingHandoff]) {
      const parsed = parseActorKey(key);
      if (parsed === null || parsed.kind !== 'project' || this.ownedEpoch(key) === null) {
        this.awaitingHandoff.delete(key);
        continue;
      }
      if (this.handoffFor(this.records.status(view.get(statusKey(parsed.tenant, parsed.name)))).type === 'wait') continue;
      this.awaitingHandoff.delete(key);
      this.enqueue(key, 'reconcile');
    }
  }

  private enqueue(key: string, kind: WorkKind): void {
    if (this.stopped || parseActorKey(key) === null) return;
    // A release wins over a reconcile queued before the ring moved.
    if (this.work.get(key) !== 'release') this.work.set(key, kind);
    this.pumpWork();
  }

  private pumpWork(): void {
    for (const [key, kind] of this.work) {
      if (this.working.size >= this.options.movesInFlightMax) return;
      if (this.working.has(key)) continue;
      this.work.delete(key);
      this.working.add(key);
      this.stats.moves += 1;
      const message: ActorMessage = kind === 'release' ? { kind: 'release', reason: 'ring moved' } : { kind: 'reconcile' };
      this.actors.tell(key, message, () => {
        this.working.delete(key);
        // The old owner finished its turn and stopped the workload: nothing of it stays active here.
        if (kind === 'release' && this.placement().owner(key) !== this.node) this.actors.deactivate(key, 'moved');
        this.pumpWork();
      });
    }
  }

  // ---- the leader's failure detector --------------------------------------------------------

  private leaderDuties(now: number): void {
    const raft = this.components.raft;
    if (!raft.isLeader()) {
      if (this.wasLeader) this.detector.steppedDown();
      this.wasLeader = false;
      return;
    }
    if (!this.wasLeader) this.detector.becameLeader(now);
    this.wasLeader = true;
    if (this.livenessInFlight) return;
    const inputs = readRingInputs(this.components.store.view());
    const decision = this.detector.decide(now, inputs.members, new Set(inputs.down));
    if (decision.markDown.length === 0 && decision.markUp.length === 0) return;
    const success: KvOp[] = [
      ...decision.markDown.map((node): KvOp => ({ type: 'put', key: livenessKey(node), value: 'down' })),
      ...decision.markUp.map((node): KvOp => ({ type: 'delete', key: livenessKey(node) })),
      { type: 'put', key: RING_EPOCH_KEY, value: `liveness down=${decision.markDown.join(',')} up=${decision.markUp.join(',')}` },
    ];
    this.livenessInFlight = true;
    this.components.store.propose(
      { type: 'txn', compare: [{ key: RING_EPOCH_KEY, target: 'modRevision', op: '==', operand: inputs.epoch }], success, failure: [] },
      (outcome) => {
        this.livenessInFlight = false;
        if (outcome.ok && outcome.result.succeeded === true) this.stats.livenessChanges += 1;
      },
    );
  }

  // ---- graceful hand-off ------------------------------------------------------------------------

  /**
   * Hand every actor off before shutting down: mark this node draining (the
   * ring moves its keys to others), stop its workloads as each key moves, and
   * call back once nothing runs here. The node transfers Raft leadership first.
   */
  drain(callback: () => void): void {
    if (this.draining !== null) return;
    this.draining = { callback };
    const mark: KvOp[] = [
      { type: 'put', key: livenessKey(this.node), value: 'draining' },
      { type: 'put', key: RING_EPOCH_KEY, value: `draining ${this.node}` },
    ];
    const propose = (attempt: number): void => {
      this.components.store.propose({ type: 'txn', compare: [], success: mark, failure: [] }, (outcome) => {
        if (!outcome.ok && attempt < this.options.callAttemptsMax) {
          this.components.clock.setTimer(this.options.retryBackoffMs * attempt, () => propose(attempt + 1));
        }
      });
    };
    propose(1);
  }

  /** A `draining` mark left by this node's last life (it restarted after a graceful shutdown): take keys again. */
  private rejoinIfDrained(): void {
    if (this.draining !== null || this.rejoining) return;
    if (this.components.store.view().get(livenessKey(this.node))?.value !== 'draining') return;
    this.rejoining = true;
    this.rejoin(() => {
      this.rejoining = false;
    });
  }

  /** Clear this node's `draining` mark so that the ring gives it keys again. */
  rejoin(callback: (ok: boolean) => void): void {
    const view = this.components.store.view();
    if (view.get(livenessKey(this.node))?.value !== 'draining') return callback(true);
    this.components.store.propose(
      {
        type: 'txn',
        compare: [{ key: livenessKey(this.node), target: 'value', op: '==', operand: 'draining' }],
        success: [
          { type: 'delete', key: livenessKey(this.node) },
          { type: 'put', key: RING_EPOCH_KEY, value: `rejoin ${this.node}` },
        ],
        failure: [],
      },
      (outcome) => callback(outcome.ok),
    );
  }

  private checkDrained(): void {
    const draining = this.draining;
    if (draining === null) return;
    if (this.placement().live.includes(this.node)) return;
    const active = this.components.runtime.list().some((status) => isActiveState(status.state));
    if (active || this.working.size > 0 || this.work.size > 0) return;
    this.draining = null;
    this.actors.deactivateAll('drained');
    draining.callback();
  }
}
