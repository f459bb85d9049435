// The trust boundary of one node, in one object: token verification, peer
// authentication, the gRPC access interceptor, the audit writer, the token
// service and the rate limiter, with the cluster secret and the bootstrap
// admin token they start from. The API the MCP layer uses:
//   authenticateBearer(header) → Identity | failure
//   authorize(identity, right, tenant)           (actors/identity.ts)
//   audit.record({...})                          (node/audit-writer.ts)
//   rateLimiter.take(identity) → ok | retryAfterMs
//   authenticatePeer(call) → node id | failure
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import type { ActorStore } from '../actors/components.ts';
import type { KvView } from '../actors/placement.ts';
import { recordForToken, tokenKey, TokenVerifier, type BearerOutcome, type TokenRecord } from '../actors/tokens.ts';
import type { Clock, TimerHandle } from '../consensus/types.ts';
import { AuditWriter, type AuditConfig } from './audit-writer.ts';
import {
  BOOTSTRAP_TOKEN_NAME,
  clusterSecretPath,
  encodeClusterSecret,
  ensureAdminToken,
  readClusterSecret,
  SecretFileError,
  writePrivateFile,
} from './cluster-files.ts';
import { GrpcAuth } from './grpc-auth.ts';
import type { Logger } from './log.ts';
import { checkOwnCertificate, PeerAuthenticator, peerMetadata, withMetadata, type PeerAuthOutcome, type PeerCall } from './peer-auth.ts';
import { RateLimiter, type RateLimitConfig } from './rate-limit.ts';
import { authorizerFrom, type ActorRight } from '../actors/authorizer.ts';
import { ANONYMOUS_ADMIN, authorize, isRole, type Identity, type Right } from '../actors/identity.ts';
import { parseActorKey, type Identity as CallerIdentity } from '../actors/messages.ts';
import type { NodeAuth } from './auth.ts';
import { TokenService } from './token-service.ts';

export interface TrustOptions {
  readonly nodeId: string;
  readonly dataDir: string;
  readonly tls: { readonly ca: Buffer; readonly cert: Buffer; readonly key: Buffer } | null;
  /** Clients without a token act as admin (loopback only; cli-node.ts refuses it elsewhere). */
  readonly insecureNoAuth: boolean;
  /** The cluster secret to start from (founders; a node handed the secret by its operator). */
  readonly clusterSecretFile: string | null;
  /** The bootstrap admin token (made there if the file does not exist). */
  readonly adminTokenFile: string | null;
  /** An admin-issued join token, for a new node without the secret. */
  readonly joinToken: string | null;
  readonly redisUrl: string | null;
  readonly audit?: Partial<AuditConfig>;
  readonly rateLimit?: Partial<RateLimitConfig>;
}

export interface TrustComponents {
  readonly log: Logger;
  readonly clock: Clock;
  readonly wallNowMs: () => number;
  /** The applied state of this node (empty before Raft starts), and proposals through the leader. */
  readonly store: Pick<ActorStore, 'view' | 'propose'>;
  /** Members this node knows, for the peer plane. */
  readonly isMember: (id: string) => boolean;
  readonly clusterId: () => string;
  readonly onRefused?: (plane: 'peer' | 'client', reason: string) => void;
  /** A ReadIndex round of this node, asked before an unknown token is refused (GrpcAuthComponents.catchUp). */
  readonly catchUp?: () => Promise<void>;
}

/** A start the operator must fix: its message is the one line they see. */
export class TrustStartError extends Error {
  override readonly name = 'TrustStartError';
}

/** The role-table right behind each right an actor request needs (actors/authorizer.ts). */
const ACTOR_RIGHTS: Record<ActorRight, Right> = {
  read: 'project.read',
  lifecycle: 'project.lifecycle',
  exec: 'project.exec',
  quota: 'tenant.quota',
};

/** An identity carried on a call, as the role table knows it (null: a role this version does not know). */
const trusted = (identity: CallerIdentity): Identity | null => (isRole(identity.role) ? { ...identity, role: identity.role } : null);

/** How often a node retries writing the bootstrap admin token's record until the cluster has it. */
const BOOTSTRAP_RETRY_MS = 500;
/** Redis errors are logged at most once in this long (it retries every few seconds while down). */
const REDIS_ERROR_QUIET_MS = 30_000;

