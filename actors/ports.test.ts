// Goal: the port registry hands out free ports from its range (checked by real binds), never one port twice, releases them, and consults its ledger.
import test from 'ava';
import { createServer, type Server } from 'node:net';
import { PortsExhaustedError } from './components.ts';
import { canBind, hostCheckedAllocator, listeningPortsSync, PortRegistry, type PortLedger } from './ports.ts';
import { RuntimeError } from './runtime.ts';

const servers: Server[] = [];
test.after.always(async () => {
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
});

const listen = (port: number, host: string): Promise<Server> =>
  new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port, host }, () => resolve(server));
    servers.push(server);
  });

test('a port someone else listens on (127.0.0.1 or 0.0.0.0) is skipped', async (t) => {
  await listen(23000, '127.0.0.1');
  await listen(23001, '0.0.0.0');
  const registry = new PortRegistry({ node: 'n1', rangeStart: 23000, rangeEnd: 23009 });
  const ports = await registry.allocate('projects/t/a', ['default', 'admin']);
  t.deepEqual(ports, { default: 23002, admin: 23003 });
  t.true(await canBind(23002, '127.0.0.1'));
});

test('never hands out a port twice, also under concurrent allocations; keeps an owner its ports', async (t) => {
  const registry = new PortRegistry({ node: 'n1', rangeStart: 23100, rangeEnd: 23119 });
  const owners = Array.from({ length: 10 }, (_, index) => `projects/t/p${index}`);
  const results = await Promise.all(owners.map((owner) => registry.allocate(owner, ['default', 'debug'])));
  const all = results.flatMap((ports) => Object.values(ports));
  t.is(new Set(all).size, 20);
  t.true(all.every((port) => port >= 23100 && port <= 23119));
  t.deepEqual(await registry.allocate('projects/t/p0', ['default']), { default: results[0]?.default });
  const exhausted = await t.throwsAsync(registry.allocate('projects/t/late', ['default']), { instanceOf: RuntimeError });
  t.is(exhausted?.name, 'PortsExhaustedError');
  t.regex(exhausted?.message ?? '', /no free port left in 23100-23119 on node n1 .*widen the node's port range/);
  const freed = await registry.release('projects/t/p3');
  t.is(freed.length, 2);
  const late = await registry.allocate('projects/t/late', ['default']);
  t.true(freed.includes(late.default as number));
  t.is(registry.ownerOf(late.default as number), 'projects/t/late');
});

test('the ledger is asked before a port is handed out and told when it is released; restore takes back its entries', async (t) => {
  const claimed = new Map<number, string>();
  const ledger: PortLedger = {
    claim: async (port, owner) => {
      // Port 23201 is held in the replicated store by a project of another incarnation of this node.
      if (port === 23201 || claimed.has(port)) return false;
      claimed.set(port, owner);
      return true;
    },
    release: async (port) => {
      claimed.delete(port);
    },
  };
  const registry = new PortRegistry({ node: 'n1', rangeStart: 23200, rangeEnd: 23209, ledger });
  const first = await registry.allocate('projects/t/a', ['default', 'b']);
  t.deepEqual(first, { default: 23200, b: 23202 });
  t.deepEqual([...claimed.entries()], [
    [23200, 'projects/t/a'],
    [23202, 'projects/t/a'],
  ]);
  await registry.release('projects/t/a');
  t.is(claimed.size, 0);
  const restored = new PortRegistry({ node: 'n1', rangeStart: 23200, rangeEnd: 23209, ledger });
  restored.restore([{ port: 23205, owner: 'projects/t/x', name: 'default' }]);
  t.deepEqual(restored.portsOf('projects/t/x'), { default: 23205 });
  t.is(restored.ownerOf(23205), 'projects/t/x');
});

test('an invalid range is refused with the rule', (t) => {
  const error = t.throws(() => new PortRegistry({ node: 'n1', rangeStart: 30000, rangeEnd: 20000 }), { instanceOf: RuntimeError });
  t.regex(error?.message ?? '', /1024 ≤ start ≤ end ≤ 65535/);
});

test('the synchronous allocator for the actor layer skips store-held and listening ports, round-robin', async (t) => {
  await listen(23302, '127.0.0.1');
  t.true(listeningPortsSync().has(23302));
  const allocator = hostCheckedAllocator({ rangeStart: 23300, rangeEnd: 23305 });
  t.deepEqual(allocator.allocate('n1', ['default', 'admin'], new Set([23300])), { default: 23301, admin: 23303 });
  t.deepEqual(allocator.allocate('n1', ['default'], new Set()), { default: 23304 });
  t.deepEqual(allocator.allocate('n1', ['default'], new Set()), { default: 23305 });
  t.deepEqual(allocator.allocate('n1', ['default'], new Set()), { default: 23300 });
  const exhausted = allocator.allocate('n1', ['a', 'b', 'c', 'd', 'e', 'f'], new Set());
  t.true(exhausted instanceof PortsExhaustedError);
});
