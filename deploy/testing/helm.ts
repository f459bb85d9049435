// `helm template` for the deploy tests: loads a chart (Chart.yaml, values.yaml merged
// with overrides, every file of templates/), renders it with go-template.ts and the
// Sprig and Helm functions the chart uses, and parses the manifests. Helm's own
// rules kept here: values and Chart.yaml fields as Helm names them (.Chart.AppVersion),
// numbers from values are float64, "<no value>" prints as "", files starting with "_"
// only define templates, NOTES.txt is not a manifest.
import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { TemplateError, Templates, goKind, goQuote, printValue, truthy, type TemplateFunction, type Value } from './go-template.ts';

export interface Manifest {
  readonly source: string;
  readonly kind: string;
  readonly metadata: { readonly name: string; readonly labels?: Record<string, string> };
  readonly [field: string]: unknown;
}

export interface RenderInput {
  readonly release?: string;
  readonly namespace?: string;
  /** Deep-merged over values.yaml, as `helm template -f` or `--set` would. */
  readonly values?: Record<string, unknown>;
}

/** Convert parsed YAML into template values: every number a float64, as Helm's JSON round trip makes it. */
function toValue(input: unknown): Value {
  if (input === null || input === undefined) return null;
  if (typeof input === 'number') return input;
  if (typeof input === 'bigint') return Number(input);
  if (typeof input === 'string' || typeof input === 'boolean') return input;
  if (Array.isArray(input)) return input.map(toValue);
  return Object.fromEntries(Object.entries(input as Record<string, unknown>).map(([key, value]) => [key, toValue(value)]));
}

function isMap(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Helm's coalescing of values: maps merge, anything else replaces, null deletes the key. */
export function mergeValues(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    if (value === null) delete out[key];
    else if (isMap(value) && isMap(out[key])) out[key] = mergeValues(out[key] as Record<string, unknown>, value);
    else out[key] = value;
  }
  return out;
}

const toInt64 = (value: Value): bigint => {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number') return BigInt(Math.trunc(value));
  if (typeof value === 'string') return /^[-+]?\d+$/.test(value.trim()) ? BigInt(value.trim()) : 0n;
  if (typeof value === 'boolean') return value ? 1n : 0n;
  return 0n;
};

/** Sprig's strval: how a value becomes a string for quote, join and friends. */
const strval = (value: Value): string => (typeof value === 'string' ? value : printValue(value));

function needInt(value: Value, fn: string): number {
  if (typeof value !== 'bigint') throw new TemplateError(`wrong type for value; expected int; got ${goKind(value)} (in ${fn})`);
  return Number(value);
}

function needString(value: Value, fn: string): string {
  if (typeof value !== 'string') throw new TemplateError(`wrong type for value; expected string; got ${goKind(value)} (in ${fn})`);
  return value;
}

/** YAML as Helm's toYaml writes it (sigs.k8s.io/yaml: keys sorted, no trailing newline). */
function toYaml(value: Value): string {
  const plain = (v: Value): unknown => (typeof v === 'bigint' ? Number(v) : Array.isArray(v) ? v.map(plain) : isMap(v) ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x as Value)])) : v);
  if (value === null) return 'null';
  return stringify(plain(value), { sortMapEntries: true, lineWidth: 0 }).replace(/\n$/, '');
}

