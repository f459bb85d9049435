// KV watch on one node: the events of every applied write, kept in a bounded
// in-memory history so that a watch can start from a past revision, and fanned
// out to open watchers. The KV state machine keeps only the latest values, so
// the events are derived here, next to the apply: from each command's result
// and, for a deleteRange, the keys it covered just before. No I/O, no timers.
import { KvMachine, kvMachineOptions, memberCommand } from '../consensus/kv-machine.ts';
import { decodeConfChange } from '../consensus/raft.ts';
import { KvStateMachine, compareKeys, decodeCommand, prefixEnd, utf8ByteLength, type KeyValue, type KvCommand, type KvOp, type KvResult, type KvStateMachineOptions, type OpResult } from '../consensus/kv-state-machine.ts';
import type { StateMachineFactory } from '../consensus/raft-node.ts';
import type { Entry, Snapshot } from '../consensus/types.ts';
import { assert } from '../consensus/log.ts';

export type WatchEvent =
  | { readonly type: 'put'; readonly kv: KeyValue; readonly prevKv: KeyValue | null }
  /** `kv` holds the key and, as modRevision, the revision of the delete. */
  | { readonly type: 'delete'; readonly kv: KeyValue; readonly prevKv: KeyValue };

/** The events of one store revision, in the order the command made them. */
export interface RevisionEvents {
  readonly revision: number;
  readonly events: readonly WatchEvent[];
}

export interface WatchHubLimits {
  /** Most events kept for replay; older revisions are dropped whole. */
  readonly historyEventsMax: number;
  /** Most UTF-8 bytes of keys and values (and previous values) kept for replay. */
  readonly historyBytesMax: number;
  /** Most watchers open at once on this node. */
  readonly watchersMax: number;
}

export const watchHubLimitsDefault: WatchHubLimits = Object.freeze({
  historyEventsMax: 100_000,
  historyBytesMax: 64 * 1024 * 1024,
  watchersMax: 1_000,
});

/** The start revision is older than the oldest revision this node can replay. */
export class WatchCompactedError extends Error {
  override readonly name = 'WatchCompactedError';
  constructor(
    readonly startRevision: number,
    /** The oldest revision that can still be replayed. */
    readonly oldestRevision: number,
  ) {
    super(
      `revision ${startRevision} is no longer in this node's watch history (it replays from revision ${oldestRevision} on); read the range again and watch from the revision in its header + 1`,
    );
  }
}

export class WatchLimitError extends Error {
  override readonly name = 'WatchLimitError';
}

/** Keys selected as in a range request: `end` '' = `key` alone, '\0' = every key >= key, else [key, end). */
export interface KeySelector {
  readonly key: string;
  readonly end: string;
}

export function selects(selector: KeySelector, key: string): boolean {
  if (selector.end === '') return key === selector.key;
  if (compareKeys(key, selector.key) < 0) return false;
  return selector.end === '\0' || compareKeys(key, selector.end) < 0;
}

export const prefixSelector = (prefix: string): KeySelector => ({ key: prefix, end: prefixEnd(prefix) === '' ? '\0' : prefixEnd(prefix) });

export interface Watcher {
  readonly selector: KeySelector;
  /** Events from this revision on are delivered. */
  readonly startRevision: number;
  /** Matching events of one revision (never empty). */
  readonly deliver: (batch: RevisionEvents) => void;
  /** The history this watcher needs was lost (a snapshot was installed); it is closed. */
  readonly lost: (error: WatchCompactedError) => void;
}

const eventBytes = (event: WatchEvent): number =>
  utf8ByteLength(event.kv.key) + utf8ByteLength(event.kv.value) + (event.prevKv === null ? 0 : utf8ByteLength(event.prevKv.value));

export class WatchHub {
  private history: RevisionEvents[] = [];
  private historyHead = 0;
  private historyEvents = 0;
  private historyBytes = 0;
  /** Every revision at or below this is gone from the history. */
  private compacted = 0;
  private current = 0;
  private readonly watchers = new Set<Watcher>();

  constructor(readonly limits: WatchHubLimits = watchHubLimitsDefault) {}

  get revision(): number {
    return this.current;
  }

  /** The oldest revision a new watch may start from. */
  get oldestRevision(): number {
    return this.compacted + 1;
  }

  get watcherCount(): number {
    return this.watchers.size;
  }

  /**
   * The state machine was replaced by one at `revision` (start-up, or a
   * snapshot from the leader): the history before it is unknown. Watchers that
   * needed revisions up to it are told and dropped.
   */
  reset(revision: number): void {
    this.history = [];
    this.historyHead = 0;
    this.historyEvents = 0;
    this.historyBytes = 0;
    const missed = revision > this.current;
    const from = this.current + 1;
    this.compacted = revision;
    this.current = revision;
    if (!missed) return;
    for (const watcher of [...this.watchers]) {
      if (watcher.startRevision > revision) continue;
      this.watchers.delete(watcher);
      watcher.lost(new WatchCompactedError(Math.max(from, watcher.startRevision), revision + 1));
    }
  }

