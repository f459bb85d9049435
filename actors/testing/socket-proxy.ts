// A unix-socket proxy in front of the Docker engine, for tests that need the
// engine to go away and come back (a dropped connection, an engine restart)
// without touching the engine that other test runs share.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { rmSync } from 'node:fs';

export class SocketProxy {
  readonly #sockets = new Set<Socket>();
  readonly #pairs = new Set<{ client: Socket; upstream: Socket }>();
  #server: Server | null = null;
  #stalled = false;

  constructor(
    /** Where the proxy listens; give it to the runtime as its socketPath. */
    readonly path: string,
    private readonly target: string,
  ) {}

  /** Accepts connections again, each piped to the target. */
  async open(): Promise<void> {
    rmSync(this.path, { force: true });
    const server = createServer((client) => {
      this.#sockets.add(client);
      // A stalled engine: the connection is accepted and never answered.
      if (this.#stalled) return;
      const upstream = createConnection(this.target);
      this.#sockets.add(client);
      this.#sockets.add(upstream);
      const pair = { client, upstream };
      this.#pairs.add(pair);
      const drop = (): void => {
        client.destroy();
        upstream.destroy();
        this.#sockets.delete(client);
        this.#sockets.delete(upstream);
        this.#pairs.delete(pair);
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(this.path, () => resolve()));
    this.#server = server;
  }

  /** From now on nothing is answered (an engine too busy to respond): new connections are accepted and held, open ones stop forwarding. */
  stall(): void {
    this.#stalled = true;
    for (const { client, upstream } of this.#pairs) {
      client.unpipe(upstream);
      upstream.unpipe(client);
    }
  }

  /** The engine "goes away": every open connection is cut and new ones are refused until open() again. */
  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    this.#stalled = false;
    this.#pairs.clear();
    for (const socket of this.#sockets) socket.destroy();
    this.#sockets.clear();
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }
}
