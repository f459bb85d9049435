// The real node processes of a chaos run, one per namespace, started with
// `nsenter --net=/run/netns/NS node bin/debughost.js node …`. nsenter execs the
// node in place, so the child's pid is the node's pid: signals (SIGKILL,
// SIGSTOP, SIGCONT) go straight to it. Not `ip netns exec`: it mounts a fresh
// /sys, which hides the cgroup hierarchies that hold the nodes' workloads.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { Admin, MemberRemoveRequestSchema, Role, StatusRequestSchema } from '../proto/gen/admin_pb.ts';
import { callUnary, makeClientConstructor } from '../proto/grpc.ts';
import { TEST_FAULTS_ENV } from '../node/test-faults.ts';
import type { Hosts } from './hosts.ts';
import { adminTokenPath, clusterSecretPath, ensureAdminToken, ensureClusterSecret } from '../node/cluster-files.ts';
import { withMetadata } from '../node/peer-auth.ts';

const BIN = new URL('../bin/debughost.js', import.meta.url).pathname;
export const GRPC_PORT = 2701;
export const MCP_PORT = 2601;
const READY_MS_MAX = 60_000;
/** libfaketime's multi-threaded build (node runs threads), as Debian's libfaketime package installs it. */
export const FAKETIME_LIBRARY = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';
/** How long a node may take to exit after SIGTERM or its removal before it is SIGKILLed (and counted as stuck). */
const STOP_MS_MAX = 3_000;
const REMOVE_MS_MAX = 20_000;

export class NodeProcessError extends Error {
  override readonly name = 'NodeProcessError';
}

export type NodeState = 'running' | 'paused' | 'killed' | 'stopped' | 'removed';

export interface ChaosNode {
  readonly slot: number;
  /** Changes when the slot is re-used by a fresh member after a removal. */
  id: string;
  generation: number;
  state: NodeState;
  child: ChildProcess | null;
  /** Set when the suite itself asks the process to end (signal, removal); an exit without it is a crash. */
  expectingExit: boolean;
  readonly address: string;
}

export interface ClusterOptions {
  readonly hosts: Hosts;
  readonly nodeCount: number;
  readonly dataRoot: string;
  readonly fsync: boolean;
  /** Test-only plant: the node acknowledges writes before they commit. */
  readonly unsafeAckBeforeCommit: boolean;
  /** Planted faults for tests: TypeScript modules every node process imports before it starts (never a node flag). */
  readonly nodeImports?: readonly string[];
  /** Where each node's stdout and stderr go. */
  readonly logDir: string;
  readonly onEvent?: (line: string) => void;
}

const AdminClient = makeClientConstructor(Admin);
type AdminClientType = InstanceType<typeof AdminClient>;

/** grpc-js backs off reconnects up to 120 s by default; a chaos observer must notice a recovered node within a second. */
export const OBSERVER_CHANNEL_OPTIONS: Partial<grpc.ChannelOptions> = {
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.min_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1000,
  'grpc.enable_retries': 0,
};

export class ChaosCluster {
  readonly nodes: ChaosNode[] = [];
  /** Nodes that did not exit within STOP_MS_MAX of SIGTERM or of learning they were removed (a node bug). */
  readonly stuckStops: string[] = [];
  /** Nodes that exited without being asked to: crashes, a node bug. */
  readonly crashes: string[] = [];
  private readonly admin = new Map<string, AdminClientType>();
  private readonly logs: WriteStream[] = [];
  private readonly faketimeOffsetSeconds = new Map<number, number>();
  /** The bootstrap admin token every node is given (as debughost up does); the suite's clients send it. */
  #adminToken: string | null = null;
  /** The admin token (for the MCP workload's Authorization header once MCP checks tokens); null before startAll. */
  get adminToken(): string | null {
    return this.#adminToken;
  }

