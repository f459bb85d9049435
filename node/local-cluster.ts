// Test support for real-process clusters: node processes on loopback ports with
// data dirs under one temp dir, in-process gRPC clients to each, a concurrent
// writer workload that records every acknowledged write, and a check that each
// of them is readable on every node. Every process started here is stopped by
// its pid in stop(), which also removes the temp dir.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { Admin, Role, StatusRequestSchema, type StatusResponse } from '../proto/gen/admin_pb.ts';
import { KV, PutRequestSchema, RangeRequestSchema } from '../proto/gen/kv_pb.ts';
import { callUnary, makeClientConstructor } from '../proto/grpc.ts';
import { adminTokenPath, clusterSecretPath, ensureAdminToken, ensureClusterSecret } from './cluster-files.ts';
import { withMetadata } from './peer-auth.ts';

export const bin = new URL('../bin/debughost.js', import.meta.url).pathname;

const AdminClient = makeClientConstructor(Admin);
const KvClient = makeClientConstructor(KV);

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface Member {
  readonly id: string;
  readonly grpc: string;
  readonly mcp: string;
  readonly dataDir: string;
  process: ChildProcess | null;
  /** Headers an MCP client of this member sends: the cluster's admin token. */
  readonly mcpHeaders: Readonly<Record<string, string>>;
  /** The last lines this node wrote to stderr, to explain a failure. */
  stderrTail: string;
}

export interface ClusterOptions {
  /** Extra flags for every `debughost node`. */
  readonly extraArgs?: readonly string[];
  /** Extra flags for one member (its own TLS certificate). */
  readonly memberArgs?: (member: Member) => readonly string[];
  /** TLS credentials the test's own clients use (default plaintext); the admin token rides on them. */
  readonly credentials?: grpc.ChannelCredentials;
  /** Node.js flags for every node process, before the script (a benchmark's `--cpu-prof`). */
  readonly nodeFlags?: readonly string[];
}

export type Status = StatusResponse & { readonly roleName: string };

/** A small seeded PRNG (mulberry32) so that a failing run can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | null> | T | null, everyMs = 50): Promise<T> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const value = await probe();
    if (value !== null) return value;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** The gRPC status a call ended with, or 'ok'. */
export async function codeOf(promise: Promise<unknown>): Promise<grpc.status | 'ok'> {
  try {
    await promise;
    return 'ok';
  } catch (error) {
    return (error as grpc.ServiceError).code;
  }
}

export class LocalCluster {
  readonly members: Member[] = [];
  /** The founding members' gRPC addresses: every node gets them as --seeds. */
  seedList = '';
  private readonly admin = new Map<string, InstanceType<typeof AdminClient>>();
  private readonly kv = new Map<string, InstanceType<typeof KvClient>>();
  /** The test's clients: the given TLS credentials (or plaintext) with the admin token on every call. */
  readonly credentials: grpc.ChannelCredentials;

  private constructor(
    readonly root: string,
    readonly options: ClusterOptions,
    /** The bootstrap admin token every founder is given (as debughost up does). */
    readonly adminToken: string,
  ) {
    this.credentials = withMetadata(options.credentials ?? null, () => ({ authorization: `Bearer ${adminToken}` }));
  }

  /** The cluster secret and admin token files every node gets, in the cluster's temp dir. */
  get secretFile(): string {
    return clusterSecretPath(this.root);
  }

  get adminTokenFile(): string {
    return adminTokenPath(this.root);
  }

  /** `founding` members whose addresses form the seed list; add more with addMember. */
  static async create(founding: number, options: ClusterOptions = {}): Promise<LocalCluster> {
    const root = await mkdtemp(join(tmpdir(), 'debughost-cluster-'));
    await ensureClusterSecret(clusterSecretPath(root));
    const { token } = await ensureAdminToken(adminTokenPath(root), Date.now());
    const cluster = new LocalCluster(root, options, token);
    for (let i = 1; i <= founding; i += 1) await cluster.addMember();
    cluster.seedList = cluster.members.map((m) => m.grpc).join(',');
    return cluster;
  }

