// The actor runtime: one mailbox per key, one message at a time (a turn ends
// when the handler calls its reply, or detaches it to answer later),
// activation on the first message, idle deactivation, timers through the
// injected clock, a bounded mailbox, and containment: an exception in one
// actor's turn or callback fails that actor (it restarts with back-off), never
// the node. Callback-based like consensus/raft-node.ts, so the simulator runs
// it synchronously and deterministically; nothing here awaits a promise.
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

/** The actor threw (a bug or data it could not handle): it was deactivated and restarts after a back-off. */
export class ActorFailedError extends Error {
  override readonly name = 'ActorFailedError';
  constructor(
    readonly key: string,
    readonly detail: string,
    readonly retryInMs: number,
  ) {
    super(`actor ${key} failed (${detail}); it restarts in ${retryInMs} ms: retry then, and report it if it keeps failing`);
  }
}

export type ActorSystemError = MailboxFullError | TurnTimeoutError | DeactivatedError | ActivationsFullError | ExpiredError | ActorFailedError;

export type Delivery<Res> = { readonly ok: true; readonly response: Res } | { readonly ok: false; readonly error: ActorSystemError };

export interface ActorContext {
  readonly key: string;
  readonly clock: Clock;
  /** A timer cleared when the actor deactivates; its callback runs guarded. */
  setTimer(delayMs: number, callback: () => void): TimerHandle;
  clearTimer(handle: TimerHandle): void;
  /**
   * Wrap a callback the actor hands to someone else (a store, a runtime): an
   * exception in it fails this actor instead of escaping to the node.
   */
  guard<A extends unknown[]>(callback: (...args: A) => void): (...args: A) => void;
}

/** How a handler answers: call it once (ends the turn), or detach it to answer after the turn. */
export interface Reply<Res> {
  (response: Res): void;
  /**
   * End the turn now and answer later through the returned function (once).
   * The actor stays active until it has answered; on deactivation the runtime
   * answers what is still open with DeactivatedError.
   */
  detach(): (response: Res) => void;
}

export interface Actor<Req, Res> {
  /** Handle one message; call `reply` exactly once (later calls are ignored), or detach it. */
  receive(message: Req, reply: Reply<Res>): void;
  /** The actor is gone: no message follows. Free what it holds (not its workload); answer detached replies. */
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
  /** Answers an actor may owe after their turns (waits, execs, settles in flight). */
  readonly detachedMax: number;
  /** Back-off before a failed actor may activate again; doubles per failure in a row up to failureBackoffMsMax. */
  readonly failureBackoffMs: number;
  readonly failureBackoffMsMax: number;
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
  actor: Actor<Req, Res>;
  readonly mailbox: Queued<Req, Res>[];
  readonly timers: Set<TimerHandle>;
  /** Answers owed after their turns, each a function that fails it. */
  readonly detached: Set<(error: ActorSystemError) => void>;
  busy: boolean;
  /** Set once deactivated: late callbacks of the old actor do nothing. */
  gone: boolean;
  /** Ends the current turn by timeout; null between turns. */
  turnTimer: TimerHandle | null;
  idleTimer: TimerHandle | null;
}

/** Why an actor last failed, and until when it may not activate again. */
export interface ActorFailure {
  readonly detail: string;
  readonly atMs: number;
  readonly retryAtMs: number;
  /** Failures in a row (reset by a turn that completes after the back-off). */
  readonly count: number;
}

