// Storage errors: one class per condition, stable names, messages that say what to do.

const RECOVERY_ADVICE = 'restore the directory from a backup, or move it away and rejoin this node as a new member';

/** The data dir is not a LevelDB database, or its files or records do not check out. */
export class StorageCorruptError extends Error {
  override readonly name = 'StorageCorruptError';
  constructor(
    readonly dir: string,
    readonly detail: string,
    cause: unknown,
  ) {
    super(`data dir ${dir} is corrupt or is not a debughost data dir (${oneLine(detail)}); ${RECOVERY_ADVICE}`, { cause });
  }
}

/** Another process (or another LevelStorage in this one) holds the LevelDB LOCK. */
export class StorageLockedError extends Error {
  override readonly name = 'StorageLockedError';
  constructor(
    readonly dir: string,
    cause: unknown,
  ) {
    super(`data dir ${dir} is in use by another debughost process (LOCK held); stop that process or use another --data-dir`, { cause });
  }
}

/** Opening failed for an operating reason other than corruption or the lock (permissions, I/O). */
export class StorageOpenError extends Error {
  override readonly name = 'StorageOpenError';
  constructor(
    readonly dir: string,
    cause: unknown,
  ) {
    super(`could not open data dir ${dir} (${oneLine(describe(cause))}); check that it is readable and writable and that the disk is healthy`, { cause });
  }
}

/** A write or sync failed: what is durable is unknown, so every later persist fails too and the node must stop. */
export class StorageWriteError extends Error {
  override readonly name = 'StorageWriteError';
  constructor(
    readonly dir: string,
    cause: unknown,
  ) {
    super(`writing to data dir ${dir} failed (${oneLine(describe(cause))}); stop this node, check the disk, then restart it`, { cause });
  }
}

/** persist or writeMeta after close(). */
export class StorageClosedError extends Error {
  override readonly name = 'StorageClosedError';
  constructor(readonly dir: string) {
    super(`storage of data dir ${dir} is closed`);
  }
}

export const describe = (error: unknown): string => {
  if (!(error instanceof Error)) return String(error);
  const cause = (error as { cause?: unknown }).cause;
  return cause instanceof Error ? `${error.message}: ${cause.message}` : error.message;
};
export const oneLine = (text: string): string => text.replace(/\s+/g, ' ').trim();

/** The LevelDB error code under abstract-level's "Database failed to open" wrapper. */
export function levelCode(error: unknown): string | null {
  for (let current = error, depth = 0; current instanceof Error && depth < 4; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && code !== 'LEVEL_DATABASE_NOT_OPEN') return code;
    current = (current as { cause?: unknown }).cause;
  }
  return null;
}


/**
 * The data disk has no room for the next WAL segment or snapshot. Not fatal:
 * the write waits, is retried as space returns, and nothing durable is lost.
 */
export class StorageFullError extends Error {
  override readonly name = 'StorageFullError';
  constructor(
    readonly dir: string,
    cause: unknown,
  ) {
    super(`the disk holding ${dir} is full (${oneLine(describe(cause))}); writes are refused until space is freed on it, then resume by themselves`, { cause });
  }
}

/** ENOSPC or EDQUOT: the only write errors that are worth waiting out. */
export function isOutOfSpace(error: unknown): boolean {
  for (let current = error, depth = 0; current instanceof Error && depth < 4; depth++) {
    const code = (current as { code?: unknown }).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') return true;
    if (/No space left on device|Disk quota exceeded/i.test(current.message)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}
