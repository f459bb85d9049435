// The observed side of one project, written by its owner after the fact: the
// status record (`status/<tenant>/<name>`) and the bounded event history
// (`events/<tenant>/<name>`). One write in flight per project, coalescing what
// changed meanwhile, fenced by the ring epoch and by the project record's
// version (so a write computed before a stop or remove cannot undo it). The
// reply to a caller never waits for it.
import type { KeyValue } from '../consensus/kv-state-machine.ts';
import type { ActorContext } from './actor-system.ts';
import type { ActorStore } from './components.ts';
import { fencedWrite, type FencedOutcome } from './fenced-write.ts';
import { eventsKey, statusKey, type ProjectEvent, type ProjectEventKind, type ProjectStatusRecord } from './messages.ts';
import type { RecordReader } from './records.ts';
import type { ProjectRef } from './runtime.ts';

export interface ObservedDeps {
  readonly key: string;
  readonly ref: ProjectRef;
  readonly node: string;
  readonly store: ActorStore;
  readonly records: RecordReader;
  readonly context: ActorContext;
  /** Events kept per project (the oldest are dropped). */
  readonly eventsKept: number;
  /** Attempts of one write whose compare lost a race, or whose outcome was unknown. */
  readonly attemptsMax: number;
  readonly retryMs: number;
  ownedEpoch(): number | null;
  whenApplied(revision: number, callback: (reached: boolean) => void): void;
  /** The status to record now (null: write no status). Called when the write is built, so it is never stale. */
  compute(project: KeyValue): ProjectStatusRecord | null;
  /** Every new event, at once (live subscribers). */
  emit(event: ProjectEvent): void;
}

export class ObservedWriter {
  private pending: ProjectEvent[] = [];
  private nextSeq: number | null = null;
  private inFlight = false;
  private dirty = false;
  private closed = false;
  /** Waiters for the next event (project_events long polls). */
  private readonly eventWaiters = new Set<() => void>();

  constructor(private readonly deps: ObservedDeps) {}

  /** The events kept in the store, then those not written yet. */
  events(): ProjectEvent[] {
    const stored = this.deps.records.events(this.deps.store.view().get(eventsKey(this.deps.ref.tenant, this.deps.ref.name)))?.events ?? [];
    const last = stored.at(-1)?.seq ?? 0;
    return [...stored, ...this.pending.filter((event) => event.seq > last)];
  }

  /** Call back once when an event arrives (or at close); returns a cancel function. */
  onNextEvent(callback: () => void): () => void {
    this.eventWaiters.add(callback);
    return () => this.eventWaiters.delete(callback);
  }

  /** Record an event: pushed to subscribers now, written with the next write. */
  event(kind: ProjectEventKind, detail: string, timeMs: number, exit: { exitCode: number | null; signal: string | null } = { exitCode: null, signal: null }): ProjectEvent {
    if (this.nextSeq === null) {
      const stored = this.deps.records.events(this.deps.store.view().get(eventsKey(this.deps.ref.tenant, this.deps.ref.name)));
      this.nextSeq = (stored?.events.at(-1)?.seq ?? 0) + 1;
    }
    const event: ProjectEvent = { seq: this.nextSeq, timeMs, kind, node: this.deps.node, exitCode: exit.exitCode, signal: exit.signal, detail: detail.slice(0, 1024) };
    this.nextSeq += 1;
    this.pending.push(event);
    if (this.pending.length > this.deps.eventsKept) this.pending.splice(0, this.pending.length - this.deps.eventsKept);
    this.deps.emit(event);
    for (const waiter of [...this.eventWaiters]) {
      this.eventWaiters.delete(waiter);
      waiter();
    }
    this.flush();
    return event;
  }

  /** Write the current status (and pending events) soon; coalesces with a write in flight. */
  flush(): void {
    if (this.closed) return;
    this.dirty = true;
    if (!this.inFlight) this.write(1);
  }

