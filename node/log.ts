// Structured logs (pino) to stderr, one JSON object a line; quiet by default in tests.
// No token or secret is ever written: every logged object passes through the
// same redaction as audit digests (keys naming secrets, env values, anything
// that looks like a token), and so does every message string.
import { pino, type DestinationStream } from 'pino';
import { redactSecrets, redactText } from '../actors/redact.ts';

export type Logger = pino.Logger;

export function createLogger(nodeId: string, level: string = process.env.DEBUGHOST_LOG_LEVEL ?? 'info', destination: DestinationStream = pino.destination(2)): Logger {
  return pino(
    {
      level,
      base: { node: nodeId },
      formatters: {
        log: (object) => redactSecrets(object) as Record<string, unknown>,
      },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((arg) => (typeof arg === 'string' ? redactText(arg) : arg)) as Parameters<typeof method>);
        },
      },
    },
    destination,
  );
}
