// The observed writer over a real KvStateMachine, with the store's answers held back by the test: an event recorded
// while a write is in flight is stored by the next write, never dropped as if it had been sent (it was, once:
// `sending` aliased `pending`, so the first `started` event of every project was lost on a real node).
import test from 'ava';
import { encodeCommand, KvStateMachine, type KvCommand } from '../consensus/kv-state-machine.ts';
import { RING_EPOCH_KEY } from '../consensus/kv-machine.ts';
import { logIndex, type TimerHandle } from '../consensus/types.ts';
import type { ActorContext } from './actor-system.ts';
import type { ActorStore, StoreWriteOutcome } from './components.ts';
import { eventsKey, type ProjectEvent, type ProjectStatusRecord } from './messages.ts';
import { ObservedWriter } from './project-observed.ts';
import { RecordReader } from './records.ts';

const KEY = 'projects/default/web';

function harness(): { writer: ObservedWriter; machine: KvStateMachine; answerAll: () => void; emitted: ProjectEvent[] } {
  const machine = new KvStateMachine();
  let index = 0;
  const apply = (command: KvCommand): ReturnType<KvStateMachine['apply']> => machine.apply(logIndex((index += 1)), encodeCommand(command));
  apply({ type: 'put', key: RING_EPOCH_KEY, value: '1' });
  apply({ type: 'put', key: KEY, value: '{}' });
  const epoch = machine.get(RING_EPOCH_KEY)?.modRevision ?? 0;
  const held: (() => void)[] = [];
  const store: ActorStore = {
    view: () => machine,
    propose: (command, callback) => {
      held.push(() => {
        const result = apply(command);
        const outcome: StoreWriteOutcome = result.ok ? { ok: true, result } : { ok: false, reason: 'unavailable', detail: result.error.message };
        callback(outcome);
      });
    },
  };
  const context: ActorContext = {
    key: KEY,
    clock: { nowMs: () => 0, setTimer: () => ({}) as TimerHandle, clearTimer: () => undefined },
    setTimer: (_delayMs, callback) => {
      callback();
      return {} as TimerHandle;
    },
    clearTimer: () => undefined,
    guard: (callback) => callback,
  };
  const emitted: ProjectEvent[] = [];
  const status: ProjectStatusRecord = { state: 'running', node: 'n1', epoch, ports: {}, generation: 0, restarts: 0, exitCode: null, error: null };
  const writer = new ObservedWriter({
    key: KEY,
    ref: { tenant: 'default', name: 'web' },
    node: 'n1',
    store,
    records: new RecordReader(),
    context,
    eventsKept: 100,
    attemptsMax: 3,
    retryMs: 1,
    ownedEpoch: () => epoch,
    whenApplied: (_revision, callback) => callback(true),
    compute: () => status,
    emit: (event) => emitted.push(event),
  });
  const answerAll = (): void => {
    while (held.length > 0) held.shift()?.();
  };
  return { writer, machine, answerAll, emitted };
}

test('an event recorded while a write is in flight is stored by the next write', (t) => {
  const { writer, machine, answerAll, emitted } = harness();
  writer.flush(); // a status write goes out and is held
  writer.event('started', 'pid 1', 1_000); // arrives while it is in flight
  answerAll(); // the status write lands; the writer goes on with what is still pending
  answerAll();
  const stored = new RecordReader().events(machine.get(eventsKey('default', 'web')));
  t.deepEqual(
    stored?.events.map((event) => event.kind),
    ['started'],
  );
  t.deepEqual(
    writer.events().map((event) => event.kind),
    ['started'],
  );
  t.is(emitted.length, 1);
});

test('events recorded during several writes in a row are all stored once, in order', (t) => {
  const { writer, machine, answerAll } = harness();
  writer.event('started', 'pid 1', 1_000);
  writer.event('exited', 'signal SIGKILL', 2_000, { exitCode: null, signal: 'SIGKILL' });
  answerAll();
  writer.event('restarted', 'pid 2', 3_000);
  answerAll();
  answerAll();
  const stored = new RecordReader().events(machine.get(eventsKey('default', 'web')));
  t.deepEqual(
    stored?.events.map((event) => `${event.seq}:${event.kind}`),
    ['1:started', '2:exited', '3:restarted'],
  );
});
