// Goal: the simulated network delivers, drops, duplicates and reorders deterministically from its seed, honours every partition shape, down and paused nodes, and counts what it does.
import test from 'ava';
import { nodeId, type NodeId } from '../consensus/types.ts';
import { NETWORK_FAULTS_NONE, SimNetwork, type NetworkFaults } from './network.ts';
import { Prng } from './prng.ts';
import { Scheduler } from './scheduler.ts';

interface TestMessage {
  readonly type: 'ping' | 'pong';
  readonly n: number;
}

const nodes = ['n1', 'n2', 'n3', 'n4', 'n5'].map(nodeId);
const [n1, n2, n3, n4, n5] = nodes as [NodeId, NodeId, NodeId, NodeId, NodeId];

const setup = (faults: NetworkFaults = NETWORK_FAULTS_NONE, seed = 1) => {
  const scheduler = new Scheduler();
  const received: string[] = [];
  const network = new SimNetwork<TestMessage>({ scheduler, prng: new Prng(seed).fork('network'), typeOf: (m) => m.type, faults });
  for (const node of nodes) network.register(node, (message, from) => received.push(`${from}>${node}:${message.n}`));
  return { scheduler, network, received };
};

/** Which ordered pairs can talk, as "a>b" strings. */
const links = (network: SimNetwork<TestMessage>): Set<string> => {
  const result = new Set<string>();
  for (const a of nodes) for (const b of nodes) if (a !== b && network.connected(a, b)) result.add(`${a}>${b}`);
  return result;
};

test('without faults every message arrives after the base latency, FIFO per link', (t) => {
  const { scheduler, network, received } = setup();
  for (let i = 0; i < 5; i++) network.send(n1, n2, { type: 'ping', n: i });
  network.send(n2, n1, { type: 'pong', n: 9 });
  scheduler.runUntil(0.5, 100);
  t.deepEqual(received, []);
  scheduler.runUntil(1, 100);
  t.deepEqual(received, ['n1>n2:0', 'n1>n2:1', 'n1>n2:2', 'n1>n2:3', 'n1>n2:4', 'n2>n1:9']);
  const stats = network.stats();
  t.deepEqual(stats.totals, { sent: 6, delivered: 6, dropped: 0, duplicated: 0 });
  t.deepEqual(stats.byType.get('ping'), { sent: 5, delivered: 5, dropped: 0, duplicated: 0 });
  t.is(stats.inFlight, 0);
});

test('messages to self are refused; a down node may not send', (t) => {
  const { network } = setup();
  t.throws(() => network.send(n1, n1, { type: 'ping', n: 0 }));
  network.setDown(n2, true);
  t.throws(() => network.send(n2, n1, { type: 'ping', n: 0 }));
});

test('drops, duplicates and delays follow the configured rates and conserve counts', (t) => {
  const faults: NetworkFaults = { dropProbability: 0.1, duplicateProbability: 0.05, latencyMsBase: 1, latencyMsJitter: 5, longDelayProbability: 0.02, longDelayMsMax: 500 };
  const { scheduler, network, received } = setup(faults);
  const count = 20_000;
  for (let i = 0; i < count; i++) network.send(n1, n2, { type: 'ping', n: i });
  scheduler.runUntil(10_000, 100_000);
  const { totals, droppedBy } = network.stats();
  t.is(totals.sent, count);
  t.true(Math.abs(totals.dropped / count - 0.1) < 0.015, `drop rate ${totals.dropped / count}`);
  t.true(Math.abs(totals.duplicated / count - 0.05 * 0.9) < 0.01, `duplicate rate ${totals.duplicated / count}`);
  t.is(totals.delivered + totals.dropped, totals.sent + totals.duplicated);
  t.is(droppedBy.random, totals.dropped);
  t.is(received.length, totals.delivered);
  // Jitter and long delays reorder.
  const order = received.map((line) => Number(line.split(':')[1]));
  let inversions = 0;
  for (let i = 1; i < order.length; i++) if (order[i]! < order[i - 1]!) inversions++;
  t.true(inversions > 100);
});

test('the same seed gives the same deliveries; another seed differs', (t) => {
  const faults: NetworkFaults = { dropProbability: 0.2, duplicateProbability: 0.1, latencyMsBase: 1, latencyMsJitter: 10, longDelayProbability: 0.05, longDelayMsMax: 100 };
  const run = (seed: number): string => {
    const { scheduler, network, received } = setup(faults, seed);
    for (let i = 0; i < 500; i++) network.send(nodes[i % 5]!, nodes[(i + 1 + (i % 3)) % 5]!, { type: i % 2 === 0 ? 'ping' : 'pong', n: i });
    scheduler.runUntil(1000, 10_000);
    return received.join(' ');
  };
  t.is(run(7), run(7));
  t.not(run(7), run(8));
});

test('partition cuts across groups both ways; unlisted nodes keep their links; heal restores', (t) => {
  const { scheduler, network, received } = setup();
  network.partition([[n1, n2], [n3, n4]]);
  t.false(network.connected(n1, n3));
  t.false(network.connected(n4, n2));
  t.true(network.connected(n1, n2));
  t.true(network.connected(n5, n1) && network.connected(n3, n5));
  network.send(n1, n3, { type: 'ping', n: 1 });
  network.send(n1, n2, { type: 'ping', n: 2 });
  scheduler.runUntil(5, 10);
  t.deepEqual(received, ['n1>n2:2']);
  t.is(network.stats().droppedBy.partition, 1);
  t.is(network.describeCuts(), 'n1>n3 n1>n4 n2>n3 n2>n4 n3>n1 n3>n2 n4>n1 n4>n2');
  network.heal();
  t.is(links(network).size, 20);
  t.is(network.describeCuts(), '');
});

