// Tests that need a tool from outside npm, declared through actors/testing/prerequisites.ts: run when it is
// present; otherwise registered as skipped with what to install in the title, and under CI=true (.ci/run)
// failed instead, so that CI cannot quietly skip them.
import test, { type ExecutionContext } from 'ava';
import { prerequisites, type Prerequisite } from '../../actors/testing/prerequisites.ts';

type Body = (t: ExecutionContext) => void | Promise<void>;

/** `test` guarded by the prerequisites. */
export async function testWith(...names: Prerequisite[]): Promise<(title: string, body: Body) => void> {
  return (await prerequisites(...names)).guard(test);
}
