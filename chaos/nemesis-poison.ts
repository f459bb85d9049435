// The poison-pill nemesis on real processes (issue 11): while its window is
// open it keeps sending what a broken or hostile member and a careless client
// would send, aimed at the cluster's own records:
//   - through the peer plane, authenticated with the cluster secret as a
//     member: Actors.Propose of puts with malformed values under the records
//     that exist (projects/, status/, events/, tenants/), and of bytes that
//     decode to no command;
//   - a forged Raft vote request with a term near 2^53 from a real member id;
//   - through the client KV with the admin token: puts under system keys and
//     values past the size limit.
// The cluster must refuse all of it and go on: no node exits (the suite counts
// crashes), the workloads' checkers stay green. The window's detail says how
// much was sent and how it was answered.
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { encodeCommand } from '../consensus/kv-state-machine.ts';
import { clusterSecretPath, readClusterSecret } from '../node/cluster-files.ts';
import { peerMetadata, withMetadata } from '../node/peer-auth.ts';
import { Actors, ProposeRequestSchema } from '../proto/gen/actor_pb.ts';
import { Admin, StatusRequestSchema } from '../proto/gen/admin_pb.ts';
import { KV, PutRequestSchema, RangeRequestSchema } from '../proto/gen/kv_pb.ts';
import { Raft, RaftBatchSchema, RaftMessageSchema } from '../proto/gen/raft_pb.ts';
import { callUnary, makeClientConstructor } from '../proto/grpc.ts';
import { MALFORMED_VALUES } from '../simulator/nemesis-poison.ts';
import { Prng } from '../simulator/prng.ts';
import type { ChaosCluster } from './cluster.ts';

const ActorsClient = makeClientConstructor(Actors);
const AdminClient = makeClientConstructor(Admin);
const KvClient = makeClientConstructor(KV);
const RaftClient = makeClientConstructor(Raft);

/** Pause between two rounds of poison (each round sends one of each kind). */
const ROUND_MS = 100;
const ROUNDS_IN_FLIGHT_MAX = 8;
const CALL_MS = 2_000;
/** Records aimed at per round, read afresh from the state every few rounds. */
const TARGETS_MAX = 40;
const TARGETS_REFRESH_ROUNDS = 20;
/** A value past the KV value limit (1 MiB by default). */
const OVERSIZED_VALUE_CHARS = 2 * 1024 * 1024;

const SYSTEM_PREFIXES_AIMED: readonly string[] = ['projects/', 'status/', 'events/', 'tenants/'];

export interface PoisonCounts {
  rounds: number;
  /** Propose commands sent, and how many the leader answered as applied: must stay 0. */
  proposed: number;
  applied: number;
  /** Client KV puts sent, and how many were accepted: must stay 0. */
  clientPuts: number;
  clientAccepted: number;
  forgedVotes: number;
}

/**
 * Start poisoning through node `slot` (which should be the leader, so Propose
 * reaches a log); the returned stop resolves with what was sent.
 */
