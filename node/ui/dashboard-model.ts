// What the dashboard shows, computed from what the node already holds: the
// replicated store (`projects/`, `status/`, `members/`, `liveness/`,
// `ring/epoch`) and Raft's own status. Pure functions over plain values, so
// the feed that pushes them and its tests need no running node.
import { RING_EPOCH_KEY } from '../../consensus/kv-machine.ts';
import type { KeyValue } from '../../consensus/kv-state-machine.ts';
import { LIVENESS_PREFIX, PROJECTS_PREFIX } from '../../actors/messages.ts';

export const STATUS_PREFIX = 'status/';

export interface DashboardMember {
  readonly id: string;
  readonly address: string;
  readonly learner: boolean;
  readonly leader: boolean;
  /** From the leader's failure detector: 'down' or 'draining' when marked, else 'up'. */
  readonly liveness: string;
}

export interface DashboardCluster {
  /** The node serving the page. */
  readonly node: string;
  readonly clusterId: string;
  readonly role: string;
  readonly term: number;
  readonly leader: string | null;
  readonly ringEpoch: number;
  readonly members: readonly DashboardMember[];
}

export interface DashboardProject {
  readonly tenant: string;
  readonly name: string;
  readonly desired: string;
  /** Version of the desired spec. */
  readonly version: number;
  readonly command: string | null;
  readonly image: string | null;
  /** Observed: starting, running, exited, crashLoop, stopped, failed, or unknown (no status yet). */
  readonly state: string;
  /** Where it runs (the node that last wrote its status). */
  readonly node: string | null;
  readonly restarts: number;
  readonly exitCode: number | null;
  readonly error: string | null;
  readonly ports: Readonly<Record<string, number>>;
}

/** What the node's Raft and store say, read in one place. */
export interface ClusterSource {
  readonly node: string;
  readonly clusterId: string;
  readonly role: string;
  readonly term: number;
  readonly leader: string | null;
  readonly members: readonly { readonly id: string; readonly address: string; readonly learner: boolean }[];
  readonly get: (key: string) => KeyValue | null;
}

export function clusterView(source: ClusterSource): DashboardCluster {
  return {
    node: source.node,
    clusterId: source.clusterId,
    role: source.role,
    term: source.term,
    leader: source.leader,
    ringEpoch: source.get(RING_EPOCH_KEY)?.modRevision ?? 0,
    members: [...source.members]
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((member) => ({ ...member, leader: member.id === source.leader, liveness: source.get(`${LIVENESS_PREFIX}${member.id}`)?.value ?? 'up' })),
  };
}

/** `tenant/name` of a `projects/…` or `status/…` key; null for any other key. */
export function projectIdOf(key: string): string | null {
  const prefix = key.startsWith(PROJECTS_PREFIX) ? PROJECTS_PREFIX : key.startsWith(STATUS_PREFIX) ? STATUS_PREFIX : null;
  if (prefix === null) return null;
  const rest = key.slice(prefix.length);
  const slash = rest.indexOf('/');
  return slash <= 0 || slash === rest.length - 1 || rest.indexOf('/', slash + 1) >= 0 ? null : rest;
}

const parse = (value: string | undefined): Record<string, unknown> | null => {
  if (value === undefined) return null;
  try {
    const parsed: unknown = JSON.parse(value);
    return typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : null;
  } catch {
    return null;
  }
};
const text = (value: unknown): string | null => (typeof value === 'string' ? value : null);
const count = (value: unknown): number | null => (typeof value === 'number' && Number.isFinite(value) ? value : null);

/** A project row from its desired record and its status record (either may be missing); null when neither exists. */
export function projectView(id: string, project: KeyValue | null, status: KeyValue | null): DashboardProject | null {
  if (project === null && status === null) return null;
  const [tenant = '', name = ''] = id.split('/');
  const record = parse(project?.value);
  const spec = (record?.spec ?? null) as Record<string, unknown> | null;
  const observed = parse(status?.value);
  const ports = observed?.ports;
  return {
    tenant,
    name,
    desired: text(record?.desired) ?? (project === null ? 'removed' : 'unknown'),
    version: project?.version ?? 0,
    command: text(spec?.command),
    image: text(spec?.image),
    state: text(observed?.state) ?? 'unknown',
    node: text(observed?.node),
    restarts: count(observed?.restarts) ?? 0,
    exitCode: count(observed?.exitCode),
    error: text(observed?.error),
    ports: typeof ports === 'object' && ports !== null ? (Object.fromEntries(Object.entries(ports).filter(([, port]) => typeof port === 'number')) as Record<string, number>) : {},
  };
}

export const projectKeyOf = (project: { readonly tenant: string; readonly name: string }): string => `${project.tenant}/${project.name}`;
