// One server-sent-events response (text/event-stream framing), read by the
// page with fetch because EventSource cannot send an Authorization header. A
// viewer that stops reading is cut off once its buffer passes a bound (the
// page reconnects and gets the whole state again); a comment line now and
// then keeps idle connections from being dropped by proxies.
import type { ServerResponse } from 'node:http';

export interface EventStreamLimits {
  /** Bytes queued for one viewer before it is cut off. */
  readonly bufferedBytesMax: number;
  /** An idle stream sends a comment this often, below the usual 60 s proxy idle timeouts. */
  readonly keepaliveMs: number;
}

export const eventStreamLimitsDefault: EventStreamLimits = Object.freeze({ bufferedBytesMax: 1024 * 1024, keepaliveMs: 15_000 });

export class EventStream {
  private closed = false;
  private readonly keepalive: NodeJS.Timeout;
  private readonly closeListeners: (() => void)[] = [];

  constructor(
    private readonly response: ServerResponse,
    private readonly limits: EventStreamLimits = eventStreamLimitsDefault,
  ) {
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      // Reverse proxies (nginx) would otherwise hold events back in a buffer.
      'x-accel-buffering': 'no',
    });
    response.flushHeaders();
    this.keepalive = setInterval(() => this.write(': keepalive\n\n'), limits.keepaliveMs);
    response.on('close', () => this.close());
    // The viewer may have gone while its token was checked: then 'close' has already fired.
    if (response.destroyed || response.socket === null || response.socket.destroyed) this.close();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Send one event; JSON never holds a raw newline, so one data line carries it. */
  send(event: string, data: unknown): void {
    this.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  onClose(listener: () => void): void {
    if (this.closed) listener();
    else this.closeListeners.push(listener);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepalive);
    this.response.end();
    for (const listener of this.closeListeners.splice(0)) listener();
  }

  private write(text: string): void {
    if (this.closed) return;
    this.response.write(text);
    if (this.response.writableLength > this.limits.bufferedBytesMax) this.close();
  }
}
