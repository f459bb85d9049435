// Goal: one short real run on network-namespaced nodes (every partition shape on 5 nodes) passes all checks and leaves
// nothing behind. The other nemeses, the planted faults and the teardown tests run in chaos/real.long.test.ts (npm run test:long).
import test from 'ava';
import { PARTITION_SHAPES, type NemesisKind } from './schedule.ts';
import { assertHealthy, chaos, chaosPrerequisites, sweepAll } from './testing/real-runs.ts';

const realTest = (await chaosPrerequisites()).guard(test.serial);

test.after.always('remove whatever a failed run left', sweepAll);

realTest('partitions (isolate leader, halves, bridge, ring, one-way) on 5 nodes', async (t) => {
  const kinds: NemesisKind[] = ['partition'];
  // Every shape once, 2.5 s each with 2 s between: a seeded schedule this short would not draw all five.
  const schedule = PARTITION_SHAPES.map((shape, i) => ({ startMs: 3000 + i * 4500, endMs: 5500 + i * 4500, faults: [{ kind: 'partition', shape, order: [3, 0, 4, 2, 1] } as const] }));
  const result = await chaos(t, { kinds, durationMs: 26_500, nodeCount: 5, schedule });
  assertHealthy(t, result, kinds);
  t.deepEqual(
    result.windows.map((window) => (window.faults[0]?.kind === 'partition' ? window.faults[0].shape : '')),
    [...PARTITION_SHAPES],
  );
});

// The seed that found a SIGSTOPped owner's workload running beside the new owner's copy (2 copies of chaos-p2 at 12.4 s).
const PAUSE_SEED = 5;

realTest('regression, seed 5: a SIGSTOPped owner fences its workloads, so no project runs twice at any sample during the run', async (t) => {
  const result = await chaos(t, { seed: PAUSE_SEED, kinds: ['pause'], workloads: ['mcp'], durationMs: 25_000, nodeCount: 3 });
  const mcp = result.mcp;
  if (mcp === null) return t.fail('the mcp workload gave no verdict');
  t.true(result.windows.some((window) => window.faults.some((fault) => fault.kind === 'pause')), 'a node was paused');
  t.is(mcp.duplicatesDuringRun, 0, result.verdicts.flatMap((v) => v.findings).join('\n'));
  t.is(mcp.maxCopies, 1);
  t.is(mcp.duplicates, 0);
  t.true(result.ok, result.verdicts.flatMap((v) => v.findings).join('\n'));
});
