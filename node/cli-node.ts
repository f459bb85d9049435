// `debughost node` (one member), `debughost up` (a local cluster of N),
// and the small clients `kv`, `status` and `leave`.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { parseArgs } from 'node:util';
import { create } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import { Admin, MemberListRequestSchema, MemberPromoteRequestSchema, MemberRemoveRequestSchema, Role, StatusRequestSchema } from '../proto/gen/admin_pb.ts';
import {
  DeleteRangeRequestSchema,
  EventType,
  KV,
  PutRequestSchema,
  RangeRequestSchema,
  TxnRequestSchema,
  WatchRequestSchema,
  type TxnRequest,
  type WatchRequest,
  type WatchResponse,
} from '../proto/gen/kv_pb.ts';
import { callUnary, makeClientConstructor } from '../proto/grpc.ts';
import { prefixEnd } from '../consensus/kv-state-machine.ts';
import { StorageCorruptError, StorageLockedError } from '../consensus/storage-leveldb.ts';
import { startGrpcServer } from './grpc-server.ts';
import { startHttpServer } from './http.ts';
import { createLogger } from './log.ts';
import { DebughostNode, NodeStartError, TICK_MS_DEFAULT, type TlsFiles } from './node.ts';
import { deadlineIn } from './peer-clients.ts';
import { UsageError, parseIntegerFlag } from './usage-error.ts';

function parse<T extends Record<string, { type: 'string' | 'boolean'; short?: string }>>(argv: string[], options: T, command: string, positionals = false) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals: positionals });
  } catch (error) {
    throw new UsageError(`${(error as Error).message.split('\n')[0] ?? ''}; run 'debughost ${command} --help' for the options`);
  }
}

