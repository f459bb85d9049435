// Pure checks over what the chaos clients recorded: how a failed call is
// classified, whether acknowledged inserts survived (lost) or were applied
// twice (duplicates), linearizability of the register history (the
// simulator's checker), and recovery time from the fault windows.
import * as grpc from '@grpc/grpc-js';
import { checkLinearizability, type CheckResult } from '../simulator/linearizability.ts';
import type { Operation } from '../simulator/history.ts';
import type { Outcome } from './workload.ts';

/**
 * Answers the node gives only when nothing was proposed or the proposal was
 * refused before the log took it (see writeResult and leaderAddress in
 * node/grpc-server.ts): the write definitely did not happen.
 */
const DEFINITE_REFUSALS = [/^no leader is known yet/, /^the write was not applied/, /is still starting; retry/, /^the address of leader .* is not known yet/];
/** grpc-js's words when the call never left this process: no connection to send it on. */
const NEVER_SENT = [/No connection established/, /ECONNREFUSED/];

/** A write or cas that ended in an error: `fail` only when it surely did not take effect. */
export function classifyWriteError(code: number, details: string): Outcome {
  if (code === grpc.status.INVALID_ARGUMENT || code === grpc.status.FAILED_PRECONDITION) return 'fail';
  if (code === grpc.status.UNAVAILABLE && (DEFINITE_REFUSALS.some((re) => re.test(details)) || NEVER_SENT.some((re) => re.test(details)))) return 'fail';
  return 'unknown';
}

/** One insert of a unique element under its own key. */
export interface InsertAttempt {
  readonly element: string;
  readonly outcome: Outcome;
}

/** The set as one node returned it: element → the key's version (modifications since creation). */
export type SetRead = ReadonlyMap<string, number>;

export interface SetVerdict {
  /** Acknowledged inserts missing from some node's final read. */
  readonly lost: string[];
  /** Elements whose key was modified more than once: each was written once, so it was applied twice. */
  readonly duplicates: string[];
  /** Elements present that no client ever tried to insert. */
  readonly phantoms: string[];
  /** Nodes whose final read differs from the first node's. */
  readonly divergent: string[];
}

/** Compare every node's final read of the set with what the clients were told. */
export function checkSet(attempts: readonly InsertAttempt[], reads: ReadonlyMap<string, SetRead>): SetVerdict {
  const tried = new Set(attempts.map((attempt) => attempt.element));
  const lost = new Set<string>();
  const duplicates = new Set<string>();
  const phantoms = new Set<string>();
  for (const read of reads.values()) {
    for (const attempt of attempts) if (attempt.outcome === 'ok' && !read.has(attempt.element)) lost.add(attempt.element);
    for (const [element, version] of read) {
      if (!tried.has(element)) phantoms.add(element);
      if (version > 1) duplicates.add(element);
    }
  }
  const divergent: string[] = [];
  const [first, ...rest] = [...reads.entries()];
  if (first !== undefined) {
    const reference = [...first[1].keys()].sort().join('\n');
    for (const [node, read] of rest) if ([...read.keys()].sort().join('\n') !== reference) divergent.push(node);
  }
  return { lost: [...lost].sort(), duplicates: [...duplicates].sort(), phantoms: [...phantoms].sort(), divergent };
}

/** Large enough for a few thousand ops per key with many timeouts; a hard history answers `unknown`, never hangs. */
export const CHAOS_STEPS_MAX_PER_KEY = 5_000_000;

/** The simulator's checker on the register history (final reads included, so a lost register write shows as a violation). */
export function checkRegisters(history: readonly Operation[]): CheckResult & { keysChecked: number; steps: number } {
  return checkLinearizability(history, { stepsMaxPerKey: CHAOS_STEPS_MAX_PER_KEY });
}

/** A fault window as it actually happened (ms since the run started). */
export interface WindowTimes {
  readonly startMs: number;
  readonly endMs: number;
}

/** A successful write through one node, in time (ms since start). */
export interface WriteSuccess {
  readonly node: string;
  readonly endMs: number;
}

/**
 * Per window: from its end until a write succeeded through every node in
 * `nodes` (null: some node never took a write before the next window or the
 * end). Only writes that started after the window closed count.
 */
export function recoveryPerWindow(
  windows: readonly WindowTimes[],
  writes: readonly (WriteSuccess & { startMs: number })[],
  nodes: readonly string[],
): (number | null)[] {
  return windows.map((window, index) => {
    const horizon = windows[index + 1]?.startMs ?? Infinity;
    let latest = window.endMs;
    for (const node of nodes) {
      const first = writes.filter((w) => w.node === node && w.startMs >= window.endMs && w.endMs <= horizon).sort((a, b) => a.endMs - b.endMs)[0];
      if (first === undefined) return null;
      latest = Math.max(latest, first.endMs);
    }
    return latest - window.endMs;
  });
}

