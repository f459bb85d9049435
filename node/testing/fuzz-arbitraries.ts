// Test support for the issue 11 fuzz suite: fast-check arbitraries made from the
// system's own schemas. MCP tool arguments come from the JSON Schema each tool
// advertises in tools/list (the SDK derives it from the tool's zod shape in
// actors/schemas.ts), gRPC messages from the protobuf-es descriptors; both are
// then mutated (fields dropped, replaced by any JSON value, strings past their
// bounds, bytes flipped). Shell commands are the one thing never random: a
// workload runs what it is given, so any generated command is wrapped in echo.
import fc from 'fast-check';
import { ScalarType, type DescField, type DescMessage } from '@bufbuild/protobuf';

/** The subset of JSON Schema the SDK emits for zod shapes. */
export interface JsonSchema {
  readonly type?: string | readonly string[];
  readonly properties?: Readonly<Record<string, JsonSchema>>;
  readonly required?: readonly string[];
  readonly additionalProperties?: boolean | JsonSchema;
  readonly items?: JsonSchema;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly pattern?: string;
  readonly enum?: readonly unknown[];
  readonly const?: unknown;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
  readonly exclusiveMaximum?: number;
  readonly anyOf?: readonly JsonSchema[];
  readonly oneOf?: readonly JsonSchema[];
}

/** Generated strings stay short unless a case asks for a huge one: the cluster's time goes to many cases, not to big ones. */
const STRING_CHARS_TYPICAL_MAX = 64;
/** A string past any bound the schemas set (the largest is 1 MiB for HTTP bodies; the MCP body limit is 4 MiB). */
const STRING_CHARS_HUGE = 300_000;
const ARRAY_ITEMS_TYPICAL_MAX = 4;

/** Strings, numbers and nesting that no honest client sends. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.constantFrom('', ' ', '\u0000', '../../etc/passwd', '%00', '\u202e', 'a'.repeat(70), '-1', '1e309', '__proto__', 'constructor'),
  fc.constantFrom(-1, 0, 2 ** 31, 2 ** 53, -(2 ** 53), 1e308, -0, 0.5),
  fc.constant('x'.repeat(STRING_CHARS_HUGE)),
  fc.constant({ __proto__: { polluted: true } }),
  fc.constant(JSON.parse('{"__proto__":{"polluted":true}}') as unknown),
  fc.constant(nested(200)),
);

function nested(depth: number): unknown {
  let value: unknown = 'deep';
  for (let i = 0; i < depth; i += 1) value = { a: value };
  return value;
}

function typeOf(schema: JsonSchema): string | undefined {
  return Array.isArray(schema.type) ? (schema.type as string[])[0] : (schema.type as string | undefined);
}

/** Values that fit `schema` (as far as JSON Schema says; zod refinements may still refuse some). */
export function fromJsonSchema(schema: JsonSchema): fc.Arbitrary<unknown> {
  if (schema.const !== undefined) return fc.constant(schema.const);
  if (schema.enum !== undefined) return fc.constantFrom(...schema.enum);
  const union = schema.anyOf ?? schema.oneOf;
  if (union !== undefined) return fc.oneof(...union.map(fromJsonSchema));
  switch (typeOf(schema)) {
    case 'object': {
      const properties = schema.properties ?? {};
      const model: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [name, property] of Object.entries(properties)) model[name] = fromJsonSchema(property);
      const extra = typeof schema.additionalProperties === 'object' ? schema.additionalProperties : null;
      const base = fc.record(model, { requiredKeys: (schema.required ?? []).filter((name) => name in properties) as string[] });
      if (extra === null) return base;
      return fc.tuple(base, fc.dictionary(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,15}$/), fromJsonSchema(extra), { maxKeys: 4 })).map(([a, b]) => ({ ...b, ...a }));
    }
    case 'array': {
      const minLength = schema.minItems ?? 0;
      const maxLength = Math.max(minLength, Math.min(schema.maxItems ?? ARRAY_ITEMS_TYPICAL_MAX, ARRAY_ITEMS_TYPICAL_MAX));
      return fc.array(schema.items === undefined ? fc.jsonValue({ maxDepth: 1 }) : fromJsonSchema(schema.items), { minLength, maxLength });
    }
    case 'string': {
      const minLength = schema.minLength ?? 0;
      const maxLength = Math.max(minLength, Math.min(schema.maxLength ?? STRING_CHARS_TYPICAL_MAX, STRING_CHARS_TYPICAL_MAX));
      if (schema.pattern !== undefined) return fc.stringMatching(new RegExp(schema.pattern)).filter((s) => s.length >= minLength && s.length <= (schema.maxLength ?? Infinity));
      return fc.string({ minLength, maxLength, unit: 'grapheme' });
    }
    case 'integer':
    case 'number': {
      const min = schema.minimum ?? (schema.exclusiveMinimum === undefined ? -(2 ** 31) : schema.exclusiveMinimum + 1);
      const max = schema.maximum ?? (schema.exclusiveMaximum === undefined ? 2 ** 31 : schema.exclusiveMaximum - 1);
      return fc.integer({ min: Math.max(min, Number.MIN_SAFE_INTEGER), max: Math.min(max, Number.MAX_SAFE_INTEGER) });
    }
    case 'boolean':
      return fc.boolean();
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