/** host:port, with a numeric port. */
export function parseAddress(flag: string, text: string | undefined): { host: string; port: number; address: string } {
  const match = /^([A-Za-z0-9.\-_]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(text ?? '');
  const port = Number(match?.[2]);
  if (match === null || !(port > 0 && port < 65536)) throw new UsageError(`--${flag} needs HOST:PORT (for example 127.0.0.1:2701), got '${text ?? ''}'`);
  return { host: match[1] as string, port, address: `${match[1]}:${port}` };
}

const NODE_HELP = `usage: debughost node --id ID --grpc HOST:PORT --mcp HOST:PORT --seeds HOST:PORT,... --data-dir DIR
                      [--tls-cert FILE --tls-key FILE --tls-ca FILE] [--insecure] [--no-fsync]
                      [--tick-ms MS] [--snapshot-entries N] [--seed-wait-ms MS]
                      [--ports FROM-TO] [--docker auto|off]
                      [--unsafe-ack-before-commit]   (TEST-ONLY: loses acknowledged writes)

Starts one member. Nodes started with the same --seeds list, each listed in it,
form a new cluster; a node not in the list (or whose seeds already form a
cluster) joins as a learner and is promoted once it has caught up. Restarting
with the same --data-dir rejoins. Stop with Ctrl-C or SIGTERM: a leader hands
leadership over first and hands its projects to the other nodes.

--ports     the range projects' ports are allocated from on this node (default 20000-29999)
--docker    auto (default): run projects with an image in Docker when an engine answers; off: processes only`;

/** A stopped node exits by itself after this long even if a library left a connection open. */
const STOPPED_EXIT_GRACE_MS = 1_000;

export async function nodeCommand(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      id: { type: 'string' },
      grpc: { type: 'string' },
      mcp: { type: 'string' },
      seeds: { type: 'string' },
      'data-dir': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      'tls-ca': { type: 'string' },
      insecure: { type: 'boolean' },
      'no-fsync': { type: 'boolean' },
      'tick-ms': { type: 'string' },
      'snapshot-entries': { type: 'string' },
      'seed-wait-ms': { type: 'string' },
      'unsafe-ack-before-commit': { type: 'boolean' },
      ports: { type: 'string' },
      docker: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    'node',
  );
  if (values.help === true) {
    process.stdout.write(`${NODE_HELP}\n`);
    return 0;
  }
  const id = values.id ?? '';
  if (!/^[a-zA-Z0-9_-]{1,64}$/.test(id)) throw new UsageError(`--id needs 1-64 letters, digits, '-' or '_', got '${id}'`);
  const grpcAddress = parseAddress('grpc', values.grpc);
  const http = parseAddress('mcp', values.mcp);
  if (values.seeds === undefined || values.seeds.trim() === '') throw new UsageError('--seeds needs a comma-separated list of HOST:PORT gRPC addresses');
  const seeds = values.seeds.split(',').map((seed) => parseAddress('seeds', seed.trim()).address);
  const dataDir = values['data-dir'];
  if (dataDir === undefined || dataDir === '') throw new UsageError('--data-dir needs a directory for this node\'s data');
  const tls = readTls(values['tls-cert'], values['tls-key'], values['tls-ca']);
  if (tls !== null) quietIpServerNameWarning();
  const loopback = (host: string): boolean => host === '127.0.0.1' || host === 'localhost' || host === '[::1]';
  if ((!loopback(grpcAddress.host) || !loopback(http.host)) && tls === null && values.insecure !== true) {
    throw new UsageError('bound to a non-loopback address without TLS: give --tls-cert, --tls-key and --tls-ca, or --insecure to accept unauthenticated peers');
  }
  const tickMs = parseIntegerFlag('tick-ms', values['tick-ms'] ?? String(TICK_MS_DEFAULT), 5, 1000);
  const snapshotEntries = parseIntegerFlag('snapshot-entries', values['snapshot-entries'] ?? '10000', 10, 10_000_000);
  const seedWaitMs = parseIntegerFlag('seed-wait-ms', values['seed-wait-ms'] ?? '60000', 100, 3_600_000);
  const ports = parsePortRange(values.ports ?? '20000-29999');
  const docker = values.docker ?? 'auto';
  if (docker !== 'auto' && docker !== 'off') throw new UsageError(`--docker is auto or off, got '${docker}'`);
  const log = createLogger(id);
  let node: DebughostNode;
  try {
    node = await DebughostNode.open({
      id,
      grpcAddress: grpcAddress.address,
      httpAddress: http.address,
      seeds,
      dataDir: resolvePath(dataDir),
      tickMs,
      fsync: values['no-fsync'] !== true,
      tls,
      log,
      seedWaitMs,
      snapshotEntries,
      // The chaos suite's planted fault; see plantAckBeforeCommit in node.ts.
      unsafeAckBeforeCommit: values['unsafe-ack-before-commit'] === true,
      actors: { portRangeStart: ports.from, portRangeEnd: ports.to, docker },
    });
  } catch (error) {
    if (error instanceof NodeStartError || error instanceof StorageCorruptError || error instanceof StorageLockedError) throw new UsageError(error.message);
    throw error;
  }
  const abort = new AbortController();
  let grpcServer: grpc.Server | null = null;
  let httpServer: import('node:http').Server | null = null;
  let stopped: (() => void) | null = null;
  const done = new Promise<void>((resolve) => {
    stopped = resolve;
  });
  const shutdown = async (transfer: boolean): Promise<void> => {
    abort.abort();
    await node.stop({ transferLeadership: transfer });
    grpcServer?.forceShutdown();
    httpServer?.closeAllConnections();
    httpServer?.close();
    stopped?.();
  };
  process.once('SIGINT', () => void shutdown(true));
  process.once('SIGTERM', () => void shutdown(true));
  node.onRemoved = () => void shutdown(false);
  try {
    const credentials =
      tls === null ? grpc.ServerCredentials.createInsecure() : grpc.ServerCredentials.createSsl(tls.ca, [{ cert_chain: tls.cert, private_key: tls.key }], true);
    grpcServer = await startGrpcServer(node, credentials);
    httpServer = await startHttpServer(node, http.host, http.port);
    log.info({ grpc: grpcAddress.address, mcp: `http://${http.address}/mcp` }, 'listening');
    await node.start(abort.signal);
  } catch (error) {
    await shutdown(false);
    if (error instanceof NodeStartError || error instanceof UsageError) throw new UsageError(error.message);
    throw new UsageError((error as Error).message);
  }
  process.stdout.write(`debughost node ${id} ready: grpc ${grpcAddress.address}, mcp http://${http.address}/mcp, cluster ${node.clusterId}\n`);
  await done;
  const code = process.exitCode === 1 ? 1 : 0;
  // With channelz off, grpc-js 1.14's forceShutdown closes the listener but not
  // the connections already accepted (it only destroys channelz-tracked
  // sessions): they would keep a stopped node's process alive, still answering.
  setTimeout(() => process.exit(code), STOPPED_EXIT_GRACE_MS).unref();
  return code;
}

