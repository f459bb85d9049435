// One compliance suite for every Runtime (process, Docker, the simulator's): the contract
// of actors/runtime.ts as tests. A harness says how to express a behaviour as a spec for
// its runtime and how time passes (real polling, or a virtual clock that it advances).
import type { TestFn } from 'ava';
import type { LifecycleEvent, ProjectRef, RestartPolicy, Runtime, RuntimeEvent, WorkloadSpec, WorkloadStatus } from '../runtime.ts';

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
 * Parts of the contract a driver may not have yet (they are optional or new in actors/runtime.ts).
 * A driver lists those it implements; the checks of the others are registered as skipped.
 *  - `lifecycle`: LifecycleEvents through subscribe(): `started` for a start, `exited` (with the exit code)
 *    or `oomKilled` for an end of its own, `restarted` for a start by the restart policy (instead of
 *    `started`), `crashLoop` when it gives up, `stopped` for an end that stop() asked for.
 *  - `exec`: Runtime.exec with env, timeout and output caps.
 */
export type ComplianceFeature = 'lifecycle' | 'exec';

export interface ComplianceOptions {
  /** The runtime cannot run here (no engine, missing tool): every check is registered as skipped with this reason. */
  readonly skip?: string | null;
  readonly features?: readonly ComplianceFeature[];
}

export interface ComplianceCheck {
  readonly title: string;
  readonly feature?: ComplianceFeature;
  readonly body: (harness: RuntimeHarness, events: RuntimeEvent[]) => Promise<void>;
}

/** Thrown by a check when the runtime breaks the contract. */
export class ContractError extends Error {
  override readonly name = 'ContractError';
}

const check = (condition: boolean, message: string): void => {
  if (!condition) throw new ContractError(`runtime contract broken: ${message}`);
};

const state = (harness: RuntimeHarness, project: ProjectRef, states: WorkloadStatus['state'][]): Promise<WorkloadStatus> =>
  harness.eventually(`${project.name} in ${states.join('|')}`, () => {
    const status = harness.runtime.status(project);
    return status !== null && states.includes(status.state) ? status : null;
  });

const lifecycleOf = (events: readonly RuntimeEvent[], project: ProjectRef): LifecycleEvent[] =>
  events.flatMap((event) => (event.type === 'lifecycle' && event.project.tenant === project.tenant && event.project.name === project.name ? [event] : []));

const execSpec = (command: string, extra: { env?: Record<string, string>; timeoutMs?: number; outputBytesMax?: number } = {}) => ({
  command,
  env: extra.env ?? {},
  timeoutMs: extra.timeoutMs ?? 10_000,
  outputBytesMax: extra.outputBytesMax ?? 64 * 1024,
});

