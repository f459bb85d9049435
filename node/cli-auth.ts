// How the CLI's clients reach a cluster: TLS files when it runs mutual TLS,
// and a bearer token on every call, from --token, DEBUGHOST_TOKEN, or the
// admin token file `debughost up` left in the data dir (./data by default).
import { readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { parseToken } from '../actors/tokens.ts';
import { adminTokenPath } from './cluster-files.ts';
import type { TlsFiles } from './node.ts';
import { withMetadata } from './peer-auth.ts';
import { UsageError } from './usage-error.ts';

/** Flags every client command takes: TLS files for a cluster that runs mutual TLS, and where the token comes from. */
export const CLIENT_FLAGS = {
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
  token: { type: 'string' },
  'data-dir': { type: 'string' },
} as const;

export type ClientFlagValues = { readonly [Name in keyof typeof CLIENT_FLAGS]?: string | undefined };

export const TOKEN_ENV = 'DEBUGHOST_TOKEN';

export function readTls(cert: string | undefined, key: string | undefined, ca: string | undefined): TlsFiles | null {
  if (cert === undefined && key === undefined && ca === undefined) return null;
  if (cert === undefined || key === undefined || ca === undefined) throw new UsageError('TLS needs all three of --tls-cert, --tls-key and --tls-ca (mutual TLS between members)');
  const read = (flag: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (error) {
      throw new UsageError(`--${flag}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  return { cert: read('tls-cert', cert), key: read('tls-key', key), ca: read('tls-ca', ca) };
}

/**
 * grpc-js passes the target host as the TLS server name, and Node warns
 * (DEP0123) when that is an IP address, as member addresses usually are. The
 * warning is about SNI only, certificate checks still use the IP SAN, so this
 * one warning is dropped instead of printed on every start and CLI call.
 */
export function quietIpServerNameWarning(): void {
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const code = typeof rest[0] === 'object' && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
    if (code === 'DEP0123') return;
    emit(warning, ...rest);
  }) as typeof process.emitWarning;
}

/** The token the CLI sends: --token, else $DEBUGHOST_TOKEN, else the admin token in the data dir, else none. */
export function resolveToken(values: ClientFlagValues, env: NodeJS.ProcessEnv = process.env): string | null {
  const given = values.token ?? env[TOKEN_ENV] ?? null;
  if (given !== null && given !== '') {
    if (parseToken(given) === null) throw new UsageError(`${values.token === undefined ? TOKEN_ENV : '--token'} is not a debughost token (they look like dht.<id>.<secret>)`);
    return given;
  }
  const path = adminTokenPath(resolvePath(values['data-dir'] ?? 'data'));
  try {
    const text = readFileSync(path, 'utf8').trim();
    return parseToken(text) === null ? null : text;
  } catch {
    return null;
  }
}

/** Plaintext, or TLS that checks the server against the CA and presents the client cert; either way with the bearer token. */
export function clientCredentials(values: ClientFlagValues): grpc.ChannelCredentials {
  const tls = readTls(values['tls-cert'], values['tls-key'], values['tls-ca']);
  if (tls !== null) quietIpServerNameWarning();
  const token = resolveToken(values);
  const base = tls === null ? null : grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
  if (token === null) return base ?? grpc.credentials.createInsecure();
  const header = { authorization: `Bearer ${token}` };
  return withMetadata(base, () => header);
}

/** What to tell a user whose call was refused for want of a token. */
export const NO_TOKEN_HELP = `pass --token TOKEN or set ${TOKEN_ENV} (debughost up wrote an admin token to data/admin-token; --data-dir DIR reads DIR/admin-token)`;
