// The audit writer: batches records into few txns, keeps the chain verifiable through retention, never writes a batch twice after a lost answer, retries one that was not applied, bounds what waits, and continues a chain after a restart.
import test from 'ava';
import { queryAudit, verifyChain } from '../actors/audit.ts';
import { storeOutcome, type ActorStore, type StoreWriteOutcome } from '../actors/components.ts';
import { realClock } from '../actors/testing/real.ts';
import { KvStateMachine, encodeCommand, validateCommand, type KvCommand } from '../consensus/kv-state-machine.ts';
import type { LogIndex } from '../consensus/types.ts';
import { AuditWriter, type AuditInput } from './audit-writer.ts';

/** One node's applied state with proposals applied at once and answered on the next turn; `answer` may replace the answer (a lost one). */
function memoryStore(answer?: (outcome: StoreWriteOutcome, command: KvCommand) => StoreWriteOutcome | 'drop'): ActorStore & { kv: KvStateMachine; proposals: number } {
  const kv = new KvStateMachine();
  let index = 0;
  const store = {
    kv,
    proposals: 0,
    view: () => ({ get: (key: string) => kv.get(key), range: (start: string, end: string, limit?: number) => kv.range(start, end, limit), revision: kv.revision }),
    propose: (command: KvCommand, callback: (outcome: StoreWriteOutcome) => void) => {
      store.proposals += 1;
      const valid = validateCommand(command);
      if (!valid.ok) return setImmediate(() => callback({ ok: false, reason: 'unavailable', detail: valid.message }));
      const result = kv.apply(++index as LogIndex, encodeCommand(valid.command));
      const outcome = storeOutcome({ ok: true, index: index as LogIndex, result });
      const given = answer === undefined ? outcome : answer(outcome, command);
      if (given !== 'drop') setImmediate(() => callback(given));
    },
  };
  return store;
}

const input = (i: number): AuditInput => ({
  actor: { tokenId: 'abc', tokenName: 'ci', tenant: 'alice', role: 'developer' },
  action: 'project_start',
  tenant: 'alice',
  target: `p${i}`,
  args: { name: `p${i}`, env: { SECRET: 'hunter2' } },
  outcome: 'ok',
  detail: null,
});

const writer = (store: Pick<ActorStore, 'view' | 'propose'>, config: ConstructorParameters<typeof AuditWriter>[1] = {}): AuditWriter =>
  new AuditWriter({ node: 'n1', store, clock: realClock, wallNowMs: () => Date.now() }, { flushDelayMs: 5, retryDelayMs: 10, ...config });

test('250 records recorded at once go out in batches of at most 100 and chain in order', async (t) => {
  const store = memoryStore();
  const audit = writer(store);
  t.teardown(() => audit.close());
  const outcomes = await Promise.all(Array.from({ length: 250 }, (_, i) => audit.record(input(i))));
  t.true(outcomes.every((o) => o.ok));
  t.deepEqual(
    outcomes.map((o) => (o.ok ? o.seq : -1)),
    Array.from({ length: 250 }, (_, i) => i + 1),
  );
  t.true(store.proposals <= 4, `${store.proposals} txns`);
  const verdict = verifyChain(store.kv, 'n1');
  t.true(verdict.ok && verdict.records === 250, JSON.stringify(verdict));
  const stored = JSON.stringify(store.kv.range('audit/', 'audit0'));
  t.false(stored.includes('hunter2'), 'no env value reaches the state');
});

test('retention keeps the newest records behind a checkpoint and the chain verifies from it', async (t) => {
  const store = memoryStore();
  const audit = writer(store, { retainedRecordsMax: 100, batchRecordsMax: 10 });
  t.teardown(() => audit.close());
  for (let round = 0; round < 35; round += 1) await Promise.all(Array.from({ length: 10 }, (_, i) => audit.record(input(round * 10 + i))));
  const verdict = verifyChain(store.kv, 'n1');
  t.true(verdict.ok, JSON.stringify(verdict));
  if (!verdict.ok) return;
  t.is(verdict.head.seq, 350);
  t.true(verdict.records <= 100 && verdict.records >= 90, `${verdict.records} records kept`);
  t.is(verdict.from.seq + verdict.records, 350);
  t.is(queryAudit(store.kv, { limit: 1000 }).records.length, verdict.records);
});

test('a batch whose answer was lost after it applied is not written again; one lost before it applied is retried', async (t) => {
  let lose = 2;
  const applied = memoryStore((outcome) => (lose-- > 0 ? { ok: false, reason: 'unknown', detail: 'the answer was lost' } : outcome));
  const a = writer(applied);
  t.teardown(() => a.close());
  const first = await Promise.all(Array.from({ length: 30 }, (_, i) => a.record(input(i))));
  t.true(first.every((o) => o.ok));
  const verdict = verifyChain(applied.kv, 'n1');
  t.true(verdict.ok && verdict.records === 30, `no duplicates: ${JSON.stringify(verdict)}`);

  // Not applied at all: a store that refuses the first two proposals as 'unknown' without applying them.
  let refuse = 2;
  const inner = memoryStore();
  const notApplied: Pick<ActorStore, 'view' | 'propose'> = {
    view: inner.view,
    propose: (command, callback) => (refuse-- > 0 ? setImmediate(() => callback({ ok: false, reason: 'unknown', detail: 'timed out' })) : inner.propose(command, callback)),
  };
  const b = writer(notApplied);
  t.teardown(() => b.close());
  const second = await Promise.all(Array.from({ length: 30 }, (_, i) => b.record(input(i))));
  t.true(second.every((o) => o.ok));
  const again = verifyChain(inner.kv, 'n1');
  t.true(again.ok && again.records === 30, JSON.stringify(again));
});

test('records waiting past the bound are refused, not queued forever; close answers the rest', async (t) => {
  const store = memoryStore(() => 'drop');
  const audit = writer(store, { pendingRecordsMax: 5 });
  const waiting = Array.from({ length: 5 }, (_, i) => audit.record(input(i)));
  const refused = await audit.record(input(5));
  t.deepEqual(refused.ok ? 'ok' : refused.reason, 'overloaded');
  t.is(audit.droppedTotal, 1);
  audit.close();
  const closed = await Promise.all(waiting);
  t.true(closed.every((o) => !o.ok && o.reason === 'closed'));
});

test('a restarted writer continues its chain where the state says it ends', async (t) => {
  const store = memoryStore();
  const before = writer(store);
  await Promise.all(Array.from({ length: 7 }, (_, i) => before.record(input(i))));
  before.close();
  const after = writer(store);
  t.teardown(() => after.close());
  const next = await after.record(input(7));
  t.deepEqual(next, { ok: true, seq: 8 });
  const verdict = verifyChain(store.kv, 'n1');
  t.true(verdict.ok && verdict.records === 8);
});
