// The HTML report of a chaos run: one self-contained page (inline SVG, no
// scripts, no fetches) with every call's latency over time, the fault windows
// shaded behind it, the nemesis timeline and the checkers' findings. Pure:
// data in, text out.
import { describeFault } from './schedule.ts';
import type { TimelineEvent, WindowRecord } from './nemesis.ts';
import type { CallRecord, WorkloadVerdict } from './workload.ts';

export interface ReportData {
  readonly seed: number;
  readonly prefix: string;
  readonly nodes: number;
  readonly kinds: readonly string[];
  readonly durationMs: number;
  readonly calls: readonly CallRecord[];
  readonly windows: readonly WindowRecord[];
  readonly perWindowRecoveryMs: readonly (number | null)[];
  readonly timeline: readonly TimelineEvent[];
  readonly verdicts: readonly WorkloadVerdict[];
  readonly summary: Readonly<Record<string, unknown>>;
  readonly registerExplanation: string;
}

const WIDTH = 1100;
const HEIGHT = 360;
const MARGIN = { left: 60, right: 20, top: 20, bottom: 40 };
/** Latency axis: log scale from 0.5 ms to the largest latency seen (at least 1 s). */
const LATENCY_MS_FLOOR = 0.5;
const COLOURS: Record<CallRecord['outcome'], string> = { ok: '#2a9d4b', fail: '#e08a00', unknown: '#d62828' };
/** Most points drawn; beyond it calls are thinned evenly (counts stay exact in the tables). */
const POINTS_MAX = 20_000;

export const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function renderReport(data: ReportData): string {
  const title = `debughost chaos — seed ${data.seed}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}
.ok{color:#2a9d4b}.bad{color:#d62828}pre{background:#f6f6f6;padding:8px;white-space:pre-wrap;font-size:12px}
</style></head><body>
<h1>${escapeHtml(title)}</h1>
<p>run <code>${escapeHtml(data.prefix)}</code>, ${data.nodes} nodes, ${(data.durationMs / 1000).toFixed(0)} s, nemesis ${escapeHtml(data.kinds.join(', '))}.
Replay the schedule with <code>debughost chaos --seed ${data.seed} --nodes ${data.nodes} --time ${(data.durationMs / 1000).toFixed(0)} --nemesis ${escapeHtml(data.kinds.join(','))}</code>.</p>
${summaryTable(data.summary)}
<h2>Latency over time</h2>
<p>Each dot is one call (green ok, orange failed, red unknown: timed out or cut off); shaded bands are fault windows.</p>
${latencyPlot(data)}
<h2>Fault windows</h2>
${windowTable(data)}
<h2>Findings</h2>
${data.verdicts.map((v) => `<h3>${escapeHtml(v.workload)}: <span class="${v.ok ? 'ok' : 'bad'}">${v.ok ? 'ok' : 'FAILED'}</span></h3><ul>${v.findings.map((f) => `<li>${escapeHtml(f)}</li>`).join('')}</ul>`).join('\n')}
<pre>${escapeHtml(data.registerExplanation)}</pre>
<h2>Nemesis timeline</h2>
<table><tr><th>time (s)</th><th>event</th></tr>${data.timeline.map((e) => `<tr><td>${(e.atMs / 1000).toFixed(2)}</td><td>${escapeHtml(e.text)}</td></tr>`).join('')}</table>
<h2>Calls by operation</h2>
${callTable(data.calls)}
</body></html>
`;
}

function summaryTable(summary: Readonly<Record<string, unknown>>): string {
  const rows = Object.entries(summary).map(([key, value]) => `<tr><th>${escapeHtml(key)}</th><td>${escapeHtml(JSON.stringify(value))}</td></tr>`);
  return `<table>${rows.join('')}</table>`;
}

function windowTable(data: ReportData): string {
  const rows = data.windows.map((w, i) => {
    const recovery = data.perWindowRecoveryMs[i];
    return `<tr><td>${(w.startMs / 1000).toFixed(2)}–${(w.endMs / 1000).toFixed(2)}</td><td>${escapeHtml(w.faults.map(describeFault).join(' + '))}</td><td>${escapeHtml(w.details.join('; '))}</td><td>${recovery === null || recovery === undefined ? 'n/a' : (recovery / 1000).toFixed(2)}</td></tr>`;
  });
  return `<table><tr><th>window (s)</th><th>fault</th><th>what it hit</th><th>writes through every node again after (s)</th></tr>${rows.join('')}</table>`;
}