  async addMember(): Promise<Member> {
    const id = `n${this.members.length + 1}`;
    const member: Member = { id, grpc: `127.0.0.1:${await freePort()}`, mcp: `127.0.0.1:${await freePort()}`, dataDir: join(this.root, id), process: null, mcpHeaders: { authorization: `Bearer ${this.adminToken}` }, stderrTail: '' };
    this.members.push(member);
    return member;
  }

  member(id: string): Member {
    const found = this.members.find((m) => m.id === id);
    if (found === undefined) throw new Error(`no member ${id}`);
    return found;
  }

  /** Start `member`'s process; `trustFiles: false` starts it without the secret and admin token files (a node joining by token). */
  start(member: Member, options: { trustFiles?: boolean; args?: readonly string[] } = {}): void {
    const args = [
      bin, 'node', '--id', member.id, '--grpc', member.grpc, '--mcp', member.mcp, '--seeds', this.seedList, '--data-dir', member.dataDir,
      ...(options.trustFiles === false ? [] : ['--cluster-secret-file', this.secretFile, '--admin-token-file', this.adminTokenFile]),
      ...(this.options.extraArgs ?? []), ...(this.options.memberArgs?.(member) ?? []), ...(options.args ?? []),
    ];
    const child = spawn(process.execPath, [...(this.options.nodeFlags ?? []), ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DEBUGHOST_LOG_LEVEL: process.env.DEBUGHOST_TEST_LOG_LEVEL ?? 'warn' } });
    child.stderr?.on('data', (chunk: Buffer) => {
      member.stderrTail = (member.stderrTail + chunk.toString()).slice(-20000);
    });
    member.process = child;
  }

  running(member: Member): boolean {
    return member.process !== null && member.process.exitCode === null && member.process.signalCode === null;
  }

  /** Send `signal` to the member's process (by its pid) and wait until it has exited. */
  kill(member: Member, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = member.process;
    member.process = null;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  }

  /** Resolves when the member's process exits on its own. */
  exited(member: Member): Promise<void> {
    const child = member.process;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => child.once('exit', () => resolve()));
  }

  adminClient(member: Member): InstanceType<typeof AdminClient> {
    let client = this.admin.get(member.grpc);
    if (client === undefined) {
      client = new AdminClient(member.grpc, this.credentials, { 'grpc.initial_reconnect_backoff_ms': 50, 'grpc.max_reconnect_backoff_ms': 200 });
      this.admin.set(member.grpc, client);
    }
    return client;
  }

  kvClient(member: Member): InstanceType<typeof KvClient> {
    let client = this.kv.get(member.grpc);
    if (client === undefined) {
      client = new KvClient(member.grpc, this.credentials, { 'grpc.initial_reconnect_backoff_ms': 50, 'grpc.max_reconnect_backoff_ms': 200 });
      this.kv.set(member.grpc, client);
    }
    return client;
  }

  /** Admin.Status of one member, or null when it does not answer within `timeoutMs`. */
  async status(member: Member, timeoutMs = 1000): Promise<Status | null> {
    try {
      const status = await callUnary(this.adminClient(member), 'status', create(StatusRequestSchema, {}), { deadline: Date.now() + timeoutMs });
      return Object.assign(status, { roleName: Role[status.role]?.toLowerCase() ?? 'unknown' });
    } catch {
      return null;
    }
  }

  /** The member that says it leads, among `among` (default: every running member). */
  async leader(among: readonly Member[] = this.members.filter((m) => this.running(m))): Promise<Member | null> {
    const statuses = await Promise.all(among.map((m) => this.status(m)));
    const index = statuses.findIndex((s) => s !== null && s.role === Role.LEADER);
    return index < 0 ? null : (among[index] as Member);
  }

  /** A leader among `among`, once the admin token works on it (the founders write it right after the first election). */
  waitForLeader(timeoutMs: number, among?: readonly Member[]): Promise<Member> {
    return until('a leader that knows the admin token', timeoutMs, async () => {
      const leader = await this.leader(among);
      if (leader === null) return null;
      const known = await callUnary(this.kvClient(leader), 'range', create(RangeRequestSchema, { key: 'tokens/', serializable: true }), { deadline: Date.now() + 1000 }).then(
        () => true,
        () => false,
      );
      return known ? leader : null;
    });
  }

  /** Wait until `member` runs Raft with a known leader and has applied everything the leader had committed when asked. */
  async waitCaughtUp(member: Member, timeoutMs: number): Promise<void> {
    await until(`${member.id} to catch up`, timeoutMs, async () => {
      const leader = await this.leader();
      if (leader === null) return null;
      const [theirs, mine] = await Promise.all([this.status(leader), this.status(member)]);
      if (theirs === null || mine === null || mine.leaderId === '') return null;
      return mine.appliedIndex >= theirs.commitIndex ? true : null;
    });
  }

  put(member: Member, key: string, value: string, timeoutMs = 5000): Promise<unknown> {
    return callUnary(this.kvClient(member), 'put', create(PutRequestSchema, { key, value }), { deadline: Date.now() + timeoutMs });
  }

  /** Every key under `prefix` as `member` has it, read linearizably through it. */
  async readPrefix(member: Member, prefix: string, end: string): Promise<Map<string, string>> {
    const response = await callUnary(this.kvClient(member), 'range', create(RangeRequestSchema, { key: prefix, rangeEnd: end }), { deadline: Date.now() + 10_000 });
    return new Map(response.kvs.map((kv) => [kv.key, kv.value]));
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => this.kill(m, 'SIGKILL')));
    for (const client of [...this.admin.values(), ...this.kv.values()]) client.close();
    this.admin.clear();
    this.kv.clear();
    await rm(this.root, { recursive: true, force: true, maxRetries: 5 });
  }
}