// ---- MCP projects: exactly once ------------------------------------------------------------

/** What a project call asks for: its desired run state afterwards, or nothing (status). */
export type ProjectIntent = 'running' | 'stopped' | null;

/** One project call as the client saw it (ms since the run started). */
export interface ProjectCall {
  readonly project: string;
  readonly intent: ProjectIntent;
  readonly outcome: Outcome;
  readonly startMs: number;
  readonly endMs: number;
}

/** The final desired state as the store says it: `absent` = the project was never created. */
export type FinalDesired = 'running' | 'stopped' | 'absent';

/**
 * The final desired states the history allows for one project: an
 * acknowledged change that no other acknowledged change followed in real time
 * (concurrent ones may be ordered either way), or any unknown change (it may
 * take effect at any time). `absent` only when no change was acknowledged.
 */
export function allowedFinal(calls: readonly ProjectCall[]): Set<FinalDesired> {
  const changes = calls.filter((call) => call.intent !== null);
  const acked = changes.filter((call) => call.outcome === 'ok');
  const allowed = new Set<FinalDesired>();
  if (acked.length === 0) allowed.add('absent');
  const lastInvokeMs = Math.max(-Infinity, ...acked.map((call) => call.startMs));
  for (const call of acked) if (call.endMs >= lastInvokeMs) allowed.add(call.intent as FinalDesired);
  for (const call of changes) if (call.outcome === 'unknown') allowed.add(call.intent as FinalDesired);
  return allowed;
}

export interface ExactlyOnceVerdict {
  /** Desired running, more than one copy running. */
  readonly duplicates: string[];
  /** Desired running, no copy running. */
  readonly missing: string[];
  /** Desired stopped (or never created), running somewhere. */
  readonly orphans: string[];
}

/** Compare what should run (the store's desired state) with what runs on the host (copies per project). */
export function checkExactlyOnce(desired: ReadonlyMap<string, FinalDesired>, copies: ReadonlyMap<string, number>): ExactlyOnceVerdict {
  const duplicates: string[] = [];
  const missing: string[] = [];
  const orphans: string[] = [];
  for (const project of new Set([...desired.keys(), ...copies.keys()])) {
    const count = copies.get(project) ?? 0;
    const state = desired.get(project) ?? 'absent';
    switch (state) {
      case 'running':
        if (count > 1) duplicates.push(project);
        if (count === 0) missing.push(project);
        break;
      case 'stopped':
      case 'absent':
        if (count > 0) orphans.push(project);
        break;
      default: {
        const never: never = state;
        throw new Error(`unexpected desired state ${String(never)}`);
      }
    }
  }
  return { duplicates: duplicates.sort(), missing: missing.sort(), orphans: orphans.sort() };
}

// ---- MCP projects: exactly once at every sample during the run ---------------------------

/** A project seen running more than once at one /proc sample during the run (ms since start). */
export interface CopiesViolation {
  readonly project: string;
  readonly atMs: number;
  readonly copies: number;
}

/**
 * Watches /proc samples taken during the run: no project may run twice at any moment (a node
 * paused or cut off must have fenced its copy before another owner starts one). Keeps the first
 * violation per project and the most copies seen, so memory stays bounded by the project count.
 */
export class CopiesDuringRun {
  readonly #first = new Map<string, CopiesViolation>();
  samples = 0;
  maxCopies = 0;

  observe(atMs: number, copies: ReadonlyMap<string, number>): void {
    this.samples += 1;
    for (const [project, count] of copies) {
      this.maxCopies = Math.max(this.maxCopies, count);
      if (count > 1 && !this.#first.has(project)) this.#first.set(project, { project, atMs, copies: count });
    }
  }

  /** First violation per project, earliest first. */
  get violations(): CopiesViolation[] {
    return [...this.#first.values()].sort((a, b) => a.atMs - b.atMs);
  }
}

/** What one poison window sent and what the cluster took of it (chaos/nemesis-poison.ts). */
export interface PoisonTaken {
  /** Malformed Propose commands the leader answered as applied. */
  readonly applied: number;
  /** Client puts under system keys or past the size limit that were accepted. */
  readonly clientAccepted: number;
}

/** The poison windows in which the cluster applied or accepted anything it sent: each is a failure. */
export function poisonLeaks<T extends PoisonTaken>(windows: readonly { readonly poison?: T }[]): T[] {
  return windows.flatMap((window) => (window.poison !== undefined && window.poison.applied + window.poison.clientAccepted > 0 ? [window.poison] : []));
}
