// Operations on a key-value register as a client saw them: what it asked, what
// came back, and when. The simulator and the chaos suite record these; the
// linearizability checker judges them.

export type OpKind = 'read' | 'write' | 'cas';

/**
 * How the call ended, as far as the client knows.
 * - `ok`: the call returned a definite answer.
 * - `fail`: the call definitely did not take effect (rejected before applying).
 * - `unknown`: it may or may not have taken effect, possibly even after the
 *   client gave up (timeout, lost connection).
 */
export type OpStatus = 'ok' | 'fail' | 'unknown';

/**
 * One call on one key. Field use by kind:
 * - `read`: `output` is the observed value (`null` = key absent); only
 *   meaningful with status `ok`.
 * - `write`: `value` is the new value (`null` deletes the key).
 * - `cas`: replaces `expected` (`null` = key absent) with `value`. With status
 *   `ok`, `casSucceeded` says whether the compare matched: `false` means the
 *   register held something other than `expected` and was left unchanged.
 *
 * Times are in any unit the recorder likes (ticks, ms) as long as one history
 * uses one clock. Intervals are closed: a call at the same instant as another
 * op's return counts as concurrent with it. `returnTime` is `null` when the
 * client never saw an answer; it is ignored for `unknown` ops, which may take
 * effect at any time after their call.
 */
export interface Operation {
  /** Unique within a history. */
  readonly id: number;
  readonly clientId: number;
  readonly key: string;
  readonly kind: OpKind;
  readonly value?: string | null;
  readonly expected?: string | null;
  readonly output?: string | null;
  readonly casSucceeded?: boolean;
  readonly callTime: number;
  readonly returnTime: number | null;
  readonly status: OpStatus;
}

/** A malformed operation is a bug in whoever recorded the history. */
export class MalformedOperationError extends Error {
  override readonly name = 'MalformedOperationError';
  constructor(
    message: string,
    readonly operation: Operation,
  ) {
    super(`${message}: ${describeOperation(operation)}`);
  }
}

/** Throws MalformedOperationError unless the fields fit the kind and status. */
export function validateOperation(op: Operation): void {
  const problem = operationProblem(op);
  if (problem !== null) throw new MalformedOperationError(problem, op);
}

function operationProblem(op: Operation): string | null {
  if (!Number.isFinite(op.callTime)) return 'call time must be finite';
  if (op.status === 'ok') {
    if (op.returnTime === null || !Number.isFinite(op.returnTime)) return 'an ok operation needs a finite return time';
    if (op.returnTime < op.callTime) return 'return time before call time';
  }
  switch (op.kind) {
    case 'read':
      return op.status === 'ok' && op.output === undefined ? 'an ok read needs an output (null = absent)' : null;
    case 'write':
      return op.value === undefined ? 'a write needs a value (null = delete)' : null;
    case 'cas':
      if (op.value === undefined || op.expected === undefined) return 'a cas needs expected and value';
      return op.status === 'ok' && op.casSucceeded === undefined ? 'an ok cas needs casSucceeded' : null;
    default: {
      const never: never = op.kind;
      return `unknown kind ${String(never)}`;
    }
  }
}

/** A register value for humans: strings quoted, null as "absent". */
export function describeValue(value: string | null | undefined): string {
  if (value === undefined) return '?';
  return value === null ? 'absent' : JSON.stringify(value);
}

/** One line per operation, e.g. `#7 c2 cas "k" "a"→"b" matched [3,9] ok`. */
export function describeOperation(op: Operation): string {
  const key = JSON.stringify(op.key);
  let what: string;
  switch (op.kind) {
    case 'read':
      what = op.status === 'ok' ? `read ${key} → ${describeValue(op.output)}` : `read ${key}`;
      break;
    case 'write':
      what = `write ${key} := ${describeValue(op.value)}`;
      break;
    case 'cas': {
      const outcome = op.status !== 'ok' ? '' : op.casSucceeded === true ? ' matched' : ' mismatched';
      what = `cas ${key} ${describeValue(op.expected)}→${describeValue(op.value)}${outcome}`;
      break;
    }
    default: {
      const never: never = op.kind;
      what = String(never);
    }
  }
  const end = op.status === 'unknown' || op.returnTime === null ? '∞)' : `${op.returnTime}]`;
  return `#${op.id} c${op.clientId} ${what} [${op.callTime},${end} ${op.status}`;
}
