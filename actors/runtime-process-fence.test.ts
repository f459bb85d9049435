// Goal: the spawner's watchdog fences a node whose lease heartbeats stop — freezes its workloads, thaws them on a heartbeat in time, kills them before another owner may start them — also when the node process is SIGSTOPped; a killed spawner costs a restart by policy, never a stray workload.
import test from 'ava';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RuntimeError, type LifecycleEvent, type ProjectRef, type RuntimeEvent } from './runtime.ts';
import type { ProcessRuntime } from './runtime-process.ts';
import { procStat } from './supervisor.ts';
import { cgroupModesHere, commandSpec, RuntimeFixture } from './testing/process-runtime.ts';
import { guardFor } from './testing/prerequisites.ts';
import { eventually, killStandIns, processRuns, sleep } from './testing/real.ts';

const fixture = new RuntimeFixture('debughost-runtime-fence-');
const nodes: number[] = [];

test.after.always(async () => {
  killStandIns(nodes);
  await fixture.close();
});

const ticks = (pid: number): number => procStat(pid)?.cpuTicks ?? -1;

/** CPU ticks a process earns in `ms` (a frozen or stopped one earns none). */
async function progress(pid: number, ms: number): Promise<number> {
  const before = ticks(pid);
  await sleep(ms);
  return ticks(pid) - before;
}

/** Heartbeats every 100 ms until the returned function is called. */
function heartbeats(runtime: ProcessRuntime, validForMs: number): () => void {
  runtime.leaseHeartbeat(validForMs);
  const timer = setInterval(() => runtime.leaseHeartbeat(validForMs), 100);
  return () => clearInterval(timer);
}

const modes = [...cgroupModesHere().map((here) => ({ mode: here.mode, skip: here.skip })), { mode: 'off' as const, skip: null }];
for (const { mode, skip } of modes) {
  const modeTest = guardFor(skip).guard(test.serial);
  modeTest(`cgroups ${mode}: missed heartbeats freeze the workloads, a heartbeat in time thaws them, a longer silence kills them for good`, async (t) => {
    const { runtime } = await fixture.open({ cgroups: mode, fenceKillAfterMs: 2000 });
    const events: RuntimeEvent[] = [];
    runtime.subscribe((event) => events.push(event));
    const project: ProjectRef = { tenant: 't1', name: `burn-${mode}` };
    let stopBeats = heartbeats(runtime, 500);
    const pid = (await runtime.start(commandSpec(project.name, 'while :; do :; done', { restart: 'always' }))).pid as number;
    await eventually('the burner to earn CPU time', 10_000, async () => (await progress(pid, 300)) > 0);
    stopBeats();
    // Frozen after 500 ms without a heartbeat: no more CPU time, and no new work is taken.
    await eventually('the burner to freeze', 5000, async () => (await progress(pid, 400)) === 0);
    const refused = await t.throwsAsync(runtime.start(commandSpec('late', 'exec sleep 600')), { instanceOf: RuntimeError });
    t.is(refused?.name, 'RuntimeUnavailableError');
    // A heartbeat before the kill deadline thaws the same process.
    stopBeats = heartbeats(runtime, 500);
    await eventually('the burner to run again', 5000, async () => (await progress(pid, 300)) > 0);
    t.is(runtime.status(project)?.pid, pid);
    stopBeats();
    // Silence past freeze + kill: killed, recorded as a fenced stop, and not restarted by policy.
    const stopped = await eventually('the fenced stop', 10_000, () => (runtime.status(project)?.state === 'stopped' ? runtime.status(project) : null));
    t.regex(stopped.error ?? '', /^fenced: /);
    t.false(processRuns(pid));
    const lifecycle = events.filter((event): event is LifecycleEvent => event.type === 'lifecycle' && event.project.name === project.name);
    t.deepEqual(lifecycle.map((event) => event.kind), ['started', 'stopped']);
    await sleep(500);
    t.is(runtime.status(project)?.state, 'stopped', 'the restart policy does not bring back a fenced workload');
    // Heartbeats again: the node takes work again.
    stopBeats = heartbeats(runtime, 500);
    await runtime.start(commandSpec(project.name, 'exec sleep 600'));
    t.is(runtime.status(project)?.state, 'running');
    stopBeats();
    runtime.leaseHeartbeat(60_000);
    await runtime.remove(project);
  });
}

