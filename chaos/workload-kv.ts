// The KV workload: concurrent clients doing read, write and compare-and-set on
// a few register keys, plus inserts of unique elements (one key each), over the
// public KV gRPC service of random nodes, each call with a deadline. Registers
// feed the linearizability checker; the inserts show lost and duplicated writes.
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { CompareOp, CompareTarget, KV, PutRequestSchema, RangeRequestSchema, TxnRequestSchema } from '../proto/gen/kv_pb.ts';
import { callUnary, makeClientConstructor } from '../proto/grpc.ts';
import type { Operation } from '../simulator/history.ts';
import { Prng } from '../simulator/prng.ts';
import { checkRegisters, checkSet, classifyWriteError, type InsertAttempt, type SetRead } from './checker.ts';
import { OBSERVER_CHANNEL_OPTIONS } from './cluster.ts';
import type { CallRecord, Now, Outcome, Targets, Workload, WorkloadVerdict } from './workload.ts';

const KvClient = makeClientConstructor(KV);
type KvClientType = InstanceType<typeof KvClient>;

export interface KvWorkloadOptions {
  readonly seed: number;
  readonly clients: number;
  readonly keys: number;
  /** Deadline of each call; a write past it is `unknown`. */
  readonly opTimeoutMs: number;
  readonly targets: Targets;
  readonly now: Now;
  /** How clients reach the nodes: the cluster's admin token on every call (ChaosCluster.clientCredentials). */
  readonly credentials: grpc.ChannelCredentials;
  /** Relative weights of the operations; DEFAULT_MIX unless given. */
  readonly mix?: OpMix;
  /**
   * Planted client bug for tests: reads ask for `serializable` (served from
   * the local replica, possibly stale) instead of linearizable ones.
   */
  readonly staleReads?: boolean;
}

export interface OpMix {
  readonly read: number;
  readonly write: number;
  readonly cas: number;
  readonly insert: number;
}

export const DEFAULT_MIX: OpMix = { read: 0.4, write: 0.25, cas: 0.2, insert: 0.15 };

export const REGISTER_PREFIX = 'chaos/reg/';
export const SET_PREFIX = 'chaos/set/';
/** Pause after a failed call, so a dead node does not turn a client into a busy loop. */
const BACKOFF_MS = 50;
/** Think time between calls of one client. */
const THINK_MS_MAX = 20;
/** How long the final reads may take per node before it counts as unreachable. */
const FINAL_READ_MS_MAX = 15_000;

interface ServiceErrorLike {
  code?: number;
  details?: string;
  message?: string;
}

export class KvWorkload implements Workload {
  readonly name = 'kv';
  readonly calls: CallRecord[] = [];
  readonly history: Operation[] = [];
  readonly inserts: InsertAttempt[] = [];
  private readonly clientsByAddress = new Map<string, KvClientType>();
  private nextOpId = 0;
  private registerCheck: ReturnType<typeof checkRegisters> | null = null;

  constructor(readonly options: KvWorkloadOptions) {}

  private client(address: string): KvClientType {
    let client = this.clientsByAddress.get(address);
    if (client === undefined) {
      client = new KvClient(address, this.options.credentials, OBSERVER_CHANNEL_OPTIONS);
      this.clientsByAddress.set(address, client);
    }
    return client;
  }

  private deadline(): Date {
    return new Date(Date.now() + this.options.opTimeoutMs);
  }

  async run(signal: AbortSignal): Promise<void> {
    const root = new Prng(this.options.seed).fork('chaos:workload:kv');
    await Promise.all(Array.from({ length: this.options.clients }, (_, clientId) => this.clientLoop(clientId, root.fork(`client:${clientId}`), signal)));
  }

  private async clientLoop(clientId: number, random: Prng, signal: AbortSignal): Promise<void> {
    let counter = 0;
    const lastSeen = new Map<string, string>();
    while (!signal.aborted) {
      const members = this.options.targets.members();
      if (members.length === 0) {
        await sleep(BACKOFF_MS);
        continue;
      }
      const node = random.pick(members);
      const key = `${REGISTER_PREFIX}${random.int(this.options.keys)}`;
      const mix = this.options.mix ?? DEFAULT_MIX;
      const dice = random.float() * (mix.read + mix.write + mix.cas + mix.insert);
      counter += 1;
      const value = `c${clientId}-${counter}`;
      let outcome: Outcome;
      if (dice < mix.read) outcome = await this.read(clientId, node, key, lastSeen);
      else if (dice < mix.read + mix.write) outcome = await this.write(clientId, node, key, value, lastSeen);
      else if (dice < mix.read + mix.write + mix.cas && lastSeen.has(key)) outcome = await this.cas(clientId, node, key, lastSeen.get(key) as string, value, lastSeen);
      else if (dice < mix.read + mix.write + mix.cas) outcome = await this.write(clientId, node, key, value, lastSeen);
      else outcome = await this.insert(node, value);
      await sleep(outcome === 'ok' ? random.int(THINK_MS_MAX + 1) : BACKOFF_MS);
    }
  }

