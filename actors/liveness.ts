// The leader's failure detector (a timeout rule) and a node's owner lease,
// both pure: they are fed times and observations and say what to do.
//
// Detector: the leader marks a member down when it has heard nothing from it
// for suspectMs, and up again once it hears it. Lease: a node acts as owner
// only while it heard from the leader (or is a leader with check-quorum)
// within leaseMs. leaseMs + election timeout < suspectMs, so a node cut off
// stops its workloads before the leader hands them to others.

export interface LivenessDecision {
  readonly markDown: readonly string[];
  readonly markUp: readonly string[];
}

export class FailureDetector {
  private readonly lastHeardMs = new Map<string, number>();
  private leaderSinceMs: number | null = null;

  constructor(
    private readonly self: string,
    private readonly suspectMs: number,
  ) {}

  heard(node: string, nowMs: number): void {
    this.lastHeardMs.set(node, nowMs);
  }

  /** A new leader gives every member a full suspectMs before suspecting it: it has not been listening. */
  becameLeader(nowMs: number): void {
    this.leaderSinceMs = nowMs;
  }

  steppedDown(): void {
    this.leaderSinceMs = null;
  }

  /** Members to mark down or up now; `down` is who the store marks down. */
  decide(nowMs: number, members: readonly string[], down: ReadonlySet<string>): LivenessDecision {
    if (this.leaderSinceMs === null) return { markDown: [], markUp: [] };
    const markDown: string[] = [];
    const markUp: string[] = [];
    for (const member of members) {
      if (member === this.self) {
        if (down.has(member)) markUp.push(member);
        continue;
      }
      const heard = Math.max(this.lastHeardMs.get(member) ?? -Infinity, this.leaderSinceMs);
      const silentMs = nowMs - heard;
      const heardRecently = (this.lastHeardMs.get(member) ?? -Infinity) >= nowMs - this.suspectMs / 2;
      if (!down.has(member) && silentMs >= this.suspectMs) markDown.push(member);
      else if (down.has(member) && heardRecently) markUp.push(member);
    }
    return { markDown, markUp };
  }
}

export type LeaseState = 'valid' | 'grace' | 'expired';

/**
 * A node's owner lease. `grace` covers a fresh boot before the first leader
 * contact: act as owner of nothing, but do not stop surviving workloads yet.
 */
export class OwnerLease {
  private lastContactMs: number | null = null;

  constructor(
    private readonly leaseMs: number,
    private readonly bootMs: number,
  ) {}

  contact(nowMs: number): void {
    this.lastContactMs = nowMs;
  }

  /** The first time the lease is no longer valid unless contact renews it; null before the first contact. */
  validUntilMs(): number | null {
    return this.lastContactMs === null ? null : this.lastContactMs + this.leaseMs;
  }

  state(nowMs: number): LeaseState {
    if (this.lastContactMs !== null && nowMs - this.lastContactMs < this.leaseMs) return 'valid';
    if (this.lastContactMs === null && nowMs - this.bootMs < this.leaseMs) return 'grace';
    return 'expired';
  }
}