/** FROM-TO, both unprivileged ports. */
export function parsePortRange(text: string): { from: number; to: number } {
  const match = /^(\d{4,5})-(\d{4,5})$/.exec(text);
  const from = Number(match?.[1]);
  const to = Number(match?.[2]);
  if (match === null || from < 1024 || to > 65535 || from > to) throw new UsageError(`--ports needs FROM-TO with 1024 <= FROM <= TO <= 65535 (for example 20000-20999), got '${text}'`);
  return { from, to };
}

function readTls(cert: string | undefined, key: string | undefined, ca: string | undefined): TlsFiles | null {
  if (cert === undefined && key === undefined && ca === undefined) return null;
  if (cert === undefined || key === undefined || ca === undefined) throw new UsageError('TLS needs all three of --tls-cert, --tls-key and --tls-ca (mutual TLS between members)');
  const read = (flag: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new UsageError(`--${flag}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  return { cert: read('tls-cert', cert), key: read('tls-key', key), ca: read('tls-ca', ca) };
}

const UP_HELP = `usage: debughost up [--nodes N] [--data-dir DIR] [--base-port P]

Starts a local cluster of N nodes (default 3) on 127.0.0.1, data under DIR
(default ./data), node i serving MCP on port P+i and gRPC on P+100+i
(P default 2600). Node i allocates projects' ports from 20000+1000·i up to
999 more, so that nodes on one host never hand out the same port. Ctrl-C or
SIGTERM stops them all, and every project they run.`;

export async function upCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { nodes: { type: 'string' }, 'data-dir': { type: 'string' }, 'base-port': { type: 'string' }, 'no-fsync': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, 'up');
  if (values.help === true) {
    process.stdout.write(`${UP_HELP}\n`);
    return 0;
  }
  const count = parseIntegerFlag('nodes', values.nodes ?? '3', 1, 9);
  const basePort = parseIntegerFlag('base-port', values['base-port'] ?? '2600', 1024, 65_000);
  const dataDir = resolvePath(values['data-dir'] ?? 'data');
  const nodes = Array.from({ length: count }, (_, i) => ({
    index: i + 1,
    id: `n${i + 1}`,
    grpc: `127.0.0.1:${basePort + 100 + i + 1}`,
    mcp: `127.0.0.1:${basePort + i + 1}`,
  }));
  const seeds = nodes.map((n) => n.grpc).join(',');
  const bin = new URL('../bin/debughost.js', import.meta.url).pathname;
  const children: ChildProcess[] = [];
  let stopping = false;
  const stopAll = (): void => {
    if (stopping) return;
    stopping = true;
    for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  };
  process.once('SIGINT', stopAll);
  process.once('SIGTERM', stopAll);
  const exits: Promise<number>[] = [];
  const ready: Promise<void>[] = [];
  for (const n of nodes) {
    const args = [bin, 'node', '--id', n.id, '--grpc', n.grpc, '--mcp', n.mcp, '--seeds', seeds, '--data-dir', `${dataDir}/${n.id}`];
    if (values['no-fsync'] === true) args.push('--no-fsync');
    args.push('--ports', `${20_000 + 1000 * n.index}-${20_000 + 1000 * n.index + 999}`);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DEBUGHOST_LOG_LEVEL: process.env.DEBUGHOST_LOG_LEVEL ?? 'warn' } });
    children.push(child);
    child.stderr?.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    ready.push(
      new Promise((resolve) => {
        child.stdout?.on('data', (chunk: Buffer) => {
          if (chunk.toString().includes('ready:')) resolve();
        });
      }),
    );
    exits.push(new Promise((resolve) => child.once('exit', (code) => {
      if (!stopping && code === 0) {
        // A node that left the cluster (debughost leave) stops cleanly; the others go on.
        process.stderr.write(`debughost up: node ${n.id} stopped (it left the cluster)\n`);
      } else if (!stopping) {
        process.stderr.write(`debughost up: node ${n.id} exited with code ${code ?? 'signal'}; stopping the others\n`);
        stopAll();
      }
      resolve(code ?? 1);
    })));
  }
  await Promise.race([Promise.all(ready), Promise.all(exits)]);
  if (!stopping) {
    process.stdout.write(`debughost: ${count}-node cluster up (data in ${dataDir})\n`);
    for (const n of nodes) process.stdout.write(`  ${n.id}  mcp http://${n.mcp}/mcp   grpc ${n.grpc}\n`);
    process.stdout.write(`connect Claude Code:  claude mcp add --transport http debughost http://${nodes[0]?.mcp}/mcp\n`);
    process.stdout.write(`try:  debughost status --endpoints ${nodes[0]?.grpc}   (Ctrl-C stops the cluster)\n`);
  }
  const codes = await Promise.all(exits);
  return stopping && codes.every((code) => code === 0) ? 0 : 1;
}

// ---- small clients ------------------------------------------------------------

const AdminClient = makeClientConstructor(Admin);
const KvClient = makeClientConstructor(KV);

/** Flags every client command takes to reach a cluster that runs mutual TLS. */
const CLIENT_TLS_FLAGS = { 'tls-cert': { type: 'string' }, 'tls-key': { type: 'string' }, 'tls-ca': { type: 'string' } } as const;

/**
 * grpc-js passes the target host as the TLS server name, and Node warns
 * (DEP0123) when that is an IP address, as member addresses usually are. The
 * warning is about SNI only, certificate checks still use the IP SAN, so this
 * one warning is dropped instead of printed on every start and CLI call.
 */
export function quietIpServerNameWarning(): void {
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const code = typeof rest[0] === 'object' && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
    if (code === 'DEP0123') return;
    emit(warning, ...rest);
  }) as typeof process.emitWarning;
}