/**
 * Concurrent writers, each putting fresh keys (`w<writer>-<n>`, written once,
 * so an unacknowledged write never hides an acknowledged one) through a
 * randomly chosen live member. Only acknowledged writes are recorded.
 */
export class WriteLoad {
  readonly acknowledged = new Map<string, string>();
  failed = 0;
  private running = true;
  private readonly loops: Promise<void>[] = [];

  constructor(
    private readonly cluster: LocalCluster,
    /** Members writes may go through; the test edits it as nodes come and go. */
    readonly targets: Set<Member>,
    writers: number,
    random: () => number,
  ) {
    for (let w = 0; w < writers; w += 1) this.loops.push(this.loop(w, random));
  }

  private async loop(writer: number, random: () => number): Promise<void> {
    for (let n = 0; this.running; n += 1) {
      const choices = [...this.targets];
      const target = choices[Math.floor(random() * choices.length)];
      if (target === undefined) {
        await sleep(20);
        continue;
      }
      const key = `w${writer}-${String(n).padStart(6, '0')}`;
      const value = `${target.id}-${n}-${Math.floor(random() * 1e9)}`;
      try {
        await this.cluster.put(target, key, value);
        this.acknowledged.set(key, value);
      } catch {
        this.failed += 1;
        // Back off a little so a dead target does not spin the loop.
        await sleep(20);
      }
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

/** Acknowledged writes missing or different on `member`; empty when all are there. */
export async function missingWrites(cluster: LocalCluster, member: Member, acknowledged: ReadonlyMap<string, string>): Promise<string[]> {
  const stored = await cluster.readPrefix(member, 'w', 'x');
  const wrong: string[] = [];
  for (const [key, value] of acknowledged) {
    const actual = stored.get(key);
    if (actual !== value) wrong.push(`${key}: acknowledged '${value}', ${member.id} has ${actual === undefined ? 'nothing' : `'${actual}'`}`);
  }
  return wrong;
}
