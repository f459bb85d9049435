// The Raft benchmark's load generator, run as its own process so the client's
// CPU is not charged to the servers: a closed loop of `clients` concurrent Puts
// over `channels` gRPC connections to one endpoint, the same for debughost and
// etcd. Prints one LoadResult as JSON on stdout. Started by bench/raft.ts:
//   node --import tsx bench/raft-load.ts '{"system":"etcd","endpoint":"127.0.0.1:2379",...}'
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { KV as DebughostKv, PutRequestSchema as DebughostPutSchema } from '../proto/gen/kv_pb.ts';
import { KV as EtcdKv, PutRequestSchema as EtcdPutSchema } from './etcd/gen/etcd_kv_pb.ts';
import { callUnary, makeClientConstructor } from '../proto/grpc.ts';
import { summarize, type LoadResult, type SystemName } from './raft-stats.ts';

export interface LoadConfig {
  readonly system: SystemName;
  /** host:port of the leader. */
  readonly endpoint: string;
  readonly clients: number;
  readonly channels: number;
  readonly valueBytes: number;
  readonly keys: number;
  readonly warmupMs: number;
  readonly durationMs: number;
  /** Seeds the key and value choice, so both systems get the same sequence. */
  readonly seed: number;
}

/** Distinct values to cycle through: random letters, so LevelDB's Snappy cannot shrink them. */
const VALUE_POOL_SIZE = 1024;
const REQUEST_TIMEOUT_MS = 10_000;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

/** xorshift32: a seeded sequence (a benchmark needs repeatable input, not good randomness). */
function xorshift(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
}

type Put = (key: string, value: string, channel: number) => Promise<void>;

function putter(config: LoadConfig): { put: Put; close: () => void } {
  // A local subchannel pool gives each client its own TCP connection.
  const options: grpc.ChannelOptions = { 'grpc.use_local_subchannel_pool': 1 };
  const credentials = grpc.credentials.createInsecure();
  const deadline = () => ({ deadline: new Date(Date.now() + REQUEST_TIMEOUT_MS) });
  const encoder = new TextEncoder();
  switch (config.system) {
    case 'debughost':
    case 'noop': {
      const Client = makeClientConstructor(DebughostKv);
      const clients = Array.from({ length: config.channels }, () => new Client(config.endpoint, credentials, options));
      return {
        put: async (key, value, channel) => {
          await callUnary(clients[channel] as InstanceType<typeof Client>, 'put', create(DebughostPutSchema, { key, value }), deadline());
        },
        close: () => clients.forEach((client) => client.close()),
      };
    }
    case 'etcd': {
      const Client = makeClientConstructor(EtcdKv);
      const clients = Array.from({ length: config.channels }, () => new Client(config.endpoint, credentials, options));
      return {
        put: async (key, value, channel) => {
          await callUnary(clients[channel] as InstanceType<typeof Client>, 'put', create(EtcdPutSchema, { key: encoder.encode(key), value: encoder.encode(value) }), deadline());
        },
        close: () => clients.forEach((client) => client.close()),
      };
    }
    default: {
      const never: never = config.system;
      return never;
    }
  }
}

export async function runLoad(config: LoadConfig): Promise<LoadResult> {
  const random = xorshift(config.seed);
  const values = Array.from({ length: VALUE_POOL_SIZE }, () => Array.from({ length: config.valueBytes }, () => ALPHABET[random() % ALPHABET.length]).join(''));
  const keyDigits = String(config.keys - 1).length;
  const { put, close } = putter(config);
  const latencies: number[] = [];
  let errors = 0;
  let completedTotal = 0;
  let firstError: string | null = null;
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const measureFrom = started + config.warmupMs;
  const measureTo = measureFrom + config.durationMs;
  const client = async (index: number): Promise<void> => {
    const channel = index % config.channels;
    for (;;) {
      const sentAt = performance.now();
      if (sentAt >= measureTo) return;
      const key = `bench/${String(random() % config.keys).padStart(keyDigits, '0')}`;
      try {
        await put(key, values[random() % VALUE_POOL_SIZE] as string, channel);
        const doneAt = performance.now();
        completedTotal += 1;
        // Requests sent in the warm-up but finished in the window count: the window
        // measures completions, as a throughput figure should.
        if (doneAt >= measureFrom && doneAt < measureTo) latencies.push(doneAt - sentAt);
      } catch (error) {
        errors += 1;
        firstError ??= (error as Error).message.split('\n')[0] ?? 'unknown error';
        // A failing endpoint would otherwise spin; back off a little.
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: config.clients }, (_, index) => client(index)));
  } finally {
    close();
  }
  const cpu = process.cpuUsage(cpuBefore);
  const clientCpuUsPerWrite = (cpu.user + cpu.system) / Math.max(1, completedTotal);
  return { ...summarize(config.system, config.clients, Float64Array.from(latencies), config.durationMs, completedTotal, errors, firstError), clientCpuUsPerWrite };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const config = JSON.parse(process.argv[2] ?? '{}') as LoadConfig;
  runLoad(config).then(
    (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
    (error: unknown) => {
      process.stderr.write(`raft-load: ${(error as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