function callTable(calls: readonly CallRecord[]): string {
  const byOp = new Map<string, { ok: number; fail: number; unknown: number; latencies: number[] }>();
  for (const call of calls) {
    const row = byOp.get(call.op) ?? { ok: 0, fail: 0, unknown: 0, latencies: [] };
    row[call.outcome] += 1;
    if (call.outcome === 'ok') row.latencies.push(call.endMs - call.startMs);
    byOp.set(call.op, row);
  }
  const pct = (sorted: number[], p: number): string => (sorted.length === 0 ? '–' : (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number).toFixed(1));
  const rows = [...byOp.entries()].map(([op, row]) => {
    const sorted = row.latencies.sort((a, b) => a - b);
    return `<tr><td>${escapeHtml(op)}</td><td>${row.ok}</td><td>${row.fail}</td><td>${row.unknown}</td><td>${pct(sorted, 0.5)}</td><td>${pct(sorted, 0.99)}</td></tr>`;
  });
  return `<table><tr><th>op</th><th>ok</th><th>fail</th><th>unknown</th><th>p50 ms (ok)</th><th>p99 ms (ok)</th></tr>${rows.join('')}</table>`;
}

function latencyPlot(data: ReportData): string {
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  // reduce, not spread: a long run has more calls than a call may take arguments.
  const endMs = data.calls.reduce((max, c) => Math.max(max, c.endMs), Math.max(data.durationMs, 1));
  const latencyMax = data.calls.reduce((max, c) => Math.max(max, c.endMs - c.startMs), 1000);
  const logMin = Math.log10(LATENCY_MS_FLOOR);
  const logMax = Math.log10(latencyMax);
  const x = (ms: number): number => MARGIN.left + (ms / endMs) * plotW;
  const y = (latency: number): number => MARGIN.top + plotH - ((Math.log10(Math.max(latency, LATENCY_MS_FLOOR)) - logMin) / (logMax - logMin)) * plotH;
  const parts: string[] = [];
  for (const w of data.windows) {
    parts.push(`<rect x="${x(w.startMs).toFixed(1)}" y="${MARGIN.top}" width="${Math.max(1, x(w.endMs) - x(w.startMs)).toFixed(1)}" height="${plotH}" fill="#f4c7c3" opacity="0.6"><title>${escapeHtml(w.faults.map(describeFault).join(' + '))}</title></rect>`);
    parts.push(`<text x="${(x(w.startMs) + 2).toFixed(1)}" y="${MARGIN.top + 10}" font-size="9" fill="#800">${escapeHtml(w.faults.map((f) => f.kind).join('+'))}</text>`);
  }
  for (let decade = Math.ceil(logMin); decade <= Math.floor(logMax); decade++) {
    const yy = y(10 ** decade).toFixed(1);
    parts.push(`<line x1="${MARGIN.left}" x2="${WIDTH - MARGIN.right}" y1="${yy}" y2="${yy}" stroke="#ddd"/><text x="${MARGIN.left - 6}" y="${yy}" font-size="10" text-anchor="end" dominant-baseline="middle">${10 ** decade >= 1000 ? `${10 ** decade / 1000} s` : `${10 ** decade} ms`}</text>`);
  }
  const tickEvery = endMs > 120_000 ? 30_000 : endMs > 30_000 ? 10_000 : 5_000;
  for (let t = 0; t <= endMs; t += tickEvery) {
    parts.push(`<text x="${x(t).toFixed(1)}" y="${HEIGHT - MARGIN.bottom + 14}" font-size="10" text-anchor="middle">${t / 1000} s</text>`);
  }
  const step = Math.max(1, Math.ceil(data.calls.length / POINTS_MAX));
  for (let i = 0; i < data.calls.length; i += step) {
    const call = data.calls[i] as CallRecord;
    parts.push(`<circle cx="${x(call.startMs).toFixed(1)}" cy="${y(call.endMs - call.startMs).toFixed(1)}" r="1.6" fill="${COLOURS[call.outcome]}"/>`);
  }
  parts.push(`<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`);
  parts.push(`<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 6}" font-size="11" text-anchor="middle">time since the workload started (call start)</text>`);
  parts.push(`<text x="14" y="${MARGIN.top + plotH / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 14 ${MARGIN.top + plotH / 2})">latency (log)</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}">${parts.join('')}</svg>`;
}
