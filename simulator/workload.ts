// Concurrent KV clients for the simulator: reads, writes and compare-and-sets
// on a few keys, each client one call at a time, retrying elsewhere on
// "not leader", recording every call with its outcome (ok, fail, unknown).
import type { KvCommand } from '../consensus/kv-state-machine.ts';
import type { NodeId } from '../consensus/types.ts';
import type { SimCluster } from './cluster.ts';
import type { Operation, OpKind } from './history.ts';
import type { Prng } from './prng.ts';

/** Share of reads sent to a random node instead of the leader the client believes in. */
const READ_ANY_NODE_PROBABILITY = 0.25;

export interface WorkloadOptions {
  readonly clients: number;
  readonly keys: number;
  /** A client gives up on a call after this long and records it as unknown. */
  readonly clientTimeoutMs: number;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** A call as issued, before its outcome is known. */
type IssuedCall = Omit<Operation, 'status' | 'returnTime' | 'output' | 'casSucceeded'>;

interface Client {
  readonly id: number;
  leaderHint: NodeId | null;
  /** The node that last timed out or refused: not tried again next time when another is available. */
  avoid: NodeId | null;
  sequence: number;
  /** Virtual times of calls that returned ok. */
  okTimes: number[];
  inFlight: { readonly call: IssuedCall; done: boolean } | null;
}

export class KvWorkload {
  private readonly clients: Client[];
  private targets: NodeId[];
  private running = false;
  private nextOpId = 0;
  /** Per key, the value of its last successful read or write (what a compare-and-set guesses). */
  private readonly lastOkValue = new Map<string, string | null>();

  constructor(
    private readonly cluster: SimCluster,
    private readonly prng: Prng,
    private readonly options: WorkloadOptions,
  ) {
    this.clients = Array.from({ length: options.clients }, (_, id) => ({ id, leaderHint: null, avoid: null, sequence: 0, okTimes: [], inFlight: null }));
    this.targets = [...cluster.ids];
  }

  start(): void {
    this.running = true;
    for (const client of this.clients) this.scheduleNext(client);
  }

  /** Stop issuing; calls still in flight are recorded as they are: writes unknown, reads dropped. */
  stop(): void {
    this.running = false;
    for (const client of this.clients) {
      const pending = client.inFlight;
      if (pending === null || pending.done) continue;
      pending.done = true;
      this.finish(client, pending.call, pending.call.kind === 'read' ? 'fail' : 'unknown', {});
    }
  }

  setTargets(targets: readonly NodeId[]): void {
    this.targets = [...targets];
    for (const client of this.clients) if (client.leaderHint !== null && !targets.includes(client.leaderHint)) client.leaderHint = null;
  }

  /** Whether every client completed at least `count` calls with status ok since `sinceMs`. */
  allClientsOkSince(sinceMs: number, count: number): boolean {
    // okTimes grow in time order: count from the newest (this runs after every event while healing).
    return this.clients.every((client) => {
      let found = 0;
      for (let i = client.okTimes.length - 1; i >= 0 && found < count; i -= 1) {
        if ((client.okTimes[i] as number) < sinceMs) break;
        found += 1;
      }
      return found >= count;
    });
  }

  private scheduleNext(client: Client): void {
    if (!this.running) return;
    this.cluster.scheduler.schedule(this.prng.range(0, 20), () => this.issue(client), 'workload');
  }