  private record(op: string, node: string, startMs: number, outcome: Outcome, error?: string): void {
    this.calls.push({ workload: this.name, op, node, startMs, endMs: this.options.now(), outcome, ...(error === undefined ? {} : { error }) });
  }

  async read(clientId: number, node: { id: string; address: string }, key: string, lastSeen: Map<string, string>): Promise<Outcome> {
    const id = this.nextOpId++;
    const callTime = this.options.now();
    try {
      const request = create(RangeRequestSchema, { key, serializable: this.options.staleReads === true });
      const response = await callUnary(this.client(node.address), 'range', request, { deadline: this.deadline() });
      const output = response.kvs[0]?.value ?? null;
      this.history.push({ id, clientId, key, kind: 'read', output, callTime, returnTime: this.options.now(), status: 'ok' });
      if (output !== null) lastSeen.set(key, output);
      this.record('read', node.id, callTime, 'ok');
      return 'ok';
    } catch (error) {
      // A read changes nothing: whatever went wrong, it is simply not an observation.
      this.history.push({ id, clientId, key, kind: 'read', callTime, returnTime: this.options.now(), status: 'fail' });
      this.record('read', node.id, callTime, 'fail', describe(error));
      return 'fail';
    }
  }

  private async write(clientId: number, node: { id: string; address: string }, key: string, value: string, lastSeen: Map<string, string>): Promise<Outcome> {
    const id = this.nextOpId++;
    const callTime = this.options.now();
    try {
      await callUnary(this.client(node.address), 'put', create(PutRequestSchema, { key, value }), { deadline: this.deadline() });
      this.history.push({ id, clientId, key, kind: 'write', value, callTime, returnTime: this.options.now(), status: 'ok' });
      lastSeen.set(key, value);
      this.record('write', node.id, callTime, 'ok');
      return 'ok';
    } catch (error) {
      const outcome = outcomeOf(error);
      this.history.push({ id, clientId, key, kind: 'write', value, callTime, returnTime: outcome === 'unknown' ? null : this.options.now(), status: outcome });
      this.record('write', node.id, callTime, outcome, describe(error));
      return outcome;
    }
  }

  private async cas(clientId: number, node: { id: string; address: string }, key: string, expected: string, value: string, lastSeen: Map<string, string>): Promise<Outcome> {
    const id = this.nextOpId++;
    const callTime = this.options.now();
    const request = create(TxnRequestSchema, {
      compare: [{ key, target: CompareTarget.VALUE, op: CompareOp.EQUAL, operand: { case: 'text', value: expected } }],
      success: [{ request: { case: 'requestPut', value: create(PutRequestSchema, { key, value }) } }],
      failure: [],
    });
    try {
      const response = await callUnary(this.client(node.address), 'txn', request, { deadline: this.deadline() });
      this.history.push({ id, clientId, key, kind: 'cas', expected, value, casSucceeded: response.succeeded, callTime, returnTime: this.options.now(), status: 'ok' });
      if (response.succeeded) lastSeen.set(key, value);
      this.record('cas', node.id, callTime, 'ok');
      return 'ok';
    } catch (error) {
      const outcome = outcomeOf(error);
      this.history.push({ id, clientId, key, kind: 'cas', expected, value, callTime, returnTime: outcome === 'unknown' ? null : this.options.now(), status: outcome });
      this.record('cas', node.id, callTime, outcome, describe(error));
      return outcome;
    }
  }

  private async insert(node: { id: string; address: string }, element: string): Promise<Outcome> {
    const callTime = this.options.now();
    try {
      await callUnary(this.client(node.address), 'put', create(PutRequestSchema, { key: `${SET_PREFIX}${element}`, value: element }), { deadline: this.deadline() });
      this.inserts.push({ element, outcome: 'ok' });
      this.record('insert', node.id, callTime, 'ok');
      return 'ok';
    } catch (error) {
      const outcome = outcomeOf(error);
      this.inserts.push({ element, outcome });
      this.record('insert', node.id, callTime, outcome, describe(error));
      return outcome;
    }
  }

