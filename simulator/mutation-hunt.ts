// Run a planted bug over seeds until the simulator catches it: which seed,
// after how much virtual time, and which invariant saw it first.
import type { FaultKind } from './faults.ts';
import { MUTATIONS, type ActorMutationName, type MutationName } from './mutations.ts';
import { runActorSeed } from './run-actor-seed.ts';
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
  readonly mutation: MutationName | ActorMutationName;
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

/** What a hunt reads of one seed's run (Raft-only or with actors). */
interface SeedVerdict {
  readonly ok: boolean;
  readonly violations: readonly string[];
  readonly firstViolationMs: number | null;
  readonly simulatedMs: number;
}

function hunt(mutation: MutationName | ActorMutationName, options: HuntOptions, run: (seed: number) => SeedVerdict): HuntResult {
  const firstSeed = options.firstSeed ?? 1;
  let first: Catch | null = null;
  let seedsRun = 0;
  let caught = 0;
  for (let seed = firstSeed; seed < firstSeed + options.seedsMax; seed += 1) {
    const result = run(seed);
    seedsRun += 1;
    if (result.ok) continue;
    caught += 1;
    const violation = result.violations[0] ?? '';
    first ??= { seed, detectedMs: result.firstViolationMs ?? result.simulatedMs, invariant: invariantOf(violation), violation };
    if (options.stopAtFirst !== false) break;
  }
  return { mutation, first, seedsRun, caught };
}

export function huntMutation(mutation: MutationName, options: HuntOptions): HuntResult {
  return hunt(mutation, options, (seed) => runSeed({ seed, nodes: options.nodes, faults: options.faults, plant: MUTATIONS[mutation].plant }));
}

export interface ActorHuntOptions extends HuntOptions {
  /** Projects of the workload (--actors). */
  readonly actors: number;
}

/** The same hunt for a bug planted in the actor layer, over whole-cluster actor runs. */
export function huntActorMutation(mutation: ActorMutationName, options: ActorHuntOptions): HuntResult {
  return hunt(mutation, options, (seed) => runActorSeed({ seed, nodes: options.nodes, faults: options.faults, actors: options.actors, mutation }));
}
