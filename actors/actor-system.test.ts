// The actor runtime on a virtual clock: turn-based ordering, activation, back-pressure, idle deactivation, turn timeouts.
import test from 'ava';
import type { NodeId } from '../consensus/types.ts';
import { Scheduler } from '../simulator/scheduler.ts';
import { ActorSystem, InvalidActorOptionsError, type Actor, type ActorContext, type ActorSystemOptions, type Delivery } from './actor-system.ts';

const options: ActorSystemOptions = { mailboxDepthMax: 3, idleMs: 1000, turnMsMax: 500, activationsMax: 10, detachedMax: 4, failureBackoffMs: 100, failureBackoffMsMax: 1000 };

/** An actor that records each message and replies after `delayMs` of virtual time (0: synchronously). */
function recorder(log: string[], delayMs: number, events: string[] = []): (context: ActorContext) => Actor<string, string> {
  return (context) => {
    events.push(`activate ${context.key}`);
    let inTurn = false;
    return {
      receive(message, reply) {
        if (inTurn) log.push('OVERLAP');
        inTurn = true;
        log.push(`${context.key}:${message}:start`);
        const done = (): void => {
          inTurn = false;
          log.push(`${context.key}:${message}:end`);
          reply(`${message}!`);
        };
        if (delayMs === 0) done();
        else context.setTimer(delayMs, done);
      },
      deactivated(reason) {
        events.push(`deactivate ${context.key} ${reason}`);
      },
    };
  };
}

function setup(delayMs: number, overrides: Partial<ActorSystemOptions> = {}): { scheduler: Scheduler; system: ActorSystem<string, string>; log: string[]; events: string[] } {
  const scheduler = new Scheduler();
  const log: string[] = [];
  const events: string[] = [];
  const system = new ActorSystem<string, string>(scheduler.clockFor('n1' as NodeId), { ...options, ...overrides }, recorder(log, delayMs, events));
  return { scheduler, system, log, events };
}

test('one message at a time per actor, in arrival order; different actors interleave', (t) => {
  const { scheduler, system, log } = setup(10);
  const replies: string[] = [];
  const collect = (delivery: Delivery<string>): void => {
    replies.push(delivery.ok ? delivery.response : delivery.error.name);
  };
  system.tell('a', '1', collect);
  system.tell('a', '2', collect);
  system.tell('b', '1', collect);
  system.tell('a', '3', collect);
  scheduler.runUntil(() => replies.length === 4, 1000);
  t.deepEqual(replies, ['1!', '1!', '2!', '3!']);
  t.false(log.includes('OVERLAP'));
  const aLog = log.filter((line) => line.startsWith('a:'));
  t.deepEqual(aLog, ['a:1:start', 'a:1:end', 'a:2:start', 'a:2:end', 'a:3:start', 'a:3:end']);
  // b ran while a was busy: its first turn started before a's first ended.
  t.true(log.indexOf('b:1:start') < log.indexOf('a:1:end'));
});

test('synchronous replies drain a long mailbox without growing the stack', (t) => {
  const { system } = setup(0, { mailboxDepthMax: 100_000 });
  let count = 0;
  for (let i = 0; i < 50_000; i += 1) system.tell('a', String(i), () => (count += 1));
  t.is(count, 50_000);
});

test('a full mailbox rejects with MailboxFullError instead of growing', (t) => {
  const { scheduler, system } = setup(10);
  const outcomes: string[] = [];
  for (let i = 0; i < 6; i += 1) system.tell('a', String(i), (delivery) => outcomes.push(delivery.ok ? 'ok' : delivery.error.name));
  // One in its turn plus mailboxDepthMax (3) waiting; the other two are refused at once.
  t.deepEqual(outcomes, ['MailboxFullError', 'MailboxFullError']);
  scheduler.runUntil(() => outcomes.length === 6, 1000);
  t.deepEqual(outcomes, ['MailboxFullError', 'MailboxFullError', 'ok', 'ok', 'ok', 'ok']);
  t.is(system.stats.rejected, 2);
});

