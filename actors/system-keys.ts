// The key prefixes the cluster itself owns. They change only through the
// paths that validate what they write (configuration changes, the actors,
// the token and audit services); the client KV API may read them but never
// write them, since a crafted `projects/…` record is a command a node runs.
import { compareKeys, prefixEnd, type KvCommand, type KvOp } from '../consensus/kv-state-machine.ts';
import { SYSTEM_PREFIXES } from './messages.ts';

export { SYSTEM_PREFIXES };

export const isSystemKey = (key: string): boolean => SYSTEM_PREFIXES.some((prefix) => key.startsWith(prefix));

/** Does [start, end) (end '' = to the last key) hold any key under a system prefix? */
export function rangeTouchesSystemKeys(start: string, end: string): string | null {
  for (const prefix of SYSTEM_PREFIXES) {
    const prefixLast = prefixEnd(prefix);
    if (compareKeys(start, prefixLast) < 0 && (end === '' || compareKeys(end, prefix) > 0)) return prefix;
  }
  return null;
}

/** The first system prefix a write op would change, or null. Reads never count. */
function opWritesSystemKey(op: KvOp): string | null {
  switch (op.type) {
    case 'put':
    case 'delete':
      return SYSTEM_PREFIXES.find((prefix) => op.key.startsWith(prefix)) ?? null;
    case 'deleteRange':
      return rangeTouchesSystemKeys(op.start, op.end);
    case 'get':
    case 'range':
      return null;
    default: {
      const never: never = op;
      return never;
    }
  }
}

/** The first system prefix `command` would write (in either branch of a txn), or null when it writes none. */
export function commandWritesSystemKey(command: KvCommand): string | null {
  switch (command.type) {
    case 'put':
    case 'delete':
      return opWritesSystemKey(command);
    case 'txn':
      for (const op of [...command.success, ...command.failure]) {
        const prefix = opWritesSystemKey(op);
        if (prefix !== null) return prefix;
      }
      return null;
    default: {
      const never: never = command;
      return never;
    }
  }
}
