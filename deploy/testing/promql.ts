// What the deploy tests need to know about PromQL and the Prometheus text format:
// the metric names a query reads, and the metric names a /metrics page exports.
// A small scanner, not a parser: `promtool check rules` checks the syntax.

/** Words of PromQL that look like metric names but are not. */
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'and', 'or', 'unless', 'inf', 'nan']);

/** Metric names a PromQL expression selects (function names, labels, strings and durations left out). */
export function metricNamesOf(expr: string): string[] {
  const text = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const match of text.matchAll(/(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const rest = text.slice((match.index ?? 0) + match[0].length).trimStart();
    if (rest.startsWith('(') || KEYWORDS.has(match[0].toLowerCase())) continue;
    names.add(match[0]);
  }
  return [...names];
}

/** The metric of a Grafana variable query `label_values(metric, label)`, or null for other queries. */
export function labelValuesMetric(query: string): string | null {
  return /^\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,/.exec(query)?.[1] ?? null;
}

export interface Exposition {
  /** Families from `# TYPE name type` lines. */
  readonly types: ReadonlyMap<string, string>;
  /** Sample names (histogram series appear as name_bucket, name_sum, name_count). */
  readonly samples: ReadonlySet<string>;
}

export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples = new Set<string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type !== null) types.set(type[1] as string, type[2] as string);
    else if (line !== '' && !line.startsWith('#')) samples.add(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0] ?? '');
  }
  return { types, samples };
}

/** Whether `name` is a series the exposition declares: a sample, a family, or a histogram/summary's _bucket, _sum or _count. */
export function exports(exposition: Exposition, name: string): boolean {
  if (exposition.samples.has(name) || exposition.types.has(name)) return true;
  const suffix = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (suffix === null) return false;
  const type = exposition.types.get(suffix[1] as string);
  return type === 'histogram' || (type === 'summary' && suffix[2] !== 'bucket');
}

/** Every PromQL expression of a Grafana dashboard: panel targets (rows included) and variable queries. */
export function dashboardQueries(dashboard: unknown): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  type Panel = { title?: string; targets?: { expr?: string }[]; panels?: Panel[] };
  const visit = (panels: Panel[] | undefined): void => {
    for (const panel of panels ?? []) {
      for (const target of panel.targets ?? []) if (typeof target.expr === 'string') out.push({ where: `panel '${panel.title ?? '?'}'`, expr: target.expr });
      visit(panel.panels);
    }
  };
  const board = dashboard as { panels?: Panel[]; templating?: { list?: { name?: string; query?: string | { query?: string } }[] } };
  visit(board.panels);
  for (const variable of board.templating?.list ?? []) {
    const query = typeof variable.query === 'string' ? variable.query : variable.query?.query;
    const metric = query === undefined ? null : labelValuesMetric(query);
    if (metric !== null) out.push({ where: `variable '${variable.name ?? '?'}'`, expr: metric });
  }
  return out;
}

/** Each query that names a metric the exposition lacks, as "where: name". Empty when all are exported. */
export function unexportedMetrics(dashboard: unknown, exposition: Exposition): string[] {
  const missing: string[] = [];
  for (const { where, expr } of dashboardQueries(dashboard)) {
    for (const name of metricNamesOf(expr)) if (!exports(exposition, name)) missing.push(`${where}: ${name}`);
  }
  return missing;
}

/** The value of the first sample of `name` whose labels include all of `labels` (in any order), or undefined. */
export function sampleValue(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null || match[1] !== name) continue;
    const have = new Map([...(match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => have.get(key) === value)) return Number(match[3]);
  }
  return undefined;
}
