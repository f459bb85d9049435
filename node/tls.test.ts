// Mutual TLS between nodes and clients: a 3-node cluster on certificates from one CA takes writes; clients without a cert, with another CA's cert, or in plaintext are refused; on the peer plane the certificate names the member (a client certificate or another node's cannot speak as n1).
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { KV, RangeRequestSchema } from '../proto/gen/kv_pb.ts';
import { Raft, RaftBatchSchema, RaftMessageSchema } from '../proto/gen/raft_pb.ts';
import { NODE_URI_PREFIX } from './peer-auth.ts';
import { callUnary, makeClientConstructor } from '../proto/grpc.ts';
import { prerequisites } from '../actors/testing/prerequisites.ts';
import { quietIpServerNameWarning } from './cli-node.ts';
import { LocalCluster, bin, type Member } from './local-cluster.ts';

const run = promisify(execFile);
// The certificates are made with the openssl command line.
const openssl = await prerequisites('openssl');
const opensslMet = openssl.met;
const opensslTest = openssl.guard(test);
const KvClient = makeClientConstructor(KV);
const RaftClient = makeClientConstructor(Raft);

/** A CA in `dir`, and `issue(name, usage, nodeId)` for certificates it signs (valid for 127.0.0.1 and localhost; a node's names it in a URI SAN). */
async function makeCa(dir: string, name: string): Promise<{ cert: string; issue: (subject: string, usage: 'serverAuth,clientAuth' | 'clientAuth', nodeId?: string) => Promise<{ cert: string; key: string }> }> {
  const caKey = join(dir, `${name}-ca.key`);
  const caCert = join(dir, `${name}-ca.crt`);
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', caCert, '-days', '2', '-subj', `/CN=${name} test CA`]);
  const issue = async (subject: string, usage: 'serverAuth,clientAuth' | 'clientAuth', nodeId?: string) => {
    const key = join(dir, `${name}-${subject}.key`);
    const csr = join(dir, `${name}-${subject}.csr`);
    const cert = join(dir, `${name}-${subject}.crt`);
    const ext = join(dir, `${name}-${subject}.ext`);
    const uri = nodeId === undefined ? '' : `,URI:${NODE_URI_PREFIX}${nodeId}`;
    await writeFile(ext, `subjectAltName=IP:127.0.0.1,DNS:localhost${uri}\nextendedKeyUsage=${usage}\nkeyUsage=digitalSignature,keyEncipherment\n`);
    await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${subject}`]);
    await run('openssl', ['x509', '-req', '-in', csr, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);
    return { cert, key };
  };
  return { cert: caCert, issue };
}

/** The PKI and the one cluster both tests use (neither changes what the other checks): made once, not per test. */
interface Setup {
  readonly pki: string;
  readonly ca: Awaited<ReturnType<typeof makeCa>>;
  readonly caPem: Buffer;
  readonly nodeCerts: ReadonlyMap<string, { cert: string; key: string }>;
  readonly client: { cert: string; key: string };
  readonly stranger: { cert: string; key: string };
  readonly credentials: grpc.ChannelCredentials;
  readonly cluster: LocalCluster;
}

let setup: Setup | null = null;
let pkiDir: string | null = null;

test.before(async () => {
  if (!opensslMet) return;
  quietIpServerNameWarning();
  const pki = await mkdtemp(join(tmpdir(), 'debughost-pki-'));
  pkiDir = pki;
  const ca = await makeCa(pki, 'cluster');
  const other = await makeCa(pki, 'other');
  const nodeCerts = new Map<string, { cert: string; key: string }>();
  for (const id of ['n1', 'n2', 'n3']) nodeCerts.set(id, await ca.issue(id, 'serverAuth,clientAuth', id));
  const client = await ca.issue('client', 'clientAuth');
  const stranger = await other.issue('stranger', 'clientAuth');
  const caPem = await readFile(ca.cert);
  const credentials = grpc.credentials.createSsl(caPem, await readFile(client.key), await readFile(client.cert));
  const tlsFlags = (member: Member): string[] => {
    const own = nodeCerts.get(member.id);
    if (own === undefined) throw new Error(`no certificate for ${member.id}`);
    return ['--tls-cert', own.cert, '--tls-key', own.key, '--tls-ca', ca.cert];
  };
  const cluster = await LocalCluster.create(3, { memberArgs: tlsFlags, credentials });
  setup = { pki, ca, caPem, nodeCerts, client, stranger, credentials, cluster };
  for (const member of cluster.members) cluster.start(member);
  // Forming the cluster needs the members to reach each other over mutual TLS.
  await cluster.waitForLeader(90_000);
});

test.after.always(async () => {
  await setup?.cluster.stop();
  if (pkiDir !== null) await rm(pkiDir, { recursive: true, force: true });
});

const ready = (): Setup => {
  if (setup === null) throw new Error('the TLS cluster was not set up');
  return setup;
};

opensslTest('mutual TLS: members and a client with a cert from the cluster CA work; no cert, a foreign CA, or plaintext are refused', async (t) => {
  const { ca, caPem, client, stranger, credentials, cluster } = ready();
  const leader = await cluster.waitForLeader(90_000);
  const [n1, n2, n3] = cluster.members as [Member, Member, Member];

  const env = { ...process.env, DEBUGHOST_LOG_LEVEL: 'warn', DEBUGHOST_TOKEN: cluster.adminToken };
  const cli = (args: string[]) =>
    run(process.execPath, [bin, ...args], { timeout: 60_000, env }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
  const clientFlags = ['--tls-cert', client.cert, '--tls-key', client.key, '--tls-ca', ca.cert];
  const put = await cli(['kv', 'put', 'secure', 'yes', '--endpoints', n2.grpc, ...clientFlags]);
  t.is(put.code, 0, put.stderr);
  const get = await cli(['kv', 'get', 'secure', '--endpoints', n3.grpc, ...clientFlags]);
  t.is(get.stdout.trim(), 'yes');
  await cluster.put(n1, 'from-test', 'ok');
  const status = await cli(['status', '--endpoints', leader.grpc, '--json', ...clientFlags]);
  t.is(JSON.parse(status.stdout).leader, leader.id);

  const rangeWith = async (creds: grpc.ChannelCredentials): Promise<grpc.ServiceError | null> => {
    const kv = new KvClient(n1.grpc, creds);
    try {
      await callUnary(kv, 'range', create(RangeRequestSchema, { key: 'secure' }), { deadline: Date.now() + 3000 });
      return null;
    } catch (error) {
      return error as grpc.ServiceError;
    } finally {
      kv.close();
    }
  };
  t.is(await rangeWith(cluster.credentials), null, 'the cluster CA\'s client cert with the admin token is accepted');
  const noToken = await rangeWith(credentials);
  t.is(noToken?.code, grpc.status.UNAUTHENTICATED, 'a client cert alone is no client credential: it needs a token');
  const noCert = await rangeWith(grpc.credentials.createSsl(caPem));
  t.is(noCert?.code, grpc.status.UNAVAILABLE, 'a client without a certificate is refused');
  const foreign = await rangeWith(grpc.credentials.createSsl(caPem, await readFile(stranger.key), await readFile(stranger.cert)));
  t.is(foreign?.code, grpc.status.UNAVAILABLE, 'a certificate from another CA is refused');
  const plaintext = await rangeWith(grpc.credentials.createInsecure());
  t.is(plaintext?.code, grpc.status.UNAVAILABLE, 'plaintext is refused');
  // The CLI says the same in one line.
  const refused = await cli(['kv', 'get', 'secure', '--endpoints', n1.grpc, '--tls-cert', stranger.cert, '--tls-key', stranger.key, '--tls-ca', ca.cert]);
  t.is(refused.code, 2);
  t.is(refused.stderr.trim().split('\n').length, 1, refused.stderr);
  t.log(`refused client: ${refused.stderr.trim()}`);
  t.regex(refused.stderr, /cannot establish a connection with 127\.0\.0\.1:\d+ .*if the cluster runs mutual TLS, pass --tls-cert and --tls-key signed by its CA/);
  // Half the flags: a usage error, not a silent plaintext fallback.
  const half = await cli(['kv', 'get', 'secure', '--endpoints', n1.grpc, '--tls-ca', ca.cert]);
  t.is(half.code, 2);
  t.regex(half.stderr, /TLS needs all three of --tls-cert, --tls-key and --tls-ca/);
});

opensslTest('mutual TLS peer plane: a client certificate cannot send Raft messages; a node certificate of n2 cannot speak as n1; a certificate without a node SAN is refused at start', async (t) => {
  const { pki, ca, caPem, nodeCerts, client, cluster } = ready();
  const leader = await cluster.waitForLeader(90_000);
  const target = cluster.members.find((m) => m.id !== leader.id && m.id !== 'n1') as Member;

  const sendAs = async (certificate: { cert: string; key: string }, from: string): Promise<grpc.ServiceError | null> => {
    const raft = new RaftClient(target.grpc, grpc.credentials.createSsl(caPem, await readFile(certificate.key), await readFile(certificate.cert)));
    try {
      // A vote request at a huge term: accepted, it would depose the leader.
      const message = create(RaftMessageSchema, { from, to: target.id, term: 1_000_000n, body: { case: 'vote', value: { lastLogIndex: 1_000_000n, lastLogTerm: 999_999n, transfer: true } } });
      const status = await cluster.status(target);
      await callUnary(raft, 'sendOne', create(RaftBatchSchema, { messages: [message], clusterId: status?.clusterId ?? '' }), { deadline: Date.now() + 3000 });
      return null;
    } catch (error) {
      return error as grpc.ServiceError;
    } finally {
      raft.close();
    }
  };
  const byClient = await sendAs(client, 'n1');
  t.is(byClient?.code, grpc.status.UNAUTHENTICATED, 'a client certificate is refused on the peer plane');
  t.regex(byClient?.details ?? '', /names no node/);
  const spoofedBefore = await spoofedCount(target);
  const byOtherNode = await sendAs(nodeCerts.get(leader.id === 'n2' ? 'n3' : 'n2') as { cert: string; key: string }, 'n1');
  t.is(byOtherNode, null, 'a member certificate is accepted on the peer plane');
  t.is(await spoofedCount(target), spoofedBefore + 1, 'but its message claiming to come from n1 is dropped and counted');
  const after = await cluster.status(target);
  t.true(after !== null && after.term < 1_000_000n, 'the spoofed vote request changed nothing');

  // A node certificate must name its node: one without the SAN is refused with the fix in one line.
  const unnamed = await ca.issue('unnamed', 'serverAuth,clientAuth');
  const refused = await run(process.execPath, [bin, 'node', '--id', 'n9', '--grpc', '127.0.0.1:1', '--mcp', '127.0.0.1:2', '--seeds', '127.0.0.1:1', '--data-dir', join(pki, 'n9'), '--tls-cert', unnamed.cert, '--tls-key', unnamed.key, '--tls-ca', ca.cert], { timeout: 60_000 }).then(
    () => ({ code: 0, stderr: '' }),
    (error: { code: number; stderr: string }) => error,
  );
  t.is(refused.code, 2);
  t.regex(refused.stderr, /--tls-cert names no node; a node certificate must carry the SAN URI:urn:debughost:node:n9/);
});

/** debughost_raft_messages_spoofed_total on a member's /metrics. */
async function spoofedCount(member: Member): Promise<number> {
  const text = await (await fetch(`http://${member.mcp}/metrics`)).text();
  return Number(/^debughost_raft_messages_spoofed_total\{[^}]*\} (\d+)/m.exec(text)?.[1] ?? '0');
}
