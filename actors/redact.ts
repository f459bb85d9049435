// What never leaves a node in the clear: values under keys that name a
// secret (a token, a password, an Authorization header), every value of an
// environment map (the names stay), and any string that looks like one of our
// tokens wherever it appears. Used for audit digests and for every log line.

/** Keys whose values are secrets wherever they appear. */
const SECRET_KEY_PATTERN = /token|secret|password|passwd|authorization|credential|api[-_]?key|private[-_]?key|cookie|proof/i;
/** ...except keys that name a secret without holding it (tokenId, tokenName): ids and names are public. */
const PUBLIC_KEY_PATTERN = /(id|ids|name|names|count|kind|file|path)$/i;
/** Keys whose values are maps of environment variables. */
const ENV_KEY_PATTERN = /^env$|environment/i;
/** A debughost token anywhere in a string (dht./dhj. id . secret). */
const TOKEN_TEXT_PATTERN = /\bdh[tj]\.[0-9a-f]{16}\.[A-Za-z0-9_-]{43}/g;
/** Nesting followed before the rest is cut: log objects are shallow, and a cycle must not loop. */
const DEPTH_MAX = 12;

export const REDACTED = '[redacted]';

export const isSecretKey = (key: string): boolean => SECRET_KEY_PATTERN.test(key) && !PUBLIC_KEY_PATTERN.test(key);

/** `text` with every debughost token in it replaced. */
export const redactText = (text: string): string => text.replace(TOKEN_TEXT_PATTERN, REDACTED);

/** A copy of `value` with every secret replaced by REDACTED (the input is not changed). */
export function redactSecrets(value: unknown, key = '', depth = 0): unknown {
  if (key !== '' && isSecretKey(key)) return REDACTED;
  if (typeof value === 'string') return redactText(value);
  if (value === null || typeof value !== 'object') return value;
  if (depth >= DEPTH_MAX) return REDACTED;
  if (Array.isArray(value)) return value.map((item) => redactSecrets(item, '', depth + 1));
  if (value instanceof Error) return { name: value.name, message: redactText(value.message) };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (ENV_KEY_PATTERN.test(k) && v !== null && typeof v === 'object' && !Array.isArray(v)) {
      out[k] = Object.fromEntries(Object.keys(v as Record<string, unknown>).map((name) => [name, REDACTED]));
    } else {
      out[k] = redactSecrets(v, k, depth + 1);
    }
  }
  return out;
}
