// What a project's container is created with: name, labels, env, ports, limits
// and the hardening every container gets. Pure, so the exact create request is
// tested without an engine.
import { createHash } from 'node:crypto';
import type Docker from 'dockerode';
import { DOCKER_MEMORY_BYTES_MIN } from './docker-config.ts';
import { portEnv } from './runtime-process.ts';
import { projectKey, RuntimeError, type ProjectRef, type WorkloadSpec } from './runtime.ts';

/**
 * Labels tie a container to its project and node, and nothing else: no env, no spec, no hash of
 * them (anyone who may list containers reads labels). The spec a restarted node needs lives in the
 * runtime's state dir (docker-state.ts).
 */
export const LABELS = {
  project: 'debughost.project',
  tenant: 'debughost.tenant',
  name: 'debughost.name',
  node: 'debughost.node',
} as const;

/**
 * Capabilities a container keeps; all others are dropped (`CapDrop: ALL`). Dev images run as root and
 * their package managers and entrypoints need these: chown/DAC_OVERRIDE/FOWNER to install into
 * directories they do not own, SETUID/SETGID to step down to a service user (apt's sandbox, gosu,
 * su-exec), KILL for a root process to signal children running as that user, NET_BIND_SERVICE for
 * servers that also listen on a port below 1024 inside their own network namespace. Each acts only
 * inside the container's namespaces, on its own files and processes, and `no-new-privileges` keeps a
 * process that stepped down from gaining them back. Dropped from Docker's default set: NET_RAW (raw
 * sockets: spoofing on the bridge network), MKNOD (device nodes), SYS_CHROOT, SETPCAP, SETFCAP
 * (file capabilities), FSETID, AUDIT_WRITE.
 */
export const CAPABILITIES_KEPT: readonly string[] = ['CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'SETUID', 'SETGID', 'KILL', 'NET_BIND_SERVICE'];

/** setuid binaries and file capabilities grant nothing inside our containers. */
export const SECURITY_OPTIONS: readonly string[] = ['no-new-privileges'];

export interface CreateContext {
  readonly node: string;
  /** Host address ports are published on. */
  readonly publishHost: string;
  /** PidsLimit when the spec has none. */
  readonly pidsDefault: number;
}

export function createOptions(spec: WorkloadSpec, context: CreateContext): Docker.ContainerCreateOptions {
  const exposed: Record<string, object> = {};
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const port of Object.values(spec.ports)) {
    // Container port = host port, so PORT means the same inside and outside.
    exposed[`${port}/tcp`] = {};
    bindings[`${port}/tcp`] = [{ HostIp: context.publishHost, HostPort: String(port) }];
  }
  const env = { ...spec.env, ...portEnv(spec.ports) };
  return {
    name: containerName(context.node, spec.project),
    Image: spec.image,
    ...(spec.command === undefined ? {} : { Cmd: ['/bin/sh', '-c', spec.command] }),
    ...(spec.cwd === undefined ? {} : { WorkingDir: spec.cwd }),
    Env: Object.entries(env).map(([name, value]) => `${name}=${value}`),
    Tty: false,
    ExposedPorts: exposed,
    Labels: {
      [LABELS.project]: projectKey(spec.project),
      [LABELS.tenant]: spec.project.tenant,
      [LABELS.name]: spec.project.name,
      [LABELS.node]: context.node,
    },
    HostConfig: {
      PortBindings: bindings,
      ...(spec.limits?.memoryBytes === undefined ? {} : { Memory: spec.limits.memoryBytes, MemorySwap: spec.limits.memoryBytes }),
      ...(spec.limits?.cpus === undefined ? {} : { NanoCpus: Math.round(spec.limits.cpus * 1e9) }),
      PidsLimit: spec.limits?.pids ?? context.pidsDefault,
      CapDrop: ['ALL'],
      CapAdd: [...CAPABILITIES_KEPT],
      SecurityOpt: [...SECURITY_OPTIONS],
      // The driver applies the restart policy, so that both runtimes restart and detect crash loops alike.
      RestartPolicy: { Name: 'no' },
    },
  };
}

/** Refuses a spec the engine would refuse later, with what to change. */
export function checkSpec(spec: WorkloadSpec): void {
  if (spec.image === undefined || spec.image.trim() === '') {
    throw new RuntimeError('InvalidSpecError', `project ${projectKey(spec.project)} has no image; the docker runtime runs images (give image, optionally with a command run through /bin/sh in it)`);
  }
  for (const [name, port] of Object.entries(spec.ports)) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RuntimeError('InvalidSpecError', `port ${name} is ${String(port)}; ports are whole numbers 1-65535 allocated by the port registry`);
  }
  const limits = spec.limits;
  if (limits?.memoryBytes !== undefined && (!Number.isInteger(limits.memoryBytes) || limits.memoryBytes < DOCKER_MEMORY_BYTES_MIN)) {
    throw new RuntimeError('InvalidSpecError', `memory limit ${limits.memoryBytes} bytes is below Docker's minimum of 6 MiB; give at least ${DOCKER_MEMORY_BYTES_MIN}`);
  }
  if (limits?.cpus !== undefined && !(limits.cpus > 0)) throw new RuntimeError('InvalidSpecError', `cpus ${limits.cpus} must be above 0 (0.5 = half a core)`);
  if (limits?.pids !== undefined && (!Number.isInteger(limits.pids) || limits.pids < 1)) throw new RuntimeError('InvalidSpecError', `pids limit ${limits.pids} must be a whole number ≥ 1`);
}

/** Same hash, same container: a start with an unchanged spec adopts the running container instead of recreating it. */
export function specHash(spec: WorkloadSpec): string {
  const { project, image, command, cwd, env, ports, limits, node } = spec;
  const sortedEnv = Object.fromEntries(Object.entries(env).sort(([a], [b]) => a.localeCompare(b)));
  const sortedPorts = Object.fromEntries(Object.entries(ports).sort(([a], [b]) => a.localeCompare(b)));
  return createHash('sha256').update(JSON.stringify([project, image, command, cwd, sortedEnv, sortedPorts, limits ?? null, node])).digest('hex').slice(0, 16);
}

/** Docker names allow [a-zA-Z0-9][a-zA-Z0-9_.-]; a hash of the key keeps sanitized names distinct. */
export function containerName(node: string, project: ProjectRef): string {
  const clean = (text: string): string => text.replace(/[^a-zA-Z0-9_.-]/g, '_');
  const hash = createHash('sha256').update(`${node}\n${projectKey(project)}`).digest('hex').slice(0, 8);
  return `debughost-${clean(node)}-${clean(project.tenant)}-${clean(project.name)}-${hash}`.slice(0, 200);
}
