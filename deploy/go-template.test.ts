// The chart renderer's template engine (deploy/testing/go-template.ts) gives what Go's own text/template gives: a
// corpus of templates over the language Helm charts use, each executed by both (Go's through a WebAssembly build of
// text/template, run with missingkey=error) and compared output for output, error for error; plus Go's default
// and Helm's printing of missing values.
import { parse as goParse } from '@evertdespiegeleer/go-template';
import test from 'ava';
import { Templates, formatFloat, sprintf, type Value } from './testing/go-template.ts';

const DATA = {
  s: 'hello',
  empty: '',
  n: 2701,
  big: 1000000,
  bigger: 1234567,
  half: 0.5,
  tiny: 0.00001,
  neg: -3,
  zero: 0,
  yes: true,
  no: false,
  list: ['a', 'b', 'c'],
  none: [],
  m: { k: 'v', b: 'x', a: 'y', nested: { deep: 'z' } },
  emptyMap: {},
  nil: null,
  ports: { grpc: 2701, http: 2601 },
};

const CORPUS: string[] = [
  'plain text',
  '{{ .s }}',
  'a {{- .s -}} b',
  'a\n  {{- .s }}\n  {{ .s -}}\n  b',
  '{{/* a comment */}}x{{- /* trimmed */ -}} y',
  '{{ .m.k }} {{ .m.nested.deep }}',
  '{{ .missing }}|{{ .m.missing }}',
  '{{ .missing.sub }}',
  '{{ .s.sub }}',
  '{{ .n }} {{ .big }} {{ .bigger }} {{ .half }} {{ .tiny }} {{ .neg }} {{ .zero }}',
  '{{ printf "%d" .n }}',
  '{{ printf "%v-%s-%q-%t" .n .s .s .yes }}',
  '{{ printf "%s" .n }}',
  '{{ printf "%d %d" 3 }}',
  '{{ printf "%d" 3 4 }}',
  '{{ printf "%5d|%%" 42 }}',
  '{{ len .list }} {{ len .s }} {{ len .m }} {{ len .none }}',
  '{{ index .list 1 }} {{ index .m "k" }} {{ index .m "missing" }}',
  '{{ index .list 5 }}',
  '{{ if .yes }}y{{ else }}n{{ end }}{{ if .no }}y{{ else }}n{{ end }}{{ if .zero }}y{{ else }}n{{ end }}{{ if .empty }}y{{ else }}n{{ end }}',
  '{{ if .none }}y{{ else if .emptyMap }}m{{ else if .nil }}z{{ else }}none{{ end }}',
  '{{ if .missing }}y{{ else }}n{{ end }}',
  '{{ range .list }}[{{ . }}]{{ end }}',
  '{{ range $i, $v := .list }}{{ $i }}={{ $v }};{{ end }}',
  '{{ range $k, $v := .m }}{{ $k }}:{{ $v }} {{ end }}',
  '{{ range .none }}x{{ else }}empty{{ end }}',
  '{{ range $i, $v := .list }}{{ if eq $v "b" }}{{ continue }}{{ end }}{{ if eq $v "c" }}{{ break }}{{ end }}{{ $v }}{{ end }}',
  '{{ range 3 }}{{ . }}{{ end }}',
  '{{ with .m }}{{ .k }}{{ end }}{{ with .none }}x{{ else }}no list{{ end }}',
  '{{ $x := .s }}{{ $x }} {{ $x = "changed" }}{{ $x }}',
  '{{ $n := 0 }}{{ range .list }}{{ $n = . }}{{ end }}{{ $n }}',
  '{{ range .list }}{{ $.s }}{{ end }}',
  '{{ define "inner" }}<{{ .k }}>{{ end }}{{ template "inner" .m }}{{ template "inner" . }}',
  '{{ eq .s "hello" }} {{ eq .s "x" "hello" }} {{ ne 1 2 }} {{ lt 1 2 }} {{ ge "b" "a" }}',
  '{{ eq .n 2701 }}',
  '{{ eq .n .big }} {{ lt .half .n }}',
  '{{ and .yes .s }} {{ and .no .s }} {{ or .empty .s }} {{ or .empty .zero }} {{ not .yes }}',
  '{{ .s | printf "%s!" }} {{ printf "%s" .s | len }} {{ (printf "%s-%s" .s .s) | len }}',
  '{{ print .s .n 1 2 "x" }}|{{ println .s 1 }}|',
  '{{ .list }} {{ .m }} {{ .ports }}',
  '{{ nosuchfunction .s }}',
  '{{ .s 1 }}',
  '{{ if .yes }}unclosed',
  '{{ -1 }} {{ 1.5 }} {{ 0x1F }} {{ "a\\tb" }} {{ `raw\\t` }}',
  '{{ range $i, $p := .ports }}{{ $i }}={{ $p }} {{ end }}',
];

type Outcome = { output: string } | { error: string };

/** The corpus templates where `render` disagrees with Go's text/template, each with both outcomes. */
async function differencesFromGo(render: (source: string) => string): Promise<string[]> {
  const differences: string[] = [];
  for (const source of CORPUS) {
    const go: Outcome = await goParse(source, DATA).then((output) => ({ output }), (error: unknown) => ({ error: (error as Error).message }));
    let mine: Outcome;
    try {
      mine = { output: render(source) };
    } catch (error) {
      mine = { error: (error as Error).message };
    }
    const same = 'output' in go ? 'output' in mine && mine.output === go.output : 'error' in mine;
    if (!same) differences.push(`${source}\n  Go:       ${JSON.stringify(go)}\n  renderer: ${JSON.stringify(mine)}`);
  }
  return differences;
}

/** The renderer as the chart tests use it, but with missingkey=error as the WebAssembly build runs text/template. */
function renderer(source: string): string {
  const templates = new Templates({ missingKeyError: true });
  templates.add('tpl', source);
  return templates.execute('tpl', DATA as unknown as Value);
}

test('go-template renders like Go\'s text/template on the corpus', async (t) => {
  t.true(CORPUS.length >= 40);
  t.deepEqual(await differencesFromGo(renderer), []);
});

test('the comparison catches a planted renderer bug (whitespace trimmed around every output)', async (t) => {
  const differences = await differencesFromGo((source) => renderer(source).trim());
  t.true(differences.some((d) => d.startsWith('{{ printf "%5d|%%" 42 }}')), differences.join('\n'));
});

test('Go\'s float formatting and fmt verbs', (t) => {
  t.is(formatFloat(1e6), '1e+06');
  t.is(formatFloat(1e21), '1e+21');
  t.is(formatFloat(123456), '123456');
  t.is(formatFloat(1.5e-5), '1.5e-05');
  t.is(sprintf('%d', [2701]), '%!d(float64=2701)');
  t.is(sprintf('%d', [2701n]), '2701');
});

test('a missing key is no value (Go\'s default), printed as an empty string by Helm', (t) => {
  const go = new Templates();
  go.add('tpl', '[{{ .missing }}]{{ if .missing }}x{{ end }}');
  t.is(go.execute('tpl', {}), '[<no value>]');
  const helm = new Templates({ missingAsEmpty: true });
  helm.add('tpl', '[{{ .missing }}]');
  t.is(helm.execute('tpl', {}), '[]');
});