export class ActorSystem<Req, Res> {
  private readonly activations = new Map<string, Activation<Req, Res>>();
  private readonly options: ActorSystemOptions;
  private readonly failures = new Map<string, ActorFailure>();
  readonly stats = { activations: 0, deactivations: 0, rejected: 0, turnTimeouts: 0, expired: 0, failures: 0 };
  /** Called once per failure, with the error (for the node's log and metrics). */
  onFailure: (key: string, error: unknown) => void = () => undefined;

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
      const failure = this.failures.get(key);
      const now = this.clock.nowMs();
      if (failure !== undefined && now < failure.retryAtMs) {
        this.stats.rejected += 1;
        return done({ ok: false, error: new ActorFailedError(key, failure.detail, failure.retryAtMs - now) });
      }
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
    activation.gone = true;
    this.stats.deactivations += 1;
    if (activation.idleTimer !== null) this.clock.clearTimer(activation.idleTimer);
    for (const timer of activation.timers) this.clock.clearTimer(timer);
    activation.timers.clear();
    const waiting = activation.mailbox.splice(0);
    for (const queued of waiting) queued.done({ ok: false, error: new DeactivatedError(key, reason) });
    try {
      activation.actor.deactivated?.(reason);
    } catch (error) {
      this.recordFailure(key, error);
    }
    // Whatever the actor did not answer itself is answered here, exactly once.
    for (const fail of [...activation.detached]) fail(new DeactivatedError(key, reason));
  }

  /** The last failure of the actor at `key`, while it is remembered. */
  failureOf(key: string): ActorFailure | null {
    return this.failures.get(key) ?? null;
  }

  /** Fail the actor at `key`: deactivate it and hold new activations back for a back-off. */
  fail(key: string, error: unknown): void {
    this.recordFailure(key, error);
    const failure = this.failures.get(key);
    this.deactivate(key, `failed: ${failure?.detail ?? 'error'}`);
  }

  private recordFailure(key: string, error: unknown): void {
    const now = this.clock.nowMs();
    const previous = this.failures.get(key);
    // A failure long after the last one starts the back-off over.
    const count = previous === undefined || now - previous.atMs > 4 * this.options.failureBackoffMsMax ? 1 : previous.count + 1;
    const backoff = Math.min(this.options.failureBackoffMsMax, this.options.failureBackoffMs * 2 ** Math.min(count - 1, 20));
    const detail = (error instanceof Error ? `${error.name}: ${error.message}` : String(error)).split('\n')[0]?.slice(0, 300) ?? 'error';
    this.failures.set(key, { detail, atMs: now, retryAtMs: now + backoff, count });
    // Remember failures of a bounded number of keys: the oldest is forgotten first.
    if (this.failures.size > this.options.activationsMax) {
      const oldest = this.failures.keys().next();
      if (oldest.done !== true) this.failures.delete(oldest.value);
    }
    this.stats.failures += 1;
    this.onFailure(key, error);
  }

  deactivateAll(reason: string): void {
    for (const key of [...this.activations.keys()]) this.deactivate(key, reason);
  }

  private activate(key: string): Activation<Req, Res> {
    const timers = new Set<TimerHandle>();
    const holder: { activation?: Activation<Req, Res> } = {};
    const guard = <A extends unknown[]>(callback: (...args: A) => void) =>
      (...args: A): void => {
        const activation = holder.activation;
        if (activation === undefined) return;
        try {
          callback(...args);
        } catch (error) {
          if (!activation.gone) this.fail(key, error);
          else this.recordFailure(key, error);
        }
      };
    const context: ActorContext = {
      key,
      clock: this.clock,
      setTimer: (delayMs, callback) => {
        const handle = this.clock.setTimer(
          delayMs,
          guard(() => {
            timers.delete(handle);
            callback();
          }),
        );
        timers.add(handle);
        return handle;
      },
      clearTimer: (handle) => {
        timers.delete(handle);
        this.clock.clearTimer(handle);
      },
      guard,
    };
    const activation: Activation<Req, Res> = {
      key,
      actor: undefined as unknown as Actor<Req, Res>,
      mailbox: [],
      timers,
      detached: new Set(),
      busy: false,
      gone: false,
      turnTimer: null,
      idleTimer: null,
    };
    holder.activation = activation;
    this.activations.set(key, activation);
    this.stats.activations += 1;
    try {
      activation.actor = this.create(context);
    } catch (error) {
      // An actor that cannot even be built fails like one that threw in a turn.
      activation.actor = { receive: (_message, reply) => reply.detach() };
      this.fail(key, error);
    }
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
    /** Ends the turn; `delivery` null when the answer was detached. */
    const endTurn = (delivery: Delivery<Res> | null): void => {
      if (finished) return;
      finished = true;
      if (activation.turnTimer !== null) this.clock.clearTimer(activation.turnTimer);
      activation.turnTimer = null;
      activation.busy = false;
      if (delivery !== null) queued.done(delivery);
      // A synchronous end returns to pump's loop; an asynchronous one restarts it.
      if (!synchronous) this.pump(activation);
    };
    activation.turnTimer = this.clock.setTimer(this.options.turnMsMax, () => {
      activation.turnTimer = null;
      this.stats.turnTimeouts += 1;
      endTurn({ ok: false, error: new TurnTimeoutError(activation.key, this.options.turnMsMax) });
    });
    const reply = ((response: Res) => endTurn({ ok: true, response })) as Reply<Res>;
    reply.detach = () => {
      let answered = false;
      const answer = (delivery: Delivery<Res>): void => {
        if (answered) return;
        answered = true;
        activation.detached.delete(fail);
        queued.done(delivery);
        if (activation.detached.size === 0 && !activation.busy && activation.mailbox.length === 0 && !activation.gone) this.scheduleIdle(activation);
      };
      const fail = (error: ActorSystemError): void => answer({ ok: false, error });
      if (finished) return () => undefined;
      if (activation.detached.size >= this.options.detachedMax) {
        endTurn({ ok: false, error: new MailboxFullError(activation.key, this.options.detachedMax) });
        return () => undefined;
      }
      activation.detached.add(fail);
      endTurn(null);
      return (response: Res) => answer({ ok: true, response });
    };
    try {
      activation.actor.receive(queued.message, reply);
    } catch (error) {
      // Still synchronous: ending the turn must not start the next one on the failed actor.
      this.recordFailure(activation.key, error);
      const failure = this.failures.get(activation.key);
      endTurn({ ok: false, error: new ActorFailedError(activation.key, failure?.detail ?? 'error', (failure?.retryAtMs ?? 0) - this.clock.nowMs()) });
      this.deactivate(activation.key, `failed: ${failure?.detail ?? 'error'}`);
      return;
    }
    synchronous = false;
  }

  private scheduleIdle(activation: Activation<Req, Res>): void {
    if (activation.idleTimer !== null || activation.detached.size > 0) return;
    activation.idleTimer = this.clock.setTimer(this.options.idleMs, () => {
      activation.idleTimer = null;
      if (!activation.busy && activation.mailbox.length === 0 && activation.detached.size === 0) this.deactivate(activation.key, 'idle');
    });
  }
}
