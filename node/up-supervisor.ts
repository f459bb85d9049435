// What `debughost up` does with its node processes: start them, and once the cluster has been up,
// start a node that dies again with back-off and its data dir kept, while the others go on serving
// (a supervisor, not a fuse). A node that exits 0 left the cluster (debughost leave) and stays
// stopped; one that keeps dying is given up on as a crash loop. stop() sends SIGTERM to every node
// (each stops its projects) and SIGKILL to one that has not exited within a grace period.
import { spawn, type ChildProcess } from 'node:child_process';
import { decideRestart, describeExit, type RestartLimits } from '../actors/restart-policy.ts';

export interface NodeSpec {
  readonly id: string;
  /** Arguments after `node bin/debughost.js`; the same on every restart, so the data dir is kept. */
  readonly args: readonly string[];
}

export const NODE_RESTART_LIMITS: RestartLimits = {
  // Short enough that a node killed by hand is back within seconds (a start takes a few seconds itself).
  backoffMsMin: 500,
  // A node failing again and again waits at most this long between tries.
  backoffMsMax: 10_000,
  // Five deaths within a minute is a node that cannot run (a bad data dir, a port taken): stop trying.
  crashLoopExitsMax: 5,
  crashLoopWindowMs: 60_000,
  // A node that served this long was healthy: its next death starts the back-off from the beginning.
  stableRunMs: 30_000,
};

/** A node still running this long after SIGTERM is killed: a graceful stop hands leadership and projects over, which takes seconds, not this. */
export const NODE_STOP_GRACE_MS = 20_000;

type NodeState = 'starting' | 'running' | 'waiting' | 'left' | 'crashLoop' | 'stopped';

interface Supervised {
  readonly spec: NodeSpec;
  state: NodeState;
  child: ChildProcess | null;
  /** The node printed `ready:` at least once: later deaths are restarted, not fatal. */
  everReady: boolean;
  startedAtMs: number;
  diedAtMs: number | null;
  restarts: number;
  recentExitsMs: number[];
  timer: NodeJS.Timeout | null;
}

export interface SupervisorOptions {
  readonly nodes: readonly NodeSpec[];
  /** The CLI entry the nodes run (bin/debughost.js). */
  readonly bin: string;
  readonly env: NodeJS.ProcessEnv;
  /** One line for the operator: deaths, restarts, give-ups. */
  readonly report: (line: string) => void;
  /** A node's own stderr (its warnings and errors). */
  readonly nodeStderr: (chunk: Buffer) => void;
  readonly limits?: RestartLimits;
  readonly stopGraceMs?: number;
}

