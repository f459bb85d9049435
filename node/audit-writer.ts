// The one writer of this node's audit chain. Records are batched: whatever
// arrives within `flushDelayMs` (or `batchRecordsMax` records) goes into one
// txn that appends them, moves the head, and, past `retainedRecordsMax`,
// drops the oldest records and moves the checkpoint, all compared on the head
// it read so a stale view can never fork the chain. One flush runs at a time.
// Chaining and verification are in actors/audit.ts.
import {
  argsDigest,
  auditCheckpointKey,
  auditHeadKey,
  auditRecordKey,
  chainRecords,
  GENESIS_HASH,
  readChainPoint,
  type AuditEntry,
  type ChainPoint,
} from '../actors/audit.ts';
import type { ActorStore, StoreWriteOutcome } from '../actors/components.ts';
import type { KvCommand, KvOp } from '../consensus/kv-state-machine.ts';
import type { Clock, TimerHandle } from '../consensus/types.ts';

export interface AuditConfig {
  /** Records per txn: below the store's 128 ops per txn, with room for the head and compaction ops. */
  readonly batchRecordsMax: number;
  /** How long a record waits for others to share its txn. */
  readonly flushDelayMs: number;
  /** Records of this node's chain kept in the state; older ones are dropped behind a checkpoint (about 600 bytes each). */
  readonly retainedRecordsMax: number;
  /** Records waiting to be written; past it new ones are refused (counted in `droppedTotal`) rather than grow memory without bound. */
  readonly pendingRecordsMax: number;
  /** Wait before retrying a txn that failed (no leader, a stale view). */
  readonly retryDelayMs: number;
}

export const AUDIT_CONFIG_DEFAULT: AuditConfig = Object.freeze({
  batchRecordsMax: 100,
  flushDelayMs: 20,
  retainedRecordsMax: 5_000,
  pendingRecordsMax: 10_000,
  retryDelayMs: 200,
});

/** Ops of one txn besides the records: the head, the checkpoint and the range delete. */
const TXN_OPS_BESIDES_RECORDS = 3;
const TXN_OPS_MAX = 128;

export class InvalidAuditConfigError extends Error {
  override readonly name = 'InvalidAuditConfigError';
}

export function validateAuditConfig(config: AuditConfig): AuditConfig {
  for (const [name, value] of Object.entries(config)) {
    if (!Number.isSafeInteger(value) || value < 1) throw new InvalidAuditConfigError(`audit ${name} is ${value}; give a positive integer`);
  }
  if (config.batchRecordsMax + TXN_OPS_BESIDES_RECORDS > TXN_OPS_MAX) throw new InvalidAuditConfigError(`audit batchRecordsMax ${config.batchRecordsMax} leaves no room in a txn of ${TXN_OPS_MAX} ops`);
  if (config.retainedRecordsMax < config.batchRecordsMax) throw new InvalidAuditConfigError('audit retainedRecordsMax must be at least batchRecordsMax');
  return config;
}

/** What a caller records: the arguments themselves are digested here, so no caller can forget to redact them. */
export type AuditInput = Omit<AuditEntry, 'timeMs' | 'argsDigest'> & { readonly args: unknown };

export type AuditAppendOutcome = { readonly ok: true; readonly seq: number } | { readonly ok: false; readonly reason: 'overloaded' | 'closed'; readonly message: string };

interface Pending {
  readonly entry: AuditEntry;
  readonly done: (outcome: AuditAppendOutcome) => void;
}

export interface AuditWriterComponents {
  readonly node: string;
  readonly store: Pick<ActorStore, 'view' | 'propose'>;
  readonly clock: Clock;
  readonly wallNowMs: () => number;
  readonly onError?: (detail: string) => void;
}

export class AuditWriter {
  readonly config: AuditConfig;
  #pending: Pending[] = [];
  #timer: TimerHandle | null = null;
  #flushing = false;
  #closed = false;
  /** The head this writer last committed: newer than the local view until the view applies it. */
  #head: ChainPoint | null = null;
  /** A batch whose txn may or may not have been applied (a lost answer): its head and size. */
  #inDoubt: { readonly head: ChainPoint; readonly count: number } | null = null;
  droppedTotal = 0;
  writtenTotal = 0;

  constructor(
    private readonly components: AuditWriterComponents,
    config: Partial<AuditConfig> = {},
  ) {
    this.config = validateAuditConfig({ ...AUDIT_CONFIG_DEFAULT, ...config });
  }

