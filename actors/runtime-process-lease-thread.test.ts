// Goal: with heartbeats from the runtime's thread (the lease's end published from the event loop, actors/lease-fence.ts), a node whose event loop is busy for 1.5 s while its lease is valid keeps its workload (same pid); a node whose lease ran out is still frozen and killed while its loop is busy; a SIGSTOPped node is fenced as before.
import test from 'ava';
import { spawn } from 'node:child_process';
import { writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { fenceTiming, startLeasePublishing } from './lease-fence.ts';
import { OwnerLease } from './liveness.ts';
import { Spawner, type FenceState } from './spawner.ts';
import { procStat } from './supervisor.ts';
import { commandSpec, RuntimeFixture } from './testing/process-runtime.ts';
import { eventually, killStandIns, processRuns, realClock, sleep } from './testing/real.ts';

/** The host's defaults (actors/host.ts): heartbeats every 100 ms, each valid 600 ms, kill 300 ms after the freeze. */
const LEASE_MS = 2000;
const SUSPECT_MS = 3000;
const FENCE = fenceTiming(LEASE_MS, SUSPECT_MS);
/** How often the stand-in leader renews the lease (Raft heartbeats: 3 ticks of 40 ms). */
const CONTACT_MS = 120;
/** The event loop held this long: longer than freeze + kill (900 ms), shorter than the lease. */
const BUSY_MS = 1500;

const fixture = new RuntimeFixture('debughost-lease-thread-');
const nodes: number[] = [];

test.after.always(async () => {
  killStandIns(nodes);
  await fixture.close();
});

/**
 * An owner as node/node-actors.ts feeds it: an owner lease renewed every CONTACT_MS (as the
 * leader's messages renew it) while `connected`, its end published to the runtime.
 */
function leaseFeed(runtime: { leaseValidUntil(untilMs: number): void }): { lease: OwnerLease; cut: () => void; stop: () => void } {
  const lease = new OwnerLease(LEASE_MS, realClock.nowMs());
  lease.contact(realClock.nowMs());
  const contact = setInterval(() => lease.contact(realClock.nowMs()), CONTACT_MS);
  const stopPublishing = startLeasePublishing(realClock, FENCE, () => lease.validUntilMs(), (untilMs) => runtime.leaseValidUntil(untilMs));
  return {
    lease,
    cut: () => clearInterval(contact),
    stop: () => {
      clearInterval(contact);
      stopPublishing();
    },
  };
}

/** Holds this event loop for `ms`, as a node taking over hundreds of projects on a loaded machine does; calls `look` meanwhile. */
function busy(ms: number, look: () => void = () => undefined): void {
  const until = performance.now() + ms;
  while (performance.now() < until) look();
}

const fenceOptions = { fenceHeartbeatMs: FENCE.heartbeatMs, fenceValidForMs: FENCE.validForMs, fenceKillAfterMs: FENCE.killAfterMs };

test.serial(`an owner whose event loop is busy ${BUSY_MS} ms while its lease is valid keeps its workload running (same pid, never frozen)`, async (t) => {
  const { runtime, lines } = await fixture.open(fenceOptions);
  const feed = leaseFeed(runtime);
  t.teardown(feed.stop);
  const project = commandSpec('busy-owner', 'exec sleep 600');
  const pid = (await runtime.start(project)).pid as number;
  // The thread has beaten for a while: the watchdog is armed.
  await sleep(500);
  busy(BUSY_MS);
  // Let the spawner's frames (a freeze, a kill, the exit) reach this loop, if there were any.
  await sleep(FENCE.validForMs + FENCE.killAfterMs);
  t.true(processRuns(pid), 'the workload still runs');
  t.is(runtime.status(project.project)?.state, 'running');
  t.is(runtime.status(project.project)?.pid, pid);
  t.deepEqual(lines.filter((line) => line.includes('lease heartbeats stopped')), [], 'the watchdog never acted');
  runtime.leaseHeartbeat(60_000);
  await runtime.remove(project.project);
});

test.serial('an owner cut off from the leader is frozen and killed while its event loop is busy, after its lease ran out and before others may take over', async (t) => {
  const { runtime, lines } = await fixture.open(fenceOptions);
  const feed = leaseFeed(runtime);
  t.teardown(feed.stop);
  const project = commandSpec('cut-off-owner', 'exec sleep 600', { restart: 'always' });
  const pid = (await runtime.start(project)).pid as number;
  await sleep(500);
  // No more contact from the leader; the loop is busy past the lease's end and the watchdog's deadlines.
  feed.cut();
  const leaseEndMs = feed.lease.validUntilMs() as number;
  let goneAtMs: number | null = null;
  busy(LEASE_MS + FENCE.validForMs + FENCE.killAfterMs + 1500, () => {
    if (goneAtMs === null && !processRuns(pid)) goneAtMs = realClock.nowMs();
  });
  t.not(goneAtMs, null, 'killed while the loop was still busy');
  const afterEndMs = (goneAtMs ?? 0) - leaseEndMs;
  t.log(`workload gone ${Math.round(afterEndMs)} ms after the lease's end (others may take over ${SUSPECT_MS - LEASE_MS} ms after it)`);
  // The thread beat until the lease's end (not only until the loop stalled): no kill before end + validForMs.
  t.true(afterEndMs >= FENCE.validForMs - FENCE.heartbeatMs, `killed ${Math.round(afterEndMs)} ms after the lease's end`);
  const stopped = await eventually('the fenced stop', 10_000, () => (runtime.status(project.project)?.state === 'stopped' ? runtime.status(project.project) : null));
  t.regex(stopped.error ?? '', /^fenced: /);
  t.true(lines.some((line) => line.includes('lease heartbeats stopped; workloads killed')));
  runtime.leaseHeartbeat(60_000);
  await runtime.remove(project.project);
});

test.serial('SIGSTOP of a node fed through the heartbeat thread: its workload is killed while it is stopped, as with heartbeats from its loop', async (t) => {
  const dataDir = join(fixture.root, 'stopped-node');
  const node = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'testing', 'runtime-node.ts'), dataDir, 'exec sleep 600', '-', String(CONTACT_MS), 'thread'], { stdio: ['ignore', 'pipe', 'inherit'] });
  nodes.push(node.pid as number);
  let out = '';
  node.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const line = await eventually('the node script to start its workload', 30_000, () => (out.includes('\n') ? out.split('\n')[0] : null));
  const { pgid } = JSON.parse(line as string) as { pgid: number };
  // Beats for a while, then still running: the thread feeds the watchdog.
  await sleep(FENCE.validForMs + FENCE.killAfterMs + 500);
  t.true(processRuns(pgid), 'the workload runs while its node beats');
  const stoppedAt = performance.now();
  process.kill(node.pid as number, 'SIGSTOP');
  await eventually('the workload to be killed while its node is stopped', 10_000, () => !processRuns(pgid));
  const fencedMs = performance.now() - stoppedAt;
  t.log(`workload gone ${Math.round(fencedMs)} ms after SIGSTOP of its node (the lease would have run ${LEASE_MS} ms more)`);
  t.true(procStat(node.pid as number)?.state === 'T', 'the node is still stopped');
  // The thread stopped with the node: fenced validForMs + killAfterMs after the stop, not at the lease's end.
  t.true(fencedMs < LEASE_MS, `fenced ${Math.round(fencedMs)} ms after the stop`);
  process.kill(node.pid as number, 'SIGCONT');
  process.kill(node.pid as number, 'SIGKILL');
});