/** Insecure without flags; with them, TLS that checks the server against the CA and presents the client cert. */
function clientCredentials(values: { 'tls-cert'?: string | undefined; 'tls-key'?: string | undefined; 'tls-ca'?: string | undefined }): grpc.ChannelCredentials {
  const tls = readTls(values['tls-cert'], values['tls-key'], values['tls-ca']);
  if (tls === null) return grpc.credentials.createInsecure();
  quietIpServerNameWarning();
  return grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
}

function endpointsOf(text: string | undefined): string[] {
  return (text ?? '127.0.0.1:2701').split(',').map((e) => parseAddress('endpoints', e.trim()).address);
}

/** Try each endpoint in turn; the first that answers wins. */
async function withEndpoint<T>(endpoints: string[], call: (address: string) => Promise<T>): Promise<T> {
  let last: unknown = null;
  for (const address of endpoints) {
    try {
      return await call(address);
    } catch (error) {
      last = error;
      const code = (error as grpc.ServiceError).code;
      if (code !== grpc.status.UNAVAILABLE && code !== grpc.status.DEADLINE_EXCEEDED) break;
    }
  }
  throw endpointError(endpoints, last);
}

/** One line for a call that no endpoint answered: refused connection, TLS trouble, or the server's own message. */
function endpointError(endpoints: string[], last: unknown): UsageError {
  const error = last as grpc.ServiceError | null;
  const details = (error?.details ?? String(last)).split('\n')[0] ?? '';
  if (error?.code === grpc.status.UNAVAILABLE && /ECONNREFUSED/.test(details)) {
    return new UsageError(`no debughost node answers at ${endpoints.join(', ')}; start one (npm start) or pass --endpoints HOST:PORT`);
  }
  if (error?.code === grpc.status.UNAVAILABLE && /No connection established|Connection dropped|handshake|certificate|ssl|tls|alert/i.test(details)) {
    return new UsageError(
      `cannot establish a connection with ${endpoints.join(', ')} (${details.replace(/^No connection established\. /, '')}); if the cluster runs mutual TLS, pass --tls-cert and --tls-key signed by its CA and --tls-ca with that CA`,
    );
  }
  return new UsageError(details);
}

