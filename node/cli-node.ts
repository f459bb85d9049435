// `debughost node` (one member), `debughost up` (a local cluster of N),
// and the small clients `kv`, `status` and `leave`.
import { mkdir } from 'node:fs/promises';
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
import { CGROUP_MODES, type CgroupMode } from '../actors/cgroups.ts';
import { prefixEnd } from '../consensus/kv-state-machine.ts';
import { StorageCorruptError, StorageFullError, StorageLockedError } from '../consensus/storage-errors.ts';
import { WAL_SEGMENT_BYTES_DEFAULT } from '../consensus/storage-wal.ts';
import { SEGMENT_BYTES_MIN } from '../consensus/wal.ts';
import { QUOTA_BYTES_DEFAULT } from './quota-alarm.ts';
import { createLogger } from './log.ts';
// The node itself (actors, runtimes, MCP, metrics: most of the bundle) is imported only by the commands that run one,
// node and up, so that a client command (kv, status, member, leave) loads about a third as much: see serverParts.
import type { DebughostNode } from './node.ts';
import { deadlineIn } from './peer-clients.ts';
import { refuseTestFaultFlags, TEST_FAULTS_ENV } from './test-faults.ts';
import { HelpRequested, UsageError, parseIntegerFlag } from './usage-error.ts';
import { parseToken } from '../actors/tokens.ts';
import { adminTokenPath, clusterSecretPath, ensureAdminToken, ensureClusterSecret, SecretFileError } from './cluster-files.ts';
import { clientCredentials, CLIENT_FLAGS, NO_TOKEN_HELP, quietIpServerNameWarning, readTls } from './cli-auth.ts';

export { quietIpServerNameWarning };

/** Usage of the client commands that parse() serves `--help` for (the others handle it themselves). */
const CLIENT_FLAGS_HELP = `  --endpoints HOST:PORT,...   nodes to ask (default 127.0.0.1:2701), tried in turn
  --token TOKEN               bearer token (default $DEBUGHOST_TOKEN, else the admin token under --data-dir)
  --data-dir DIR              where debughost up keeps the admin token (default ./data)
  --tls-cert F --tls-key F --tls-ca F   mutual TLS to the nodes`;

const COMMAND_HELP: Readonly<Record<string, string>> = {
  status: `usage: debughost status [--json] [client flags]

Shows the cluster as one node sees it: leader, term, commit, members.

${CLIENT_FLAGS_HELP}`,
  kv: `usage: debughost kv get KEY [--prefix]
       debughost kv put KEY VALUE [--if-version N]
       debughost kv del KEY [--prefix]
       debughost kv txn JSON
       debughost kv watch KEY [--prefix] [--rev N] [--prev-kv] [--count N]

The replicated KV store (linearizable reads and writes through any node). Keys
under the cluster's own prefixes (projects/, status/, tokens/, ...) can be
read but not written.

${CLIENT_FLAGS_HELP}`,
  leave: `usage: debughost leave [--id ID] [--force] [client flags]

Removes a member (by default the node answering) from its cluster; it stops by
itself. A removal after which fewer voters would be live than a quorum is
refused unless --force.

${CLIENT_FLAGS_HELP}`,
};