test('activation on the first message, idle deactivation after idleMs of nothing', (t) => {
  const { scheduler, system, events } = setup(10);
  t.false(system.isActive('a'));
  system.tell('a', 'x', () => undefined);
  t.true(system.isActive('a'));
  t.deepEqual(events, ['activate a']);
  scheduler.runUntil(scheduler.nowMs() + 10 + 999, 1000);
  t.true(system.isActive('a'), 'still active just before idleMs passed');
  // A message within idleMs restarts the idle timer.
  system.tell('a', 'y', () => undefined);
  scheduler.runUntil(scheduler.nowMs() + 10 + 999, 1000);
  t.true(system.isActive('a'));
  scheduler.runUntil(scheduler.nowMs() + 2, 1000);
  t.false(system.isActive('a'));
  t.deepEqual(events, ['activate a', 'deactivate a idle']);
  system.tell('a', 'z', () => undefined);
  t.deepEqual(events, ['activate a', 'deactivate a idle', 'activate a']);
});

test('a turn that never replies times out and the next message runs', (t) => {
  const scheduler = new Scheduler();
  const system = new ActorSystem<string, string>(scheduler.clockFor('n1' as NodeId), options, () => ({
    receive(message, reply) {
      if (message !== 'hang') reply('ok');
    },
  }));
  const outcomes: string[] = [];
  system.tell('a', 'hang', (delivery) => outcomes.push(delivery.ok ? delivery.response : delivery.error.name));
  system.tell('a', 'next', (delivery) => outcomes.push(delivery.ok ? delivery.response : delivery.error.name));
  scheduler.runUntil(499, 1000);
  t.deepEqual(outcomes, []);
  scheduler.runUntil(501, 1000);
  t.deepEqual(outcomes, ['TurnTimeoutError', 'ok']);
});

test('deactivation fails waiting messages at once; the turn in progress ends by its reply or, its timers gone, its timeout', (t) => {
  const { scheduler, system, log } = setup(10);
  const outcomes: string[] = [];
  system.tell('a', '1', (delivery) => outcomes.push(delivery.ok ? delivery.response : delivery.error.name));
  system.tell('a', '2', (delivery) => outcomes.push(delivery.ok ? delivery.response : delivery.error.name));
  system.deactivate('a', 'moved');
  t.deepEqual(outcomes, ['DeactivatedError']);
  scheduler.runUntil(100, 1000);
  // The turn's timer belonged to the actor and went with it: its reply never comes, the turn times out.
  t.false(log.includes('a:1:end'));
  scheduler.runUntil(1000, 1000);
  t.deepEqual(outcomes, ['DeactivatedError', 'TurnTimeoutError']);
});

test('activationsMax bounds the actors alive at once', (t) => {
  const { system } = setup(10, { activationsMax: 2 });
  const outcomes: string[] = [];
  for (const key of ['a', 'b', 'c']) system.tell(key, 'x', (delivery) => outcomes.push(delivery.ok ? 'ok' : delivery.error.name));
  t.deepEqual(outcomes, ['ActivationsFullError']);
  t.is(system.activeCount, 2);
});

test('invalid limits are refused with the option named', (t) => {
  const scheduler = new Scheduler();
  const error = t.throws(() => new ActorSystem(scheduler.clockFor('n1' as NodeId), { ...options, mailboxDepthMax: 0 }, recorder([], 0)), { instanceOf: InvalidActorOptionsError });
  t.regex(error?.message ?? '', /mailboxDepthMax is 0/);
});

test('a message still waiting at its deadline is dropped unhandled, so abandoned calls cannot clog the mailbox', (t) => {
  const { scheduler, system, log } = setup(100);
  const outcomes: string[] = [];
  system.tell('a', 'slow', (delivery) => outcomes.push(delivery.ok ? delivery.response : delivery.error.name));
  system.tell('a', 'late', (delivery) => outcomes.push(delivery.ok ? delivery.response : delivery.error.name), 50);
  system.tell('a', 'patient', (delivery) => outcomes.push(delivery.ok ? delivery.response : delivery.error.name), 1000);
  scheduler.runUntil(() => outcomes.length === 3, 1000);
  t.deepEqual(outcomes, ['slow!', 'ExpiredError', 'patient!']);
  t.false(log.some((line) => line.startsWith('a:late')));
  t.is(system.stats.expired, 1);
});

/** Run the virtual clock forward by `ms`. */
const runFor = (scheduler: Scheduler, ms: number): void => void scheduler.runUntil(scheduler.nowMs() + ms, 1_000_000);

