// The hand-off rule: may this node launch a project whose status record names
// another node? The status record names the node that may hold a copy: every
// launch is preceded by a fenced write that names its node, and no owner
// writes another node's name away until this rule says it may. So a new owner
// launches only once the named holder's copy is certainly gone:
//
// * the holder recorded its release: after its copy stopped, it wrote the
//   record back with `released: true` (a write compared on the record's own
//   revision, so it cannot undo a newer owner's record). An old owner that had
//   nothing running says so the same way;
// * or the ring marks the holder down. The leader marks a member down only
//   after hearing nothing from it for suspectMs, and a node's copies are gone
//   by leaseMs + the watchdog's validForMs + killAfterMs after it last heard
//   the leader (its lease lapses, or its watchdog freezes then kills them;
//   actors/lease-fence.ts), which is below suspectMs. So a failover after a
//   crash waits no longer than it did. The one exception the design accepts is
//   a one-way link: the holder still hears the leader, keeps its lease, and
//   stops its copy only when it applies the move;
// * or the holder left the configuration at least `goneWaitMs` ago by this
//   node's clock: it gets no heartbeats any more, so its lease lapsed and its
//   watchdog fenced its copies by then. Nobody marks a non-member down.
// Pure: the host gives it the facts.
import type { ProjectStatusRecord } from './messages.ts';

export type Handoff =
  | { readonly type: 'clear' }
  /** Another node may still run a copy: launch nothing, write nothing over its record. */
  | { readonly type: 'wait'; readonly holder: string; readonly detail: string };

/** What this node knows of the node a status record names. */
export interface HolderFacts {
  /** The ring at this node's applied epoch marks it down. */
  readonly markedDown: boolean;
  /** How long ago (this node's clock) it saw the holder out of the configuration; null while it is a member. */
  readonly goneForMs: number | null;
}

export const CLEAR: Handoff = Object.freeze({ type: 'clear' });

export function handoff(status: ProjectStatusRecord | null, me: string, facts: (holder: string) => HolderFacts, goneWaitMs: number): Handoff {
  if (status === null || status.node === me || status.released === true) return CLEAR;
  const holder = facts(status.node);
  if (holder.markedDown) return CLEAR;
  if (holder.goneForMs !== null) {
    if (holder.goneForMs >= goneWaitMs) return CLEAR;
    return { type: 'wait', holder: status.node, detail: `${status.node} left the cluster ${holder.goneForMs} ms ago; its copy is certainly fenced after ${goneWaitMs} ms` };
  }
  return { type: 'wait', holder: status.node, detail: `waiting for ${status.node} to stop its copy and record the release` };
}
