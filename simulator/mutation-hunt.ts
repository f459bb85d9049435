// Run a planted bug over seeds until the simulator catches it: which seed,
// after how much virtual time, and which invariant saw it first.
import type { FaultKind } from './faults.ts';
import { MUTATIONS, type MutationName } from './mutations.ts';
import { runSeed } from './run-seed.ts';

export interface Catch {
  readonly seed: number;
  /** Virtual time from the start of the seed to the first violation. */
  readonly detectedMs: number;
  /** The invariant's name, e.g. "commit rule" or "linearizability". */
  readonly invariant: string;
  readonly violation: string;
}

export interface HuntResult {
  readonly mutation: MutationName;
  readonly first: Catch | null;
  readonly seedsRun: number;
  /** Seeds that caught it (all of them when `stopAtFirst` is false). */
  readonly caught: number;
}

export interface HuntOptions {
  readonly firstSeed?: number;
  readonly seedsMax: number;
  readonly nodes: number;
  readonly faults: ReadonlySet<FaultKind>;
  /** Stop at the first catch (the default), or run every seed to count how many catch it. */
  readonly stopAtFirst?: boolean;
}

/** "at 712.6 ms: persist before send: n4 granted …" → "persist before send". */
export function invariantOf(violation: string): string {
  const text = violation.replace(/^at [\d.]+ ms: /, '');
  return (/^([a-z -]+):/.exec(text)?.[1] ?? text).trim();
}

export function huntMutation(mutation: MutationName, options: HuntOptions): HuntResult {
  const firstSeed = options.firstSeed ?? 1;
  let first: Catch | null = null;
  let seedsRun = 0;
  let caught = 0;
  for (let seed = firstSeed; seed < firstSeed + options.seedsMax; seed += 1) {
    const result = runSeed({ seed, nodes: options.nodes, faults: options.faults, plant: MUTATIONS[mutation].plant });
    seedsRun += 1;
    if (result.ok) continue;
    caught += 1;
    const violation = result.violations[0] ?? '';
    first ??= { seed, detectedMs: result.firstViolationMs ?? result.simulatedMs, invariant: invariantOf(violation), violation };
    if (options.stopAtFirst !== false) break;
  }
  return { mutation, first, seedsRun, caught };
}
