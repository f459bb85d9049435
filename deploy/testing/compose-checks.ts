// What must hold in the resolved compose file (the output of `docker-compose config`)
// for the cluster to form and be watched: one problem per line, empty when it holds.
import { parse } from 'yaml';

interface Service {
  command?: string[];
  image?: string;
  environment?: Record<string, string>;
  ports?: (string | { host_ip?: string; published?: string | number; target?: number })[];
  volumes?: (string | { source?: string; target?: string })[];
  healthcheck?: unknown;
}

export const NODE_SERVICES = ['n1', 'n2', 'n3'];

const flag = (command: readonly string[], name: string): string | undefined => {
  const index = command.indexOf(`--${name}`);
  return index < 0 ? undefined : command[index + 1];
};

/** Port strings as docker-compose 1.29 prints them: "127.0.0.1:2601:2601/tcp". */
function published(port: Service['ports'] extends (infer P)[] | undefined ? P : never): { ip: string; host: number; container: number } | null {
  if (typeof port !== 'string') return { ip: port.host_ip ?? '0.0.0.0', host: Number(port.published), container: Number(port.target) };
  const match = /^(?:([\d.]+):)?(\d+):(\d+)(?:\/tcp)?$/.exec(port);
  return match === null ? null : { ip: match[1] ?? '0.0.0.0', host: Number(match[2]), container: Number(match[3]) };
}

/** Problems of a resolved compose config, given the Prometheus targets it loads. */
export function composeProblems(configYaml: string, prometheusTargets: readonly string[]): string[] {
  const config = parse(configYaml) as { services?: Record<string, Service>; volumes?: Record<string, unknown> };
  const services = config.services ?? {};
  const problems: string[] = [];
  for (const name of [...NODE_SERVICES, 'redis', 'prometheus', 'grafana']) if (services[name] === undefined) problems.push(`no service ${name}`);
  const seedList = NODE_SERVICES.map((n) => `${n}:2701`).join(',');
  const dataVolumes = new Set<string>();
  const mcpTargets: string[] = [];
  for (const name of NODE_SERVICES) {
    const service = services[name];
    if (service === undefined) continue;
    const command = service.command ?? [];
    if (command[0] !== 'node') problems.push(`${name}: runs '${command[0] ?? ''}', not 'node'`);
    if (flag(command, 'id') !== name) problems.push(`${name}: --id is ${flag(command, 'id')}`);
    if (flag(command, 'grpc') !== `${name}:2701`) problems.push(`${name}: --grpc is ${flag(command, 'grpc')}, not ${name}:2701 (the address the others dial)`);
    if (flag(command, 'seeds') !== seedList) problems.push(`${name}: --seeds is ${flag(command, 'seeds')}, not ${seedList}`);
    const dataDir = flag(command, 'data-dir');
    const mcpPort = Number(/^0\.0\.0\.0:(\d+)$/.exec(flag(command, 'mcp') ?? '')?.[1]);
    if (!(mcpPort > 0)) problems.push(`${name}: --mcp is ${flag(command, 'mcp')}, not 0.0.0.0:PORT`);
    const ports = (service.ports ?? []).map(published);
    if (!ports.some((p) => p !== null && p.ip === '127.0.0.1' && p.host === mcpPort && p.container === mcpPort)) {
      problems.push(`${name}: MCP port ${mcpPort} is not published on 127.0.0.1 under the same number (MCP refuses other Host headers)`);
    }
    if (ports.some((p) => p === null || p.ip !== '127.0.0.1')) problems.push(`${name}: a port is published beyond 127.0.0.1`);
    if (service.environment?.DEBUGHOST_READY_URL !== `http://127.0.0.1:${mcpPort}/ready`) problems.push(`${name}: DEBUGHOST_READY_URL ${service.environment?.DEBUGHOST_READY_URL} does not probe its own /ready`);
    const volume = (service.volumes ?? []).map((v) => (typeof v === 'string' ? v.split(':') : [v.source ?? '', v.target ?? ''])).find((v) => v[1] === dataDir);
    if (volume === undefined) problems.push(`${name}: no volume at its data dir ${dataDir}`);
    else if (dataVolumes.has(volume[0] as string)) problems.push(`${name}: shares data volume ${volume[0]}`);
    else dataVolumes.add(volume[0] as string);
    mcpTargets.push(`${name}:${mcpPort}`);
  }
  if ([...mcpTargets].sort().join(',') !== [...prometheusTargets].sort().join(',')) problems.push(`Prometheus scrapes ${prometheusTargets.join(',')}, the nodes serve ${mcpTargets.join(',')}`);
  const mounts = (service: string): string[] => (services[service]?.volumes ?? []).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`));
  if (!mounts('prometheus').some((m) => /\/deploy\/prometheus:\/etc\/prometheus/.test(m))) problems.push('prometheus: deploy/prometheus is not mounted at /etc/prometheus');
  if (!mounts('grafana').some((m) => /\/deploy\/grafana\/dashboards:\/var\/lib\/grafana\/dashboards/.test(m))) problems.push('grafana: the dashboards are not mounted');
  if (!mounts('grafana').some((m) => /\/deploy\/grafana\/provisioning:\/etc\/grafana\/provisioning/.test(m))) problems.push('grafana: the provisioning is not mounted');
  return problems;
}

/** The scrape targets of the job "debughost" in a Prometheus config. */
export function prometheusTargets(configYaml: string): string[] {
  const config = parse(configYaml) as { scrape_configs?: { job_name?: string; static_configs?: { targets?: string[] }[] }[] };
  return (config.scrape_configs ?? []).filter((job) => job.job_name === 'debughost').flatMap((job) => (job.static_configs ?? []).flatMap((c) => c.targets ?? []));
}
