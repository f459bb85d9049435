// Test fault plant: a TCP proxy in front of a node's MCP port. It passes every
// byte both ways until armed; once armed, it swallows what the node sends and,
// as soon as a JSON-RPC answer is among it (the node has its owner's answer, so
// the work is done), cuts both connections. The client sees a lost answer after
// the change was made: the case a retry with the same requestId must survive.
import { createServer, connect, type Server, type Socket } from 'node:net';

/** A JSON-RPC answer (a result or an error), as opposed to a notification. */
const ANSWER_PATTERN = /"(?:result|error)"\s*:/;
/** Bytes of swallowed output kept to look for an answer that spans chunks. */
const SWALLOWED_CHARS_KEPT = 64 * 1024;

export class AnswerDropper {
  /** Answers cut since the proxy started. */
  dropped = 0;
  private armed = false;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    /** host:port the client connects to instead of the node. */
    readonly address: string,
  ) {}

  /** A proxy on a free loopback port that forwards to `target` (host:port). */
  static async start(target: string): Promise<AnswerDropper> {
    const [host, port] = splitAddress(target);
    let dropper: AnswerDropper | null = null;
    const server = createServer((client) => dropper?.pipe(client, host, port));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const bound = server.address();
    if (bound === null || typeof bound === 'string') throw new Error('the answer dropper has no TCP address');
    dropper = new AnswerDropper(server, `127.0.0.1:${bound.port}`);
    return dropper;
  }

  /** From now on, answers from the node never reach the client. */
  arm(): void {
    this.armed = true;
  }

  disarm(): void {
    this.armed = false;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private pipe(client: Socket, host: string, port: number): void {
    const upstream = connect(port, host);
    this.sockets.add(client).add(upstream);
    let swallowed = '';
    const cut = (): void => {
      client.destroy();
      upstream.destroy();
    };
    // The node checks the Host header against its own address: name the node, not the proxy.
    const proxyHost = new RegExp(`\\r\\nhost: *${this.address.replace(/[.]/g, '\\.')}\\r\\n`, 'gi');
    client.on('data', (chunk: Buffer) => upstream.write(chunk.toString('latin1').replace(proxyHost, `\r\nHost: ${host}:${port}\r\n`), 'latin1'));
    upstream.on('data', (chunk: Buffer) => {
      if (!this.armed) {
        client.write(chunk);
        return;
      }
      swallowed = (swallowed + chunk.toString('latin1')).slice(-SWALLOWED_CHARS_KEPT);
      if (!ANSWER_PATTERN.test(swallowed)) return;
      this.dropped += 1;
      cut();
    });
    for (const socket of [client, upstream]) {
      socket.on('error', cut);
      socket.on('close', () => {
        this.sockets.delete(socket);
        cut();
      });
    }
  }
}

function splitAddress(address: string): [string, number] {
  const colon = address.lastIndexOf(':');
  const port = Number(address.slice(colon + 1));
  if (colon < 0 || !Number.isSafeInteger(port)) throw new Error(`'${address}' is not host:port`);
  return [address.slice(0, colon), port];
}
