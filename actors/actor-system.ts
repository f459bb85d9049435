// The actor runtime: one mailbox per key, one message at a time (a turn ends
// when the handler calls its reply), activation on the first message, idle
// deactivation, timers through the injected clock, and a bounded mailbox.
// Callback-based like consensus/raft-node.ts, so the simulator runs it
// synchronously and deterministically; nothing here awaits a promise.
import type { Clock, TimerHandle } from '../consensus/types.ts';

/** The mailbox already holds mailboxDepthMax messages: the caller should back off and retry. */
export class MailboxFullError extends Error {
  override readonly name = 'MailboxFullError';
  constructor(
    readonly key: string,
    readonly depthMax: number,
  ) {
    super(`actor ${key} has ${depthMax} messages waiting (mailboxDepthMax); retry after a short back-off`);
  }
}

/** A handler did not reply within turnMsMax; the mailbox moved on (a late reply is dropped). */
export class TurnTimeoutError extends Error {
  override readonly name = 'TurnTimeoutError';
  constructor(
    readonly key: string,
    readonly turnMsMax: number,
  ) {
    super(`actor ${key} did not finish a message within ${turnMsMax} ms; retry, and report it if it keeps happening`);
  }
}

/** The actor was deactivated (moved, released or shut down) before it reached this message. */
export class DeactivatedError extends Error {
  override readonly name = 'DeactivatedError';
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`actor ${key} was deactivated (${reason}) before it handled the message; send it again`);
  }
}

/** The message waited in the mailbox past its caller's deadline: it was dropped unhandled (nothing was done). */
export class ExpiredError extends Error {
  override readonly name = 'ExpiredError';
  constructor(readonly key: string) {
    super(`actor ${key} reached the message after its caller's deadline and dropped it unhandled; retry with a longer deadline`);
  }
}

/** Too many actors active at once on this node. */
export class ActivationsFullError extends Error {
  override readonly name = 'ActivationsFullError';
  constructor(readonly activationsMax: number) {
    super(`${activationsMax} actors are active on this node (activationsMax); retry later or add nodes`);
  }
}

export type ActorSystemError = MailboxFullError | TurnTimeoutError | DeactivatedError | ActivationsFullError | ExpiredError;

export type Delivery<Res> = { readonly ok: true; readonly response: Res } | { readonly ok: false; readonly error: ActorSystemError };

export interface ActorContext {
  readonly key: string;
  readonly clock: Clock;
  /** A timer cleared when the actor deactivates. */
  setTimer(delayMs: number, callback: () => void): TimerHandle;
  clearTimer(handle: TimerHandle): void;
}

export interface Actor<Req, Res> {
  /** Handle one message; call `reply` exactly once (later calls are ignored). */
  receive(message: Req, reply: (response: Res) => void): void;
  /** The actor is gone: no message follows. Free what it holds (not its workload). */
  deactivated?(reason: string): void;
}

export interface ActorSystemOptions {
  /** Messages waiting per actor (not counting the one in its turn). */
  readonly mailboxDepthMax: number;
  /** Deactivate an actor after this long with nothing to do. */
  readonly idleMs: number;
  /** Longest turn; past it the message fails with TurnTimeoutError and the next one runs. */
  readonly turnMsMax: number;
  /** Most actors active at once. */
  readonly activationsMax: number;
}

export class InvalidActorOptionsError extends Error {
  override readonly name = 'InvalidActorOptionsError';
}

export function validateActorOptions(options: ActorSystemOptions): ActorSystemOptions {
  for (const [name, value] of Object.entries(options)) {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
      throw new InvalidActorOptionsError(`actor option ${name} is ${String(value)}; give a whole number >= 1`);
    }
  }
  return options;
}

interface Queued<Req, Res> {
  readonly message: Req;
  readonly done: (delivery: Delivery<Res>) => void;
  /** Clock time after which no one waits for the answer; null: no deadline. */
  readonly expiresAtMs: number | null;
}

interface Activation<Req, Res> {
  readonly key: string;
  readonly actor: Actor<Req, Res>;
  readonly mailbox: Queued<Req, Res>[];
  readonly timers: Set<TimerHandle>;
  busy: boolean;
  /** Ends the current turn by timeout; null between turns. */
  turnTimer: TimerHandle | null;
  idleTimer: TimerHandle | null;
}

export class ActorSystem<Req, Res> {
  private readonly activations = new Map<string, Activation<Req, Res>>();
  private readonly options: ActorSystemOptions;
  readonly stats = { activations: 0, deactivations: 0, rejected: 0, turnTimeouts: 0, expired: 0 };

  constructor(
    private readonly clock: Clock,
    options: ActorSystemOptions,
    private readonly create: (context: ActorContext) => Actor<Req, Res>,
  ) {
    this.options = validateActorOptions(options);
  }

