// Test-only node flags: faults the chaos suite and tests plant on purpose. A production node refuses
// them unless the environment says this is a test, so a flag copied from a test script cannot quietly
// make a real cluster lose acknowledged writes.
import { UsageError } from './usage-error.ts';

/** Set to 1 by the chaos suite and the tests that start nodes with a test-only flag. */
export const TEST_FAULTS_ENV = 'DEBUGHOST_TEST_FAULTS';

/** Each test-only flag and what it costs, for the refusal. */
export const TEST_FAULT_FLAGS = {
  'no-fsync': 'acknowledged writes can be lost when the machine crashes',
  'unsafe-ack-before-commit': 'writes are acknowledged before they commit and WILL be lost',
} as const;

export type TestFaultFlag = keyof typeof TEST_FAULT_FLAGS;

export function testFaultsAllowed(env: NodeJS.ProcessEnv = process.env): boolean {
  return env[TEST_FAULTS_ENV] === '1';
}

/** Throws a one-line UsageError for the first test-only flag given without DEBUGHOST_TEST_FAULTS=1. */
export function refuseTestFaultFlags(given: Partial<Record<TestFaultFlag, boolean | undefined>>, env: NodeJS.ProcessEnv = process.env): void {
  if (testFaultsAllowed(env)) return;
  for (const flag of Object.keys(TEST_FAULT_FLAGS) as TestFaultFlag[]) {
    if (given[flag] === true) {
      throw new UsageError(`--${flag} is a test-only fault (${TEST_FAULT_FLAGS[flag]}); a production node refuses it: set ${TEST_FAULTS_ENV}=1 to use it in a test`);
    }
  }
}
