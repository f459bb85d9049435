// Faults aimed at the protocol's weak moments, as a scheduler rather than a
// script: every so often the nemesis arms one trigger, and the next time the
// cluster reaches that moment it strikes the node involved. The moments are
// where Raft bugs live: a leader that has just sent new entries (they reach a
// minority: Figure 8), a leader just elected (its first entry unreplicated), a
// node that has just acknowledged an append or granted a vote (a crash between
// its write and its answer), a follower taking a snapshot.
import type { Message, NodeId } from '../consensus/types.ts';
import type { Prng } from './prng.ts';

export type AimTrigger = 'replicating' | 'elected' | 'acknowledged' | 'voted' | 'snapshot';
const TRIGGERS: readonly AimTrigger[] = ['replicating', 'elected', 'acknowledged', 'voted', 'snapshot'];
const ANSWERS: readonly AimTrigger[] = ['acknowledged', 'voted'];

/** crash: kill -9, restart later; isolate: cut both ways; deafen: cut what it hears, not what it says (a one-way partition). */
export type AimAction = 'crash' | 'isolate' | 'deafen';

export interface AimConfig {
  /** Mean virtual time from the end of one aimed fault to arming the next. */
  readonly intervalMs: number;
  /** What it may do when a trigger fires (at least one). */
  readonly actions: readonly AimAction[];
  /** A crashed node restarts, an isolated one reconnects, after up to this long. */
  readonly durationMsMax: number;
  /** Strike up to this long after the moment (0: at once), so some messages of it get through. */
  readonly strikeDelayMsMax: number;
  /** Most aimed faults at once: two let a cut-off leader's successor be cut off too (Figure 8 needs both). */
  readonly concurrentMax: number;
  /** After striking a leader, chance to aim at once at the next one elected. */
  readonly successorProbability: number;
}

/** What the aimed nemesis does to the cluster. */
export interface AimTarget {
  crash(node: NodeId): void;
  restart(node: NodeId): void;
  isolate(node: NodeId): void;
  deafen(node: NodeId): void;
  reconnect(node: NodeId): void;
  isUp(node: NodeId): boolean;
  /** Run `action` after `delayMs` unless the nemesis was stopped meanwhile. */
  later(delayMs: number, action: () => void): void;
  record(node: NodeId, event: string, details: string): void;
}

export class AimedNemesis {
  private armed: AimTrigger | null = null;
  private armings = 0;
  private active = 0;
  /** Faults struck, per trigger. */
  readonly struck: Record<AimTrigger, number> = { replicating: 0, elected: 0, acknowledged: 0, voted: 0, snapshot: 0 };

  /** An answer only matters to a crash: without crashes the nemesis aims at the other moments. */
  private readonly triggers: readonly AimTrigger[];

  constructor(
    private readonly config: AimConfig,
    private readonly prng: Prng,
    private readonly target: AimTarget,
  ) {
    this.triggers = config.actions.includes('crash') ? TRIGGERS : TRIGGERS.filter((trigger) => !ANSWERS.includes(trigger));
  }

  start(): void {
    this.armLater();
  }

  /** A message handed to the network. */
  sent(message: Message): void {
    const armed = this.armed;
    if (armed === null) return;
    if (armed === 'replicating' && message.type === 'append' && message.entries.length > 0) this.strike(message.from);
    else if (armed === 'acknowledged' && message.type === 'appendResp' && message.success) this.strike(message.from, 0);
    else if (armed === 'voted' && message.type === 'voteResp' && message.granted) this.strike(message.from, 0);
    else if (armed === 'snapshot' && message.type === 'snapshotChunk') this.strike(this.prng.chance(0.5) ? message.from : message.to);
  }

  /** `node` has just become leader. */
  elected(node: NodeId): void {
    if (this.armed === 'elected') this.strike(node);
  }

  private armLater(): void {
    this.target.later(this.drawInterval(), () => this.arm());
  }

  /** Arm a trigger; a moment that does not come within an interval (no election, no snapshot) gives way to another. */
  private arm(): void {
    const trigger = this.prng.pick(this.triggers);
    this.armed = trigger;
    this.armings += 1;
    const arming = this.armings;
    this.target.later(this.drawInterval(), () => {
      if (this.armed === trigger && this.armings === arming) this.arm();
    });
  }

  private drawInterval(): number {
    const interval = this.config.intervalMs;
    return this.prng.range(Math.max(1, Math.floor(interval / 2)), Math.max(2, Math.floor((interval * 3) / 2)));
  }

  private strike(node: NodeId, delayMs = this.prng.floatRange(0, this.config.strikeDelayMsMax)): void {
    const trigger = this.armed as AimTrigger;
    this.armed = null;
    this.active += 1;
    this.struck[trigger] += 1;
    if (this.active < this.config.concurrentMax) {
      // Aim at the successor of a leader cut off at a weak moment, or else at whatever comes next.
      if ((trigger === 'replicating' || trigger === 'elected') && this.prng.chance(this.config.successorProbability)) this.armed = 'elected';
      else this.armLater();
    }
    const action: AimAction = ANSWERS.includes(trigger) ? 'crash' : this.prng.pick(this.config.actions);
    // Log-uniform: as many quick returns (the same node re-elected, its vote forgotten) as long absences.
    const durationMs = Math.round(Math.exp(this.prng.floatRange(0, Math.log(this.config.durationMsMax))));
    const act = (): void => {
      if (!this.target.isUp(node)) return this.done();
      this.target.record(node, 'aimed', `${action} on ${trigger} for ${durationMs}ms`);
      if (action === 'crash') this.target.crash(node);
      else if (action === 'isolate') this.target.isolate(node);
      else this.target.deafen(node);
      this.target.later(durationMs, () => {
        if (action === 'crash') this.target.restart(node);
        else this.target.reconnect(node);
        this.done();
      });
    };
    // Even "at once" is the next event: the node finishes the send it is in (its disk write is still running).
    this.target.later(delayMs, act);
  }

  private done(): void {
    const wasFull = this.active >= this.config.concurrentMax;
    this.active -= 1;
    if (wasFull) this.armLater();
  }
}
