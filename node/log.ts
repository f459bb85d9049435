// Structured logs (pino) to stderr, one JSON object a line; quiet by default in tests.
import { pino } from 'pino';

export type Logger = pino.Logger;

export function createLogger(nodeId: string, level: string = process.env.DEBUGHOST_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { node: nodeId } }, pino.destination(2));
}