  /** Final state through one node, retried until it answers or the bound passes. */
  private async finalReads(node: { id: string; address: string }, signal: AbortSignal): Promise<{ registers: Map<string, string | null>; set: SetRead } | null> {
    const until = Date.now() + FINAL_READ_MS_MAX;
    while (Date.now() < until && !signal.aborted) {
      try {
        const client = this.client(node.address);
        const registers = new Map<string, string | null>();
        for (let k = 0; k < this.options.keys; k++) {
          const key = `${REGISTER_PREFIX}${k}`;
          const id = this.nextOpId++;
          const callTime = this.options.now();
          const response = await callUnary(client, 'range', create(RangeRequestSchema, { key }), { deadline: this.deadline() });
          const output = response.kvs[0]?.value ?? null;
          registers.set(key, output);
          // Final reads join the history: a lost register write then shows as a violation.
          this.history.push({ id, clientId: -1, key, kind: 'read', output, callTime, returnTime: this.options.now(), status: 'ok' });
        }
        const response = await callUnary(client, 'range', create(RangeRequestSchema, { key: SET_PREFIX, rangeEnd: prefixEnd(SET_PREFIX) }), { deadline: this.deadline() });
        const set = new Map<string, number>(response.kvs.map((kv) => [kv.value, Number(kv.version)]));
        return { registers, set };
      } catch {
        await sleep(200);
      }
    }
    return null;
  }

  async verdict(signal: AbortSignal): Promise<WorkloadVerdict> {
    const findings: string[] = [];
    const reads = new Map<string, SetRead>();
    for (const node of this.options.targets.running()) {
      const final = await this.finalReads(node, signal);
      if (final === null) findings.push(`final reads through ${node.id} did not succeed within ${FINAL_READ_MS_MAX / 1000} s`);
      else reads.set(node.id, final.set);
    }
    const set = checkSet(this.inserts, reads);
    const registers = checkRegisters(this.history);
    this.registerCheck = registers;
    const acked = this.inserts.filter((insert) => insert.outcome === 'ok').length;
    findings.push(`set: ${acked} acknowledged inserts, ${set.lost.length} lost, ${set.duplicates.length} applied twice, ${set.phantoms.length} never attempted`);
    if (set.lost.length > 0) findings.push(`lost inserts: ${set.lost.slice(0, 10).join(', ')}${set.lost.length > 10 ? ', …' : ''}`);
    if (set.divergent.length > 0) findings.push(`final reads differ on ${set.divergent.join(', ')}`);
    if (set.phantoms.length > 0) findings.push(`elements nobody inserted: ${set.phantoms.slice(0, 10).join(', ')}`);
    switch (registers.result) {
      case 'ok':
        findings.push(`registers: linearizable (${registers.keysChecked} keys, ${registers.steps} search steps)`);
        break;
      case 'violation':
        findings.push(`registers: NOT linearizable on ${registers.key}: ${registers.explanation.split('\n')[0] ?? ''}`);
        break;
      case 'unknown':
        findings.push(`registers: undecided on ${registers.key}: ${registers.reason}`);
        break;
      default: {
        const never: never = registers;
        throw new Error(`unexpected check result ${String(never)}`);
      }
    }
    const everyNodeRead = reads.size === this.options.targets.running().length && reads.size > 0;
    const linearizable = registers.result === 'ok' ? true : registers.result === 'violation' ? false : null;
    return {
      workload: this.name,
      ok: everyNodeRead && set.lost.length === 0 && set.duplicates.length === 0 && set.phantoms.length === 0 && set.divergent.length === 0 && linearizable === true,
      lost: set.lost.length,
      duplicates: set.duplicates.length,
      linearizable,
      findings,
    };
  }

  /** The register check's full explanation, for the report. */
  explainRegisters(): string {
    const result = this.registerCheck;
    if (result === null) return 'not checked yet';
    return result.result === 'violation' ? result.explanation : result.result === 'unknown' ? result.reason : 'linearizable';
  }

  close(): void {
    for (const client of this.clientsByAddress.values()) client.close();
    this.clientsByAddress.clear();
  }
}

function outcomeOf(error: unknown): Outcome {
  const e = error as ServiceErrorLike;
  return classifyWriteError(e.code ?? -1, e.details ?? e.message ?? '');
}

function describe(error: unknown): string {
  const e = error as ServiceErrorLike;
  const code = e.code === undefined ? '' : `${grpc.status[e.code] ?? e.code}: `;
  return `${code}${(e.details ?? e.message ?? String(error)).split('\n')[0] ?? ''}`.slice(0, 200);
}

/** The first key after every key that starts with `prefix` (prefix has no 0xff bytes here). */
function prefixEnd(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