export type StartOutcome = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export class NodeSupervisor {
  readonly #options: SupervisorOptions;
  readonly #nodes: Supervised[];
  readonly #limits: RestartLimits;
  #stopping = false;
  #resolveStarted: ((outcome: StartOutcome) => void) | null = null;
  #resolveFinished: ((code: number) => void) | null = null;
  /** Resolves once every node printed `ready:`, or with the reason when one died before it ever was. */
  readonly started: Promise<StartOutcome>;
  /** Resolves with up's exit code once no node runs and none will be started again. */
  readonly finished: Promise<number>;

  constructor(options: SupervisorOptions) {
    this.#options = options;
    this.#limits = options.limits ?? NODE_RESTART_LIMITS;
    this.#nodes = options.nodes.map((spec) => ({ spec, state: 'starting', child: null, everReady: false, startedAtMs: 0, diedAtMs: null, restarts: 0, recentExitsMs: [], timer: null }));
    this.started = new Promise((resolve) => (this.#resolveStarted = resolve));
    this.finished = new Promise((resolve) => (this.#resolveFinished = resolve));
    for (const node of this.#nodes) this.#spawn(node);
  }

  /** The pid of each node process now running. */
  pids(): Map<string, number> {
    const pids = new Map<string, number>();
    for (const node of this.#nodes) if (node.child?.pid !== undefined && node.state !== 'waiting') pids.set(node.spec.id, node.child.pid);
    return pids;
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  /** SIGTERM to every node, SIGKILL after the grace; no more restarts. A second call kills at once. */
  stop(): void {
    const again = this.#stopping;
    this.#stopping = true;
    this.#resolveStarted?.({ ok: false, reason: 'stopped' });
    for (const node of this.#nodes) {
      if (node.timer !== null) clearTimeout(node.timer);
      node.timer = null;
      if (node.state === 'waiting') node.state = 'stopped';
      const child = node.child;
      if (child === null || child.exitCode !== null || child.signalCode !== null) continue;
      if (again) {
        child.kill('SIGKILL');
        continue;
      }
      child.kill('SIGTERM');
      const grace = setTimeout(() => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        this.#options.report(`node ${node.spec.id} did not stop within ${(this.#options.stopGraceMs ?? NODE_STOP_GRACE_MS) / 1000} s of SIGTERM; killing it`);
        child.kill('SIGKILL');
      }, this.#options.stopGraceMs ?? NODE_STOP_GRACE_MS);
      grace.unref();
    }
    this.#maybeFinished();
  }

  #spawn(node: Supervised): void {
    node.timer = null;
    node.startedAtMs = performance.now();
    const child = spawn(process.execPath, [this.#options.bin, ...node.spec.args], { stdio: ['ignore', 'pipe', 'pipe'], env: this.#options.env });
    node.child = child;
    node.state = 'starting';
    child.stderr?.on('data', (chunk: Buffer) => this.#options.nodeStderr(chunk));
    let seen = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      if (node.state !== 'starting' || node.child !== child) return;
      seen = (seen + chunk.toString()).slice(-4096);
      if (seen.includes(`debughost node ${node.spec.id} ready:`)) this.#ready(node);
    });
    child.once('exit', (code, signal) => this.#exited(node, child, code, signal));
  }

  #ready(node: Supervised): void {
    node.state = 'running';
    if (node.everReady) {
      const downMs = performance.now() - (node.diedAtMs ?? node.startedAtMs);
      this.#options.report(`node ${node.spec.id} is back (pid ${node.child?.pid ?? '?'}, restart ${node.restarts}, ${(downMs / 1000).toFixed(1)} s after it died)`);
    }
    node.everReady = true;
    if (this.#nodes.every((n) => n.everReady)) this.#resolveStarted?.({ ok: true });
  }

  #exited(node: Supervised, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (node.child !== child) return;
    const how = describeExit(code, signal);
    if (this.#stopping) {
      node.state = 'stopped';
      this.#maybeFinished();
      return;
    }
    if (!node.everReady) {
      // A node that never came up is a configuration problem (a port taken, a foreign data dir): no use retrying.
      node.state = 'stopped';
      this.#options.report(`node ${node.spec.id} ${how} before it was ready; stopping the others`);
      this.#resolveStarted?.({ ok: false, reason: `node ${node.spec.id} ${how} before it was ready` });
      this.stop();
      return;
    }
    if (code === 0) {
      node.state = 'left';
      this.#options.report(`node ${node.spec.id} stopped (it left the cluster); the others go on`);
      this.#maybeFinished();
      return;
    }
    const nowMs = performance.now();
    node.diedAtMs = nowMs;
    const { decision, recentExitsMs } = decideRestart('on-failure', { exitCode: code, signal, requested: false, startedAtMs: node.startedAtMs, exitedAtMs: nowMs }, node.recentExitsMs, this.#limits);
    node.recentExitsMs = recentExitsMs;
    if (decision.kind === 'restart') {
      node.state = 'waiting';
      node.restarts += 1;
      this.#options.report(`node ${node.spec.id} ${how}; the others keep serving; restarting it in ${(decision.delayMs / 1000).toFixed(1)} s with its data dir (restart ${node.restarts})`);
      node.timer = setTimeout(() => this.#spawn(node), decision.delayMs);
      return;
    }
    node.state = 'crashLoop';
    const why = decision.kind === 'crashLoop' ? `died ${decision.exitsInWindow} times within ${this.#limits.crashLoopWindowMs / 1000} s` : how;
    this.#options.report(`node ${node.spec.id} ${why}; not restarting it (see its errors above); the others keep serving`);
    this.#maybeFinished();
  }

  /** Done when nothing runs and nothing will be started again. */
  #maybeFinished(): void {
    const active = this.#nodes.some((node) => node.state === 'starting' || node.state === 'running' || node.state === 'waiting' || (node.child !== null && node.child.exitCode === null && node.child.signalCode === null));
    if (active) return;
    // After a stop: clean when every node exited 0 (a stopped node, or one that left); otherwise only if all left.
    const clean = this.#stopping ? this.#nodes.every((node) => node.child === null || node.child.exitCode === 0) : this.#nodes.every((node) => node.state === 'left');
    this.#resolveFinished?.(clean ? 0 : 1);
  }
}