  /** Append one record; resolves once it is committed (or refused). Callers may await it or not. */
  record(input: AuditInput): Promise<AuditAppendOutcome> {
    const { args, ...rest } = input;
    const entry: AuditEntry = { ...rest, timeMs: this.components.wallNowMs(), argsDigest: argsDigest(args) };
    if (this.#closed) return Promise.resolve({ ok: false, reason: 'closed', message: 'the audit writer is closed (the node is stopping)' });
    if (this.#pending.length >= this.config.pendingRecordsMax) {
      this.droppedTotal += 1;
      this.components.onError?.(`audit record of ${entry.action} dropped: ${this.config.pendingRecordsMax} records already wait to be written`);
      return Promise.resolve({ ok: false, reason: 'overloaded', message: `${this.config.pendingRecordsMax} audit records wait to be written (no leader?); retry later` });
    }
    return new Promise((done) => {
      this.#pending.push({ entry, done });
      this.schedule(this.#pending.length >= this.config.batchRecordsMax ? 0 : this.config.flushDelayMs);
    });
  }

  get pendingCount(): number {
    return this.#pending.length;
  }

  /** Stop: records still waiting are answered 'closed'. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== null) this.components.clock.clearTimer(this.#timer);
    this.#timer = null;
    for (const pending of this.#pending) pending.done({ ok: false, reason: 'closed', message: 'the node stopped before the audit record was written' });
    this.#pending = [];
  }

  private schedule(delayMs: number): void {
    if (this.#timer !== null || this.#flushing || this.#closed) return;
    this.#timer = this.components.clock.setTimer(delayMs, () => {
      this.#timer = null;
      this.flush();
    });
  }

  /** The head to chain after: this writer's own last commit unless the view is already past it. */
  private currentHead(): ChainPoint {
    const view = this.components.store.view();
    const stored = readChainPoint(view, auditHeadKey(this.components.node));
    const mine = this.#head;
    if (stored === null) return mine ?? { seq: 0, hash: GENESIS_HASH };
    return mine !== null && mine.seq > stored.seq ? mine : stored;
  }

  /** A batch in doubt that the view shows committed is answered now, never chained a second time. */
  private resolveInDoubt(): void {
    const doubt = this.#inDoubt;
    if (doubt === null) return;
    const stored = this.components.store.view().get(auditRecordKey(this.components.node, doubt.head.seq))?.value;
    if (stored === undefined || (JSON.parse(stored) as { hash?: string }).hash !== doubt.head.hash) return;
    this.#inDoubt = null;
    this.committed(doubt.count, doubt.head);
  }

  private committed(count: number, head: ChainPoint): void {
    this.#head = head;
    const done = this.#pending.splice(0, count);
    done.forEach((p, i) => p.done({ ok: true, seq: head.seq - count + 1 + i }));
    this.writtenTotal += count;
  }

  private flush(): void {
    if (this.#flushing || this.#closed) return;
    this.resolveInDoubt();
    if (this.#pending.length === 0) return;
    this.#flushing = true;
    const batch = this.#pending.slice(0, this.config.batchRecordsMax);
    const node = this.components.node;
    const head = this.currentHead();
    const records = chainRecords(node, head, batch.map((p) => p.entry));
    const last = records[records.length - 1];
    if (last === undefined) {
      this.#flushing = false;
      return;
    }
    const newHead: ChainPoint = { seq: last.seq, hash: last.hash };
    const headKey = auditHeadKey(node);
    const ops: KvOp[] = records.map((r) => ({ type: 'put', key: auditRecordKey(node, r.seq), value: JSON.stringify(r) }));
    ops.push({ type: 'put', key: headKey, value: JSON.stringify(newHead) });
    ops.push(...this.compaction(newHead.seq, records));
    // Compare on the head we chained after: absent for a new chain, else exactly its value.
    const command: KvCommand = {
      type: 'txn',
      compare: head.seq === 0 ? [{ key: headKey, target: 'createRevision', op: '==', operand: 0 }] : [{ key: headKey, target: 'value', op: '==', operand: JSON.stringify(head) }],
      success: ops,
      failure: [],
    };
    this.components.store.propose(command, (outcome) => this.settle(batch.length, newHead, outcome));
  }

  /** Ops that drop the records past retention and move the checkpoint to the last one dropped. */
  private compaction(headSeq: number, fresh: readonly { seq: number; hash: string }[]): KvOp[] {
    const node = this.components.node;
    const view = this.components.store.view();
    const checkpoint = readChainPoint(view, auditCheckpointKey(node)) ?? { seq: 0, hash: GENESIS_HASH };
    const keepFrom = headSeq - this.config.retainedRecordsMax + 1;
    if (keepFrom <= checkpoint.seq + 1) return [];
    const lastDropped = keepFrom - 1;
    const droppedValue = view.get(auditRecordKey(node, lastDropped))?.value ?? null;
    const droppedHash = fresh.find((r) => r.seq === lastDropped)?.hash ?? (droppedValue === null ? null : (JSON.parse(droppedValue) as { hash?: string }).hash ?? null);
    // The view has not applied that record yet: compact on a later flush.
    if (droppedHash === null) return [];
    return [
      { type: 'deleteRange', start: auditRecordKey(node, checkpoint.seq + 1), end: auditRecordKey(node, keepFrom) },
      { type: 'put', key: auditCheckpointKey(node), value: JSON.stringify({ seq: lastDropped, hash: droppedHash }) },
    ];
  }

  private settle(count: number, newHead: ChainPoint, outcome: StoreWriteOutcome): void {
    this.#flushing = false;
    if (this.#closed) return;
    if (outcome.ok && outcome.result.succeeded === true) {
      this.#inDoubt = null;
      this.committed(count, newHead);
      if (this.#pending.length > 0) this.schedule(0);
      return;
    }
    // Not written, or not known to be: the records stay first in line and the
    // next flush starts from the head the view shows. A txn in doubt and its
    // retry compare on the same head, so at most one of them applies; if it
    // was the first, resolveInDoubt finds it in the view.
    if (!outcome.ok && outcome.reason === 'unknown') this.#inDoubt = { head: newHead, count };
    this.#head = null;
    const detail = outcome.ok ? 'the chain head moved (a stale view); retrying' : outcome.detail;
    this.components.onError?.(`audit batch of ${count} not written: ${detail}`);
    this.schedule(this.config.retryDelayMs);
  }
}
