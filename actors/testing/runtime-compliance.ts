// One compliance suite for every Runtime (process, Docker, the simulator's): the contract
// of actors/runtime.ts as tests. A harness says how to express a behaviour as a spec for
// its runtime and how time passes (real polling, or a virtual clock that it advances).
import type { Implementation } from 'ava';
import type { ProjectRef, RestartPolicy, Runtime, RuntimeEvent, WorkloadSpec, WorkloadStatus } from '../runtime.ts';

export type Behaviour =
  /** Prints `hello` on stdout once, then runs until stopped. */
  | 'helloThenRun'
  | 'exit0'
  | 'exit3';

export interface RuntimeHarness {
  readonly runtime: Runtime;
  spec(project: ProjectRef, behaviour: Behaviour, restart: RestartPolicy): WorkloadSpec;
  /** Resolves once `probe` returns a value; the harness moves its time (real or virtual). */
  eventually<T>(what: string, probe: () => T | null | undefined): Promise<T>;
  /** Grace used for stop(); the runtime must honour it. */
  readonly graceMs: number;
  close(): Promise<void>;
}

/**
 * Registers the suite through `serial` (ava's test.serial, or one guarded by prerequisites.ts).
 * `open` gives a fresh harness per test.
 * The harness's restart limits must allow a crash loop within a few seconds (small back-off,
 * crashLoopExitsMax ≤ 5).
 */
export function runtimeCompliance(
  serial: (title: string, implementation: Implementation<[]>) => void,
  label: string,
  open: () => Promise<RuntimeHarness>,
): void {
  const withHarness = (title: string, body: (harness: RuntimeHarness, events: RuntimeEvent[]) => Promise<void>): void => {
    serial(`${label} compliance: ${title}`, async (t) => {
      const harness = await open();
      const events: RuntimeEvent[] = [];
      const unsubscribe = harness.runtime.subscribe((event) => events.push(event));
      try {
        await body(harness, events);
        t.pass();
      } finally {
        unsubscribe();
        await harness.close();
      }
    });
  };
  const state = (harness: RuntimeHarness, project: ProjectRef, states: WorkloadStatus['state'][]): Promise<WorkloadStatus> =>
    harness.eventually(`${project.name} in ${states.join('|')}`, () => {
      const status = harness.runtime.status(project);
      return status !== null && states.includes(status.state) ? status : null;
    });
  const check = (condition: boolean, message: string): void => {
    if (!condition) throw new Error(`runtime contract broken: ${message}`);
  };

  withHarness('start runs, stop keeps the status readable, remove forgets', async (harness) => {
    const project = { tenant: 'compliance', name: 'lifecycle' };
    await harness.runtime.start(harness.spec(project, 'helloThenRun', 'never'));
    const running = await state(harness, project, ['running']);
    check(running.pid !== null || running.containerId !== null, 'a running workload names its pid or container');
    check(running.startedAtMs !== null, 'a running workload has startedAtMs');
    check(harness.runtime.list().some((status) => status.project.name === 'lifecycle'), 'list() holds the started workload');
    const stopped = await harness.runtime.stop(project, harness.graceMs);
    check(stopped?.state === 'stopped', `stop() answers state stopped, got ${stopped?.state ?? 'null'}`);
    check(harness.runtime.status(project)?.state === 'stopped', 'status stays readable after stop');
    await harness.runtime.remove(project);
    check(harness.runtime.status(project) === null, 'status is null after remove');
    check(!harness.runtime.list().some((status) => status.project.name === 'lifecycle'), 'list() drops a removed workload');
    check((await harness.runtime.stop({ tenant: 'compliance', name: 'unknown' }, harness.graceMs)) === null, 'stop of an unknown project answers null');
  });

  withHarness('log lines and status changes reach subscribers', async (harness, events) => {
    const project = { tenant: 'compliance', name: 'events' };
    await harness.runtime.start(harness.spec(project, 'helloThenRun', 'never'));
    await harness.eventually('the hello line', () => events.find((event) => event.type === 'log' && event.project.name === 'events' && event.line === 'hello' && event.stream === 'stdout'));
    const states = events.flatMap((event) => (event.type === 'status' && event.status.project.name === 'events' ? [event.status.state] : []));
    check(states.includes('running'), `status events include running, got ${states.join(',')}`);
    await harness.runtime.remove(project);
  });

  withHarness('exit codes are recorded; restart policy never leaves an exited workload alone', async (harness) => {
    const project = { tenant: 'compliance', name: 'exit' };
    await harness.runtime.start(harness.spec(project, 'exit3', 'never'));
    const exited = await state(harness, project, ['exited']);
    check(exited.exitCode === 3, `exit code 3 recorded, got ${String(exited.exitCode)}`);
    check(exited.restarts === 0, 'no restart under policy never');
    check(exited.exitedAtMs !== null, 'an exited workload has exitedAtMs');
    await harness.runtime.remove(project);
  });

  withHarness('on-failure restarts a failing workload, then holds it in crashLoop', async (harness) => {
    const project = { tenant: 'compliance', name: 'crash' };
    await harness.runtime.start(harness.spec(project, 'exit3', 'on-failure'));
    const loop = await state(harness, project, ['crashLoop']);
    check(loop.restarts >= 1, `restarted before the crash loop, restarts=${loop.restarts}`);
    check(/crash loop/.test(loop.error ?? ''), `the error says crash loop: ${loop.error ?? ''}`);
    await harness.runtime.remove(project);
  });

  withHarness('starting a project again replaces its workload (one per project)', async (harness) => {
    const project = { tenant: 'compliance', name: 'twice' };
    await harness.runtime.start(harness.spec(project, 'helloThenRun', 'never'));
    await state(harness, project, ['running']);
    await harness.runtime.start(harness.spec(project, 'exit0', 'never'));
    const exited = await state(harness, project, ['exited']);
    check(exited.exitCode === 0, 'the new spec ran');
    check(harness.runtime.list().filter((status) => status.project.name === 'twice').length === 1, 'one workload per project');
    await harness.runtime.remove(project);
  });
}
