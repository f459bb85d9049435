// Shared by the real chaos tests (chaos/real.test.ts in npm test, chaos/real.long.test.ts in
// npm run test:long): run a short chaos run from a test, check it left nothing behind, and the
// checks every healthy run must pass.
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import type { ExecutionContext } from 'ava';
import { basename, join } from 'node:path';
import { nodeCgroupRootsHere, nodeRootName } from '../../actors/cgroups.ts';
import { prerequisites, type Prerequisites } from '../../actors/testing/prerequisites.ts';
import { leftovers, newRunPrefix, sweep } from '../hosts.ts';
import { runChaos, type ChaosOptions, type ChaosResult } from '../run.ts';
import { planSchedule, type NemesisKind } from '../schedule.ts';

/** Network namespaces and iptables need root; CI runs as root with both installed. */
export const chaosPrerequisites = (): Promise<Prerequisites> => prerequisites('root', 'netns', 'iptables');

/** Run prefixes made by this file's tests; sweep them in an after.always hook. */
export const prefixes = new Set<string>();

export async function sweepAll(): Promise<void> {
  for (const prefix of prefixes) await sweep(prefix);
}

export async function leftTempDirs(prefix: string): Promise<string[]> {
  return (await readdir(tmpdir())).filter((name) => name.startsWith(`debughost-${prefix}-`));
}

/** The first seed from `from` whose schedule uses every kind asked for, so each test really exercises them. */
function seedCovering(kinds: readonly NemesisKind[], durationMs: number, nodeCount: number, from: number): number {
  for (let seed = from; seed < from + 1000; seed++) {
    const used = new Set(planSchedule({ seed, durationMs, kinds, nodeCount }).flatMap((window) => window.faults.map((fault) => fault.kind)));
    if (kinds.every((kind) => used.has(kind))) return seed;
  }
  throw new Error(`no seed from ${from} covers ${kinds.join(',')}`);
}

export async function chaos(t: ExecutionContext, options: Partial<ChaosOptions> & Pick<ChaosOptions, 'kinds' | 'durationMs' | 'nodeCount'>): Promise<ChaosResult> {
  const prefix = newRunPrefix();
  prefixes.add(prefix);
  const seed = options.seed ?? seedCovering(options.kinds, options.durationMs, options.nodeCount, 1000);
  const lines: string[] = [];
  try {
    return await runChaos(
      { seed, workloads: ['kv'], clients: 6, keys: 3, opTimeoutMs: 2000, fsync: true, unsafeAckBeforeCommit: false, reportPath: null, prefix, log: (line) => lines.push(line), ...options },
      new AbortController().signal,
    );
  } finally {
    t.log(lines.join('\n'));
    t.deepEqual(await leftovers(prefix), [], 'the run left namespaces, links or processes');
    t.deepEqual(await leftTempDirs(prefix), [], 'the run left its temp dir');
    const workDir = lines.map((line) => /data and logs in (\S+)/.exec(line)?.[1]).find((dir) => dir !== undefined);
    if (workDir !== undefined) t.deepEqual(cgroupsOfRun(workDir), [], 'the run left cgroups');
  }
}

export function assertHealthy(t: ExecutionContext, result: ChaosResult, kinds: readonly NemesisKind[]): void {
  const struck = new Set(result.windows.flatMap((window) => window.faults.map((fault) => fault.kind)));
  t.deepEqual([...struck].sort(), [...kinds].sort(), 'every nemesis asked for struck');
  t.true(result.ops > 200, `only ${result.ops} ops`);
  t.is(result.lost, 0);
  t.is(result.duplicates, 0);
  t.is(result.linearizable, true);
  t.not(result.recoverySeconds, null);
  t.true(result.ok, result.verdicts.flatMap((v) => v.findings).join('\n'));
}

/**
 * The node cgroup roots a run's nodes made and left (a root's name is the node id and a digest of its
 * state dir, actors/cgroups.ts): other tests' nodes, running at the same time, are not this run's.
 */
function cgroupsOfRun(workDir: string): string[] {
  return nodeCgroupRootsHere().filter((root) => {
    const id = /^debughost-(.+)-[0-9a-f]{12}$/.exec(basename(root))?.[1];
    return id !== undefined && basename(root) === nodeRootName(id, join(workDir, 'data', id, 'runtime', 'process'));
  });
}
