// Reads ava's TAP output line by line: renders each line for a person, counts passes, failures and
// skips, and collects the skipped tests with the reason prerequisites.ts put in their titles. Pure, so
// the reading is tested on text; run-ava.ts feeds it a live run.
import { SKIP_MARKER } from './prerequisites.ts';

export interface Skipped {
  readonly title: string;
  /** Why, from the title's marker; null for a test skipped without the prerequisites helper. */
  readonly reason: string | null;
}

export interface TapSummary {
  readonly passed: number;
  readonly failed: number;
  readonly skipped: number;
  readonly todo: number;
  readonly skips: readonly Skipped[];
  /** ava's own trailer (`# pass N` …) was seen and agrees with the lines counted. */
  readonly complete: boolean;
  /** What disagrees, when not complete. */
  readonly problem: string | null;
}

const RESULT = /^(ok|not ok) (\d+) - (.*?)(?: # (SKIP|TODO))?$/;
const TRAILER = /^# (tests|pass|skip|fail) (\d+)$/;

export class TapReader {
  #passed = 0;
  #failed = 0;
  #todo = 0;
  readonly #skips: Skipped[] = [];
  readonly #trailer = new Map<string, number>();
  #inYaml = false;

  /** The line to show for one line of TAP, or null for TAP's own bookkeeping. */
  line(text: string): string | null {
    if (this.#inYaml) {
      if (text === '  ...') this.#inYaml = false;
      return text;
    }
    if (text === '  ---') {
      this.#inYaml = true;
      return text;
    }
    const result = RESULT.exec(text);
    if (result !== null) return this.#result(result[1] === 'ok', result[3] ?? '', result[4] ?? null);
    const trailer = TRAILER.exec(text);
    if (trailer !== null) {
      this.#trailer.set(trailer[1] as string, Number(trailer[2]));
      return null;
    }
    if (text === 'TAP version 13' || /^1\.\.\d+$/.test(text) || text === '') return null;
    // A test's t.log lines, indented under it.
    if (text.startsWith('#   ')) return `      ${text.slice(4)}`;
    // A finished hook's name: its log lines (if any) follow as '#   ' lines.
    if (/^# .* hook$/.test(text)) return null;
    // Another comment from ava.
    if (text.startsWith('# ')) return `  ℹ ${text.slice(2)}`;
    return text;
  }

  #result(ok: boolean, title: string, directive: string | null): string {
    if (directive === 'SKIP') {
      const at = title.indexOf(SKIP_MARKER);
      const skipped = at < 0 ? { title, reason: null } : { title: title.slice(0, at), reason: title.slice(at + SKIP_MARKER.length).replace(/\]$/, '') };
      this.#skips.push(skipped);
      return `  - ${title}`;
    }
    if (directive === 'TODO') {
      this.#todo += 1;
      return `  ◌ todo ${title}`;
    }
    if (ok) this.#passed += 1;
    else this.#failed += 1;
    return `  ${ok ? '✔' : '✘'} ${title}`;
  }

  summary(): TapSummary {
    const skipped = this.#skips.length;
    const counted = { tests: this.#passed + this.#failed + skipped, pass: this.#passed, skip: skipped, fail: this.#failed + this.#todo };
    let problem: string | null = null;
    if (!this.#trailer.has('pass')) problem = 'ava ended without its summary (it crashed or was killed)';
    for (const [key, value] of Object.entries(counted)) {
      const theirs = this.#trailer.get(key) ?? (key === 'skip' ? 0 : undefined);
      // ava counts a crashed worker or file as a failure with no test line of its own.
      if (problem === null && theirs !== undefined && theirs !== value && !(key === 'fail' && theirs > value)) problem = `ava counted ${key} ${theirs}, the lines say ${value}`;
    }
    const failedByAva = this.#trailer.get('fail') ?? 0;
    return {
      passed: this.#passed,
      failed: Math.max(this.#failed, failedByAva - this.#todo),
      skipped,
      todo: this.#todo,
      skips: [...this.#skips],
      complete: problem === null,
      problem,
    };
  }
}

/** The end of a run: the skipped tests grouped by reason, then one closing line of counts. */
export function renderSummary(summary: TapSummary): string[] {
  const lines: string[] = [];
  if (summary.skips.length > 0) {
    const byReason = new Map<string, string[]>();
    for (const skip of summary.skips) {
      const reason = skip.reason ?? 'no reason given (declare it through actors/testing/prerequisites.ts)';
      byReason.set(reason, [...(byReason.get(reason) ?? []), skip.title]);
    }
    lines.push('', `Skipped ${summary.skips.length} test(s), by reason (under CI=true a missing package fails instead; a kernel fact or an opt-in run stays skipped):`);
    for (const [reason, titles] of byReason) {
      lines.push(`  ${titles.length} for: ${reason}`);
      for (const title of titles) lines.push(`      ${title}`);
    }
  }
  if (summary.problem !== null) lines.push('', `run-ava: ${summary.problem}`);
  lines.push('', `tests: ${summary.passed} passed, ${summary.failed} failed, ${summary.skipped} skipped${summary.todo > 0 ? `, ${summary.todo} todo` : ''}`);
  return lines;
}
