// `debughost snapshot save | restore | status`: backups and disaster recovery,
// as etcdctl snapshot save and etcdutl snapshot restore / status.
import { existsSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { Admin } from '../proto/gen/admin_pb.ts';
import { makeClientConstructor } from '../proto/grpc.ts';
import { clientCredentials, CLIENT_FLAGS } from './cli-auth.ts';
import { endpointsOf, parse, parseAddress, withEndpoint } from './cli-node.ts';
import { decodeSnapshotFile, SnapshotFileCorruptError } from './snapshot-file.ts';
import type { RestoredMember } from './snapshot-rebuild.ts';
import { DataDirNotEmptyError, readSnapshotFile, restoreSnapshot, SnapshotReadError } from './snapshot-restore.ts';
import { saveSnapshot, SnapshotTargetExistsError, SnapshotTruncatedError } from './snapshot-save.ts';
import { UsageError } from './usage-error.ts';

const HELP = `usage: debughost snapshot save FILE [--endpoints HOST:PORT,...] [--token TOKEN] [--tls-cert F --tls-key F --tls-ca F]
       debughost snapshot restore FILE --data-dir DIR --id ID [--initial-cluster ID=HOST:PORT,...] [--grpc HOST:PORT]
       debughost snapshot status FILE [--json]

save     a consistent backup of the whole replicated state, taken at an index a
         quorum confirmed, streamed from any member; checked and synced before
         it appears under FILE (never overwrites). The token (or DEBUGHOST_TOKEN)
         goes as 'authorization: Bearer' to clusters that require one.
restore  build DIR, which must be absent or empty, as member ID of a NEW cluster
         whose members are --initial-cluster (default: ID alone at --grpc).
         Restore every listed member from the same file with the same list,
         then start them with debughost node; other nodes join with empty dirs.
status   check FILE and print what it holds.`;

/** Longest a save may stream: generous, a multi-GiB state over a slow link. */
const SAVE_DEADLINE_MS = 10 * 60_000;

const AdminClient = makeClientConstructor(Admin);

export async function snapshotCommand(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  switch (verb) {
    case 'save':
      return save(rest);
    case 'restore':
      return restore(rest);
    case 'status':
      return status(rest);
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(`${HELP}\n`);
      return 0;
    default:
      throw new UsageError(`unknown snapshot verb '${verb ?? ''}'; use save, restore or status (debughost snapshot --help)`);
  }
}

/** Failures the user can act on become their one line. */
function oneLine(error: unknown): never {
  if (
    error instanceof SnapshotFileCorruptError ||
    error instanceof SnapshotReadError ||
    error instanceof DataDirNotEmptyError ||
    error instanceof SnapshotTargetExistsError ||
    error instanceof SnapshotTruncatedError
  ) {
    throw new UsageError(error.message);
  }
  throw error;
}

function fileArgument(positionals: string[], verb: string): string {
  const [file, extra] = positionals;
  if (file === undefined || file === '' || extra !== undefined) throw new UsageError(`snapshot ${verb} needs exactly one FILE; see debughost snapshot --help`);
  return resolvePath(file);
}

async function save(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { endpoints: { type: 'string' }, ...CLIENT_FLAGS }, 'snapshot', true);
  const file = fileArgument(positionals, 'save');
  if (existsSync(file)) throw new UsageError(new SnapshotTargetExistsError(file).message);
  const endpoints = endpointsOf(values.endpoints);
  // The bearer token (--token, DEBUGHOST_TOKEN or the data dir's admin token) rides in the channel credentials.
  const credentials = clientCredentials(values);
  const metadata = new grpc.Metadata();
  const started = performance.now();
  const saved = await withEndpoint(endpoints, async (address) => {
    const client = new AdminClient(address, credentials);
    try {
      return await saveSnapshot(client, file, { metadata, deadline: Date.now() + SAVE_DEADLINE_MS }).catch(oneLine);
    } finally {
      client.close();
    }
  });
  const { header } = saved;
  process.stdout.write(
    `saved ${file}: cluster ${header.clusterId}, index ${header.appliedIndex}, revision ${header.revision}, ${header.keys} keys, ${saved.bytes} bytes, sha256 ${saved.digest.slice(0, 16)}…, from ${header.takenBy} in ${Math.round(performance.now() - started)} ms\n`,
  );
  return 0;
}

