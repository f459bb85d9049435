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