/** An object that fits `schema`, then (half the time) one of: a field replaced by a hostile value, a required field dropped, an unknown field added, a string past its bound. */
export function mutatedArguments(schema: JsonSchema): fc.Arbitrary<Record<string, unknown>> {
  const valid = fromJsonSchema(schema).map((value) => (typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {}));
  const names = Object.keys(schema.properties ?? {});
  if (names.length === 0) return fc.oneof(valid, fc.tuple(valid, fc.string({ maxLength: 8 }), hostileValue).map(([args, key, value]) => ({ ...args, [key]: value })));
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('replace' as const), field: fc.constantFrom(...names), value: hostileValue }),
    fc.record({ kind: fc.constant('drop' as const), field: fc.constantFrom(...names), value: fc.constant(null) }),
    fc.record({ kind: fc.constant('add' as const), field: fc.string({ minLength: 1, maxLength: 12 }), value: hostileValue }),
    fc.record({ kind: fc.constant('long' as const), field: fc.constantFrom(...names), value: fc.constant(null) }),
  );
  return fc.tuple(valid, fc.option(mutation, { freq: 1 })).map(([args, change]) => {
    if (change === null) return args;
    const copy: Record<string, unknown> = { ...args };
    switch (change.kind) {
      case 'replace':
      case 'add':
        copy[change.field] = change.value;
        break;
      case 'drop':
        delete copy[change.field];
        break;
      case 'long': {
        const bound = schema.properties?.[change.field]?.maxLength;
        copy[change.field] = 'y'.repeat((bound ?? STRING_CHARS_TYPICAL_MAX) + 1);
        break;
      }
    }
    return copy;
  });
}

/** Commands the fuzz may really run: short, harmless, each ending by itself or sleeping briefly. */
export const SAFE_COMMANDS = ['true', 'false', 'echo hi', 'sleep 2', 'exit 3', 'echo $PORT', 'printf "%s\\n" a b c'] as const;

