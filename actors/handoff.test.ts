// The hand-off rule: a new owner launches only once the node its status record names released its copy, is marked down, or left long ago.
import test from 'ava';
import { handoff, type HolderFacts } from './handoff.ts';
import { hostOptionsDefault } from './host.ts';
import { fenceTiming } from './lease-fence.ts';
import type { ProjectStatusRecord } from './messages.ts';

const record = (node: string, extra: Partial<ProjectStatusRecord> = {}): ProjectStatusRecord => ({
  state: 'running',
  node,
  epoch: 7,
  ports: {},
  generation: 1,
  restarts: 0,
  exitCode: null,
  error: null,
  ...extra,
});
const member: HolderFacts = { markedDown: false, goneForMs: null };
const facts = (holder: HolderFacts) => (): HolderFacts => holder;
const GONE_WAIT_MS = 3000;

test('no record, or a record of this node: nothing to wait for', (t) => {
  t.is(handoff(null, 'n3', facts(member), GONE_WAIT_MS).type, 'clear');
  t.is(handoff(record('n3'), 'n3', facts(member), GONE_WAIT_MS).type, 'clear');
});

test('a live member named by the record: wait for its release, whatever state the record says', (t) => {
  for (const state of ['starting', 'running', 'exited', 'crashLoop', 'stopped', 'failed'] as const) {
    const decision = handoff(record('n2', { state }), 'n3', facts(member), GONE_WAIT_MS);
    t.like(decision, { type: 'wait', holder: 'n2' }, state);
  }
});

test('its recorded release clears the hand-off', (t) => {
  t.is(handoff(record('n2', { state: 'stopped', released: true }), 'n3', facts(member), GONE_WAIT_MS).type, 'clear');
});

test('a holder marked down clears at once: a failover after a crash waits no longer than before', (t) => {
  t.is(handoff(record('n2'), 'n3', facts({ markedDown: true, goneForMs: null }), GONE_WAIT_MS).type, 'clear');
});

test('a holder that left the configuration clears only after the wait', (t) => {
  t.like(handoff(record('n2'), 'n3', facts({ markedDown: false, goneForMs: GONE_WAIT_MS - 1 }), GONE_WAIT_MS), { type: 'wait', holder: 'n2' });
  t.is(handoff(record('n2'), 'n3', facts({ markedDown: false, goneForMs: GONE_WAIT_MS }), GONE_WAIT_MS).type, 'clear');
});

test('why a mark-down is enough: lease + the watchdog freeze and kill end before suspectMs, with the defaults and the simulator timing', (t) => {
  const host = hostOptionsDefault('n1');
  for (const [leaseMs, suspectMs] of [
    [host.leaseMs, host.suspectMs],
    [1500, 3000],
  ] as const) {
    const fence = fenceTiming(leaseMs, suspectMs);
    t.true(leaseMs + fence.validForMs + fence.killAfterMs < suspectMs, `${leaseMs} + ${fence.validForMs} + ${fence.killAfterMs} < ${suspectMs}`);
  }
});