const ID_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;

/** ID=HOST:PORT,... as etcd's --initial-cluster (gRPC addresses). */
export function parseInitialCluster(text: string): RestoredMember[] {
  const members = text.split(',').map((part) => {
    const [id, address, extra] = part.trim().split('=');
    if (id === undefined || !ID_PATTERN.test(id) || address === undefined || extra !== undefined) {
      throw new UsageError(`--initial-cluster needs ID=HOST:PORT,... (for example n1=127.0.0.1:2701,n2=127.0.0.1:2702), got '${part}'`);
    }
    return { id, address: parseAddress('initial-cluster', address).address };
  });
  const ids = new Set(members.map((m) => m.id));
  const addresses = new Set(members.map((m) => m.address));
  if (ids.size !== members.length || addresses.size !== members.length) throw new UsageError('--initial-cluster names a member id or an address twice; give each member its own');
  return members;
}

async function restore(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { 'data-dir': { type: 'string' }, id: { type: 'string' }, 'initial-cluster': { type: 'string' }, grpc: { type: 'string' } }, 'snapshot', true);
  const file = fileArgument(positionals, 'restore');
  const dataDir = values['data-dir'];
  if (dataDir === undefined || dataDir === '') throw new UsageError('--data-dir needs the new (absent or empty) directory for this member');
  const id = values.id ?? '';
  if (!ID_PATTERN.test(id)) throw new UsageError(`--id needs 1-64 letters, digits, '-' or '_', got '${id}'`);
  let members: RestoredMember[];
  if (values['initial-cluster'] !== undefined) members = parseInitialCluster(values['initial-cluster']);
  else if (values.grpc !== undefined) members = [{ id, address: parseAddress('grpc', values.grpc).address }];
  else throw new UsageError('give --initial-cluster ID=HOST:PORT,... (every member of the new cluster) or --grpc HOST:PORT (this member alone)');
  const self = members.find((member) => member.id === id);
  if (self === undefined) throw new UsageError(`--id ${id} is not in --initial-cluster; list this member too`);
  if (values.grpc !== undefined && parseAddress('grpc', values.grpc).address !== self.address) {
    throw new UsageError(`--grpc ${values.grpc} differs from ${id}'s address in --initial-cluster (${self.address}); give one address`);
  }
  const started = performance.now();
  const result = await restoreSnapshot({ file: resolvePath(file), dataDir, id, members }).catch(oneLine);
  const seeds = members.map((m) => m.address).join(',');
  process.stdout.write(
    `restored ${file} (index ${result.header.appliedIndex}, ${result.header.keys} keys, from cluster ${result.header.clusterId}) into ${result.dataDir} in ${Math.round(performance.now() - started)} ms\n` +
      `member ${id} of new cluster ${result.clusterId} (members ${members.map((m) => `${m.id}=${m.address}`).join(',')}); start it with:\n` +
      `  debughost node --id ${id} --grpc ${self.address} --mcp HOST:PORT --seeds ${seeds} --data-dir ${result.dataDir}\n`,
  );
  return 0;
}

async function status(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { json: { type: 'boolean' } }, 'snapshot', true);
  const file = fileArgument(positionals, 'status');
  let decoded: ReturnType<typeof decodeSnapshotFile>;
  try {
    decoded = decodeSnapshotFile(file, await readSnapshotFile(file));
  } catch (error) {
    return oneLine(error);
  }
  const { header } = decoded;
  if (values.json === true) {
    process.stdout.write(`${JSON.stringify({ ...header, sha256: decoded.digest })}\n`);
    return 0;
  }
  process.stdout.write(
    `${file}: valid (sha256 ${decoded.digest})\n` +
      `  cluster ${header.clusterId}, taken by ${header.takenBy} at ${header.createdAt}\n` +
      `  index ${header.appliedIndex}, revision ${header.revision}, ${header.keys} keys, ${header.kvBytes} bytes of state\n` +
      `  members then: ${header.members.map((m) => `${m.id}=${m.address}`).join(',') || '(none)'}\n`,
  );
  return 0;
}