test('a partition made while a message is in flight drops it on arrival', (t) => {
  const { scheduler, network, received } = setup();
  network.send(n1, n2, { type: 'ping', n: 1 });
  network.isolate(n2);
  scheduler.runUntil(5, 10);
  t.deepEqual(received, []);
  t.is(network.stats().droppedBy.partition, 1);
  for (const other of [n1, n3, n4, n5]) t.false(network.connected(other, n2) || network.connected(n2, other));
  t.true(network.connected(n1, n3));
});

test('oneWay blocks one direction only', (t) => {
  const { scheduler, network, received } = setup();
  network.oneWay(n1, n2);
  network.send(n1, n2, { type: 'ping', n: 1 });
  network.send(n2, n1, { type: 'pong', n: 2 });
  scheduler.runUntil(5, 10);
  t.deepEqual(received, ['n2>n1:2']);
});

test('bridge: halves cannot talk, the bridge node talks to both', (t) => {
  const { network } = setup();
  network.bridge([n1, n2], [n4, n5], n3);
  for (const a of [n1, n2]) {
    for (const b of [n4, n5]) t.false(network.connected(a, b) || network.connected(b, a));
    t.true(network.connected(a, n3) && network.connected(n3, a));
  }
  t.true(network.connected(n3, n5) && network.connected(n1, n2));
  t.throws(() => network.bridge([n1, n3], [n4], n3));
});

test('majoritiesRing: every node sees a majority, and all see different ones', (t) => {
  for (const size of [3, 4, 5, 6, 7]) {
    const scheduler = new Scheduler();
    const members = Array.from({ length: size }, (_, i) => nodeId(`m${i}`));
    const network = new SimNetwork<TestMessage>({ scheduler, prng: new Prng(1), typeOf: (m) => m.type });
    network.majoritiesRing(new Prng(size).shuffle([...members]));
    const majority = Math.floor(size / 2) + 1;
    const views = new Set<string>();
    for (const a of members) {
      const sees = members.filter((b) => b === a || (network.connected(a, b) && network.connected(b, a)));
      t.true(sees.length >= majority, `size ${size}: ${a} sees ${sees.length}`);
      t.true(sees.length < size || size === 3, `size ${size}: ${a} sees everyone`);
      views.add(sees.join(','));
      for (const b of members) if (a !== b) t.is(network.connected(a, b), network.connected(b, a), 'ring links are symmetric');
    }
    t.is(views.size, size, `size ${size}: every node sees a different majority`);
  }
});

test('healAmong reconnects only the given nodes', (t) => {
  const { network } = setup();
  network.partition([[n1], [n2], [n3], [n4], [n5]]);
  network.healAmong([n1, n2, n3]);
  t.true(network.connected(n1, n3) && network.connected(n3, n2));
  t.false(network.connected(n1, n4) || network.connected(n5, n3));
});

test('a down node drops what arrives; an unregistered node too', (t) => {
  const { scheduler, network, received } = setup();
  network.setDown(n2, true);
  t.true(network.isDown(n2));
  network.send(n1, n2, { type: 'ping', n: 1 });
  network.send(n1, nodeId('ghost'), { type: 'ping', n: 2 });
  scheduler.runUntil(5, 10);
  t.deepEqual(received, []);
  t.is(network.stats().droppedBy.down, 2);
  network.setDown(n2, false);
  network.send(n1, n2, { type: 'ping', n: 3 });
  scheduler.runUntil(10, 10);
  t.deepEqual(received, ['n1>n2:3']);
});

test('a paused node receives its messages only after it resumes', (t) => {
  const { scheduler, network, received } = setup();
  scheduler.pause(n2);
  network.send(n1, n2, { type: 'ping', n: 1 });
  network.send(n1, n3, { type: 'ping', n: 2 });
  scheduler.runUntil(100, 10);
  t.deepEqual(received, ['n1>n3:2']);
  scheduler.resume(n2);
  scheduler.runUntil(100, 10);
  t.deepEqual(received, ['n1>n3:2', 'n1>n2:1']);
});

test('the observer sees every send, duplicate, delivery and drop', (t) => {
  const scheduler = new Scheduler();
  const events: string[] = [];
  const network = new SimNetwork<TestMessage>({
    scheduler,
    prng: new Prng(3),
    typeOf: (m) => m.type,
    faults: { ...NETWORK_FAULTS_NONE, duplicateProbability: 1 },
    observer: (kind, from, to, message, reason) => events.push(`${kind} ${from}>${to} ${message.n}${reason === null ? '' : ` ${reason}`}`),
  });
  network.register(n2, () => {});
  network.send(n1, n2, { type: 'ping', n: 1 });
  network.oneWay(n1, n2);
  network.send(n1, n2, { type: 'ping', n: 2 });
  scheduler.runUntil(10, 10);
  t.deepEqual(events, ['send n1>n2 1', 'duplicate n1>n2 1', 'send n1>n2 2', 'drop n1>n2 2 partition', 'drop n1>n2 1 partition', 'drop n1>n2 1 partition']);
});

test('sending and delivering 200k messages stays cheap', (t) => {
  const { scheduler, network } = setup({ ...NETWORK_FAULTS_NONE, latencyMsJitter: 2, dropProbability: 0.01 });
  const started = process.hrtime.bigint();
  for (let round = 0; round < 200; round++) {
    for (let i = 0; i < 1000; i++) network.send(nodes[i % 5]!, nodes[(i + 1) % 5]!, { type: 'ping', n: i });
    scheduler.runUntil(scheduler.nowMs() + 5, 10_000);
  }
  const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
  t.log(`200k messages in ${elapsedMs.toFixed(0)} ms`);
  t.true(elapsedMs < 5000);
});
