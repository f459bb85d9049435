// The trust boundary of one node as the rest of the node sees it: who sent an
// HTTP request (bearer token -> identity), what an identity may do (the
// owner-side authorizer), and which cluster member made a peer call.
import * as grpc from '@grpc/grpc-js';
import { authorizerFrom } from '../actors/authorizer.ts';
import type { Authorizer } from '../actors/host.ts';
import type { Identity } from '../actors/messages.ts';
import type { AuthOutcome } from './mcp.ts';

export interface NodeAuth {
  /** The identity of an HTTP request from its Authorization header. */
  authenticate(authorization: string | undefined): AuthOutcome;
  /** What an identity may do to an actor: checked at the entry node and again on the owner. */
  readonly authorizer: Authorizer;
  /** Metadata this node sends with its own peer calls. */
  peerMetadata(): grpc.Metadata;
  /** The member id behind a peer call, or null when it is not an authenticated member. */
  peerOf(call: { readonly metadata: grpc.Metadata; getPeer(): string }): string | null;
  /** Whether `identity` may follow the logs and events of the project at `key`. */
  mayFollow(identity: Identity, key: string): boolean;
}

/** The identity of every call on a node started with --insecure-no-auth (loopback only). */
export const ANONYMOUS_ADMIN: Identity = Object.freeze({ tokenId: 'anonymous', tokenName: 'anonymous (--insecure-no-auth)', tenant: 'default', role: 'admin' });

/** No authentication at all: every caller is an admin of tenant 'default', every peer a member. Only for --insecure-no-auth. */
export function insecureAuth(): NodeAuth {
  return {
    authenticate: () => ({ ok: true, identity: ANONYMOUS_ADMIN }),
    authorizer: authorizerFrom(() => null),
    peerMetadata: () => new grpc.Metadata(),
    peerOf: () => 'peer',
    mayFollow: () => true,
  };
}
