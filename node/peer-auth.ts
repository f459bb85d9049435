// The peer plane's credentials: who a gRPC call between nodes comes from.
// With TLS the member id is the node certificate's URI SAN
// `urn:debughost:node:<id>` (a client certificate has none, and a node
// certificate names one id only); without TLS (loopback, or --insecure) every
// peer call carries its node id and an HMAC of that id under the cluster
// secret made at bootstrap, checked in constant time. Either way the id must
// be a member this node knows. Channel credentials that attach metadata to
// every call also serve the CLI's bearer tokens.
import { createHmac, timingSafeEqual, X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';

export const PEER_ID_HEADER = 'x-debughost-peer';
export const PEER_PROOF_HEADER = 'x-debughost-peer-proof';
/** The URI SAN that names a node in its certificate. */
export const NODE_URI_PREFIX = 'urn:debughost:node:';

/** What one peer sends to prove it is `nodeId`: HMAC-SHA256 under the cluster secret, so the secret itself never crosses the wire. */
export const peerProof = (secret: Uint8Array, nodeId: string): Buffer => createHmac('sha256', secret).update(`debughost-peer:${nodeId}`).digest();

/**
 * Insecure channel credentials that still attach call metadata (grpc-js
 * refuses to compose call credentials onto createInsecure(), though its
 * insecure connector carries them). Used on loopback: the peer proof and the
 * CLI's bearer token ride on every call.
 */
export class InsecureCredentialsWithMetadata extends grpc.ChannelCredentials {
  readonly #insecure = grpc.credentials.createInsecure();

  constructor(private readonly callCredentials: grpc.CallCredentials) {
    super();
  }

  override _isSecure(): boolean {
    return false;
  }

  override _equals(other: grpc.ChannelCredentials): boolean {
    return other === this;
  }

  override _createSecureConnector(...[target, options, callCredentials]: Parameters<grpc.ChannelCredentials['_createSecureConnector']>): ReturnType<grpc.ChannelCredentials['_createSecureConnector']> {
    const combined = callCredentials === undefined ? this.callCredentials : this.callCredentials.compose(callCredentials);
    return this.#insecure._createSecureConnector(target, options, combined);
  }
}

/** Call credentials from a function giving the metadata entries to add (or none). */
export function metadataCredentials(entries: () => Record<string, string> | null): grpc.CallCredentials {
  return grpc.credentials.createFromMetadataGenerator((_options, callback) => {
    const metadata = new grpc.Metadata();
    for (const [key, value] of Object.entries(entries() ?? {})) metadata.set(key, value);
    callback(null, metadata);
  });
}

/** `base` (TLS, or null for plaintext) with `entries` attached to every call. */
export function withMetadata(base: grpc.ChannelCredentials | null, entries: () => Record<string, string> | null): grpc.ChannelCredentials {
  const call = metadataCredentials(entries);
  return base === null ? new InsecureCredentialsWithMetadata(call) : base.compose(call);
}

/** The node id a certificate names in a `urn:debughost:node:<id>` URI SAN, or null. */
export function certificateNodeId(subjectAltName: string | undefined): string | null {
  for (const part of (subjectAltName ?? '').split(',')) {
    const trimmed = part.trim();
    if (trimmed.startsWith(`URI:${NODE_URI_PREFIX}`)) return trimmed.slice(`URI:${NODE_URI_PREFIX}`.length);
  }
  return null;
}

/** Refuse a node certificate that does not name `nodeId`: other members would refuse its calls anyway. */
export function checkOwnCertificate(cert: Buffer, nodeId: string): string | null {
  let named: string | null;
  try {
    named = certificateNodeId(new X509Certificate(cert).subjectAltName);
  } catch (error) {
    return `--tls-cert is not a PEM certificate (${(error as Error).message})`;
  }
  if (named === nodeId) return null;
  const got = named === null ? 'names no node' : `names node '${named}'`;
  return `--tls-cert ${got}; a node certificate must carry the SAN URI:${NODE_URI_PREFIX}${nodeId} (in an openssl extension file: subjectAltName=URI:${NODE_URI_PREFIX}${nodeId},IP:…)`;
}

export type PeerAuthOutcome =
  | { readonly ok: true; readonly node: string }
  | { readonly ok: false; readonly reason: 'noCredential' | 'badProof' | 'notMember' | 'noSecret'; readonly message: string };

/** The parts of a grpc-js server call peer authentication reads. */
export interface PeerCall {
  readonly metadata: grpc.Metadata;
  getAuthContext?(): { sslPeerCertificate?: PeerCertificate | undefined };
}

export interface PeerAuthOptions {
  /** Whether this node runs mutual TLS: then the certificate names the peer. */
  readonly tls: boolean;
  /** The cluster secret, once known (a joiner learns it from its join answer). */
  readonly secret: () => Uint8Array | null;
  /** Members this node knows (its configuration, or the join answer's list while it has applied nothing). */
  readonly isMember: (id: string) => boolean;
}

const firstString = (metadata: grpc.Metadata, key: string): string | null => {
  const value = metadata.get(key)[0];
  return typeof value === 'string' ? value : null;
};

/** Proofs already computed, per claimed id: the HMAC is cheap, but a Raft stream reconnect storm need not redo it. */
const PROOFS_CACHED_MAX = 1_024;

export class PeerAuthenticator {
  readonly #proofs = new Map<string, Buffer>();
  #proofSecret: Uint8Array | null = null;

  constructor(private readonly options: PeerAuthOptions) {}

  /** Who sent `call`, if it is a member: what the Raft, Actors and peer-forwarded KV and Admin calls require. */
  authenticate(call: PeerCall): PeerAuthOutcome {
    const credential = this.credential(call);
    if (!credential.ok) return credential;
    if (!this.options.isMember(credential.node)) {
      return { ok: false, reason: 'notMember', message: `node '${credential.node}' is not a member of this cluster; join it first (debughost node --join-token …)` };
    }
    return credential;
  }

  /** Does `call` carry a peer credential at all (then it is judged as a peer, not as a client)? */
  presents(call: PeerCall): boolean {
    if (this.options.tls) return certificateNodeId(call.getAuthContext?.().sslPeerCertificate?.subjectaltname) !== null;
    return call.metadata.get(PEER_ID_HEADER).length > 0;
  }

  /** Who sent `call`, member or not: a node holding the cluster secret (or a node certificate) may join. */
  credential(call: PeerCall): PeerAuthOutcome {
    if (this.options.tls) {
      const cert = call.getAuthContext?.().sslPeerCertificate;
      const id = certificateNodeId(cert?.subjectaltname);
      if (id === null) return { ok: false, reason: 'noCredential', message: `the client certificate names no node (no URI:${NODE_URI_PREFIX}<id> SAN): only members may call the peer plane` };
      return { ok: true, node: id };
    }
    const id = firstString(call.metadata, PEER_ID_HEADER);
    const proof = firstString(call.metadata, PEER_PROOF_HEADER);
    if (id === null || proof === null) return { ok: false, reason: 'noCredential', message: 'peer calls need the cluster secret: only members may call the peer plane' };
    const secret = this.options.secret();
    if (secret === null) return { ok: false, reason: 'noSecret', message: 'this node has no cluster secret yet (it is joining); retry shortly' };
    const presented = Buffer.from(proof, 'hex');
    const expected = this.expectedProof(secret, id);
    if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) {
      return { ok: false, reason: 'badProof', message: `the peer proof for '${id}' is wrong: the caller holds another cluster's secret` };
    }
    return { ok: true, node: id };
  }

  private expectedProof(secret: Uint8Array, id: string): Buffer {
    if (this.#proofSecret !== secret) {
      this.#proofs.clear();
      this.#proofSecret = secret;
    }
    let proof = this.#proofs.get(id);
    if (proof === undefined) {
      proof = peerProof(secret, id);
      if (this.#proofs.size >= PROOFS_CACHED_MAX) this.#proofs.clear();
      this.#proofs.set(id, proof);
    }
    return proof;
  }
}

/** The metadata a node attaches to its own peer calls (none until it knows the secret; none with TLS). */
export function peerMetadata(self: string, secret: () => Uint8Array | null): () => Record<string, string> | null {
  let cached: { secret: Uint8Array; entries: Record<string, string> } | null = null;
  return () => {
    const current = secret();
    if (current === null) return null;
    if (cached === null || cached.secret !== current) cached = { secret: current, entries: { [PEER_ID_HEADER]: self, [PEER_PROOF_HEADER]: peerProof(current, self).toString('hex') } };
    return cached.entries;
  };
}