/** The checks, exported so that a test can prove each fails on a runtime with a planted bug. */
export const complianceChecks: readonly ComplianceCheck[] = [
  {
    title: 'start runs, stop keeps the status readable, remove forgets',
    body: async (harness) => {
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
    },
  },
  {
    title: 'log lines and status changes reach subscribers',
    body: async (harness, events) => {
      const project = { tenant: 'compliance', name: 'events' };
      await harness.runtime.start(harness.spec(project, 'helloThenRun', 'never'));
      await harness.eventually('the hello line', () => events.find((event) => event.type === 'log' && event.project.name === 'events' && event.line === 'hello' && event.stream === 'stdout'));
      const states = events.flatMap((event) => (event.type === 'status' && event.status.project.name === 'events' ? [event.status.state] : []));
      check(states.includes('running'), `status events include running, got ${states.join(',')}`);
      await harness.runtime.remove(project);
    },
  },
  {
    title: 'exit codes are recorded; restart policy never leaves an exited workload alone',
    body: async (harness) => {
      const project = { tenant: 'compliance', name: 'exit' };
      await harness.runtime.start(harness.spec(project, 'exit3', 'never'));
      const exited = await state(harness, project, ['exited']);
      check(exited.exitCode === 3, `exit code 3 recorded, got ${String(exited.exitCode)}`);
      check(exited.restarts === 0, 'no restart under policy never');
      check(exited.exitedAtMs !== null, 'an exited workload has exitedAtMs');
      await harness.runtime.remove(project);
    },
  },
  {
    title: 'on-failure restarts a failing workload, then holds it in crashLoop',
    body: async (harness) => {
      const project = { tenant: 'compliance', name: 'crash' };
      await harness.runtime.start(harness.spec(project, 'exit3', 'on-failure'));
      const loop = await state(harness, project, ['crashLoop']);
      check(loop.restarts >= 1, `restarted before the crash loop, restarts=${loop.restarts}`);
      check(/crash loop/.test(loop.error ?? ''), `the error says crash loop: ${loop.error ?? ''}`);
      await harness.runtime.remove(project);
    },
  },
  {
    title: 'starting a project again replaces its workload (one per project)',
    body: async (harness) => {
      const project = { tenant: 'compliance', name: 'twice' };
      await harness.runtime.start(harness.spec(project, 'helloThenRun', 'never'));
      await state(harness, project, ['running']);
      await harness.runtime.start(harness.spec(project, 'exit0', 'never'));
      const exited = await state(harness, project, ['exited']);
      check(exited.exitCode === 0, 'the new spec ran');
      check(harness.runtime.list().filter((status) => status.project.name === 'twice').length === 1, 'one workload per project');
      await harness.runtime.remove(project);
    },
  },
  {
    title: 'lifecycle events: started, exited with its code, restarted by policy, crashLoop, stopped',
    feature: 'lifecycle',
    body: async (harness, events) => {
      const crash = { tenant: 'compliance', name: 'life-crash' };
      await harness.runtime.start(harness.spec(crash, 'exit3', 'on-failure'));
      const loop = await state(harness, crash, ['crashLoop']);
      // The crashLoop event follows the status change it reports.
      await harness.eventually('the crashLoop event', () => lifecycleOf(events, crash).find((event) => event.kind === 'crashLoop'));
      const kinds = lifecycleOf(events, crash).map((event) => event.kind);
      const expected = ['started', 'exited', ...Array.from({ length: loop.restarts }, () => ['restarted', 'exited']).flat(), 'crashLoop'];
      check(kinds.join(',') === expected.join(','), `events of a crash loop are ${expected.join(',')}; got ${kinds.join(',')}`);
      const exits = lifecycleOf(events, crash).filter((event) => event.kind === 'exited');
      check(exits.every((event) => event.exitCode === 3), `every exited event carries exit code 3, got ${exits.map((event) => String(event.exitCode)).join(',')}`);
      check(lifecycleOf(events, crash).every((event) => event.detail.length > 0 && !event.detail.includes('\n')), 'each event has a one-line detail');
      await harness.runtime.remove(crash);

      const calm = { tenant: 'compliance', name: 'life-stop' };
      await harness.runtime.start(harness.spec(calm, 'helloThenRun', 'never'));
      await state(harness, calm, ['running']);
      await harness.runtime.stop(calm, harness.graceMs);
      await harness.eventually('the stopped event', () => lifecycleOf(events, calm).find((event) => event.kind === 'stopped'));
      const calmKinds = lifecycleOf(events, calm).map((event) => event.kind);
      check(calmKinds.join(',') === 'started,stopped', `a start and a stop are started,stopped; got ${calmKinds.join(',')}`);
      await harness.runtime.remove(calm);
    },
  },
  {
    title: 'exec: env, exit code, stdout and stderr apart, output cap, and a timeout that kills',
    feature: 'exec',
    body: async (harness) => {
      const exec = harness.runtime.exec?.bind(harness.runtime);
      check(exec !== undefined, 'the runtime has exec');
      if (exec === undefined) return;
      const project = { tenant: 'compliance', name: 'exec' };
      await harness.runtime.start(harness.spec(project, 'helloThenRun', 'never'));
      await state(harness, project, ['running']);
      const signal = new AbortController().signal;
      const plain = await exec(project, execSpec('echo "$GREETING"; echo oops >&2; exit 4', { env: { GREETING: 'hi there' } }), signal);
      check(plain.stdout === 'hi there\n', `stdout is the command's: ${JSON.stringify(plain.stdout)}`);
      check(plain.stderr === 'oops\n', `stderr is the command's, apart: ${JSON.stringify(plain.stderr)}`);
      check(plain.exitCode === 4 && plain.signal === null && !plain.timedOut && !plain.truncated, `exit code 4, not timed out: ${JSON.stringify(plain)}`);
      const capped = await exec(project, execSpec('i=0; while [ $i -lt 200 ]; do echo 0123456789012345678901234567890123456789; i=$((i+1)); done', { outputBytesMax: 1000 }), signal);
      check(capped.stdout.length === 1000 && capped.truncated && capped.exitCode === 0, `stdout cut at 1000 bytes: length ${capped.stdout.length}, truncated ${String(capped.truncated)}`);
      const slow = await exec(project, execSpec('sleep 30; echo late', { timeoutMs: 500 }), signal);
      check(slow.timedOut && slow.stdout === '' && slow.exitCode !== 0, `timed out and killed: ${JSON.stringify(slow)}`);
      check(slow.durationMs < 20_000, `the timeout ended it well before the command would have: ${slow.durationMs} ms`);
      await harness.runtime.remove(project);
    },
  },
];

/**
 * Registers the suite. `open` gives a fresh harness per test (a runtime that cannot run here passes
 * `options.skip` instead, so its checks are registered as skipped). The harness's restart limits must
 * allow a crash loop within a few seconds (small back-off, crashLoopExitsMax ≤ 5).
 */
export function runtimeCompliance(test: TestFn, label: string, open: () => Promise<RuntimeHarness>, options: ComplianceOptions = {}): void {
  for (const { title, feature, body } of complianceChecks) {
    const name = `${label} compliance: ${title}`;
    const reason = options.skip ?? (feature !== undefined && !(options.features ?? []).includes(feature) ? `the ${label} runtime does not declare '${feature}' yet` : null);
    if (reason !== null) {
      test.skip(`${name} (skipped: ${reason})`, () => undefined);
      continue;
    }
    test.serial(name, async (t) => {
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
  }
}