  private issue(client: Client): void {
    if (!this.running) return;
    const key = `k${this.prng.int(this.options.keys)}`;
    const roll = this.prng.float();
    const kind: OpKind = roll < 0.4 ? 'read' : roll < 0.8 ? 'write' : 'cas';
    const others = this.targets.filter((id) => id !== client.avoid);
    // Some reads go wherever a load balancer sends them: a linearizable read must be right on any node.
    const followHint = client.leaderHint !== null && this.targets.includes(client.leaderHint) && !(kind === 'read' && this.prng.chance(READ_ANY_NODE_PROBABILITY));
    const target = followHint ? (client.leaderHint as NodeId) : this.prng.pick(others.length > 0 ? others : this.targets);
    client.sequence += 1;
    const value = `c${client.id}.${client.sequence}`;
    const now = this.cluster.scheduler.nowMs();
    const id = this.nextOpId;
    this.nextOpId += 1;
    const expected = kind === 'cas' ? (this.prng.chance(0.2) ? null : this.lastValueGuess(key)) : undefined;
    // Field by field, as in finish(): spreads of optional fields cost more than the rest of issue().
    const call: Mutable<IssuedCall> = { id, clientId: client.id, key, kind, callTime: now };
    if (kind !== 'read') call.value = value;
    if (kind === 'cas') call.expected = expected;
    const pending = { call, done: false };
    client.inFlight = pending;
    const timeout = this.cluster.scheduler.schedule(this.options.clientTimeoutMs, () => {
      if (pending.done) return;
      pending.done = true;
      // That node may be paused or cut off: try another next time.
      client.leaderHint = null;
      client.avoid = target;
      this.finish(client, call, kind === 'read' ? 'fail' : 'unknown', {});
    }, 'client-timeout');
    const settle = (status: Operation['status'], extra: { output?: string | null; casSucceeded?: boolean }, hint?: NodeId | null): void => {
      if (pending.done) return;
      pending.done = true;
      // A settled call's timeout would run as a no-op 1.5 s later; removed now it keeps the
      // event heap small (hundreds of them were waiting in a healthy cluster) and the order of
      // every other event as it was (order is by time, then by when it was scheduled).
      this.cluster.scheduler.cancel(timeout);
      if (hint !== undefined) client.leaderHint = hint;
      this.finish(client, call, status, extra);
    };
    if (kind === 'read') {
      this.cluster.read(target, (outcome) => {
        if (outcome.ok) settle('ok', { output: outcome.machine.kv.get(key)?.value ?? null });
        else settle('fail', {}, outcome.reason === 'notLeader' ? outcome.leaderHint : null);
      });
      return;
    }
    const command: KvCommand =
      kind === 'write'
        ? { type: 'put', key, value }
        : {
            type: 'txn',
            compare: expected === null ? [{ key, target: 'createRevision', op: '==', operand: 0 }] : [{ key, target: 'value', op: '==', operand: expected as string }],
            success: [{ type: 'put', key, value }],
            failure: [],
          };
    this.cluster.propose(target, command, (outcome) => {
      if (outcome.ok) {
        if (!outcome.result.ok) settle('fail', {});
        else if (kind === 'cas') settle('ok', { casSucceeded: outcome.result.succeeded === true });
        else settle('ok', {});
        return;
      }
      switch (outcome.reason) {
        case 'notLeader':
          settle('fail', {}, outcome.leaderHint);
          return;
        case 'rejected':
          settle('fail', {}, null);
          return;
        case 'down':
          client.avoid = target;
          settle('fail', {}, null);
          return;
        case 'unknown':
          settle('unknown', {}, null);
          return;
        default: {
          const never: never = outcome;
          return never;
        }
      }
    });
  }

  private lastValueGuess(key: string): string | null {
    return this.lastOkValue.get(key) ?? null;
  }

  private finish(client: Client, call: IssuedCall, status: Operation['status'], extra: { output?: string | null; casSucceeded?: boolean }): void {
    const now = this.cluster.scheduler.nowMs();
    // Built field by field: a spread of these differently shaped objects cost 5% of a run.
    const operation: Mutable<Operation> = { id: call.id, clientId: call.clientId, key: call.key, kind: call.kind, callTime: call.callTime, status, returnTime: status === 'unknown' ? null : now };
    if (call.value !== undefined) operation.value = call.value;
    if (call.expected !== undefined) operation.expected = call.expected;
    if (extra.output !== undefined) operation.output = extra.output;
    if (extra.casSucceeded !== undefined) operation.casSucceeded = extra.casSucceeded;
    this.cluster.history.push(operation);
    if (this.cluster.trace !== null) this.cluster.record(`client${client.id}` as NodeId, 'op', `${call.kind} ${call.key} ${status}`);
    if (status === 'ok') {
      client.okTimes.push(now);
      // The value a compare-and-set guesses: the last one a read saw or a write set.
      if (call.kind === 'read') this.lastOkValue.set(call.key, operation.output ?? null);
      else if (call.kind === 'write') this.lastOkValue.set(call.key, call.value ?? null);
    }
    if (client.inFlight?.call === call) client.inFlight = null;
    this.scheduleNext(client);
  }
}
