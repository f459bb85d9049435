// The error for bad command-line input: its message is the one line the user sees.
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** `--help` or `-h` was given: the command's usage goes to stdout and the exit code is 0. */
export class HelpRequested extends Error {
  override readonly name = 'HelpRequested';
  constructor(readonly text: string) {
    super(text);
  }
}

/** Parse a whole number within [min, max], or throw a UsageError naming the flag. */
export function parseIntegerFlag(flag: string, text: string | undefined, min: number, max: number): number {
  if (text === undefined || !/^\d+$/.test(text)) {
    throw new UsageError(`--${flag} needs a whole number between ${min} and ${max}, got '${text ?? ''}'`);
  }
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UsageError(`--${flag} must be between ${min} and ${max}, got ${text}`);
  }
  return value;
}