  /** The suite's client credentials: plaintext with the admin token on every call (valid once startAll ran). */
  readonly clientCredentials = withMetadata(null, () => (this.#adminToken === null ? null : { authorization: `Bearer ${this.#adminToken}` }));

  constructor(readonly options: ClusterOptions) {
    for (let slot = 0; slot < options.nodeCount; slot++) {
      this.nodes.push({ slot, id: `n${slot + 1}`, generation: 0, state: 'stopped', child: null, expectingExit: false, address: `${options.hosts.address(slot)}:${GRPC_PORT}` });
    }
  }

  get seeds(): string {
    return this.nodes.map((node) => node.address).join(',');
  }

  node(slot: number): ChaosNode {
    const node = this.nodes[slot];
    if (node === undefined) throw new NodeProcessError(`no node in slot ${slot}`);
    return node;
  }

  /** The nodes that should answer: started and not removed. */
  get members(): ChaosNode[] {
    return this.nodes.filter((node) => node.state !== 'removed');
  }

  async startAll(): Promise<void> {
    // Every node (founders and later joiners alike) gets the cluster secret, and the founders the first admin token.
    await mkdir(this.options.dataRoot, { recursive: true });
    await ensureClusterSecret(clusterSecretPath(this.options.dataRoot));
    this.#adminToken = (await ensureAdminToken(adminTokenPath(this.options.dataRoot), Date.now())).token;
    for (const node of this.nodes) await this.options.hosts.ensureHost(node.slot);
    await Promise.all(this.nodes.map((node) => this.start(node.slot)));
  }

  /** Start (or restart, same data dir) the node in `slot`; resolves once it printed `ready:`. */
  async start(slot: number, faketimeOffsetSeconds = 0): Promise<void> {
    const node = this.node(slot);
    if (node.child !== null && node.child.exitCode === null && node.child.signalCode === null) throw new NodeProcessError(`node ${node.id} is still running`);
    const { hosts } = this.options;
    const dataDir = join(this.options.dataRoot, `${node.id}`);
    // Processes only (--docker off): the MCP workload counts its projects in this host's /proc.
    const plants = (this.options.nodeImports ?? []).flatMap((module) => ['--import', module]);
    const nodeArgs = [...(plants.length > 0 ? ['--import', 'tsx', ...plants] : []), BIN, 'node', '--id', node.id, '--grpc', node.address, '--mcp', `${hosts.address(slot)}:${MCP_PORT}`, '--seeds', this.seeds, '--data-dir', dataDir, '--insecure', '--docker', 'off',
      '--cluster-secret-file', clusterSecretPath(this.options.dataRoot), '--admin-token-file', adminTokenPath(this.options.dataRoot)];
    if (!this.options.fsync) nodeArgs.push('--no-fsync');
    if (this.options.unsafeAckBeforeCommit) nodeArgs.push('--unsafe-ack-before-commit');
    // The chaos suite is a test: its nodes accept the test-only fault flags (node/test-faults.ts).
    const faults: Record<string, string> = this.options.fsync && !this.options.unsafeAckBeforeCommit ? {} : { [TEST_FAULTS_ENV]: '1' };
    this.faketimeOffsetSeconds.set(slot, faketimeOffsetSeconds);
    // libfaketime by LD_PRELOAD, not the `faketime` wrapper: the wrapper forks, and signals must reach the node itself.
    // Monotonic time stays true: only the wall clock is skewed.
    const skew: Record<string, string> =
      faketimeOffsetSeconds === 0
        ? {}
        : { LD_PRELOAD: FAKETIME_LIBRARY, FAKETIME: `${faketimeOffsetSeconds > 0 ? '+' : ''}${faketimeOffsetSeconds}s`, FAKETIME_DONT_FAKE_MONOTONIC: '1' };
    const log = createWriteStream(join(this.options.logDir, `${node.id}.log`), { flags: 'a' });
    this.logs.push(log);
    const child = spawn('nsenter', [`--net=/run/netns/${hosts.namespace(slot)}`, process.execPath, ...nodeArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DEBUGHOST_LOG_LEVEL: 'warn', ...skew, ...faults },
    });
    node.child = child;
    node.state = 'running';
    node.expectingExit = false;
    child.stderr?.pipe(log, { end: false });
    const ready = new Promise<void>((resolve, reject) => {
      let seen = '';
      const timer = setTimeout(() => reject(new NodeProcessError(`node ${node.id} was not ready within ${READY_MS_MAX / 1000} s; see ${join(this.options.logDir, `${node.id}.log`)}`)), READY_MS_MAX);
      child.stdout?.on('data', (chunk: Buffer) => {
        log.write(chunk);
        seen += chunk.toString();
        if (seen.includes('ready:')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new NodeProcessError(`node ${node.id} exited (${code ?? signal}) before it was ready; see ${join(this.options.logDir, `${node.id}.log`)}`));
      });
    });
    child.once('exit', (code, signal) => {
      if (node.child === child && !node.expectingExit) {
        this.crashes.push(node.id);
        this.options.onEvent?.(`node ${node.id} exited by itself (${code ?? signal}): a crash; see ${join(this.options.logDir, `${node.id}.log`)}`);
      }
      if (node.child === child && node.state === 'running') node.state = code === 0 ? 'stopped' : 'killed';
    });
    await ready;
  }

  signal(slot: number, signal: 'SIGKILL' | 'SIGSTOP' | 'SIGCONT' | 'SIGTERM'): void {
    const node = this.node(slot);
    const pid = node.child?.pid;
    if (pid === undefined || node.child?.exitCode !== null || node.child.signalCode !== null) return;
    if (signal === 'SIGKILL' || signal === 'SIGTERM') node.expectingExit = true;
    process.kill(pid, signal);
    if (signal === 'SIGSTOP') node.state = 'paused';
    if (signal === 'SIGCONT') node.state = 'running';
    if (signal === 'SIGKILL') node.state = 'killed';
  }

  async waitExit(slot: number, timeoutMs = STOP_MS_MAX): Promise<boolean> {
    const child = this.node(slot).child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  async kill(slot: number): Promise<void> {
    this.signal(slot, 'SIGCONT');
    this.signal(slot, 'SIGKILL');
    await this.waitExit(slot);
  }

  /** SIGTERM (a leader hands over first); SIGKILL if it does not stop in time. */
  async stopGracefully(slot: number): Promise<void> {
    this.signal(slot, 'SIGTERM');
    if (!(await this.waitExit(slot))) {
      this.stuck(slot, 'SIGTERM');
      await this.kill(slot);
    }
    const node = this.node(slot);
    if (node.state !== 'removed') node.state = 'stopped';
  }

  private stuck(slot: number, after: string): void {
    const id = this.node(slot).id;
    this.stuckStops.push(id);
    this.options.onEvent?.(`${id} did not exit within ${STOP_MS_MAX / 1000} s of ${after}; SIGKILL`);
  }

  private adminAt(address: string): AdminClientType {
    let client = this.admin.get(address);
    if (client === undefined) {
      client = new AdminClient(address, this.clientCredentials, OBSERVER_CHANNEL_OPTIONS);
      this.admin.set(address, client);
    }
    return client;
  }

  /** The leader as the reachable members report it (most common answer), or null. */
  async leaderSlot(timeoutMs = 1000): Promise<number | null> {
    const answers = await Promise.all(
      this.members
        .filter((node) => node.state === 'running')
        .map((node) =>
          callUnary(this.adminAt(node.address), 'status', create(StatusRequestSchema, {}), { deadline: new Date(Date.now() + timeoutMs) }).then(
            (status) => (status.role === Role.LEADER ? status.id : status.leaderId),
            () => '',
          ),
        ),
    );
    const counts = new Map<string, number>();
    for (const id of answers) if (id !== '') counts.set(id, (counts.get(id) ?? 0) + 1);
    const best = [...counts.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
    const node = this.nodes.find((n) => n.id === best && n.state !== 'removed');
    return node?.slot ?? null;
  }

  /** One line per member: how it sees the cluster (role, leader, term, commit, applied, configuration), for diagnosis. */
  async describe(timeoutMs = 1000): Promise<string[]> {
    return Promise.all(
      this.members.map((node) =>
        callUnary(this.adminAt(node.address), 'status', create(StatusRequestSchema, {}), { deadline: new Date(Date.now() + timeoutMs) }).then(
          (s) =>
            `${node.id} (${node.state}): ${Role[s.role]?.toLowerCase() ?? '?'}, leader ${s.leaderId || '-'}, term ${s.term}, commit ${s.commitIndex}, applied ${s.appliedIndex}, members ${s.members.map((m) => `${m.id}${m.learner ? '(learner)' : ''}@${m.address}`).join(' ')}`,
          (error: Error) => `${node.id} (${node.state}): no answer (${error.message.split('\n')[0] ?? ''})`,
        ),
      ),
    );
  }

  /**
   * Remove the member in `slot` through another member (what `debughost leave`
   * does); the removed node stops by itself.
   */
  async removeMember(slot: number): Promise<void> {
    const node = this.node(slot);
    const until = Date.now() + REMOVE_MS_MAX;
    let last: unknown = null;
    // Refusals while leadership moves ("not committed an entry of its term yet") are retried, as an operator would.
    while (Date.now() < until) {
      for (const other of this.members.filter((n) => n.slot !== slot && n.state === 'running')) {
        try {
          node.expectingExit = true;
          await callUnary(this.adminAt(other.address), 'memberRemove', create(MemberRemoveRequestSchema, { id: node.id }), { deadline: new Date(Date.now() + 5_000) });
          node.state = 'removed';
          if (!(await this.waitExit(slot))) {
            this.stuck(slot, 'its removal');
            await this.kill(slot);
          }
          node.state = 'removed';
          return;
        } catch (error) {
          last = error;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    throw new NodeProcessError(`could not remove ${node.id} within ${REMOVE_MS_MAX / 1000} s: ${(last as Error | null)?.message ?? 'no running member to ask'}`);
  }

  /** A fresh member (new id, empty data dir) in a removed node's slot; it joins through the seeds. */
  async joinFresh(slot: number): Promise<void> {
    const node = this.node(slot);
    node.generation += 1;
    node.id = `n${slot + 1}g${node.generation}`;
    node.state = 'stopped';
    node.child = null;
    if (existsSync(join(this.options.dataRoot, node.id))) throw new NodeProcessError(`data dir for ${node.id} already exists`);
    await this.start(slot);
  }

  faketimeOffset(slot: number): number {
    return this.faketimeOffsetSeconds.get(slot) ?? 0;
  }

  /** Kill every process (continuing paused ones first) and close clients. */
  async stopAll(): Promise<void> {
    await Promise.all(this.nodes.map((node) => this.kill(node.slot)));
    for (const client of this.admin.values()) client.close();
    this.admin.clear();
    await Promise.all(this.logs.map((log) => new Promise<void>((resolve) => log.end(resolve))));
    this.logs.length = 0;
  }
}
