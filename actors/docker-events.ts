// The Docker events stream of this node's containers (filtered by our node
// label), kept open: when it ends (the engine restarted, the connection
// dropped) it reconnects with back-off and tells the runtime, which then
// inspects every container again. Events are hints that say which container to
// look at; the inspected state is the truth, so a replayed, duplicated or
// missed event changes nothing.
import type Docker from 'dockerode';
import type { Clock, TimerHandle } from '../consensus/types.ts';
import { LineSplitter } from './logs.ts';

/** The container actions the runtime acts on. */
export type ContainerAction = 'start' | 'die' | 'oom';
const ACTIONS: ReadonlySet<string> = new Set<ContainerAction>(['start', 'die', 'oom']);

export interface ContainerEvent {
  readonly action: ContainerAction;
  readonly containerId: string;
  readonly attributes: Readonly<Record<string, string>>;
  readonly timeNano: number;
}

/** One line of the stream, or null if it is not a container event we act on. */
export function parseContainerEvent(line: string): ContainerEvent | null {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  const event = value as { Type?: unknown; Action?: unknown; Actor?: { ID?: unknown; Attributes?: unknown }; timeNano?: unknown } | null;
  if (event === null || typeof event !== 'object' || event.Type !== 'container') return null;
  if (typeof event.Action !== 'string' || !ACTIONS.has(event.Action)) return null;
  const id = event.Actor?.ID;
  if (typeof id !== 'string' || !/^[0-9a-f]{12,64}$/.test(id)) return null;
  const raw = event.Actor?.Attributes;
  const attributes: Record<string, string> = {};
  if (raw !== null && typeof raw === 'object') {
    for (const [name, text] of Object.entries(raw)) if (typeof text === 'string') attributes[name] = text;
  }
  return { action: event.Action as ContainerAction, containerId: id, attributes, timeNano: typeof event.timeNano === 'number' ? event.timeNano : 0 };
}

/** Delay before reconnect attempt `attempt` (0 = the first after a drop): doubling from min, capped at max. */
export function reconnectDelayMs(attempt: number, minMs: number, maxMs: number): number {
  return Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
}

export interface DockerEventsOptions {
  /** A client without a request timeout: the stream stays quiet for as long as nothing happens. */
  readonly docker: Docker;
  /** Docker `label` filters, e.g. `debughost.node=n1`. */
  readonly labels: readonly string[];
  readonly clock: Clock;
  readonly reconnectMsMin: number;
  readonly reconnectMsMax: number;
  readonly lineBytesMax: number;
  readonly onEvent: (event: ContainerEvent) => void;
  /** The stream is open (again); `reconnected` is false the first time. The runtime re-inspects its containers. */
  readonly onConnected: (reconnected: boolean) => void;
  /** The stream ended or could not open; `attempt` counts failures since the last success. */
  readonly onDisconnected?: (error: string, attempt: number) => void;
}

export class DockerEvents {
  readonly #options: DockerEventsOptions;
  #controller: AbortController | null = null;
  #timer: TimerHandle | null = null;
  #failures = 0;
  #connections = 0;
  #closed = false;

  constructor(options: DockerEventsOptions) {
    this.#options = options;
  }

  /** Opens the stream; resolves once it is open or the first attempt failed (then it keeps retrying). */
  start(): Promise<void> {
    return this.#connect();
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== null) this.#options.clock.clearTimer(this.#timer);
    this.#timer = null;
    this.#controller?.abort();
  }

  /** How many times the stream was opened (1 after start, +1 per reconnect). */
  get connections(): number {
    return this.#connections;
  }

  async #connect(): Promise<void> {
    if (this.#closed) return;
    const controller = new AbortController();
    this.#controller = controller;
    let stream: NodeJS.ReadableStream;
    try {
      stream = (await this.#options.docker.getEvents({
        filters: { type: ['container'], label: [...this.#options.labels], event: [...ACTIONS] },
        abortSignal: controller.signal,
      } as Docker.GetEventsOptions)) as NodeJS.ReadableStream;
    } catch (error) {
      this.#lost(controller, error);
      return;
    }
    if (this.#closed || controller.signal.aborted) return;
    this.#connections += 1;
    const reconnected = this.#connections > 1;
    this.#failures = 0;
    const splitter = new LineSplitter(this.#options.lineBytesMax, (line) => {
      const event = parseContainerEvent(line);
      if (event !== null) this.#options.onEvent(event);
    });
    let ended = false;
    const end = (error: unknown): void => {
      if (ended) return;
      ended = true;
      this.#lost(controller, error);
    };
    stream.on('data', (chunk: Buffer) => splitter.push(chunk));
    stream.on('end', () => end(new Error('the engine closed the events stream')));
    stream.on('close', () => end(new Error('the events stream closed')));
    stream.on('error', (error: unknown) => end(error));
    // After the listeners: the runtime's re-inspection must not miss an event that arrives meanwhile.
    this.#options.onConnected(reconnected);
  }

  #lost(controller: AbortController, error: unknown): void {
    if (this.#closed || this.#controller !== controller) return;
    controller.abort();
    const attempt = this.#failures;
    this.#failures += 1;
    this.#options.onDisconnected?.(error instanceof Error ? error.message : String(error), attempt);
    this.#timer = this.#options.clock.setTimer(reconnectDelayMs(attempt, this.#options.reconnectMsMin, this.#options.reconnectMsMax), () => {
      this.#timer = null;
      void this.#connect();
    });
  }
}