test.serial('the beats FIFO: a beat read late counts from when it was sent (no thaw, no extension), and it takes heartbeats only', async (t) => {
  const spawner = await Spawner.start({ roots: [], orphanGraceMs: 500, readyTimeoutMs: 15_000, clock: realClock, beatsFifo: join(fixture.root, 'beats.fifo') });
  t.teardown(() => spawner.close());
  const fences: { state: FenceState; atMs: number }[] = [];
  const warnings: string[] = [];
  spawner.onFence = (state) => fences.push({ state, atMs: realClock.nowMs() });
  spawner.onWarning = (text) => warnings.push(text);
  const fd = spawner.takeBeatsFd();
  if (fd === null) return t.fail(`no beats FIFO: ${spawner.beatsProblem ?? ''}`);
  t.teardown(() => closeSync(fd));
  const monotonicMs = (): bigint => process.hrtime.bigint() / 1_000_000n;
  // Armed: frozen 300 ms after this beat was sent, unless a newer one comes.
  const armedAtMs = realClock.nowMs();
  writeSync(fd, `H 300 60000 ${monotonicMs()}\n`);
  await sleep(100);
  // Not a heartbeat: refused with a warning.
  writeSync(fd, 'K 1 pg:1\n');
  // Sent 5 s ago, valid 4 s: stale when read. Counted from when it was read, it would hold the freeze for 4 s.
  writeSync(fd, `H 4000 60000 ${monotonicMs() - 5000n}\n`);
  const frozen = await eventually('the freeze', 10_000, () => fences.find((fence) => fence.state === 'frozen'));
  t.log(`frozen ${Math.round(frozen.atMs - armedAtMs)} ms after the last beat that was in time`);
  t.true(frozen.atMs - armedAtMs < 2000, 'the stale beat did not extend the deadline');
  await eventually('the warning', 5000, () => warnings.some((text) => text.includes('not a heartbeat')));
  // A beat sent now thaws.
  writeSync(fd, `H 60000 60000 ${monotonicMs()}\n`);
  await eventually('the thaw', 5000, () => fences.some((fence) => fence.state === 'thawed'));
  t.deepEqual(fences.map((fence) => fence.state), ['frozen', 'thawed']);
});