/** The Sprig functions the chart uses, with Sprig's argument order and types. */
export const SPRIG: Record<string, TemplateFunction> = {
  default: (fallback, ...given) => (given.length === 0 || !truthy(given[0] ?? null) ? fallback : (given[0] as Value)),
  empty: (value) => !truthy(value),
  quote: (...values) => values.filter((v) => v !== null).map((v) => goQuote(strval(v))).join(' '),
  squote: (...values) => values.filter((v) => v !== null).map((v) => `'${strval(v)}'`).join(' '),
  upper: (s) => strval(s).toUpperCase(),
  lower: (s) => strval(s).toLowerCase(),
  trim: (s) => strval(s).trim(),
  trunc: (count, s) => {
    const n = needInt(count, 'trunc');
    const text = strval(s);
    return n >= 0 ? text.slice(0, n) : text.slice(Math.max(0, text.length + n));
  },
  trimSuffix: (suffix, s) => (strval(s).endsWith(strval(suffix)) ? strval(s).slice(0, strval(s).length - strval(suffix).length) : strval(s)),
  trimPrefix: (prefix, s) => (strval(s).startsWith(strval(prefix)) ? strval(s).slice(strval(prefix).length) : strval(s)),
  replace: (old, replacement, s) => strval(s).split(strval(old)).join(strval(replacement)),
  contains: (part, s) => strval(s).includes(strval(part)),
  hasPrefix: (prefix, s) => strval(s).startsWith(strval(prefix)),
  indent: (spaces, s) => {
    const pad = ' '.repeat(needInt(spaces, 'indent'));
    return pad + needString(s, 'indent').replaceAll('\n', `\n${pad}`);
  },
  nindent: (spaces, s) => {
    const pad = ' '.repeat(needInt(spaces, 'nindent'));
    return `\n${pad}${needString(s, 'nindent').replaceAll('\n', `\n${pad}`)}`;
  },
  list: (...items) => items,
  append: (list, item) => {
    if (!Array.isArray(list)) throw new TemplateError(`cannot append to type ${goKind(list)}`);
    return [...list, item as Value];
  },
  join: (separator, list) => (Array.isArray(list) ? list.filter((v) => v !== null).map(strval) : [strval(list as Value)]).join(needString(separator, 'join')),
  until: (count) => Array.from({ length: Math.max(0, needInt(count, 'until')) }, (_, i) => BigInt(i)),
  int: (value) => toInt64(value),
  int64: (value) => toInt64(value),
  toString: (value: Value) => strval(value),
  add: (...values) => values.reduce<bigint>((sum, v) => sum + toInt64(v), 0n),
  add1: (value) => toInt64(value) + 1n,
  sub: (a, b) => toInt64(a) - toInt64(b),
  mul: (...values) => values.reduce<bigint>((product, v) => product * toInt64(v), 1n),
  div: (a, b) => {
    if (toInt64(b) === 0n) throw new TemplateError('runtime error: integer divide by zero');
    return toInt64(a) / toInt64(b);
  },
  mod: (a, b) => toInt64(a) % toInt64(b),
  max: (...values) => values.map(toInt64).reduce((a, b) => (a > b ? a : b)),
  min: (...values) => values.map(toInt64).reduce((a, b) => (a < b ? a : b)),
  ternary: (whenTrue, whenFalse, condition) => (truthy(condition) ? whenTrue : whenFalse) as Value,
  coalesce: (...values) => values.find((v) => truthy(v)) ?? null,
  dict: (...pairs) => Object.fromEntries(Array.from({ length: Math.floor(pairs.length / 2) }, (_, i) => [strval(pairs[2 * i] as Value), pairs[2 * i + 1] as Value])),
  get: (map, key) => (isMap(map) ? ((map as Record<string, Value>)[strval(key)] ?? '') : ''),
  hasKey: (map, key) => isMap(map) && Object.hasOwn(map, strval(key)),
  b64enc: (s) => Buffer.from(strval(s)).toString('base64'),
  sha256sum: (s) => createHash('sha256').update(strval(s)).digest('hex'),
  toJson: (value) => JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? Number(v) : v)),
  fail: (message) => {
    throw new TemplateError(strval(message));
  },
};

/** Why a chart failed to render, as helm would say it. */
export class ChartRenderError extends Error {
  override readonly name = 'ChartRenderError';
}

/** Render `chartDir` like `helm template RELEASE chartDir -n NAMESPACE -f values`. */
export async function renderChart(chartDir: string, input: RenderInput = {}): Promise<Manifest[]> {
  const chart = parse(await readFile(join(chartDir, 'Chart.yaml'), 'utf8')) as Record<string, unknown>;
  const defaults = (parse(await readFile(join(chartDir, 'values.yaml'), 'utf8')) ?? {}) as Record<string, unknown>;
  const values = mergeValues(defaults, input.values ?? {});
  const names = (await readdir(join(chartDir, 'templates'))).sort();
  const release = { Name: input.release ?? 'debughost', Namespace: input.namespace ?? 'default', Service: 'Helm', IsInstall: true, IsUpgrade: false, Revision: 1n };
  const chartValue = { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion, Description: chart.description } as Record<string, unknown>;
  const templates: Templates = new Templates({
    missingAsEmpty: true,
    functions: {
      ...SPRIG,
      include: (name: Value, data: Value): Value => templates.execute(needString(name, 'include'), data),
      required: (message: Value, value: Value): Value => {
        if (value === null || value === undefined || value === '') throw new TemplateError(needString(message, 'required'));
        return value;
      },
      toYaml: (value: Value): Value => toYaml(value),
    },
  });
  const sources: { path: string; name: string }[] = [];
  for (const name of names) {
    const path = `${String(chart.name)}/templates/${name}`;
    templates.add(path, await readFile(join(chartDir, 'templates', name), 'utf8'));
    sources.push({ path, name });
  }
  const manifests: Manifest[] = [];
  for (const { path, name } of sources) {
    if (name.startsWith('_') || name === 'NOTES.txt') continue;
    const top = {
      Values: toValue(values),
      Release: release,
      Chart: toValue(chartValue),
      Capabilities: { KubeVersion: { Version: 'v1.29.0', Major: '1', Minor: '29' } },
      Template: { Name: path, BasePath: `${String(chart.name)}/templates` },
    } as unknown as Value;
    let text: string;
    try {
      text = templates.execute(path, top);
    } catch (error) {
      if (error instanceof TemplateError) throw new ChartRenderError(`${path}: ${error.message}`, { cause: error });
      throw error;
    }
    // YAML 1.1, as Kubernetes reads manifests (go-yaml): 0400 is octal, unquoted off is false.
    for (const document of parseAllDocuments(text, { version: '1.1' })) {
      if (document.errors.length > 0) throw new ChartRenderError(`${path}: the rendered YAML is invalid: ${document.errors[0]?.message ?? ''}\n${text}`);
      const manifest = document.toJS() as Manifest | null;
      if (manifest !== null) manifests.push({ ...manifest, source: path });
    }
  }
  return manifests;
}
