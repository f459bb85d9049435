// Where the nodes' CPU went, from the V8 profiles `npm run bench -- mcp --cpu-prof-dir DIR`
// makes: the bench marks its phases (idle, load, one client, starts) on the monotonic clock
// V8 stamps samples with, and this script sums each profile's samples per phase by
// function (self and total time) and by package.
//   node --import tsx bench/cpu-profile.ts DIR [--top 25] [--phase load]
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

export const PHASES_FILE = 'phases.json';

/** Phase starts in microseconds of the monotonic clock (process.hrtime), the clock of a V8 profile's timestamps. */
export class PhaseMarks {
  private readonly marks: { name: string; atUs: number }[] = [];

  begin(name: string): void {
    this.marks.push({ name, atUs: Number(process.hrtime.bigint() / 1000n) });
  }

  write(path: string): void {
    writeFileSync(path, `${JSON.stringify(this.marks)}\n`);
  }
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}

interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface PhaseSummary {
  readonly phase: string;
  readonly wallMs: number;
  /** Sampled time that was not (idle), garbage collection and program included. */
  readonly busyMs: number;
  readonly selfMs: Map<string, number>;
  readonly totalMs: Map<string, number>;
  readonly packageMs: Map<string, number>;
}

const SPECIAL = new Set(['(idle)', '(root)']);

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url === '' ? '' : url.replace(/^.*\/node_modules\//, '').replace(/^.*\/dist\//, 'dist/').replace(/^file:\/\//, '');
  return `${functionName === '' ? '(anonymous)' : functionName} ${file}${url === '' ? '' : `:${lineNumber + 1}`}`.trim();
}

function packageOf(node: ProfileNode): string {
  const { url, functionName } = node.callFrame;
  if (url === '') return functionName.startsWith('(') ? functionName : '(native)';
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (match?.[1] !== undefined) return match[1];
  if (url.includes('/dist/')) return 'debughost';
  if (url.startsWith('node:')) return 'node:*';
  return url;
}

const add = (map: Map<string, number>, key: string, ms: number): void => {
  map.set(key, (map.get(key) ?? 0) + ms);
};

/** Sums the samples of one profile that fall in [fromUs, toUs). Each sample counts the time until the next one. */
export function summarize(profile: Profile, phase: string, fromUs: number, toUs: number): PhaseSummary {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const selfMs = new Map<string, number>();
  const totalMs = new Map<string, number>();
  const packageMs = new Map<string, number>();
  let busyMs = 0;
  let atUs = profile.startTime;
  for (let i = 0; i < profile.samples.length; i += 1) {
    atUs += profile.timeDeltas[i] ?? 0;
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    if (atUs < fromUs || atUs >= toUs) continue;
    const leaf = byId.get(profile.samples[i] as number);
    if (leaf === undefined || SPECIAL.has(leaf.callFrame.functionName)) continue;
    busyMs += ms;
    add(selfMs, frameName(leaf), ms);
    add(packageMs, packageOf(leaf), ms);
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const node = byId.get(id) as ProfileNode;
      const name = frameName(node);
      if (!seen.has(name) && !SPECIAL.has(node.callFrame.functionName)) add(totalMs, name, ms);
      seen.add(name);
    }
  }
  return { phase, wallMs: (toUs - fromUs) / 1000, busyMs, selfMs, totalMs, packageMs };
}

function top(map: Map<string, number>, count: number, wallMs: number): string {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, ms]) => `  ${ms.toFixed(0).padStart(7)} ms ${((ms * 1000) / wallMs).toFixed(1).padStart(6)} ms/s  ${name}`)
    .join('\n');
}

function main(argv: string[]): void {
  const { values, positionals } = parseArgs({ args: argv, options: { top: { type: 'string' }, phase: { type: 'string' } }, allowPositionals: true });
  const dir = positionals[0];
  if (dir === undefined) {
    process.stderr.write('usage: node --import tsx bench/cpu-profile.ts DIR [--top 25] [--phase load]\n');
    process.exitCode = 2;
    return;
  }
  const count = Number(values.top ?? 25);
  const marks = JSON.parse(readFileSync(join(dir, PHASES_FILE), 'utf8')) as { name: string; atUs: number }[];
  for (const file of readdirSync(dir).filter((name) => name.endsWith('.cpuprofile')).sort()) {
    const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as Profile;
    for (let i = 0; i + 1 < marks.length; i += 1) {
      const mark = marks[i] as { name: string; atUs: number };
      if (values.phase !== undefined && values.phase !== mark.name) continue;
      const summary = summarize(profile, mark.name, mark.atUs, (marks[i + 1] as { atUs: number }).atUs);
      process.stdout.write(`\n== ${file} phase ${mark.name}: ${summary.wallMs.toFixed(0)} ms wall, ${summary.busyMs.toFixed(0)} ms sampled busy (${((summary.busyMs * 1000) / summary.wallMs).toFixed(1)} ms/s)\n`);
      process.stdout.write(`-- by package (self)\n${top(summary.packageMs, 12, summary.wallMs)}\n`);
      process.stdout.write(`-- self\n${top(summary.selfMs, count, summary.wallMs)}\n`);
      process.stdout.write(`-- total (inclusive)\n${top(summary.totalMs, count, summary.wallMs)}\n`);
    }
  }
}

if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) main(process.argv.slice(2));
