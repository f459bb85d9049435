// Temporary: CPU profile of nodes serving forwarded project_status.
import { callTool, connect, startBenchCluster } from './mcp-client.ts';
process.env.NODE_OPTIONS = '--cpu-prof --cpu-prof-dir=/tmp/prof';
const bench = await startBenchCluster(3, ['--docker', 'off'], 'PROFMARK');
try {
  const first = await connect(bench.members[0]!, 'p');
  const started = await callTool(first, 'project_start', { name: 'web', command: 'PROFMARK=1 sleep 600', waitMs: 2000 });
  const owner = started.structuredContent?.owner as string;
  const other = bench.members.find((m) => m.id !== owner)!;
  const clients = await Promise.all(Array.from({ length: 20 }, () => connect(other, 'c')));
  const t0 = performance.now();
  let calls = 0;
  await Promise.all(clients.map(async (client) => {
    while (performance.now() - t0 < 15_000) { await callTool(client, 'project_status', { name: 'web' }); calls += 1; }
  }));
  console.log(`calls ${calls} in 15 s; owner ${owner}, entry ${other.id}`);
  for (const c of [first, ...clients]) await c.close();
} finally {
  await bench.stop();
}
