// An owner whose applied state does not reach its own committed write within applyWaitMsMax (a slow disk did it in
// actor seed 229): the caller must hear that the outcome is unknown, never a definite refusal such as NotFoundError
// for a start that was recorded.
import test, { type ExecutionContext } from 'ava';
import type { ActorStore } from '../actors/components.ts';
import { projectActorKey, type ActorRequest, type ActorResponse } from '../actors/messages.ts';
import type { KeyValue } from '../consensus/kv-state-machine.ts';
import type { NodeId } from '../consensus/types.ts';
import { SimActorCluster } from './actor-cluster.ts';
import { SIM_SPEC } from './actor-workload.ts';

const KEY = projectActorKey('acme', 'web');

/**
 * Every node's view stops at the revision it had when a write of KEY was first proposed, and hides KEY's records
 * written after it: the applied state lags the cluster's from that write on, as a slow disk leaves it.
 */
function lagFromFirstWriteOfKey(): { wrapStore: (store: ActorStore) => ActorStore; recorded: () => KeyValue | null } {
  let lagAt: number | null = null;
  let real: ActorStore | null = null;
  const hidden = (kv: KeyValue): boolean => lagAt !== null && kv.key.startsWith(KEY) && kv.modRevision > lagAt;
  const wrapStore = (store: ActorStore): ActorStore => {
    real = store;
    return {
      view: () => {
        const view = store.view();
        if (lagAt === null) return view;
        const revision = lagAt;
        return {
          revision,
          get: (key) => {
            const kv = view.get(key);
            return kv === null || hidden(kv) ? null : kv;
          },
          range: (start, end, limit) => view.range(start, end, limit).filter((kv) => !hidden(kv)),
        };
      },
      propose: (command, callback) => {
        if (lagAt === null && JSON.stringify(command).includes(KEY)) lagAt = store.view().revision;
        store.propose(command, callback);
      },
    };
  };
  return { wrapStore, recorded: () => real?.view().get(KEY) ?? null };
}

/** A 3-node cluster lagging from the first write of KEY on, and a call to KEY's owner run until it answers. */
function laggingCluster(t: ExecutionContext): { recorded: () => KeyValue | null; call: (request: ActorRequest, requestId: string) => ActorResponse | null } {
  const lag = lagFromFirstWriteOfKey();
  const actors = new SimActorCluster({ seed: 1, nodes: 3, faults: new Set(), actorPlant: { wrapStore: lag.wrapStore } });
  const ready = actors.cluster.runUntil(() => actors.cluster.leader() !== null && [...actors.hosts.values()].every((host) => host.leaseState() === 'valid'), 10_000);
  t.true(ready, 'no leader and leases within 10 s of virtual time');
  const owner = actors.hosts.get('n1' as NodeId)?.placement().owner(KEY) as NodeId;
  const call = (request: ActorRequest, requestId: string): ActorResponse | null => {
    let answer: ActorResponse | null = null;
    actors.clientCall(owner, KEY, request, 5000, requestId, (outcome) => {
      answer = outcome.delivered ? outcome.response : { type: 'error', name: 'UnavailableError', message: outcome.reason };
    });
    actors.cluster.runUntil(() => answer !== null, 10_000);
    return answer;
  };
  return { recorded: lag.recorded, call };
}

test('a start committed but not applied on its owner within applyWaitMsMax answers OutcomeUnknownError, not NotFoundError', (t) => {
  const { recorded, call } = laggingCluster(t);
  const response = call({ type: 'start', spec: SIM_SPEC, waitMs: 0 }, 'test-lag-1');
  t.not(recorded(), null, 'the start was recorded');
  t.is(response?.type === 'error' ? response.name : response?.type, 'OutcomeUnknownError', JSON.stringify(response));
});

test('a remove on an owner still behind its own recorded start is not acknowledged while the start stays recorded', (t) => {
  // Before, the owner planned the remove from its state without the project and answered 'removed' (existed:
  // false) with nothing written; the start, applied later, ran after an acknowledged remove.
  const { recorded, call } = laggingCluster(t);
  call({ type: 'start', spec: SIM_SPEC, waitMs: 0 }, 'test-lag-2');
  const removed = call({ type: 'remove' }, 'test-lag-3');
  t.not(recorded(), null, 'the start is still recorded');
  t.is(removed?.type === 'error' ? removed.name : removed?.type, 'UnavailableError', JSON.stringify(removed));
});