  /** Record the events of a new revision and deliver them. */
  record(batch: RevisionEvents): void {
    assert(batch.revision > this.current, `watch events for revision ${batch.revision} after revision ${this.current}`);
    assert(batch.events.length > 0, `revision ${batch.revision} changed nothing`);
    this.current = batch.revision;
    this.history.push(batch);
    this.historyEvents += batch.events.length;
    for (const event of batch.events) this.historyBytes += eventBytes(event);
    this.trim();
    for (const watcher of this.watchers) {
      if (batch.revision < watcher.startRevision) continue;
      const matching = batch.events.filter((event) => selects(watcher.selector, event.kv.key));
      if (matching.length > 0) watcher.deliver({ revision: batch.revision, events: matching });
    }
  }

  /**
   * Open a watch: replay the history from `startRevision` (0: from the next
   * revision), then deliver live. Throws WatchCompactedError or WatchLimitError.
   */
  watch(selector: KeySelector, startRevision: number, deliver: Watcher['deliver'], lost: Watcher['lost']): { readonly startRevision: number; readonly cancel: () => void } {
    if (this.watchers.size >= this.limits.watchersMax) {
      throw new WatchLimitError(`this node already serves ${this.watchers.size} watches (the most it allows); close some or watch through another node`);
    }
    const start = startRevision === 0 ? this.current + 1 : startRevision;
    if (start <= this.compacted) throw new WatchCompactedError(start, this.oldestRevision);
    for (let i = this.historyHead; i < this.history.length; i++) {
      const batch = this.history[i] as RevisionEvents;
      if (batch.revision < start) continue;
      const matching = batch.events.filter((event) => selects(selector, event.kv.key));
      if (matching.length > 0) deliver({ revision: batch.revision, events: matching });
    }
    const watcher: Watcher = { selector, startRevision: start, deliver, lost };
    this.watchers.add(watcher);
    return { startRevision: start, cancel: () => this.watchers.delete(watcher) };
  }

  /** Drop whole revisions from the front until the history is within its limits. */
  private trim(): void {
    while (
      this.historyHead < this.history.length - 1 &&
      (this.historyEvents > this.limits.historyEventsMax || this.historyBytes > this.limits.historyBytesMax)
    ) {
      const oldest = this.history[this.historyHead] as RevisionEvents;
      this.historyHead += 1;
      this.historyEvents -= oldest.events.length;
      for (const event of oldest.events) this.historyBytes -= eventBytes(event);
      this.compacted = oldest.revision;
    }
    // Reclaim the dropped slots now and then, not on every write.
    if (this.historyHead > 1024 && this.historyHead * 2 > this.history.length) {
      this.history = this.history.slice(this.historyHead);
      this.historyHead = 0;
    }
  }
}

const deletedKv = (key: string, revision: number): KeyValue => ({ key, value: '', version: 0, createRevision: 0, modRevision: revision });

const putKv = (key: string, value: string, prev: KeyValue | null, revision: number): KeyValue => ({
  key,
  value,
  version: prev === null ? 1 : prev.version + 1,
  createRevision: prev === null ? revision : prev.createRevision,
  modRevision: revision,
});

/** The keys each deleteRange of `command` would cover, read before it is applied. */
function keysBeforeApply(kv: KvStateMachine, command: KvCommand): Map<KvOp, KeyValue[]> {
  const covered = new Map<KvOp, KeyValue[]>();
  if (command.type !== 'txn') return covered;
  for (const op of [...command.success, ...command.failure]) {
    if (op.type === 'deleteRange') covered.set(op, kv.range(op.start, op.end, 0));
  }
  return covered;
}

/**
 * The events a command made, from its result, replaying its ops over the
 * state before it (ops see each other's writes, so a txn is replayed in order
 * through an overlay). Returns the final value of every key touched, for the
 * caller to check against the state machine.
 */
