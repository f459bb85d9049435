// Who is looking at the dashboard. The node takes an `authorize` function so
// that the token verifier (tokens name a tenant and a role) plugs in at one
// place; until it is wired, every request is let in as an admin, which is what
// the rest of the client plane does on a cluster without tokens.
import type { IncomingMessage } from 'node:http';

export interface UiIdentity {
  /** Shown on the page: who the token belongs to. */
  readonly name: string;
  /** The only tenant whose projects it may see; null: every tenant (an admin). */
  readonly tenant: string | null;
}

/** The identity a request carries, or null to refuse it (401). May look the token up asynchronously. */
export type UiAuthorize = (request: IncomingMessage) => UiIdentity | null | Promise<UiIdentity | null>;

export const permissiveAuthorize: UiAuthorize = () => ({ name: 'anonymous (no tokens on this cluster)', tenant: null });

/** The token of an `Authorization: Bearer …` header, or null. */
export function bearerToken(request: IncomingMessage): string | null {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
  return match?.[1] ?? null;
}

export const maySee = (identity: UiIdentity, tenant: string): boolean => identity.tenant === null || identity.tenant === tenant;
