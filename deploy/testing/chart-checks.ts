// What must hold in the rendered debughost chart, after the conventions of the
// etcd, Consul and NATS charts: one problem per line, empty when all hold.
import type { Manifest } from './helm.ts';

export interface ChartExpectations {
  readonly replicas: number;
  readonly namespace: string;
  readonly clusterDomain: string;
  /** The node's own hand-off on SIGTERM (leadership and projects), which the grace period must cover. */
  readonly drainSeconds: number;
}

type Container = {
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath?: string } } }[];
  ports?: { name: string; containerPort: number }[];
  readinessProbe?: { httpGet?: { path?: string; port?: string | number } };
  livenessProbe?: { httpGet?: { path?: string; port?: string | number } };
  lifecycle?: { preStop?: { exec?: { command?: string[] } } };
  volumeMounts?: { name: string; mountPath: string }[];
};
type PodSpec = {
  containers?: Container[];
  volumes?: { name: string; secret?: { secretName?: string } }[];
  terminationGracePeriodSeconds?: number;
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
};
type StatefulSet = Manifest & {
  spec: {
    serviceName?: string;
    replicas?: number;
    podManagementPolicy?: string;
    selector?: { matchLabels?: Record<string, string> };
    template?: { metadata?: { labels?: Record<string, string> }; spec?: PodSpec };
    volumeClaimTemplates?: { metadata?: { name?: string } }[];
  };
};
type Service = Manifest & { spec: { clusterIP?: string; publishNotReadyAddresses?: boolean; selector?: Record<string, string>; ports?: { name: string; port: number; targetPort?: string | number }[] } };
type Pdb = Manifest & { spec: { minAvailable?: number; maxUnavailable?: number; selector?: { matchLabels?: Record<string, string> } } };

const selects = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean =>
  selector !== undefined && Object.keys(selector).length > 0 && Object.entries(selector).every(([key, value]) => labels?.[key] === value);

const flag = (args: readonly string[], name: string): string | undefined => {
  const index = args.indexOf(`--${name}`);
  return index < 0 ? undefined : args[index + 1];
};

