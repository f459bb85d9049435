// The Helm chart, rendered (no helm binary can be installed here: deploy/testing/helm.ts renders it with a Go-template
// engine checked against Go's own in go-template.test.ts) for several value sets, keeps the invariants of the etcd,
// Consul and NATS charts; each invariant check is shown to catch a planted bug in a copy of the chart.
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { chartProblems, type ChartExpectations } from './testing/chart-checks.ts';
import { ChartRenderError, renderChart, type Manifest, type RenderInput } from './testing/helm.ts';

const CHART = join(import.meta.dirname, 'helm', 'debughost');
const TOKEN = 'test-admin-token-3f9a';
/** The node's hand-off on SIGTERM: DRAIN_MS_MAX in node/node.ts. */
const DRAIN_SECONDS = 5;

async function render(values: Record<string, unknown> = {}, input: Omit<RenderInput, 'values'> = {}, chart = CHART): Promise<Manifest[]> {
  return renderChart(chart, { namespace: 'prod', ...input, values: { auth: { adminToken: TOKEN }, ...values } });
}

const expectations = (replicas: number, namespace = 'prod'): ChartExpectations => ({ replicas, namespace, clusterDomain: 'cluster.local', drainSeconds: DRAIN_SECONDS });
const statefulSet = (manifests: readonly Manifest[]) => manifests.find((m) => m.kind === 'StatefulSet') as Manifest & { spec: { template: { spec: { containers: { args: string[] }[]; volumes: { name: string; secret: { secretName: string; defaultMode: number } }[] } } } };
const argsOf = (manifests: readonly Manifest[]): string[] => statefulSet(manifests).spec.template.spec.containers[0]?.args ?? [];

test('default values: a 3-member StatefulSet, headless Service, seeds from the pods\' DNS names, quorum PDB, probes, drain', async (t) => {
  const manifests = await render();
  t.deepEqual(chartProblems(manifests, expectations(3)), []);
  t.deepEqual(manifests.map((m) => `${m.kind}/${m.metadata.name}`).sort(), ['PodDisruptionBudget/debughost', 'Secret/debughost-auth', 'Service/debughost', 'Service/debughost-headless', 'StatefulSet/debughost']);
  const args = argsOf(manifests);
  t.is(args[args.indexOf('--seeds') + 1], 'debughost-0.debughost-headless.prod.svc.cluster.local:2701,debughost-1.debughost-headless.prod.svc.cluster.local:2701,debughost-2.debughost-headless.prod.svc.cluster.local:2701');
  t.true(args.includes('--insecure'), 'no TLS by default');
  const auth = statefulSet(manifests).spec.template.spec.volumes.find((v) => v.name === 'auth');
  t.is(auth?.secret.defaultMode, 0o400, 'the token file is readable by its owner only (YAML 1.1 octal, as Kubernetes reads it)');
});

test('the seed list and the quorum follow the replica count; one member gets no PDB', async (t) => {
  for (const replicas of [1, 2, 4, 5, 7]) {
    const manifests = await render({ replicas });
    t.deepEqual(chartProblems(manifests, expectations(replicas)), [], `replicas ${replicas}`);
    const seeds = argsOf(manifests)[argsOf(manifests).indexOf('--seeds') + 1]?.split(',') ?? [];
    t.is(seeds.length, replicas);
  }
  const five = (await render({ replicas: 5 })).find((m) => m.kind === 'PodDisruptionBudget') as Manifest & { spec: { minAvailable: number } };
  t.is(five.spec.minAvailable, 3);
});

test('another release name, namespace and cluster domain change every address consistently', async (t) => {
  const manifests = await render({ clusterDomain: 'k8s.example', ports: { grpc: 3701, http: 3601 } }, { release: 'agents', namespace: 'tools' });
  t.deepEqual(chartProblems(manifests, { ...expectations(3, 'tools'), clusterDomain: 'k8s.example' }), []);
  t.is(statefulSet(manifests).metadata.name, 'agents-debughost');
  const args = argsOf(manifests);
  t.true(args[args.indexOf('--seeds') + 1]?.endsWith(',agents-debughost-2.agents-debughost-headless.tools.svc.k8s.example:3701'));
});

