// Compliance checks of the newer, optional parts of actors/runtime.ts, beside the core
// suite (runtime-compliance.ts): the lifecycle events of the restart policy (restarted,
// crashLoop) and exec. A driver lists the parts it implements; the checks of the others
// are registered as skipped, with the reason. The checks are exported so that a test can
// show each one fails on a runtime with a planted bug.
import type { Implementation, TestFn } from 'ava';
import type { LifecycleEvent, ProjectRef, RuntimeEvent, WorkloadStatus } from '../runtime.ts';
import type { RuntimeHarness } from './runtime-compliance.ts';

/**
 * - `restartEvents`: a start by the restart policy is a `restarted` event (instead of `started`),
 *   each end of its own an `exited` event with the exit code, and giving up a `crashLoop` event.
 * - `exec`: Runtime.exec with env, exit code, stdout and stderr apart, output cap, a timeout that kills.
 */
export type OptionalFeature = 'restartEvents' | 'exec';

export interface OptionalCheck {
  readonly title: string;
  readonly feature: OptionalFeature;
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

export const optionalChecks: readonly OptionalCheck[] = [
  {
    title: 'restart events: started, then exited with its code and restarted by policy in turn, then crashLoop',
    feature: 'restartEvents',
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

export interface OptionalComplianceOptions {
  /** Declares a check that runs: ava's test.serial, or one guarded by prerequisites.ts (skipped or failing when the runtime cannot run here). */
  readonly serial: (title: string, implementation: Implementation<[]>) => void;
  readonly features: readonly OptionalFeature[];
}

/** Registers the optional checks; `open` gives a fresh harness per test. A feature the runtime does not declare is a skipped test that says so. */
export function optionalCompliance(test: TestFn, label: string, open: () => Promise<RuntimeHarness>, options: OptionalComplianceOptions): void {
  for (const { title, feature, body } of optionalChecks) {
    const name = `${label} compliance: ${title}`;
    if (!options.features.includes(feature)) {
      test.skip(`${name} (skipped: the ${label} runtime does not declare '${feature}' yet)`, () => undefined);
      continue;
    }
    options.serial(name, async (t) => {
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
