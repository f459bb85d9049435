// Who may call which gRPC method, decided in one server interceptor before any
// handler runs. Every method of every service has an entry (a typed table: a
// new RPC does not compile until it is given one) and a path without an entry
// is refused. The peer plane (Raft streams, actor forwarding) accepts members
// only; the client plane (KV, Admin) accepts bearer tokens with the right the
// method needs, and peer calls where a node forwards a client's call to the
// leader. Handlers read the verified caller with `callerOf(call)`.
import * as grpc from '@grpc/grpc-js';
import type { GenService, GenServiceMethods } from '@bufbuild/protobuf/codegenv2';
import { ANONYMOUS_ADMIN, authorize, RIGHTS, type Identity, type Right } from '../actors/identity.ts';
import type { TokenVerifier } from '../actors/tokens.ts';
import { Actors } from '../proto/gen/actor_pb.ts';
import { Admin } from '../proto/gen/admin_pb.ts';
import { KV } from '../proto/gen/kv_pb.ts';
import { Raft } from '../proto/gen/raft_pb.ts';
import { type PeerAuthenticator, type PeerCall } from './peer-auth.ts';

export type Access =
  /** Anyone: public status (as /status serves), and Join, whose handler checks the join credential in the request. */
  | { readonly kind: 'open' }
  /** Members only. */
  | { readonly kind: 'peer' }
  /**
   * A bearer token whose role carries `right` (a tenant-scoped right's tenant
   * is checked by the handler, which knows it); `action` names a mutating
   * call in the audit trail (null: a read, not audited).
   */
  | { readonly kind: 'client'; readonly right: Right; readonly action: string | null }
  /** Either: a member forwarding a client's call to the leader, or a client. */
  | { readonly kind: 'peerOrClient'; readonly right: Right; readonly action: string | null };

const OPEN: Access = { kind: 'open' };
const PEER: Access = { kind: 'peer' };
const client = (right: Right, action: string | null = null): Access => ({ kind: 'client', right, action });
const peerOrClient = (right: Right, action: string | null = null): Access => ({ kind: 'peerOrClient', right, action });

type AccessTable<S> = S extends GenService<infer Methods> ? { readonly [Name in keyof Methods]: Access } : never;

const RAFT_ACCESS: AccessTable<typeof Raft> = { send: PEER, sendOne: PEER, join: OPEN };
const ACTORS_ACCESS: AccessTable<typeof Actors> = { call: PEER, propose: PEER, follow: PEER };
const KV_ACCESS: AccessTable<typeof KV> = {
  range: peerOrClient('cluster.kv'),
  put: peerOrClient('cluster.kv', 'kv put'),
  deleteRange: peerOrClient('cluster.kv', 'kv del'),
  txn: peerOrClient('cluster.kv', 'kv txn'),
  watch: peerOrClient('cluster.kv'),
};
const ADMIN_ACCESS: AccessTable<typeof Admin> = {
  status: OPEN,
  memberList: OPEN,
  memberAdd: peerOrClient('cluster.admin', 'member add'),
  memberPromote: peerOrClient('cluster.admin', 'member promote'),
  memberRemove: peerOrClient('cluster.admin', 'member remove'),
  transferLeadership: peerOrClient('cluster.admin', 'leadership transfer'),
  tokenCreate: client('tenant.tokens', 'token create'),
  tokenRevoke: client('tenant.tokens', 'token revoke'),
  tokenList: client('tenant.tokens'),
  auditQuery: client('tenant.audit'),
  auditVerify: client('cluster.admin'),
  // A backup holds every tenant's state: admins only, and audited.
  snapshotSave: client('cluster.admin', 'snapshot save'),
};

/** The gRPC path of one method: `/<package>.<Service>/<Method>`. */
export function methodPath<Methods extends GenServiceMethods>(service: GenService<Methods>, localName: keyof Methods & string): string {
  return `/${service.typeName}/${service.method[localName].name}`;
}

function pathsOf<Methods extends GenServiceMethods>(service: GenService<Methods>, table: { readonly [Name in keyof Methods]: Access }): [string, Access][] {
  return Object.values(service.method).map((method) => [`/${service.typeName}/${method.name}`, table[method.localName as keyof Methods]]);
}

/** Access of every method a node serves, by gRPC path. */
export const METHOD_ACCESS: ReadonlyMap<string, Access> = new Map([
  ...pathsOf(Raft, RAFT_ACCESS),
  ...pathsOf(Actors, ACTORS_ACCESS),
  ...pathsOf(KV, KV_ACCESS),
  ...pathsOf(Admin, ADMIN_ACCESS),
]);

export type Caller = { readonly kind: 'peer'; readonly node: string } | { readonly kind: 'client'; readonly identity: Identity };

export type Decision = { readonly ok: true; readonly caller: Caller | null } | { readonly ok: false; readonly code: grpc.status; readonly plane: 'peer' | 'client'; readonly reason: string; readonly message: string };