test('TLS from a Secret: the flags point into its mount and --insecure is gone; without a Secret name rendering stops', async (t) => {
  const manifests = await render({ tls: { enabled: true, secretName: 'debughost-peer-tls' } });
  t.deepEqual(chartProblems(manifests, expectations(3)), []);
  t.false(argsOf(manifests).includes('--insecure'));
  t.is(statefulSet(manifests).spec.template.spec.volumes.find((v) => v.name === 'tls')?.secret.secretName, 'debughost-peer-tls');
  await t.throwsAsync(render({ tls: { enabled: true } }), { instanceOf: ChartRenderError, message: /tls\.secretName is required when tls\.enabled is true/ });
});

test('tokens come from a Secret: an existing one is mounted as it is, a given token only ever appears in the chart\'s Secret', async (t) => {
  const existing = await renderChart(CHART, { namespace: 'prod', values: { auth: { existingSecret: 'team-tokens' } } });
  t.deepEqual(chartProblems(existing, expectations(3)), []);
  t.false(existing.some((m) => m.kind === 'Secret'));
  t.is(statefulSet(existing).spec.template.spec.volumes.find((v) => v.name === 'auth')?.secret.secretName, 'team-tokens');
  const made = await render();
  const encoded = Buffer.from(TOKEN).toString('base64');
  for (const manifest of made.filter((m) => m.kind !== 'Secret')) {
    const text = JSON.stringify(manifest);
    t.false(text.includes(TOKEN) || text.includes(encoded), `${manifest.kind}/${manifest.metadata.name} does not carry the token`);
  }
  await t.throwsAsync(renderChart(CHART, { values: {} }), { instanceOf: ChartRenderError, message: /auth\.adminToken or auth\.existingSecret is required/ });
});

/** Render a copy of the chart with `from` replaced by `to` in `file`. */
async function planted(t: { teardown: (fn: () => Promise<void>) => void }, file: string, from: string, to: string, values: Record<string, unknown> = {}): Promise<Manifest[]> {
  const dir = await mkdtemp(join(tmpdir(), 'debughost-chart-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await cp(CHART, dir, { recursive: true });
  const path = join(dir, 'templates', file);
  const text = await readFile(path, 'utf8');
  if (!text.includes(from)) throw new Error(`the plant '${from}' is not in ${file}`);
  await writeFile(path, text.replace(from, to));
  return render(values, {}, dir);
}

test('planted bugs are caught: ordered start, hidden not-ready pods, a seed missing, a PDB below quorum, no drain, no readiness', async (t) => {
  const cases: [string, string, string, RegExp][] = [
    ['statefulset.yaml', 'podManagementPolicy: Parallel', 'podManagementPolicy: OrderedReady', /podManagementPolicy is OrderedReady/],
    ['service-headless.yaml', 'publishNotReadyAddresses: true', 'publishNotReadyAddresses: false', /does not publish not-ready addresses/],
    ['_helpers.tpl', 'until (int .Values.replicas)', 'until (sub (int .Values.replicas) 1)', /--seeds is .*, not the 3 pods' addresses/],
    ['_helpers.tpl', '{{- add (div (int .Values.replicas) 2) 1 -}}', '{{- div (int .Values.replicas) 2 -}}', /keeps 1 available, not a quorum of 2/],
    ['statefulset.yaml', 'command: ["sleep", {{ int .Values.preStopSleepSeconds | toString | quote }}]', 'command: ["true"]', /no preStop drain/],
    ['statefulset.yaml', 'path: /ready', 'path: /health', /readinessProbe is .*, not GET \/ready/],
    ['statefulset.yaml', '            - --insecure\n', '', /neither TLS nor --insecure/],
  ];
  for (const [file, from, to, problem] of cases) {
    const problems = chartProblems(await planted(t, file, from, to), expectations(3));
    t.true(problems.some((p) => problem.test(p)), `${file}: ${to} → ${problems.join('; ') || 'no problem found'}`);
  }
});

test('a number used where Helm needs an int fails as in Helm (values are float64)', async (t) => {
  const error = await t.throwsAsync(planted(t, '_helpers.tpl', 'range $i := until (int .Values.replicas)', 'range $i := until .Values.replicas'), { instanceOf: ChartRenderError });
  t.regex(error?.message ?? '', /expected int; got float64/);
});
