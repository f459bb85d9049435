// Records the actors keep in the replicated state, read back through their
// schemas: a value that does not fit is never handed to an actor as a
// half-formed object. Parsed records are cached by (key, modRevision), since
// a record never changes without its revision moving. `systemValueError` is
// the same check as a pure function of (key, value), for the state machine to
// refuse a bad write at apply time, identically on every replica.
import type { z } from 'zod';
import type { KeyValue } from '../consensus/kv-state-machine.ts';
import type { ProjectEventsRecord, ProjectRecord, ProjectStatusRecord, TenantQuota, TenantUsage } from './messages.ts';
import { eventsRecordSchema, projectRecordSchema, quotaRecordSchema, statusRecordSchema, usageRecordSchema } from './schemas.ts';
import { systemValueCheck } from './system-values.ts';

type Schema<T> = z.ZodType<T, unknown>;

/**
 * Why `value` may not be stored under `key`, in one line; null when it fits or
 * `key` is under no system prefix. The rule of each prefix is in
 * system-values.ts; every system prefix has one.
 */
export function systemValueError(key: string, value: string): string | null {
  const why = systemValueCheck(key)?.(value) ?? null;
  return why === null ? null : `value of ${key} ${why}`;
}

/** Counts of records read back that did not fit their schema (a metric; each key is logged once). */
export interface RecordErrors {
  invalid: number;
  readonly keys: Set<string>;
}

export class RecordReader {
  /** Parsed records by key, valid for one modRevision. */
  private readonly cache = new Map<string, { readonly modRevision: number; readonly value: unknown }>();
  readonly errors: RecordErrors = { invalid: 0, keys: new Set() };

  constructor(
    private readonly onInvalid: (key: string, detail: string) => void = () => undefined,
    /** Cached records, across all keys; the oldest is dropped first. */
    private readonly cachedMax = 20_000,
  ) {}

  project(kv: KeyValue | null): ProjectRecord | null {
    return this.read(kv, projectRecordSchema as Schema<ProjectRecord>);
  }

  status(kv: KeyValue | null): ProjectStatusRecord | null {
    return this.read(kv, statusRecordSchema as Schema<ProjectStatusRecord>);
  }

  quota(kv: KeyValue | null): TenantQuota | null {
    return this.read(kv, quotaRecordSchema as Schema<TenantQuota>);
  }

  usage(kv: KeyValue | null): TenantUsage | null {
    return this.read(kv, usageRecordSchema as Schema<TenantUsage>);
  }

  events(kv: KeyValue | null): ProjectEventsRecord | null {
    return this.read(kv, eventsRecordSchema as Schema<ProjectEventsRecord>);
  }

  private read<T>(kv: KeyValue | null, schema: Schema<T>): T | null {
    if (kv === null) return null;
    const cached = this.cache.get(kv.key);
    if (cached !== undefined && cached.modRevision === kv.modRevision) return cached.value as T | null;
    let value: T | null = null;
    try {
      const result = schema.safeParse(JSON.parse(kv.value));
      if (result.success) value = result.data;
      else this.invalid(kv.key, result.error.issues[0]?.message ?? 'does not fit its schema');
    } catch {
      this.invalid(kv.key, 'not JSON');
    }
    if (this.cache.size >= this.cachedMax) {
      const oldest = this.cache.keys().next();
      if (oldest.done !== true) this.cache.delete(oldest.value);
    }
    this.cache.set(kv.key, { modRevision: kv.modRevision, value });
    return value;
  }

  private invalid(key: string, detail: string): void {
    this.errors.invalid += 1;
    if (this.errors.keys.has(key)) return;
    if (this.errors.keys.size < 1000) this.errors.keys.add(key);
    this.onInvalid(key, detail);
  }
}
