// The per-node port registry: hands out ports from a configured range, each checked
// free by binding it (127.0.0.1 and 0.0.0.0) and never given to two projects at once.
// Durable ownership (`ports/<node>/<port>` in the replicated KV store) is the actor
// layer's job, through the injected PortLedger, so the registry is testable without Raft.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { PortsExhaustedError, type PortAllocator } from './components.ts';
import { RuntimeError } from './runtime.ts';

/** Durable record of who holds which port; the actor layer implements it on the KV store. */
export interface PortLedger {
  /** Records `owner` (a project key) as holding `port`; false if someone else already holds it. */
  claim(port: number, owner: string): Promise<boolean>;
  release(port: number, owner: string): Promise<void>;
}

export interface PortRegistryOptions {
  readonly node: string;
  /** Inclusive range, e.g. 20000-20999. */
  readonly rangeStart: number;
  readonly rangeEnd: number;
  readonly ledger?: PortLedger;
  /** Is the port free to bind? Default: bind 127.0.0.1 and 0.0.0.0 and close again. */
  readonly probe?: (port: number) => Promise<boolean>;
}

/** True if a TCP listener could bind `host:port` just now. */
export function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

export async function portIsFree(port: number): Promise<boolean> {
  return (await canBind(port, '127.0.0.1')) && (await canBind(port, '0.0.0.0'));
}

export class PortRegistry {
  /** port → owner; a port is here from the moment it is chosen, before it is probed, so it is never chosen twice. */
  private readonly owners = new Map<number, string>();
  /** owner → name → port */
  private readonly byOwner = new Map<string, Map<string, number>>();
  private cursor: number;
  private readonly probe: (port: number) => Promise<boolean>;

  constructor(private readonly options: PortRegistryOptions) {
    const { rangeStart, rangeEnd } = options;
    if (!Number.isInteger(rangeStart) || !Number.isInteger(rangeEnd) || rangeStart < 1024 || rangeEnd > 65535 || rangeStart > rangeEnd) {
      throw new RuntimeError('InvalidSpecError', `port range ${rangeStart}-${rangeEnd} is not valid; give whole numbers with 1024 ≤ start ≤ end ≤ 65535`);
    }
    this.cursor = rangeStart;
    this.probe = options.probe ?? portIsFree;
  }

  get size(): number {
    return this.options.rangeEnd - this.options.rangeStart + 1;
  }

  /**
   * Gives `owner` one port per name (keeping those it already holds). Tries each port of the
   * range at most once per call; a port that fails the bind probe or the ledger is skipped.
   */
  async allocate(owner: string, names: readonly string[]): Promise<Record<string, number>> {
    const held = this.byOwner.get(owner) ?? new Map<string, number>();
    this.byOwner.set(owner, held);
    const taken: number[] = [];
    try {
      for (const name of names) {
        if (held.has(name)) continue;
        const port = await this.takeOne(owner);
        held.set(name, port);
        taken.push(port);
      }
    } catch (error) {
      for (const port of taken) await this.releasePort(port, owner);
      for (const [name, port] of held) if (taken.includes(port)) held.delete(name);
      throw error;
    }
    return Object.fromEntries(names.map((name) => [name, held.get(name) as number]));
  }

  /** Frees every port of `owner` (project stopped or removed); returns them. */
  async release(owner: string): Promise<number[]> {
    const held = this.byOwner.get(owner);
    if (held === undefined) return [];
    this.byOwner.delete(owner);
    const ports = [...held.values()];
    for (const port of ports) await this.releasePort(port, owner);
    return ports;
  }

  /** After a node restart: takes back the allocations the ledger holds (no probe: the owner may be running). */
  restore(entries: Iterable<{ readonly port: number; readonly owner: string; readonly name: string }>): void {
    for (const { port, owner, name } of entries) {
      const current = this.owners.get(port);
      if (current !== undefined && current !== owner) throw new Error(`port registry invariant broken: port ${port} restored for ${owner} but held by ${current}`);
      this.owners.set(port, owner);
      const held = this.byOwner.get(owner) ?? new Map<string, number>();
      held.set(name, port);
      this.byOwner.set(owner, held);
    }
  }

