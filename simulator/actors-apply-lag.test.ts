// An owner whose applied state does not reach its own committed write within applyWaitMsMax (a slow disk did it in
// actor seed 229): the caller must hear that the outcome is unknown, never a definite refusal such as NotFoundError
// for a start that was recorded.
import test from 'ava';
import type { ActorStore } from '../actors/components.ts';
import { projectActorKey, type ActorResponse } from '../actors/messages.ts';
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

test('a start committed but not applied on its owner within applyWaitMsMax answers OutcomeUnknownError, not NotFoundError', (t) => {
  const lag = lagFromFirstWriteOfKey();
  const actors = new SimActorCluster({ seed: 1, nodes: 3, faults: new Set(), actorPlant: { wrapStore: lag.wrapStore } });
  const ready = actors.cluster.runUntil(() => actors.cluster.leader() !== null && [...actors.hosts.values()].every((host) => host.leaseState() === 'valid'), 10_000);
  t.true(ready, 'no leader and leases within 10 s of virtual time');
  const owner = actors.hosts.get('n1' as NodeId)?.placement().owner(KEY) as NodeId;
  let answer: ActorResponse | null = null;
  actors.clientCall(owner, KEY, { type: 'start', spec: SIM_SPEC, waitMs: 0 }, 5000, 'test-lag-1', (outcome) => {
    answer = outcome.delivered ? outcome.response : { type: 'error', name: 'UnavailableError', message: outcome.reason };
  });
  actors.cluster.runUntil(() => answer !== null, 10_000);
  const response = answer as ActorResponse | null;
  t.not(lag.recorded(), null, 'the start was recorded');
  t.is(response?.type === 'error' ? response.name : response?.type, 'OutcomeUnknownError', JSON.stringify(response));
});