/** An actor whose turn `detach`es on 'slow' (answering 200 ms later), throws on 'boom' or in a later callback on 'late-boom'. */
function tricky(context: ActorContext): Actor<string, string> {
  return {
    receive(message, reply) {
      if (message === 'boom') throw new TypeError('cannot read spec of undefined');
      if (message === 'late-boom') {
        context.setTimer(10, () => {
          throw new TypeError('late failure');
        });
        return reply('scheduled');
      }
      if (message === 'slow') {
        const answer = reply.detach();
        context.setTimer(200, () => answer('slow done'));
        return;
      }
      reply(`${message}!`);
    },
  };
}

test('a detached answer frees the mailbox at once and arrives later; the actor stays active until it has answered', (t) => {
  const scheduler = new Scheduler();
  const system = new ActorSystem<string, string>(scheduler.clockFor('n1' as NodeId), { ...options, idleMs: 50 }, tricky);
  const replies: string[] = [];
  const collect = (delivery: Delivery<string>): void => {
    replies.push(delivery.ok ? delivery.response : delivery.error.name);
  };
  system.tell('a', 'slow', collect);
  system.tell('a', 'quick', collect);
  runFor(scheduler, 100);
  t.deepEqual(replies, ['quick!'], 'the next message ran while the slow one was still open');
  t.true(system.isActive('a'), 'not deactivated as idle while an answer is owed');
  runFor(scheduler, 200);
  t.deepEqual(replies, ['quick!', 'slow done']);
  runFor(scheduler, 100);
  t.false(system.isActive('a'), 'idle once nothing is owed');
});

test('a deactivated actor answers what it still owes with DeactivatedError, once', (t) => {
  const scheduler = new Scheduler();
  const system = new ActorSystem<string, string>(scheduler.clockFor('n1' as NodeId), options, tricky);
  const replies: string[] = [];
  system.tell('a', 'slow', (delivery) => replies.push(delivery.ok ? delivery.response : delivery.error.name));
  runFor(scheduler, 10);
  system.deactivate('a', 'moved');
  runFor(scheduler, 500);
  t.deepEqual(replies, ['DeactivatedError']);
});

test('an exception in a turn or in a later callback fails that actor only, with a back-off; the system goes on', (t) => {
  const scheduler = new Scheduler();
  const system = new ActorSystem<string, string>(scheduler.clockFor('n1' as NodeId), options, tricky);
  const failures: string[] = [];
  system.onFailure = (key, error) => failures.push(`${key}: ${(error as Error).message}`);
  const replies: string[] = [];
  const collect = (delivery: Delivery<string>): void => {
    replies.push(delivery.ok ? delivery.response : `${delivery.error.name}: ${delivery.error.message}`);
  };
  t.notThrows(() => system.tell('a', 'boom', collect));
  system.tell('b', 'hello', collect);
  runFor(scheduler, 1);
  t.regex(replies[0] ?? '', /^ActorFailedError: actor a failed \(TypeError: cannot read spec of undefined\); it restarts in 100 ms/);
  t.is(replies[1], 'hello!', 'another actor is not affected');
  t.false(system.isActive('a'));
  // During the back-off the actor answers at once that it failed; after it, it activates again.
  system.tell('a', 'again', collect);
  runFor(scheduler, 1);
  t.regex(replies[2] ?? '', /^ActorFailedError/);
  runFor(scheduler, 150);
  system.tell('a', 'again', collect);
  runFor(scheduler, 1);
  t.is(replies[3], 'again!');
  t.is(system.failureOf('a')?.count, 1);
  // A callback that throws after its turn fails the actor too, never the process.
  system.tell('c', 'late-boom', collect);
  t.notThrows(() => runFor(scheduler, 50));
  t.false(system.isActive('c'));
  t.deepEqual(failures, ['a: cannot read spec of undefined', 'c: late failure']);
  t.is(system.stats.failures, 2);
});

test('failures in a row double the back-off up to its cap', (t) => {
  const scheduler = new Scheduler();
  const system = new ActorSystem<string, string>(scheduler.clockFor('n1' as NodeId), options, tricky);
  const backoffs: number[] = [];
  for (let i = 0; i < 6; i += 1) {
    system.tell('a', 'boom', () => undefined);
    const failure = system.failureOf('a');
    backoffs.push((failure?.retryAtMs ?? 0) - (failure?.atMs ?? 0));
    runFor(scheduler, (failure?.retryAtMs ?? 0) - scheduler.nowMs() + 1);
  }
  t.deepEqual(backoffs, [100, 200, 400, 800, 1000, 1000]);
});