test.serial('SIGSTOP of the node process: its workload is fenced while it is stopped, not only once it resumes', async (t) => {
  const dataDir = join(fixture.root, 'stopped-node');
  const node = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'testing', 'runtime-node.ts'), dataDir, 'while :; do :; done', '-', '200'], { stdio: ['ignore', 'pipe', 'inherit'] });
  nodes.push(node.pid as number);
  let out = '';
  node.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const line = await eventually('the node script to start its workload', 30_000, () => (out.includes('\n') ? out.split('\n')[0] : null));
  const { pgid } = JSON.parse(line as string) as { pgid: number };
  await eventually('the workload to earn CPU time', 10_000, async () => (await progress(pgid, 300)) > 0);
  const stoppedAt = performance.now();
  process.kill(node.pid as number, 'SIGSTOP');
  // Heartbeats valid 400 ms, killed 300 ms after the freeze: well before others take over (3 s).
  await eventually('the workload to be killed while its node is stopped', 10_000, () => !processRuns(pgid));
  const fencedMs = performance.now() - stoppedAt;
  t.log(`workload gone ${Math.round(fencedMs)} ms after SIGSTOP of its node`);
  t.true(procStat(node.pid as number)?.state === 'T', 'the node is still stopped');
  process.kill(node.pid as number, 'SIGCONT');
  process.kill(node.pid as number, 'SIGKILL');
});

test.serial('a killed spawner: its workloads are killed, reported as exits, restarted by policy under a new spawner', async (t) => {
  const { runtime } = await fixture.open();
  const events: RuntimeEvent[] = [];
  runtime.subscribe((event) => events.push(event));
  const project: ProjectRef = { tenant: 't1', name: 'orphaned' };
  const first = (await runtime.start(commandSpec(project.name, 'exec sleep 600', { restart: 'always' }))).pid as number;
  const spawner = Number(readFileSync(`/proc/${first}/stat`, 'utf8').split(') ')[1]?.split(' ')[1]);
  t.regex(readFileSync(`/proc/${spawner}/cmdline`, 'utf8'), /spawner\.pl/);
  process.kill(spawner, 'SIGKILL');
  const restarted = await eventually('a restart under a new spawner', 15_000, () => {
    const status = runtime.status(project);
    return status?.state === 'running' && status.pid !== first ? status : null;
  });
  t.true(restarted.restarts >= 1);
  await eventually('the first run to be gone', 10_000, () => !processRuns(first));
  const kinds = events.filter((event): event is LifecycleEvent => event.type === 'lifecycle' && event.project.name === project.name).map((event) => event.kind);
  t.deepEqual(kinds.slice(0, 3), ['started', 'exited', 'restarted']);
  await runtime.remove(project);
});

test.serial('a start in flight when the watchdog kills (the node too busy to read either) is a fenced stop, not an exit its restart policy keeps down', async (t) => {
  const { runtime } = await fixture.open({ cgroups: 'off', fenceKillAfterMs: 200 });
  const project: ProjectRef = { tenant: 't1', name: 'in-flight' };
  runtime.leaseHeartbeat(60_000);
  await runtime.start(commandSpec('warm', 'exec sleep 600'));
  // Freeze 300 ms after this heartbeat, kill 200 ms later.
  runtime.leaseHeartbeat(300);
  const starting = runtime.start(commandSpec(project.name, 'exec sleep 600', { restart: 'never' })).catch((error: unknown) => error);
  // Let the spawn go out, then hold this event loop past both deadlines, as a loaded node's is held: the
  // spawner's 'started', 'frozen', 'killed' and exit arrive together, before the start is seen here.
  await new Promise((resolve) => setImmediate(resolve));
  const busyUntil = Date.now() + 1500;
  while (Date.now() < busyUntil) {
    // busy, as a node starting hundreds of projects on a loaded machine
  }
  await starting;
  const ended = await eventually('the in-flight run to end', 10_000, () => {
    const status = runtime.status(project);
    return status !== null && status.state !== 'running' && status.state !== 'starting' ? status : null;
  });
  t.is(ended.state, 'stopped', `ended as ${ended.state}: ${ended.error ?? ''}`);
  t.regex(ended.error ?? '', /^fenced: /);
  runtime.leaseHeartbeat(60_000);
  await runtime.remove(project);
  await runtime.remove({ tenant: 't1', name: 'warm' });
});