export async function statusCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { endpoints: { type: 'string' }, json: { type: 'boolean' }, ...CLIENT_TLS_FLAGS }, 'status');
  const endpoints = endpointsOf(values.endpoints);
  const credentials = clientCredentials(values);
  const status = await withEndpoint(endpoints, (address) => {
    const client = new AdminClient(address, credentials);
    return callUnary(client, 'status', create(StatusRequestSchema, {}), { deadline: deadlineIn(3000) }).finally(() => client.close());
  });
  const role = Role[status.role]?.toLowerCase() ?? 'unknown';
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({ id: status.id, role, term: Number(status.term), leader: status.leaderId, commit: Number(status.commitIndex), applied: Number(status.appliedIndex), clusterId: status.clusterId, members: status.members.map((m) => ({ id: m.id, address: m.address, learner: m.learner })) })}\n`);
    return 0;
  }
  process.stdout.write(`cluster ${status.clusterId}: leader ${status.leaderId || '(none)'}, term ${status.term}, commit ${status.commitIndex}\n`);
  process.stdout.write(`answered by ${status.id} (${role}), applied ${status.appliedIndex}, snapshot ${status.snapshotIndex}\n`);
  for (const m of status.members) process.stdout.write(`  ${m.id.padEnd(8)} ${m.address.padEnd(22)} ${m.learner ? 'learner' : 'voter'}${m.id === status.leaderId ? '  leader' : ''}\n`);
  return 0;
}

export async function kvCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      endpoints: { type: 'string' },
      'if-version': { type: 'string' },
      prefix: { type: 'boolean' },
      rev: { type: 'string' },
      'prev-kv': { type: 'boolean' },
      count: { type: 'string' },
      ...CLIENT_TLS_FLAGS,
    },
    'kv',
    true,
  );
  const [verb, key, value] = positionals;
  const endpoints = endpointsOf(values.endpoints);
  const credentials = clientCredentials(values);
  const kv = <T>(call: (client: InstanceType<typeof KvClient>) => Promise<T>): Promise<T> =>
    withEndpoint(endpoints, (address) => {
      const client = new KvClient(address, credentials);
      return call(client).finally(() => client.close());
    });
  const deadline = () => ({ deadline: deadlineIn(10_000) });
  switch (verb) {
    case 'get': {
      if (key === undefined) throw new UsageError('usage: debughost kv get KEY [--prefix]');
      const response = await kv((c) => callUnary(c, 'range', create(RangeRequestSchema, { key, rangeEnd: values.prefix === true ? prefixEndOf(key) : '' }), deadline()));
      if (response.kvs.length === 0 && values.prefix !== true) {
        process.stderr.write(`debughost kv: key '${key}' not found\n`);
        return 1;
      }
      for (const item of response.kvs) process.stdout.write(values.prefix === true ? `${item.key}\t${item.value}\n` : `${item.value}\n`);
      return 0;
    }
    case 'put': {
      if (key === undefined || value === undefined) throw new UsageError('usage: debughost kv put KEY VALUE [--if-version N]');
      const ifVersion = values['if-version'] === undefined ? undefined : BigInt(parseIntegerFlag('if-version', values['if-version'], 0, Number.MAX_SAFE_INTEGER));
      const response = await kv((c) => callUnary(c, 'put', create(PutRequestSchema, { key, value, ...(ifVersion === undefined ? {} : { ifVersion }) }), deadline()));
      if (!response.succeeded) {
        process.stderr.write(`debughost kv: '${key}' is at version ${response.version}, not ${values['if-version']}; nothing written\n`);
        return 1;
      }
      process.stdout.write(`OK version ${response.version} revision ${response.header?.revision ?? 0n}\n`);
      return 0;
    }
    case 'del': {
      if (key === undefined) throw new UsageError('usage: debughost kv del KEY [--prefix]');
      const response = await kv((c) => callUnary(c, 'deleteRange', create(DeleteRangeRequestSchema, { key, rangeEnd: values.prefix === true ? prefixEndOf(key) : '' }), deadline()));
      process.stdout.write(`deleted ${response.deleted}\n`);
      return 0;
    }
    case 'txn': {
      if (key === undefined) throw new UsageError(`usage: debughost kv txn JSON, e.g. '{"compare":[{"key":"a","target":"VALUE","op":"EQUAL","text":"1"}],"success":[{"put":{"key":"a","value":"2"}}]}'`);
      const request = parseTxn(key);
      const response = await kv((c) => callUnary(c, 'txn', request, deadline()));
      process.stdout.write(`${response.succeeded ? 'SUCCESS' : 'FAILURE'} revision ${response.header?.revision ?? 0n}\n`);
      return response.succeeded ? 0 : 1;
    }
    case 'watch': {
      if (key === undefined) throw new UsageError('usage: debughost kv watch KEY [--prefix] [--rev N] [--prev-kv] [--count N]');
      const startRevision = BigInt(parseIntegerFlag('rev', values.rev ?? '0', 0, Number.MAX_SAFE_INTEGER));
      const count = values.count === undefined ? null : parseIntegerFlag('count', values.count, 1, Number.MAX_SAFE_INTEGER);
      const request = create(WatchRequestSchema, { key, rangeEnd: values.prefix === true ? prefixEndOf(key) : '', startRevision, prevKv: values['prev-kv'] === true });
      return watchKeys(endpoints, credentials, request, count);
    }
    default:
      throw new UsageError(`unknown kv verb '${verb ?? ''}'; use get, put, del, txn or watch`);
  }
}

/**
 * Print each event as one line until Ctrl-C, the stream ends, or `count`
 * events: `PUT key value rev=N version=V` or `DELETE key rev=N` (with
 * `prev=VALUE` when asked). Watches through the first endpoint that answers.
 */
async function watchKeys(endpoints: string[], credentials: grpc.ChannelCredentials, request: WatchRequest, count: number | null): Promise<number> {
  let lastError: grpc.ServiceError | null = null;
  for (const address of endpoints) {
    const client = new KvClient(address, credentials);
    try {
      const outcome = await new Promise<{ ok: true } | { ok: false; error: grpc.ServiceError; opened: boolean }>((resolve) => {
        const stream = client.watch(request);
        let seen = 0;
        let opened = false;
        const stop = (): void => stream.cancel();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        const done = (result: { ok: true } | { ok: false; error: grpc.ServiceError; opened: boolean }): void => {
          process.removeListener('SIGINT', stop);
          process.removeListener('SIGTERM', stop);
          resolve(result);
        };
        stream.on('data', (response: WatchResponse) => {
          if (!opened) {
            opened = true;
            process.stderr.write(`watching from revision ${(response.header?.revision ?? 0n) + 1n} through ${response.header?.memberId ?? address}\n`);
          }
          for (const event of response.events) {
            const kv = event.kv;
            if (kv === undefined) continue;
            const prev = request.prevKv && event.prevKv !== undefined ? ` prev=${event.prevKv.value}` : '';
            const line = event.type === EventType.DELETE ? `DELETE ${kv.key} rev=${kv.modRevision}${prev}` : `PUT ${kv.key} ${kv.value} rev=${kv.modRevision} version=${kv.version}${prev}`;
            process.stdout.write(`${line}\n`);
            seen += 1;
            if (count !== null && seen >= count) stream.cancel();
          }
        });
        stream.on('error', (error: grpc.ServiceError) => done(error.code === grpc.status.CANCELLED ? { ok: true } : { ok: false, error, opened }));
        stream.on('end', () => done({ ok: true }));
      });
      if (outcome.ok) return 0;
      lastError = outcome.error;
      // Only an endpoint that never answered is worth trying the next one for.
      if (outcome.opened || (outcome.error.code !== grpc.status.UNAVAILABLE && outcome.error.code !== grpc.status.DEADLINE_EXCEEDED)) break;
    } finally {
      client.close();
    }
  }
  throw lastError === null ? new UsageError('the watch ended') : endpointError(endpoints, lastError);
}

/** The gRPC range end for a prefix; etcd's "\0" means to the last key. */
function prefixEndOf(prefix: string): string {
  const end = prefixEnd(prefix);
  return end === '' ? '\0' : end;
}

function parseTxn(text: string): TxnRequest {
  type Op = { put?: { key: string; value: string }; del?: { key: string }; get?: { key: string } };
  let parsed: { compare?: { key: string; target: string; op: string; text?: string; number?: number }[]; success?: Op[]; failure?: Op[] };
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    throw new UsageError('kv txn needs a JSON object: {"compare":[...],"success":[...],"failure":[...]}');
  }
  const op = (o: Op) => {
    if (o.put !== undefined) return { request: { case: 'requestPut' as const, value: create(PutRequestSchema, o.put) } };
    if (o.del !== undefined) return { request: { case: 'requestDeleteRange' as const, value: create(DeleteRangeRequestSchema, { key: o.del.key }) } };
    if (o.get !== undefined) return { request: { case: 'requestRange' as const, value: create(RangeRequestSchema, { key: o.get.key }) } };
    throw new UsageError('each txn op is {"put":{key,value}}, {"del":{key}} or {"get":{key}}');
  };
  const targets: Record<string, number> = { VERSION: 1, CREATE_REVISION: 2, MOD_REVISION: 3, VALUE: 4 };
  const ops: Record<string, number> = { EQUAL: 1, NOT_EQUAL: 2, LESS: 3, GREATER: 4 };
  return create(TxnRequestSchema, {
    compare: (parsed.compare ?? []).map((c) => {
      const target = targets[c.target];
      const operator = ops[c.op];
      if (target === undefined || operator === undefined) throw new UsageError(`compare target must be one of ${Object.keys(targets).join(', ')} and op one of ${Object.keys(ops).join(', ')}`);
      return { key: c.key, target, op: operator, operand: c.text !== undefined ? { case: 'text' as const, value: c.text } : { case: 'number' as const, value: BigInt(c.number ?? 0) } };
    }),
    success: (parsed.success ?? []).map(op),
    failure: (parsed.failure ?? []).map(op),
  });
}

export async function leaveCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { endpoints: { type: 'string' }, id: { type: 'string' }, force: { type: 'boolean' }, ...CLIENT_TLS_FLAGS }, 'leave');
  const endpoints = endpointsOf(values.endpoints);
  const credentials = clientCredentials(values);
  const status = await withEndpoint(endpoints, (address) => {
    const client = new AdminClient(address, credentials);
    return callUnary(client, 'status', create(StatusRequestSchema, {}), { deadline: deadlineIn(3000) }).finally(() => client.close());
  });
  const id = values.id ?? status.id;
  await removeMember(endpoints, credentials, id, values.force === true);
  process.stdout.write(`removed ${id} from cluster ${status.clusterId}; it stops by itself\n`);
  return 0;
}

function removeMember(endpoints: string[], credentials: grpc.ChannelCredentials, id: string, force: boolean): Promise<unknown> {
  return withEndpoint(endpoints, (address) => {
    const client = new AdminClient(address, credentials);
    return callUnary(client, 'memberRemove', create(MemberRemoveRequestSchema, { id, force }), { deadline: deadlineIn(15_000) }).finally(() => client.close());
  });
}

const MEMBER_HELP = `usage: debughost member list|promote ID|remove ID [--force] [--endpoints HOST:PORT,...] [--tls-cert F --tls-key F --tls-ca F]

  list         the members: id, address, voter or learner
  promote ID   make a learner a voter; refused until it has caught up with the leader
  remove ID    remove a member (a removed node stops by itself)
  --force      skip the strict reconfiguration check: by default a change after which
               fewer voters would be live than a quorum is refused (as etcd's
               --strict-reconfig-check); forcing it can leave the cluster without a quorum`;

/** \`debughost member\`: list members, promote a learner, remove a member. */
export async function memberCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { endpoints: { type: 'string' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...CLIENT_TLS_FLAGS }, 'member', true);
  if (values.help === true) {
    process.stdout.write(`${MEMBER_HELP}\n`);
    return 0;
  }
  const [action, id, ...extra] = positionals;
  const needsId = action === 'promote' || action === 'remove';
  if (action === undefined || !(['list', 'promote', 'remove'] as const).some((known) => known === action)) {
    throw new UsageError(`member needs list, promote ID or remove ID; run 'debughost member --help'`);
  }
  if ((needsId && id === undefined) || (!needsId && id !== undefined) || extra.length > 0) throw new UsageError(`usage: debughost member ${needsId ? `${action} ID` : 'list'}`);
  const endpoints = endpointsOf(values.endpoints);
  const credentials = clientCredentials(values);
  const force = values.force === true;
  const admin = <T>(use: (client: InstanceType<typeof AdminClient>) => Promise<T>): Promise<T> =>
    withEndpoint(endpoints, (address) => {
      const client = new AdminClient(address, credentials);
      return use(client).finally(() => client.close());
    });
  if (action === 'list') {
    const { members } = await admin((client) => callUnary(client, 'memberList', create(MemberListRequestSchema, {}), { deadline: deadlineIn(3000) }));
    for (const member of members) process.stdout.write(`${member.id}\t${member.address}\t${member.learner ? 'learner' : 'voter'}\n`);
    return 0;
  }
  if (action === 'promote') {
    await admin((client) => callUnary(client, 'memberPromote', create(MemberPromoteRequestSchema, { id, force }), { deadline: deadlineIn(15_000) }));
    process.stdout.write(`promoted ${String(id)} to voter\n`);
    return 0;
  }
  await removeMember(endpoints, credentials, id as string, force);
  process.stdout.write(`removed ${String(id)}; it stops by itself\n`);
  return 0;
}