/** Any string as a command: a safe one stays, anything else is printed by echo (single-quoted), never run. */
export function harmlessCommand(value: string): string {
  if ((SAFE_COMMANDS as readonly string[]).includes(value)) return value;
  return `echo '${value.replace(/'/g, `'\\''`)}'`;
}

/** Deep copy of `value` with every `command` string made harmless and every wait-like number at most `waitMsMax` (a default wait would be 30 s). */
export function tamed(value: unknown, waitMsMax: number): unknown {
  if (Array.isArray(value)) return value.map((item) => tamed(item, waitMsMax));
  if (typeof value !== 'object' || value === null) return value;
  const copy: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    if (key === 'command' && typeof item === 'string') copy[key] = harmlessCommand(item);
    else if ((key === 'waitMs' || key === 'timeoutMs') && typeof item === 'number' && item > waitMsMax) copy[key] = waitMsMax;
    else copy[key] = tamed(item, waitMsMax);
  }
  return copy;
}

// ---- protobuf messages ----------------------------------------------------------------

const MESSAGE_DEPTH_MAX = 4;

function scalar(field: DescField & { scalar: ScalarType }): fc.Arbitrary<unknown> {
  switch (field.scalar) {
    case ScalarType.STRING:
      return field.name === 'command' ? fc.constantFrom(...SAFE_COMMANDS) : fc.oneof(fc.string({ maxLength: 24 }), fc.constantFrom('', 'n1', 'n2', 'n3', 'projects/evil/p', 'x'.repeat(5000)));
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 64 });
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return fc.double();
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.bigInt({ min: 0n, max: 16n }));
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.bigInt({ min: 0n, max: 16n }), fc.constant(2n ** 53n - 1n));
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.oneof(fc.nat(), fc.constant(2 ** 32 - 1));
    default:
      return fc.integer();
  }
}

function fieldValue(field: DescField, depth: number): fc.Arbitrary<unknown> | null {
  switch (field.fieldKind) {
    case 'scalar':
      return scalar(field);
    case 'enum':
      return fc.oneof(fc.constantFrom(...field.enum.values.map((v) => v.number)), fc.integer({ min: -5, max: 1000 }));
    case 'message':
      return depth >= MESSAGE_DEPTH_MAX ? null : messageInit(field.message, depth + 1);
    case 'list': {
      const item = field.listKind === 'scalar' ? scalar(field as unknown as DescField & { scalar: ScalarType }) : field.listKind === 'enum' ? fc.integer({ min: 0, max: 8 }) : depth >= MESSAGE_DEPTH_MAX ? null : messageInit(field.message, depth + 1);
      return item === null ? null : fc.array(item, { maxLength: 3 });
    }
    case 'map': {
      const value = field.mapKind === 'scalar' ? scalar({ scalar: field.scalar } as DescField & { scalar: ScalarType }) : field.mapKind === 'enum' ? fc.integer({ min: 0, max: 8 }) : depth >= MESSAGE_DEPTH_MAX ? null : messageInit(field.message, depth + 1);
      return value === null ? null : fc.dictionary(fc.string({ maxLength: 8 }), value, { maxKeys: 3 });
    }
  }
}

/** A protobuf-es init object for `message`: any subset of its fields, one case of each oneof, random values. */
export function messageInit(message: DescMessage, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const plain: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of message.fields) {
    if (field.oneof !== undefined) continue;
    const value = fieldValue(field, depth);
    if (value !== null) plain[field.localName] = value;
  }
  const oneofs = message.oneofs.map((oneof) => {
    const cases = oneof.fields.flatMap((field) => {
      const value = fieldValue(field, depth);
      return value === null ? [] : [value.map((v) => ({ case: field.localName, value: v }))];
    });
    return [oneof.localName, cases.length === 0 ? fc.constant(undefined) : fc.oneof(...cases)] as const;
  });
  return fc.tuple(fc.record(plain, { requiredKeys: [] }), fc.tuple(...oneofs.map(([, arbitrary]) => fc.option(arbitrary)))).map(([fields, chosen]) => {
    const init: Record<string, unknown> = { ...fields };
    oneofs.forEach(([name], index) => {
      const value = chosen[index];
      if (value !== null && value !== undefined) init[name] = value;
    });
    return init;
  });
}

/** Bytes with a few of them changed, cut short, or extended with garbage. */
export function mutatedBytes(bytes: Uint8Array): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    fc.constant(bytes),
    fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 4 })).map(([at, byte, times]) => {
      const copy = Uint8Array.from(bytes);
      for (let i = 0; i < times && copy.length > 0; i += 1) copy[(at + i * 7) % copy.length] = byte ^ (copy[(at + i * 7) % copy.length] ?? 0);
      return copy;
    }),
    fc.nat().map((cut) => bytes.slice(0, bytes.length === 0 ? 0 : cut % bytes.length)),
    fc.uint8Array({ minLength: 1, maxLength: 32 }).map((tail) => Uint8Array.from([...bytes, ...tail])),
  );
}