export function chartProblems(manifests: readonly Manifest[], expect: ChartExpectations): string[] {
  const problems: string[] = [];
  const sets = manifests.filter((m): m is StatefulSet => m.kind === 'StatefulSet');
  if (sets.length !== 1) return [`${sets.length} StatefulSets, not 1`];
  const sts = sets[0] as StatefulSet;
  const podLabels = sts.spec.template?.metadata?.labels;
  const pod = sts.spec.template?.spec ?? {};
  const container = pod.containers?.[0] ?? {};
  const args = container.args ?? [];
  if (sts.spec.podManagementPolicy !== 'Parallel') problems.push(`podManagementPolicy is ${sts.spec.podManagementPolicy}, not Parallel (founding members wait for each other)`);
  if (sts.spec.replicas !== expect.replicas) problems.push(`replicas is ${sts.spec.replicas}, not ${expect.replicas}`);
  if (!selects(sts.spec.selector?.matchLabels, podLabels)) problems.push('the StatefulSet selector does not select its pods');

  const services = manifests.filter((m): m is Service => m.kind === 'Service');
  const headless = services.find((s) => s.metadata.name === sts.spec.serviceName);
  const grpcPort = container.ports?.find((p) => p.name === 'grpc')?.containerPort;
  const httpPort = container.ports?.find((p) => p.name === 'http')?.containerPort;
  if (headless === undefined) problems.push(`no Service named ${sts.spec.serviceName} (the StatefulSet's serviceName)`);
  else {
    if (headless.spec.clusterIP !== 'None') problems.push(`${headless.metadata.name} is not headless (clusterIP ${headless.spec.clusterIP})`);
    if (headless.spec.publishNotReadyAddresses !== true) problems.push(`${headless.metadata.name} does not publish not-ready addresses: members cannot find each other before one is ready`);
    if (!selects(headless.spec.selector, podLabels)) problems.push(`${headless.metadata.name} does not select the pods`);
    if (!headless.spec.ports?.some((p) => p.port === grpcPort)) problems.push(`${headless.metadata.name} has no port ${grpcPort} (gRPC)`);
  }
  for (const service of services) if (!selects(service.spec.selector, podLabels)) problems.push(`Service ${service.metadata.name} does not select the pods`);

  // Pod i's address is <statefulset>-<i>.<headless>.<namespace>.svc.<domain>:<grpc>; the seeds are all of them.
  const suffix = `${sts.spec.serviceName}.${expect.namespace}.svc.${expect.clusterDomain}:${grpcPort}`;
  const podAddresses = Array.from({ length: expect.replicas }, (_, i) => `${sts.metadata.name}-${i}.${suffix}`);
  if (flag(args, 'seeds') !== podAddresses.join(',')) problems.push(`--seeds is ${flag(args, 'seeds')}, not the ${expect.replicas} pods' addresses ${podAddresses.join(',')}`);
  if (flag(args, 'grpc') !== `$(POD_NAME).${suffix}`) problems.push(`--grpc is ${flag(args, 'grpc')}, not $(POD_NAME).${suffix}`);
  if (flag(args, 'id') !== '$(POD_NAME)') problems.push(`--id is ${flag(args, 'id')}, not $(POD_NAME)`);
  if (container.env?.find((e) => e.name === 'POD_NAME')?.valueFrom?.fieldRef?.fieldPath !== 'metadata.name') problems.push('POD_NAME does not come from metadata.name');
  if (flag(args, 'mcp') !== `0.0.0.0:${httpPort}`) problems.push(`--mcp is ${flag(args, 'mcp')}, not 0.0.0.0:${httpPort}`);

  const probe = (which: 'readinessProbe' | 'livenessProbe', path: string): void => {
    const get = container[which]?.httpGet;
    if (get?.path !== path || (get.port !== 'http' && get.port !== httpPort)) problems.push(`${which} is ${JSON.stringify(get)}, not GET ${path} on the http port`);
  };
  probe('readinessProbe', '/ready');
  probe('livenessProbe', '/health');

  const preStop = container.lifecycle?.preStop?.exec?.command;
  const preStopSeconds = preStop?.[0] === 'sleep' ? Number(preStop[1]) : Number.NaN;
  if (!(preStopSeconds > 0)) problems.push(`no preStop drain (got ${JSON.stringify(preStop)})`);
  else if (!((pod.terminationGracePeriodSeconds ?? 30) >= preStopSeconds + expect.drainSeconds + 5)) {
    problems.push(`terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} does not cover the preStop ${preStopSeconds} s plus the node's ${expect.drainSeconds} s hand-off`);
  }
  if (pod.securityContext?.runAsNonRoot !== true || pod.securityContext.runAsUser === 0) problems.push('the pod may run as root');

  const dataDir = flag(args, 'data-dir');
  const claim = sts.spec.volumeClaimTemplates?.find((c) => container.volumeMounts?.some((m) => m.name === c.metadata?.name && m.mountPath === dataDir));
  if (claim === undefined) problems.push(`no volumeClaimTemplate is mounted at the data dir ${dataDir}`);

  // Tokens and TLS come from Secrets, mounted where the flags point.
  const secretVolume = (mountPrefix: string): string | undefined => {
    const mount = container.volumeMounts?.find((m) => mountPrefix.startsWith(m.mountPath));
    return pod.volumes?.find((v) => v.name === mount?.name)?.secret?.secretName;
  };
  const authSecret = secretVolume('/etc/debughost/auth/');
  if (authSecret === undefined) problems.push('no Secret with the MCP tokens is mounted');
  const tlsFlags = ['tls-cert', 'tls-key', 'tls-ca'].map((name) => flag(args, name));
  if (tlsFlags.every((f) => f === undefined)) {
    if (!args.includes('--insecure')) problems.push('neither TLS nor --insecure: a node on a pod address refuses to start');
  } else {
    if (args.includes('--insecure')) problems.push('TLS and --insecure together');
    for (const file of tlsFlags) if (file === undefined || secretVolume(file) === undefined) problems.push(`TLS file ${file} is not in a mounted Secret`);
  }

  const pdbs = manifests.filter((m): m is Pdb => m.kind === 'PodDisruptionBudget');
  const quorum = Math.floor(expect.replicas / 2) + 1;
  if (expect.replicas > 1) {
    const pdb = pdbs[0];
    if (pdbs.length !== 1 || pdb === undefined) problems.push(`${pdbs.length} PodDisruptionBudgets, not 1`);
    else {
      if (pdb.spec.minAvailable !== quorum) problems.push(`the PodDisruptionBudget keeps ${pdb.spec.minAvailable} available, not a quorum of ${quorum}`);
      if (!selects(pdb.spec.selector?.matchLabels, podLabels)) problems.push('the PodDisruptionBudget does not select the pods');
    }
  } else if (pdbs.length > 0) {
    problems.push('a PodDisruptionBudget for a single member blocks every node drain');
  }
  return problems;
}