  get activeCount(): number {
    return this.activations.size;
  }

  isActive(key: string): boolean {
    return this.activations.has(key);
  }

  activeKeys(): string[] {
    return [...this.activations.keys()];
  }

  /**
   * Queue `message` for the actor at `key` (activating it); `done` gets its
   * reply or why there is none. A message still waiting at `expiresAtMs` is
   * dropped unhandled, so a backlog of abandoned calls cannot hold the mailbox.
   */
  tell(key: string, message: Req, done: (delivery: Delivery<Res>) => void, expiresAtMs: number | null = null): void {
    let activation = this.activations.get(key);
    if (activation === undefined) {
      if (this.activations.size >= this.options.activationsMax) {
        this.stats.rejected += 1;
        return done({ ok: false, error: new ActivationsFullError(this.options.activationsMax) });
      }
      activation = this.activate(key);
    }
    if (activation.mailbox.length >= this.options.mailboxDepthMax) {
      this.stats.rejected += 1;
      return done({ ok: false, error: new MailboxFullError(key, this.options.mailboxDepthMax) });
    }
    activation.mailbox.push({ message, done, expiresAtMs });
    if (activation.idleTimer !== null) {
      this.clock.clearTimer(activation.idleTimer);
      activation.idleTimer = null;
    }
    this.pump(activation);
  }

  /**
   * Deactivate now: the message in its turn (if any) still gets its reply
   * when the handler gives it; waiting messages fail with DeactivatedError.
   */
  deactivate(key: string, reason: string): void {
    const activation = this.activations.get(key);
    if (activation === undefined) return;
    this.activations.delete(key);
    this.stats.deactivations += 1;
    if (activation.idleTimer !== null) this.clock.clearTimer(activation.idleTimer);
    for (const timer of activation.timers) this.clock.clearTimer(timer);
    activation.timers.clear();
    const waiting = activation.mailbox.splice(0);
    for (const queued of waiting) queued.done({ ok: false, error: new DeactivatedError(key, reason) });
    activation.actor.deactivated?.(reason);
  }

  deactivateAll(reason: string): void {
    for (const key of [...this.activations.keys()]) this.deactivate(key, reason);
  }

  private activate(key: string): Activation<Req, Res> {
    const timers = new Set<TimerHandle>();
    const context: ActorContext = {
      key,
      clock: this.clock,
      setTimer: (delayMs, callback) => {
        const handle = this.clock.setTimer(delayMs, () => {
          timers.delete(handle);
          callback();
        });
        timers.add(handle);
        return handle;
      },
      clearTimer: (handle) => {
        timers.delete(handle);
        this.clock.clearTimer(handle);
      },
    };
    const activation: Activation<Req, Res> = { key, actor: this.create(context), mailbox: [], timers, busy: false, turnTimer: null, idleTimer: null };
    this.activations.set(key, activation);
    this.stats.activations += 1;
    return activation;
  }

  /** Start the next turn if none runs; the loop (not recursion) keeps synchronous handlers off the stack. */
  private pump(activation: Activation<Req, Res>): void {
    while (!activation.busy && this.activations.get(activation.key) === activation) {
      const next = activation.mailbox.shift();
      if (next === undefined) {
        this.scheduleIdle(activation);
        return;
      }
      if (next.expiresAtMs !== null && this.clock.nowMs() >= next.expiresAtMs) {
        this.stats.expired += 1;
        next.done({ ok: false, error: new ExpiredError(activation.key) });
        continue;
      }
      this.runTurn(activation, next);
    }
  }

  private runTurn(activation: Activation<Req, Res>, queued: Queued<Req, Res>): void {
    activation.busy = true;
    let finished = false;
    let synchronous = true;
    const finish = (delivery: Delivery<Res>): void => {
      if (finished) return;
      finished = true;
      if (activation.turnTimer !== null) this.clock.clearTimer(activation.turnTimer);
      activation.turnTimer = null;
      activation.busy = false;
      queued.done(delivery);
      // A synchronous reply returns to pump's loop; an asynchronous one restarts it.
      if (!synchronous) this.pump(activation);
    };
    activation.turnTimer = this.clock.setTimer(this.options.turnMsMax, () => {
      activation.turnTimer = null;
      this.stats.turnTimeouts += 1;
      finish({ ok: false, error: new TurnTimeoutError(activation.key, this.options.turnMsMax) });
    });
    activation.actor.receive(queued.message, (response) => finish({ ok: true, response }));
    synchronous = false;
  }

  private scheduleIdle(activation: Activation<Req, Res>): void {
    if (activation.idleTimer !== null) return;
    activation.idleTimer = this.clock.setTimer(this.options.idleMs, () => {
      activation.idleTimer = null;
      if (!activation.busy && activation.mailbox.length === 0) this.deactivate(activation.key, 'idle');
    });
  }
}