  ownerOf(port: number): string | undefined {
    return this.owners.get(port);
  }

  portsOf(owner: string): Record<string, number> {
    return Object.fromEntries(this.byOwner.get(owner) ?? []);
  }

  private async takeOne(owner: string): Promise<number> {
    for (let tried = 0; tried < this.size; tried += 1) {
      const port = this.cursor;
      // Round robin: a just-released port is the last to come back (its old clients may still be in TIME_WAIT).
      this.cursor = port === this.options.rangeEnd ? this.options.rangeStart : port + 1;
      if (this.owners.has(port)) continue;
      this.owners.set(port, owner);
      if ((await this.probe(port)) && (await this.claim(port, owner))) return port;
      if (this.owners.get(port) === owner) this.owners.delete(port);
    }
    throw new RuntimeError(
      'PortsExhaustedError',
      `no free port left in ${this.options.rangeStart}-${this.options.rangeEnd} on node ${this.options.node} (${this.owners.size} held); stop or remove projects, or widen the node's port range`,
    );
  }

  private async claim(port: number, owner: string): Promise<boolean> {
    return this.options.ledger === undefined ? true : this.options.ledger.claim(port, owner);
  }

  private async releasePort(port: number, owner: string): Promise<void> {
    if (this.owners.get(port) !== owner) return;
    this.owners.delete(port);
    if (this.options.ledger !== undefined) await this.options.ledger.release(port, owner);
  }
}

/**
 * Local TCP ports that have a listening socket in this network namespace, read synchronously
 * from /proc/net/tcp and /proc/net/tcp6 (state 0A). The synchronous stand-in for a bind probe,
 * for callers that cannot wait (the actor layer's PortAllocator).
 */
export function listeningPortsSync(): Set<number> {
  const ports = new Set<number>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue; // No IPv6, or not Linux: the bind probe of the runtime still catches a clash.
    }
    for (const row of text.split('\n').slice(1)) {
      const fields = row.trim().split(/\s+/);
      const local = fields[1];
      if (fields[3] !== '0A' || local === undefined) continue;
      ports.add(Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16));
    }
  }
  return ports;
}

/**
 * The actor layer's PortAllocator over a range, skipping ports the store records as taken
 * (`inUse`) and ports something on this host listens on. Walks the range round-robin so a
 * just-freed port is the last to come back. The store remains the owner of record.
 */
export function hostCheckedAllocator(options: { readonly rangeStart: number; readonly rangeEnd: number; readonly listening?: () => ReadonlySet<number> }): PortAllocator {
  const { rangeStart, rangeEnd } = options;
  if (!Number.isInteger(rangeStart) || !Number.isInteger(rangeEnd) || rangeStart < 1024 || rangeEnd > 65535 || rangeStart > rangeEnd) {
    throw new RuntimeError('InvalidSpecError', `port range ${rangeStart}-${rangeEnd} is not valid; give whole numbers with 1024 ≤ start ≤ end ≤ 65535`);
  }
  const listening = options.listening ?? listeningPortsSync;
  let cursor = rangeStart;
  return {
    allocate(node, names, inUse) {
      const busy = listening();
      const chosen: Record<string, number> = {};
      const taken = new Set<number>();
      let tried = 0;
      for (const name of names) {
        for (;;) {
          if (tried > rangeEnd - rangeStart) {
            return new PortsExhaustedError(`no free port left in ${rangeStart}-${rangeEnd} on node ${node}; stop or remove projects, or widen the node's port range`);
          }
          const port = cursor;
          cursor = port === rangeEnd ? rangeStart : port + 1;
          tried += 1;
          if (inUse.has(port) || busy.has(port) || taken.has(port)) continue;
          chosen[name] = port;
          taken.add(port);
          break;
        }
      }
      return chosen;
    },
  };
}