export class NodeTrust {
  readonly verifier: TokenVerifier;
  readonly peers: PeerAuthenticator;
  readonly grpc: GrpcAuth;
  readonly audit: AuditWriter;
  readonly tokens: TokenService;
  readonly rateLimiter: RateLimiter;
  /** Credentials for this node's own calls to peers: TLS, or plaintext carrying the peer proof. */
  readonly peerCredentials: grpc.ChannelCredentials;
  #secret: Buffer | null;
  #bootstrapRecord: TokenRecord | null;
  readonly #bootstrapTokenId: string | null;
  #bootstrapTimer: TimerHandle | null = null;
  #closed = false;
  #redisQuietTimer: TimerHandle | null = null;

  private constructor(
    readonly options: TrustOptions,
    private readonly components: TrustComponents,
    secret: Buffer | null,
    bootstrapRecord: TokenRecord | null,
  ) {
    this.#secret = secret;
    this.#bootstrapRecord = bootstrapRecord;
    this.#bootstrapTokenId = bootstrapRecord?.id ?? null;
    const view = (): KvView => components.store.view();
    this.verifier = new TokenVerifier(view, components.wallNowMs);
    this.peers = new PeerAuthenticator({ tls: options.tls !== null, secret: () => this.#secret, isMember: components.isMember });
    this.grpc = new GrpcAuth({
      peers: this.peers,
      verifier: this.verifier,
      insecureNoAuth: options.insecureNoAuth,
      ...(components.onRefused === undefined ? {} : { onRefused: components.onRefused }),
      ...(components.catchUp === undefined ? {} : { catchUp: components.catchUp }),
      onDenied: (identity, action, message) => void this.audit.record({ actor: identity, action, tenant: null, target: null, args: null, outcome: 'denied', detail: message }),
    });
    this.audit = new AuditWriter(
      { node: options.nodeId, store: components.store, clock: components.clock, wallNowMs: components.wallNowMs, onError: (detail) => components.log.warn({ detail }, 'audit write delayed') },
      options.audit,
    );
    this.tokens = new TokenService({ store: components.store, randomBytes, wallNowMs: components.wallNowMs });
    this.rateLimiter = new RateLimiter(
      { nowMs: components.clock.nowMs, clusterId: components.clusterId, redisUrl: options.redisUrl, onRedisError: (error) => this.redisError(error) },
      options.rateLimit,
    );
    const tls = options.tls;
    this.peerCredentials = tls === null ? withMetadata(null, peerMetadata(options.nodeId, () => this.#secret)) : grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
  }

  /** Read (or make) the files the node starts from; refuse what would leave it unauthenticated or unreachable. */
  static async open(options: TrustOptions, components: TrustComponents): Promise<NodeTrust> {
    if (options.tls !== null) {
      const problem = checkOwnCertificate(options.tls.cert, options.nodeId);
      if (problem !== null) throw new TrustStartError(problem);
    }
    await mkdir(options.dataDir, { recursive: true });
    try {
      const secret = await NodeTrust.readSecret(options);
      let bootstrap: TokenRecord | null = null;
      if (options.adminTokenFile !== null) {
        const { token, created } = await ensureAdminToken(options.adminTokenFile, components.wallNowMs());
        if (created) components.log.info({ file: options.adminTokenFile }, 'wrote a new admin token');
        bootstrap = recordForToken(token, { kind: 'client', tenant: 'default', role: 'admin', name: BOOTSTRAP_TOKEN_NAME, ttlMs: null, createdBy: 'bootstrap' }, components.wallNowMs());
      }
      return new NodeTrust(options, components, secret, bootstrap);
    } catch (error) {
      if (error instanceof SecretFileError) throw new TrustStartError(error.message);
      throw error;
    }
  }

  /** This node's copy of the secret in its data dir wins; a --cluster-secret-file must agree with it, and is copied there on first use. */
  private static async readSecret(options: TrustOptions): Promise<Buffer | null> {
    const own = clusterSecretPath(options.dataDir);
    let mine: Buffer | null = null;
    try {
      mine = await readClusterSecret(own);
    } catch (error) {
      if (!(error instanceof SecretFileError && /does not exist$/.test(error.message))) throw error;
    }
    if (options.clusterSecretFile === null) return mine;
    const given = await readClusterSecret(options.clusterSecretFile);
    if (mine !== null && !mine.equals(given)) {
      throw new TrustStartError(`--cluster-secret-file ${options.clusterSecretFile} differs from the secret this node already holds (${own}); drop the flag or give that cluster's secret`);
    }
    if (mine === null) await writePrivateFile(own, encodeClusterSecret(given));
    return given;
  }

  get hasClusterSecret(): boolean {
    return this.#secret !== null;
  }

  /** The secret, for a join answer to a node admitted by a join token. */
  clusterSecret(): Buffer | null {
    return this.#secret;
  }

  /** Does this node have what a founder needs to make the cluster administrable? */
  get hasBootstrapToken(): boolean {
    return this.#bootstrapRecord !== null;
  }

  /** Whether this node's applied state holds the bootstrap admin token it was given (true when it was given none). */
  bootstrapTokenApplied(): boolean {
    return this.#bootstrapTokenId === null || this.components.store.view().get(tokenKey(this.#bootstrapTokenId)) !== null;
  }

  /** A joiner keeps the secret its join answer carried, in its data dir, before it writes its identity. */
  async adoptClusterSecret(secret: Uint8Array): Promise<void> {
    const bytes = Buffer.from(secret);
    if (bytes.length === 0 || this.#secret !== null) return;
    await writePrivateFile(clusterSecretPath(this.options.dataDir), encodeClusterSecret(bytes));
    this.#secret = bytes;
  }

  authenticateBearer(header: string | undefined | null): BearerOutcome {
    return this.verifier.authenticateBearer(header);
  }

  /** For the Actors service: the member that made this call (the interceptor has already refused everyone else). */
  authenticatePeer(call: PeerCall): PeerAuthOutcome {
    return this.peers.authenticate(call);
  }

  /**
   * The node's trust boundary as the MCP layer and the actor forwarding use it
   * (node/auth.ts). Peer calls carry their proof in the channel credentials
   * (peerCredentials), so peerMetadata adds nothing.
   */
  nodeAuth(): NodeAuth {
    const refused = (identity: CallerIdentity): string => `token '${identity.tokenName}' has role '${identity.role}', which this node does not know; ask for a new token`;
    return {
      authenticate: (authorization) => {
        if ((authorization === undefined || authorization === '') && this.options.insecureNoAuth) return { ok: true, identity: ANONYMOUS_ADMIN };
        const verified = this.authenticateBearer(authorization);
        if (verified.ok) return { ok: true, identity: verified.value };
        return { ok: false, status: 401, message: verified.message, ...(verified.reason === 'unknown' ? { unknownToken: true } : {}) };
      },
      authorizer: authorizerFrom((identity, right, tenant) => {
        const known = trusted(identity);
        if (known === null) return refused(identity);
        const outcome = authorize(known, ACTOR_RIGHTS[right], tenant);
        return outcome.ok ? null : outcome.message;
      }),
      peerMetadata: () => new grpc.Metadata(),
      peerOf: (call) => {
        const outcome = this.peers.authenticate(call as PeerCall);
        return outcome.ok ? outcome.node : null;
      },
      mayFollow: (identity, key) => {
        const known = trusted(identity);
        const parsed = parseActorKey(key);
        return known !== null && parsed !== null && authorize(known, 'project.read', parsed.tenant).ok;
      },
    };
  }

  /** Once Raft runs: write the bootstrap admin token's record if the cluster lacks it. */
  start(): void {
    this.ensureBootstrapToken();
  }

  private ensureBootstrapToken(): void {
    const record = this.#bootstrapRecord;
    if (record === null || this.#closed) return;
    void this.tokens.ensureRecord(record).then((outcome) => {
      if (this.#closed) return;
      if (outcome === 'written' || outcome === 'present') {
        this.#bootstrapRecord = null;
        if (outcome === 'written') {
          this.components.log.info({ tokenId: record.id }, 'the bootstrap admin token entered the replicated state');
          void this.audit.record({ actor: { node: this.options.nodeId }, action: 'token bootstrap', tenant: record.kind === 'client' ? record.tenant : null, target: record.id, args: { id: record.id }, outcome: 'ok', detail: null });
        }
        return;
      }
      this.#bootstrapTimer = this.components.clock.setTimer(BOOTSTRAP_RETRY_MS, () => this.ensureBootstrapToken());
    });
  }

  private redisError(error: Error): void {
    // Logged at most once per quiet period; calls meanwhile use the local limit.
    if (this.#redisQuietTimer !== null || this.#closed) return;
    this.components.log.warn({ error: error.message }, 'Redis does not answer; rate limits are applied per node until it does');
    this.#redisQuietTimer = this.components.clock.setTimer(REDIS_ERROR_QUIET_MS, () => {
      this.#redisQuietTimer = null;
    });
  }

  close(): void {
    this.#closed = true;
    if (this.#bootstrapTimer !== null) this.components.clock.clearTimer(this.#bootstrapTimer);
    if (this.#redisQuietTimer !== null) this.components.clock.clearTimer(this.#redisQuietTimer);
    this.audit.close();
    this.rateLimiter.close();
  }
}