  /** The actor is going away: nothing more is written by this instance. */
  close(): void {
    this.closed = true;
    for (const waiter of [...this.eventWaiters]) waiter();
    this.eventWaiters.clear();
  }

  private write(attempt: number): void {
    this.inFlight = false;
    if (this.closed) return;
    this.dirty = false;
    const epoch = this.deps.ownedEpoch();
    const view = this.deps.store.view();
    const record = view.get(this.deps.key);
    if (epoch === null || record === null) {
      // Not the owner any more, or the project is gone: the next owner writes its own.
      this.pending = [];
      return;
    }
    const status = this.deps.compute(record);
    const statusKv = view.get(statusKey(this.deps.ref.tenant, this.deps.ref.name));
    const statusChanged = status !== null && !sameStatus(this.deps.records.status(statusKv), status);
    // A copy: events recorded while this write is in flight go to `pending`, and must not count as sent.
    const sending = [...this.pending];
    if (!statusChanged && sending.length === 0) return;
    const eventsKv = view.get(eventsKey(this.deps.ref.tenant, this.deps.ref.name));
    const stored = this.deps.records.events(eventsKv)?.events ?? [];
    const lastStored = stored.at(-1)?.seq ?? 0;
    const fresh = sending.filter((event) => event.seq > lastStored);
    const events = [...stored, ...fresh].slice(-this.deps.eventsKept);
    this.inFlight = true;
    fencedWrite(
      this.deps.store,
      {
        epoch,
        compare: [{ key: this.deps.key, target: 'version', op: '==', operand: record.version }],
        success: [
          ...(statusChanged ? [{ type: 'put' as const, key: statusKey(this.deps.ref.tenant, this.deps.ref.name), value: JSON.stringify(status) }] : []),
          ...(fresh.length > 0 ? [{ type: 'put' as const, key: eventsKey(this.deps.ref.tenant, this.deps.ref.name), value: JSON.stringify({ events }) }] : []),
        ],
        inspect: [],
      },
      this.deps.context.guard((outcome: FencedOutcome) => this.written(outcome, sending, attempt)),
    );
  }

  private written(outcome: FencedOutcome, sent: readonly ProjectEvent[], attempt: number): void {
    const again = (revision: number): void => {
      this.dirty = true;
      this.deps.whenApplied(revision, this.deps.context.guard(() => this.continue(attempt + 1)));
    };
    switch (outcome.type) {
      case 'applied':
        this.pending = this.pending.filter((event) => !sent.includes(event));
        return this.deps.whenApplied(outcome.revision, this.deps.context.guard(() => this.continue(1)));
      case 'conflict':
        // A lifecycle change (stop, restart, remove) landed first: recompute from it.
        return again(outcome.revision);
      case 'fenced':
        this.inFlight = false;
        this.pending = [];
        return;
      case 'unknown':
      case 'unavailable':
        // Sent events that did land are found in the stored record by their seq, so a retry never doubles them.
        this.dirty = true;
        if (attempt >= this.deps.attemptsMax) {
          this.inFlight = false;
          return;
        }
        this.deps.context.setTimer(this.deps.retryMs * attempt, () => this.continue(attempt + 1));
        return;
      default: {
        const never: never = outcome;
        return never;
      }
    }
  }

  private continue(attempt: number): void {
    this.inFlight = false;
    if (this.dirty && attempt <= this.deps.attemptsMax) this.write(attempt);
  }
}

function sameStatus(a: ProjectStatusRecord | null, b: ProjectStatusRecord): boolean {
  if (a === null) return false;
  return (
    a.state === b.state &&
    a.node === b.node &&
    a.epoch === b.epoch &&
    a.generation === b.generation &&
    a.restarts === b.restarts &&
    a.exitCode === b.exitCode &&
    a.error === b.error &&
    JSON.stringify(a.ports) === JSON.stringify(b.ports)
  );
}