export function parse<T extends Record<string, { type: 'string' | 'boolean'; short?: string }>>(argv: string[], options: T, command: string, positionals = false) {
  const help = COMMAND_HELP[command];
  if (help !== undefined && argv.some((arg) => arg === '--help' || arg === '-h')) throw new HelpRequested(help);
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

/** A budget above this (1 PiB) is a typo, not a disk. */
const IMAGE_BUDGET_MB_MAX = 1024 ** 3;

const NODE_HELP = `usage: debughost node --id ID --grpc HOST:PORT --mcp HOST:PORT --seeds HOST:PORT,... --data-dir DIR
                      [--cluster-secret-file FILE] [--admin-token-file FILE] [--join-token TOKEN]
                      [--tls-cert FILE --tls-key FILE --tls-ca FILE] [--insecure] [--insecure-no-auth]
                      [--redis URL] [--no-fsync] [--tick-ms MS] [--snapshot-entries N] [--seed-wait-ms MS]
                      [--quota-bytes N] [--wal-segment-bytes N]
                      [--ports FROM-TO] [--docker auto|off] [--cgroups auto|v2|v1|off]
                      [--workload-users auto|tenant|node] [--force-new-cluster]
                      [--image-budget-mb N] [--prewarm IMAGE,...] [--prewarm-dir DIR] [--image-scope PATTERN]
                      [--unsafe-ack-before-commit]   (TEST-ONLY: loses acknowledged writes)

Starts one member. Nodes started with the same --seeds list, each listed in it,
form a new cluster; a node not in the list (or whose seeds already form a
cluster) joins as a learner and is promoted once it has caught up. Restarting
with the same --data-dir rejoins. Stop with Ctrl-C or SIGTERM: a leader hands
leadership over first and hands its projects to the other nodes.

--ports     the range projects' ports are allocated from on this node (default 20000-29999)
--quota-bytes        most bytes of replicated state (keys, values, 64 per key) before the NOSPACE
                     alarm refuses writes that put (default 512 MiB; the leader's value counts)
--wal-segment-bytes  size of each preallocated WAL segment file (default 16 MiB)
--docker    auto (default): run projects with an image in Docker when an engine answers; off: processes only
--cgroups   which cgroup hierarchies hold process workloads: auto (default: the best found), v2, v1, or
            off (process groups: a workload that calls setsid escapes stop, no limits)
--workload-users  auto (default): a root node runs each tenant's processes as a user of its own;
            tenant: insist on that; node: run them as the node's user (see docs/security.md)
--image-budget-mb  this node's Docker images must fit in N MiB: every 10 min (and by image_prune)
            images no desired-running project names are removed, oldest-used first
--prewarm   images made sure of before the node takes projects; a missing one is loaded from
            --prewarm-dir (docker save tarballs named like node_20.tar for node:20), never pulled
--image-scope  only images matching this reference pattern (team/*) are listed and pruned (a shared engine)
--force-new-cluster  disaster recovery: restart a surviving member's data dir as a new
            one-member cluster holding all of its state; the others rejoin it with empty
            data dirs. Restart without the flag afterwards (docs/operations.md).

Trust (docs/security.md): founders share one --cluster-secret-file (peers prove
membership with it) and at least one gives --admin-token-file (the first admin
token; made there if missing); \`debughost init DIR\` makes both. A new node joins
with --join-token (debughost token create --join) or the secret. With mutual TLS
each node certificate names its node (SAN URI:urn:debughost:node:ID) instead.
--insecure-no-auth   MCP and the client gRPC API without tokens (every client is
                     admin); refused unless both addresses are loopback
--redis URL          cluster-wide rate limits in Redis (redis://HOST:PORT); per node without it
--no-fsync and --unsafe-ack-before-commit are faults for tests: a node refuses them
unless ${TEST_FAULTS_ENV}=1 is set in its environment.`;

/** Longest a starting node waits for its bootstrap admin token to be applied before saying it is ready. */
const BOOTSTRAP_TOKEN_WAIT_MS = 15_000;

/** A quota below 1 MiB would leave no room for the cluster's own records. */
const QUOTA_BYTES_MIN = 1024 * 1024;
/** The whole state is in the heap and a snapshot is one allocation: 4 GiB is past what V8 can hold. */
const QUOTA_BYTES_MAX = 4 * 1024 * 1024 * 1024;
/** A segment is zero-filled whole and read whole at start: 1 GiB is plenty. */
const WAL_SEGMENT_BYTES_MAX = 1024 * 1024 * 1024;

/** A stopped node exits by itself after this long even if a library left a connection open. */
const STOPPED_EXIT_GRACE_MS = 1_000;

/** What only a running node needs, loaded when one starts. */
async function serverParts() {
  const [{ DebughostNode, NodeStartError, TICK_MS_DEFAULT, waitUntil }, { startGrpcServer }, { startHttpServer }] = await Promise.all([
    import('./node.ts'),
    import('./grpc-server.ts'),
    import('./http.ts'),
  ]);
  return { DebughostNode, NodeStartError, TICK_MS_DEFAULT, waitUntil, startGrpcServer, startHttpServer };
}

export async function nodeCommand(argv: string[]): Promise<number> {
  const { DebughostNode, NodeStartError, TICK_MS_DEFAULT, waitUntil, startGrpcServer, startHttpServer } = await serverParts();
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
      'quota-bytes': { type: 'string' },
      'wal-segment-bytes': { type: 'string' },
      'seed-wait-ms': { type: 'string' },
      'unsafe-ack-before-commit': { type: 'boolean' },
      ports: { type: 'string' },
      docker: { type: 'string' },
      'force-new-cluster': { type: 'boolean' },
      'cluster-secret-file': { type: 'string' },
      'admin-token-file': { type: 'string' },
      'join-token': { type: 'string' },
      'insecure-no-auth': { type: 'boolean' },
      redis: { type: 'string' },
      cgroups: { type: 'string' },
      'workload-users': { type: 'string' },
      'image-scope': { type: 'string' },
      'image-budget-mb': { type: 'string' },
      prewarm: { type: 'string' },
      'prewarm-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    'node',
  );
  if (values.help === true) {
    process.stdout.write(`${NODE_HELP}\n`);
    return 0;
  }
  refuseTestFaultFlags(values);
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
  if ((!isLoopback(grpcAddress.host) || !isLoopback(http.host)) && tls === null && values.insecure !== true) {
    throw new UsageError('bound to a non-loopback address without TLS: give --tls-cert, --tls-key and --tls-ca, or --insecure to send peer traffic (authenticated by the cluster secret) in plaintext');
  }
  const insecureNoAuth = values['insecure-no-auth'] === true;
  if (insecureNoAuth && (!isLoopback(grpcAddress.host) || !isLoopback(http.host))) {
    throw new UsageError(`--insecure-no-auth makes every client an admin, so it is refused on a non-loopback address (--mcp ${http.address}, --grpc ${grpcAddress.address}); use tokens, or bind both to 127.0.0.1`);
  }
  const redisUrl = values.redis ?? null;
  if (redisUrl !== null && !/^rediss?:\/\/[^\s]+$/.test(redisUrl)) throw new UsageError(`--redis needs a URL such as redis://127.0.0.1:6379, got '${redisUrl}'`);
  const joinToken = values['join-token'] ?? null;
  if (joinToken !== null && parseToken(joinToken)?.kind !== 'join') throw new UsageError('--join-token needs a join token (dhj.…); an admin makes one with debughost token create --join');
  const tickMs = parseIntegerFlag('tick-ms', values['tick-ms'] ?? String(TICK_MS_DEFAULT), 5, 1000);
  const snapshotEntries = parseIntegerFlag('snapshot-entries', values['snapshot-entries'] ?? '10000', 10, 10_000_000);
  const quotaBytes = parseIntegerFlag('quota-bytes', values['quota-bytes'] ?? String(QUOTA_BYTES_DEFAULT), QUOTA_BYTES_MIN, QUOTA_BYTES_MAX);
  const walSegmentBytes = parseIntegerFlag('wal-segment-bytes', values['wal-segment-bytes'] ?? String(WAL_SEGMENT_BYTES_DEFAULT), SEGMENT_BYTES_MIN, WAL_SEGMENT_BYTES_MAX);
  const seedWaitMs = parseIntegerFlag('seed-wait-ms', values['seed-wait-ms'] ?? '60000', 100, 3_600_000);
  const ports = parsePortRange(values.ports ?? '20000-29999');
  const docker = values.docker ?? 'auto';
  if (docker !== 'auto' && docker !== 'off') throw new UsageError(`--docker is auto or off, got '${docker}'`);
  const cgroups = values.cgroups ?? 'auto';
  if (!CGROUP_MODES.includes(cgroups as CgroupMode)) throw new UsageError(`--cgroups is one of ${CGROUP_MODES.join(', ')}, got '${cgroups}'`);
  const imageBudgetMb = values['image-budget-mb'] === undefined ? null : parseIntegerFlag('image-budget-mb', values['image-budget-mb'], 0, IMAGE_BUDGET_MB_MAX);
  const prewarm = values.prewarm === undefined ? [] : values.prewarm.split(',').map((image) => image.trim()).filter((image) => image !== '');
  if (values.prewarm !== undefined && prewarm.length === 0) throw new UsageError(`--prewarm needs IMAGE[,IMAGE…] (for example node:20,redis:7), got '${values.prewarm}'`);
  if (values['image-scope'] !== undefined && !/^[a-z0-9][a-z0-9._\-/:*]{0,254}$/.test(values['image-scope'])) throw new UsageError(`--image-scope needs a Docker reference pattern such as team/* , got '${values['image-scope']}'`);
  const workloadUsers = values['workload-users'] ?? 'auto';
  if (workloadUsers !== 'auto' && workloadUsers !== 'tenant' && workloadUsers !== 'node') throw new UsageError(`--workload-users is auto, tenant or node, got '${workloadUsers}'`);
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
      quotaBytes,
      walSegmentBytes,
      // The chaos suite's planted fault; see plantAckBeforeCommit in node.ts.
      unsafeAckBeforeCommit: values['unsafe-ack-before-commit'] === true,
      actors: {
        portRangeStart: ports.from,
        portRangeEnd: ports.to,
        docker,
        cgroups: cgroups as CgroupMode,
        workloadUsers,
        imageBudgetBytes: imageBudgetMb === null ? null : imageBudgetMb * 1024 * 1024,
        prewarm,
        ...(values['image-scope'] === undefined ? {} : { imageScope: values['image-scope'] }),
        ...(values['prewarm-dir'] === undefined ? {} : { prewarmDir: resolvePath(values['prewarm-dir']) }),
      },
      forceNewCluster: values['force-new-cluster'] === true,
      insecureNoAuth,
      clusterSecretFile: values['cluster-secret-file'] === undefined ? null : resolvePath(values['cluster-secret-file']),
      adminTokenFile: values['admin-token-file'] === undefined ? null : resolvePath(values['admin-token-file']),
      joinToken,
      redisUrl,
    });
  } catch (error) {
    if (error instanceof NodeStartError || error instanceof StorageCorruptError || error instanceof StorageLockedError || error instanceof StorageFullError) throw new UsageError(error.message);
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
  // Ready means the admin token this node was given works here, so that the line `up` prints works when pasted.
  if (!(await waitUntil(() => node.trust.bootstrapTokenApplied(), BOOTSTRAP_TOKEN_WAIT_MS))) {
    log.warn({ waitedMs: BOOTSTRAP_TOKEN_WAIT_MS }, 'the admin token has not reached this node\'s state yet (no leader?); it will once the cluster has one');
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

/** Addresses only this machine can reach. */
export const isLoopback = (host: string): boolean => host === '127.0.0.1' || host === 'localhost' || host === '[::1]' || host === '::1';

/** FROM-TO, both unprivileged ports. */
export function parsePortRange(text: string): { from: number; to: number } {
  const match = /^(\d{4,5})-(\d{4,5})$/.exec(text);
  const from = Number(match?.[1]);
  const to = Number(match?.[2]);
  if (match === null || from < 1024 || to > 65535 || from > to) throw new UsageError(`--ports needs FROM-TO with 1024 <= FROM <= TO <= 65535 (for example 20000-20999), got '${text}'`);
  return { from, to };
}

const UP_HELP = `usage: debughost up [--nodes N] [--data-dir DIR] [--base-port P]

Starts a local cluster of N nodes (default 3) on 127.0.0.1, data under DIR
(default ./data), node i serving MCP on port P+i and gRPC on P+100+i
(P default 2600). Node i allocates projects' ports from 20000+1000·i up to
999 more, so that nodes on one host never hand out the same port.

up supervises its nodes: one that dies is reported and started again with
back-off, keeping its data dir, while the others keep serving. Ctrl-C or
SIGTERM stops them all, and every project they run.`;

export async function upCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { nodes: { type: 'string' }, 'data-dir': { type: 'string' }, 'base-port': { type: 'string' }, 'no-fsync': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, 'up');
  if (values.help === true) {
    process.stdout.write(`${UP_HELP}\n`);
    return 0;
  }
  refuseTestFaultFlags(values);
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
  // Secure by default: the cluster secret every node shares and the first admin token, made once and kept in DIR.
  let adminToken: string;
  try {
    await mkdir(dataDir, { recursive: true });
    await ensureClusterSecret(clusterSecretPath(dataDir));
    adminToken = (await ensureAdminToken(adminTokenPath(dataDir), Date.now())).token;
  } catch (error) {
    throw new UsageError(error instanceof SecretFileError ? error.message : `cannot prepare ${dataDir}: ${(error as Error).message}`);
  }
  const { NodeSupervisor } = await import('./up-supervisor.ts');
  const supervisor = new NodeSupervisor({
    bin: new URL('../bin/debughost.js', import.meta.url).pathname,
    env: { ...process.env, DEBUGHOST_LOG_LEVEL: process.env.DEBUGHOST_LOG_LEVEL ?? 'warn' },
    nodes: nodes.map((n) => ({
      id: n.id,
      args: [
        'node', '--id', n.id, '--grpc', n.grpc, '--mcp', n.mcp, '--seeds', seeds, '--data-dir', `${dataDir}/${n.id}`,
        '--cluster-secret-file', clusterSecretPath(dataDir), '--admin-token-file', adminTokenPath(dataDir),
        '--ports', `${20_000 + 1000 * n.index}-${20_000 + 1000 * n.index + 999}`,
        ...(values['no-fsync'] === true ? ['--no-fsync'] : []),
      ],
    })),
    report: (line) => process.stderr.write(`debughost up: ${line}\n`),
    nodeStderr: (chunk) => process.stderr.write(chunk),
  });
  // Ctrl-C reaches the nodes too (one process group); SIGTERM to up alone is passed on. A second one kills at once.
  const stop = (): void => supervisor.stop();
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const started = await supervisor.started;
  if (started.ok) {
    process.stdout.write(`debughost: ${count}-node cluster up (data in ${dataDir})\n`);
    for (const n of nodes) process.stdout.write(`  ${n.id}  mcp http://${n.mcp}/mcp   grpc ${n.grpc}\n`);
    process.stdout.write(`connect Claude Code (admin token, kept in ${adminTokenPath(dataDir)}; debughost token create makes narrower ones):\n`);
    process.stdout.write(`  claude mcp add --transport http debughost http://${nodes[0]?.mcp}/mcp --header "Authorization: Bearer ${adminToken}"\n`);
    process.stdout.write(`try:  debughost status --endpoints ${nodes[0]?.grpc}   (Ctrl-C stops the cluster)\n`);
  }
  const code = await supervisor.finished;
  process.removeListener('SIGINT', stop);
  process.removeListener('SIGTERM', stop);
  return started.ok ? code : 1;
}

// ---- small clients ------------------------------------------------------------

const AdminClient = makeClientConstructor(Admin);
const KvClient = makeClientConstructor(KV);

export function endpointsOf(text: string | undefined): string[] {
  return (text ?? '127.0.0.1:2701').split(',').map((e) => parseAddress('endpoints', e.trim()).address);
}

/** Try each endpoint in turn; the first that answers wins. */
export async function withEndpoint<T>(endpoints: string[], call: (address: string) => Promise<T>): Promise<T> {
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
  // A failure the command already put in words (not a connection problem).
  if (last instanceof UsageError) return last;
  const error = last as grpc.ServiceError | null;
  const details = (error?.details ?? String(last)).split('\n')[0] ?? '';
  if (error?.code === grpc.status.UNAVAILABLE && /ECONNREFUSED/.test(details)) {
    return new UsageError(`no debughost node answers at ${endpoints.join(', ')}; start one (npm start) or pass --endpoints HOST:PORT`);
  }
  if (error?.code === grpc.status.UNAUTHENTICATED) return new UsageError(`${details}; ${NO_TOKEN_HELP}`);
  if (error?.code === grpc.status.UNAVAILABLE && /No connection established|Connection dropped|handshake|certificate|ssl|tls|alert/i.test(details)) {
    return new UsageError(
      `cannot establish a connection with ${endpoints.join(', ')} (${details.replace(/^No connection established\. /, '')}); if the cluster runs mutual TLS, pass --tls-cert and --tls-key signed by its CA and --tls-ca with that CA`,
    );
  }
  return new UsageError(details);
}

export async function statusCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { endpoints: { type: 'string' }, json: { type: 'boolean' }, ...CLIENT_FLAGS }, 'status');
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
      ...CLIENT_FLAGS,
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
  const { values } = parse(argv, { endpoints: { type: 'string' }, id: { type: 'string' }, force: { type: 'boolean' }, ...CLIENT_FLAGS }, 'leave');
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
  const { values, positionals } = parse(argv, { endpoints: { type: 'string' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, ...CLIENT_FLAGS }, 'member', true);
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