export function commandEvents(
  command: KvCommand,
  result: KvResult & { ok: true },
  before: (key: string) => KeyValue | null,
  covered: Map<KvOp, KeyValue[]>,
): { events: WatchEvent[]; touched: Map<string, KeyValue | null> } {
  const revision = result.revision;
  const overlay = new Map<string, KeyValue | null>();
  const lookup = (key: string): KeyValue | null => (overlay.has(key) ? (overlay.get(key) ?? null) : before(key));
  const events: WatchEvent[] = [];
  const put = (key: string, value: string): void => {
    const prev = lookup(key);
    const kv = putKv(key, value, prev, revision);
    overlay.set(key, kv);
    events.push({ type: 'put', kv, prevKv: prev });
  };
  const remove = (key: string): void => {
    const prev = lookup(key);
    if (prev === null) return;
    overlay.set(key, null);
    events.push({ type: 'delete', kv: deletedKv(key, revision), prevKv: prev });
  };
  switch (command.type) {
    case 'put':
      put(command.key, command.value);
      break;
    case 'delete':
      remove(command.key);
      break;
    case 'txn': {
      const ops = result.succeeded === true ? command.success : command.failure;
      ops.forEach((op, i) => {
        const opResult: OpResult | undefined = result.results?.[i];
        assert(opResult?.type === op.type, `txn result ${i} is ${opResult?.type ?? 'missing'}, op is ${op.type}`);
        switch (op.type) {
          case 'put':
            put(op.key, op.value);
            return;
          case 'delete':
            remove(op.key);
            return;
          case 'deleteRange': {
            // Keys there before the txn, plus those an earlier op of it created, in byte order.
            const keys = new Set((covered.get(op) ?? []).map((kv) => kv.key));
            for (const [key, kv] of overlay) if (kv !== null) keys.add(key);
            const selector: KeySelector = { key: op.start, end: op.end === '' ? '\0' : op.end };
            for (const key of [...keys].sort(compareKeys)) if (selects(selector, key)) remove(key);
            return;
          }
          case 'get':
          case 'range':
            return;
          default: {
            const never: never = op;
            return never;
          }
        }
      });
      break;
    }
    default: {
      const never: never = command;
      return never;
    }
  }
  return { events, touched: overlay };
}

/** The KV command an entry carries: its data for a normal entry, the members/ring update for a configuration change. */
function entryCommand(entry: Entry, kv: KvStateMachine): KvCommand | null {
  switch (entry.type) {
    case 'normal':
      return decodeCommand(entry.data, kv.limits);
    case 'confChange':
      return memberCommand(decodeConfChange(entry.data));
    case 'empty':
      return null;
    default: {
      const never: never = entry.type;
      return never;
    }
  }
}

/** A KvMachine that also feeds the watch hub with the events of each applied entry. */
class WatchedKvMachine extends KvMachine {
  constructor(
    kv: KvStateMachine,
    private readonly hub: WatchHub,
  ) {
    super(kv);
  }

  override applyEntry(entry: Entry): KvResult {
    const revisionBefore = this.kv.revision;
    const command = entryCommand(entry, this.kv);
    // The values the command may change, read before it runs.
    const covered = command === null ? new Map<KvOp, KeyValue[]>() : keysBeforeApply(this.kv, command);
    const valuesBefore = new Map<string, KeyValue | null>();
    if (command !== null) for (const key of touchedKeys(command)) valuesBefore.set(key, this.kv.get(key));
    for (const kvs of covered.values()) for (const kv of kvs) valuesBefore.set(kv.key, kv);
    const result = super.applyEntry(entry);
    if (!result.ok || this.kv.revision === revisionBefore) return result;
    assert(command !== null, `entry ${entry.index} changed the store but carries no command`);
    const { events, touched } = commandEvents(command, result, (key) => valuesBefore.get(key) ?? null, covered);
    // Pair assertion: the replay must end where the state machine did.
    for (const [key, kv] of touched) {
      assert(sameKeyValue(this.kv.get(key), kv), `watch replay of revision ${this.kv.revision} disagrees with the store on key ${JSON.stringify(key)}`);
    }
    this.hub.record({ revision: this.kv.revision, events });
    return result;
  }
}

function sameKeyValue(a: KeyValue | null, b: KeyValue | null): boolean {
  if (a === null || b === null) return a === b;
  return a.key === b.key && a.value === b.value && a.version === b.version && a.createRevision === b.createRevision && a.modRevision === b.modRevision;
}

function touchedKeys(command: KvCommand): string[] {
  switch (command.type) {
    case 'put':
    case 'delete':
      return [command.key];
    case 'txn':
      return [...command.success, ...command.failure].flatMap((op) => (op.type === 'put' || op.type === 'delete' ? [op.key] : []));
    default: {
      const never: never = command;
      return never;
    }
  }
}

/** The KV machine factory for a node whose applied writes feed `hub`. */
export function watchedKvMachineFactory(hub: WatchHub, given: KvStateMachineOptions = {}): StateMachineFactory<KvResult, KvMachine> {
  const options = kvMachineOptions(given);
  return {
    empty: () => {
      hub.reset(0);
      return new WatchedKvMachine(new KvStateMachine(options), hub);
    },
    restore: (snapshot: Snapshot) => {
      const kv = KvStateMachine.restore(snapshot.data, options);
      assert(kv.appliedIndex === snapshot.meta.index, `snapshot at ${snapshot.meta.index} holds state applied to ${kv.appliedIndex}`);
      hub.reset(kv.revision);
      return new WatchedKvMachine(kv, hub);
    },
  };
}