export async function startPoison(cluster: ChaosCluster, slot: number, seed: number): Promise<() => Promise<PoisonCounts>> {
  const node = cluster.node(slot);
  const secret = await readClusterSecret(clusterSecretPath(cluster.options.dataRoot));
  // Speak as another member: the leader takes Propose only from peers.
  const as = cluster.nodes.find((other) => other.slot !== slot)?.id ?? node.id;
  const peer = withMetadata(null, peerMetadata(as, () => secret));
  const actors = new ActorsClient(node.address, peer);
  const raft = new RaftClient(node.address, peer);
  const kv = new KvClient(node.address, cluster.clientCredentials);
  const admin = new AdminClient(node.address, cluster.clientCredentials);
  const random = new Prng(seed).fork('chaos:poison');
  const counts: PoisonCounts = { rounds: 0, proposed: 0, applied: 0, clientPuts: 0, clientAccepted: 0, forgedVotes: 0 };
  const deadline = (): { deadline: Date } => ({ deadline: new Date(Date.now() + CALL_MS) });
  let targets: string[] = [];
  let stopped = false;

  const refreshTargets = async (): Promise<void> => {
    const found: string[] = [];
    for (const prefix of SYSTEM_PREFIXES_AIMED) {
      const end = `${prefix.slice(0, -1)}0`;
      const range = await callUnary(kv, 'range', create(RangeRequestSchema, { key: prefix, rangeEnd: end, limit: 20n, serializable: true }), deadline()).catch(() => null);
      for (const entry of range?.kvs ?? []) found.push(entry.key);
    }
    if (found.length > 0) targets = found.slice(0, TARGETS_MAX);
  };

  const clientPut = async (putKey: string, value: string): Promise<void> => {
    counts.clientPuts += 1;
    const accepted = await callUnary(kv, 'put', create(PutRequestSchema, { key: putKey, value }), deadline()).then(
      () => true,
      () => false,
    );
    if (accepted) counts.clientAccepted += 1;
  };

  const propose = async (commands: Uint8Array[]): Promise<void> => {
    counts.proposed += commands.length;
    const proposed = await callUnary(actors, 'propose', create(ProposeRequestSchema, { commands }), deadline()).catch(() => null);
    counts.applied += proposed?.outcomes.filter((outcome) => outcome.status === 'ok').length ?? 0;
  };

  const forgeVote = async (): Promise<void> => {
    counts.forgedVotes += 1;
    const status = await callUnary(admin, 'status', create(StatusRequestSchema, {}), deadline()).catch(() => null);
    const vote = create(RaftMessageSchema, { from: as, to: node.id, term: BigInt(2 ** 53 - 1), body: { case: 'vote', value: { lastLogIndex: BigInt(2 ** 53 - 1), lastLogTerm: BigInt(2 ** 53 - 2), transfer: true } } });
    await callUnary(raft, 'sendOne', create(RaftBatchSchema, { messages: [vote], clusterId: status?.clusterId ?? '' }), deadline()).catch(() => null);
  };

  const round = async (): Promise<void> => {
    counts.rounds += 1;
    const n = counts.rounds;
    if (n % TARGETS_REFRESH_ROUNDS === 1) await refreshTargets();
    const key = targets.length === 0 ? 'projects/default/poison' : random.pick(targets);
    const garbage = new Uint8Array(random.range(0, 48)).map(() => random.int(256));
    await Promise.all([
      propose([encodeCommand({ type: 'put', key, value: random.pick(MALFORMED_VALUES) }), garbage]),
      clientPut(key, random.pick(MALFORMED_VALUES)),
      n % 10 === 1 ? clientPut(`poison/${n}`, 'x'.repeat(OVERSIZED_VALUE_CHARS)) : null,
      n % 10 === 5 ? forgeVote() : null,
    ]);
  };

  // Rounds start every ROUND_MS without waiting for the last one's answers (a loaded node answers slowly), up to a bound.
  const inFlight = new Set<Promise<void>>();
  const loop = (async (): Promise<void> => {
    while (!stopped) {
      if (inFlight.size < ROUNDS_IN_FLIGHT_MAX) {
        const started = round();
        inFlight.add(started);
        void started.finally(() => inFlight.delete(started));
      }
      await new Promise((resolve) => setTimeout(resolve, ROUND_MS));
    }
    await Promise.all(inFlight);
  })();

  return async () => {
    stopped = true;
    await loop;
    for (const client of [actors, raft, kv, admin] as grpc.Client[]) client.close();
    return counts;
  };
}

export const describePoison = (counts: PoisonCounts): string =>
  `poison: ${counts.rounds} rounds; ${counts.proposed} malformed Propose commands (${counts.applied} applied), ${counts.clientPuts} client puts under system keys or past the size limit (${counts.clientAccepted} accepted), ${counts.forgedVotes} forged votes with term 2^53-1`;
