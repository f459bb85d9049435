// Which right each actor request needs, and the owner-side check built from a
// rights function (the role table lives with the tokens). The same check runs
// at the entry node and again on the owner.
import { errorResponse, parseActorKey, type ActorKey, type ActorRequest, type ActorResponse, type Identity } from './messages.ts';
import type { Authorizer } from './host.ts';

/** Rights an actor request may need. */
export type ActorRight = 'read' | 'lifecycle' | 'exec' | 'quota';

export function requestRight(request: ActorRequest): ActorRight {
  switch (request.type) {
    case 'status':
    case 'list':
    case 'usage':
    case 'logs':
    case 'events':
      return 'read';
    case 'start':
    case 'stop':
    case 'restart':
    case 'remove':
    case 'wait':
    case 'http':
      return 'lifecycle';
    case 'exec':
      return 'exec';
    case 'quotaSet':
      return 'quota';
    default: {
      const never: never = request;
      return never;
    }
  }
}

/**
 * An Authorizer from `allowed(identity, right, tenant)`, which answers null
 * when the identity holds the right on the tenant, else why not (naming the
 * missing right).
 */
export function authorizerFrom(allowed: (identity: Identity, right: ActorRight, tenant: string) => string | null): Authorizer {
  return {
    check(identity: Identity, key: ActorKey, request: ActorRequest): ActorResponse | null {
      const parsed = parseActorKey(key);
      if (parsed === null) return errorResponse('InvalidRequestError', `'${key}' names no actor`);
      const why = allowed(identity, requestRight(request), parsed.tenant);
      return why === null ? null : errorResponse('ForbiddenError', why);
    },
  };
}
