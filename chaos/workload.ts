// What every chaos workload offers the runner: concurrent clients through a
// public interface, a record of each call, and a verdict after recovery. Two
// implement it: KV registers and inserts (workload-kv.ts) and MCP projects
// started and stopped through any node, counted as real processes by the
// marker in their environment (workload-mcp.ts).

/** How a call ended as the client saw it: `unknown` = it may or may not have taken effect. */
export type Outcome = 'ok' | 'fail' | 'unknown';

/** One call, for the report's latency plot and the counts. Times in ms since the run started. */
export interface CallRecord {
  readonly workload: string;
  /** read, write, cas, insert; or a tool name. */
  readonly op: string;
  /** The node (by id) the call went to. */
  readonly node: string;
  readonly startMs: number;
  readonly endMs: number;
  readonly outcome: Outcome;
  /** The error, for fail and unknown. */
  readonly error?: string;
}

/** What a workload found once the cluster had recovered. */
export interface WorkloadVerdict {
  readonly workload: string;
  readonly ok: boolean;
  /** Acknowledged effects that are gone (writes missing; projects wanted running that run nowhere). */
  readonly lost: number;
  /** Effects applied more than once (a write applied twice; a project running on two nodes). */
  readonly duplicates: number;
  /** null when the workload has no linearizability check. */
  readonly linearizable: boolean | null;
  /** One line per finding, for the summary. */
  readonly findings: readonly string[];
}

/** Where a workload's clients can reach the nodes, as the runner sees them at each moment. */
export interface Targets {
  /** Members a client may call now (running, paused or killed: clients do not know). */
  members(): readonly { readonly id: string; readonly address: string }[];
  /** Members that should answer now: running. For the final checks. */
  running(): readonly { readonly id: string; readonly address: string }[];
}

export interface Workload {
  readonly name: string;
  /** Run the clients until `signal` aborts; resolves when every client has stopped. */
  run(signal: AbortSignal): Promise<void>;
  /** After recovery: final reads through every node, then the checks. */
  verdict(signal: AbortSignal): Promise<WorkloadVerdict>;
  readonly calls: readonly CallRecord[];
  /** Release connections. */
  close(): void;
}

/** Monotonic milliseconds since the run started: the one clock all records share. */
export type Now = () => number;
