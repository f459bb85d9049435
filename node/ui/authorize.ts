// Who is looking at the dashboard. The routes take one `authorize` function
// (by default the node's own token check, NodeAuth.authenticate, which lets
// everyone in as an admin on a node without tokens), so the dashboard follows
// whatever verifier the node runs; tests inject their own.
import type { IncomingMessage } from 'node:http';
import type { Identity } from '../../actors/messages.ts';
import type { AuthOutcome } from '../mcp.ts';

/** The identity a request carries (ok), or why it is refused (401, 403, 429). May look the token up asynchronously. */
export type UiAuthorize = (request: IncomingMessage) => AuthOutcome | Promise<AuthOutcome>;

/** What the page is told about its viewer, and what the feed filters by. */
export interface UiIdentity {
  /** Shown on the page: the token's name. */
  readonly name: string;
  readonly role: string;
  /** The only tenant whose projects it may see; null: every tenant (an admin). */
  readonly tenant: string | null;
}

/** An admin sees every tenant (as tools' tenantFor lets it act on any); every other role, its own. */
export const uiIdentityOf = (identity: Identity): UiIdentity => ({ name: identity.tokenName, role: identity.role, tenant: identity.role === 'admin' ? null : identity.tenant });

export const maySee = (identity: UiIdentity, tenant: string): boolean => identity.tenant === null || identity.tenant === tenant;

/** The token of an `Authorization: Bearer …` header, or null. */
export function bearerToken(request: IncomingMessage): string | null {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  return match?.[1] ?? null;
}