export interface GrpcAuthComponents {
  readonly peers: PeerAuthenticator;
  readonly verifier: TokenVerifier;
  /** --insecure-no-auth (loopback only): a client without a token acts as ANONYMOUS_ADMIN. */
  readonly insecureNoAuth: boolean;
  readonly onRefused?: (plane: 'peer' | 'client', reason: string) => void;
  /**
   * Bring this node's applied state up to the cluster's commit (a ReadIndex round). Asked once
   * before a well-formed token this node does not know is refused: it may have been created through
   * another node a moment ago. Absent: refuse at once.
   */
  readonly catchUp?: () => Promise<void>;
  /** A client with a valid token called a mutating method it has no right to: the audit trail records it. */
  readonly onDenied?: (identity: Identity, action: string, message: string) => void;
}

export const AUTHORIZATION_HEADER = 'authorization';

export class GrpcAuth {
  readonly #callers = new WeakMap<grpc.Metadata, Caller>();

  constructor(private readonly components: GrpcAuthComponents) {}

  /** The interceptor: refuses before the handler runs; remembers the verified caller for callerOf. */
  interceptor(): grpc.ServerInterceptor {
    return (method, call) => {
      const listener = new grpc.ServerListenerBuilder()
        .withOnReceiveMetadata((metadata, next) => {
          const decide = (): Decision => this.decide(method.path, { metadata, getAuthContext: () => call.getAuthContext() });
          const settle = (decision: Decision): void => {
            if (!decision.ok) {
              this.components.onRefused?.(decision.plane, decision.reason);
              call.sendStatus({ code: decision.code, details: decision.message, metadata: new grpc.Metadata() });
              return;
            }
            if (decision.caller !== null) this.#callers.set(metadata, decision.caller);
            next(metadata);
          };
          const first = decide();
          const catchUp = this.components.catchUp;
          if (!first.ok && first.plane === 'client' && first.reason === 'unknown' && catchUp !== undefined) {
            void catchUp()
              .catch(() => undefined)
              .then(() => settle(decide()));
            return;
          }
          settle(first);
        })
        .build();
      return new grpc.ServerInterceptingCall(call, { start: (next) => next(listener) });
    };
  }

  /** The caller the interceptor verified for this call (decided again if the interceptor did not run). */
  callerOf(path: string, call: PeerCall): Caller | null {
    const known = this.#callers.get(call.metadata);
    if (known !== undefined) return known;
    const decision = this.decide(path, call);
    return decision.ok ? decision.caller : null;
  }

  decide(path: string, call: PeerCall): Decision {
    const access = METHOD_ACCESS.get(path);
    if (access === undefined) return { ok: false, code: grpc.status.PERMISSION_DENIED, plane: 'client', reason: 'noRule', message: `${path} has no access rule on this node; it is refused` };
    switch (access.kind) {
      case 'open':
        return { ok: true, caller: null };
      case 'peer':
        return this.peer(call);
      case 'client':
        return this.client(call, access.right, access.action);
      case 'peerOrClient':
        return this.components.peers.presents(call) ? this.peer(call) : this.client(call, access.right, access.action);
      default: {
        const never: never = access;
        return never;
      }
    }
  }

  private peer(call: PeerCall): Decision {
    const outcome = this.components.peers.authenticate(call);
    if (outcome.ok) return { ok: true, caller: { kind: 'peer', node: outcome.node } };
    const code = outcome.reason === 'notMember' ? grpc.status.PERMISSION_DENIED : outcome.reason === 'noSecret' ? grpc.status.UNAVAILABLE : grpc.status.UNAUTHENTICATED;
    return { ok: false, code, plane: 'peer', reason: outcome.reason, message: outcome.message };
  }

  private client(call: PeerCall, right: Right, action: string | null): Decision {
    const header = call.metadata.get(AUTHORIZATION_HEADER)[0];
    const text = typeof header === 'string' ? header : undefined;
    let identity: Identity;
    if (text === undefined && this.components.insecureNoAuth) {
      identity = ANONYMOUS_ADMIN;
    } else {
      const verified = this.components.verifier.authenticateBearer(text);
      if (!verified.ok) return { ok: false, code: grpc.status.UNAUTHENTICATED, plane: 'client', reason: verified.reason, message: verified.message };
      identity = verified.value;
    }
    // The tenant of a tenant-scoped right is in the request; here only the role is checked.
    const allowed = authorize(identity, right, RIGHTS[right].scope === 'tenant' ? identity.tenant : null);
    if (!allowed.ok && action !== null) this.components.onDenied?.(identity, action, allowed.message);
    if (!allowed.ok) return { ok: false, code: grpc.status.PERMISSION_DENIED, plane: 'client', reason: allowed.reason, message: allowed.message };
    return { ok: true, caller: { kind: 'client', identity } };
  }
}
