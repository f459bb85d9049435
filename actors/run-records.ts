// Where no cgroup tracks workloads (process-group fallback): a record per run of its process
// group, so that a node restarted after its spawner too was killed stops what is left. With
// cgroups the spawner finds leftovers in the node's cgroup root instead.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectKey, type ProjectRef } from './runtime.ts';
import { groupAlive, procStat, signalGroup } from './supervisor.ts';

interface RunRecord {
  readonly node: string;
  readonly project: ProjectRef;
  readonly pgid: number;
  /** Start time of the group leader in clock ticks since boot (/proc/<pid>/stat field 22): guards against pid reuse. */
  readonly startTicks: string;
}

/** How long leftovers get between SIGTERM and SIGKILL, and how often we look. */
const LEFTOVER_GRACE_MS = 2000;
const LEFTOVER_POLL_MS = 50;

export class RunRecords {
  constructor(
    private readonly dir: string,
    private readonly node: string,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  #path(project: ProjectRef): string {
    return join(this.dir, `${encodeURIComponent(projectKey(project))}.json`);
  }

  write(project: ProjectRef, pgid: number): void {
    const record: RunRecord = { node: this.node, project, pgid, startTicks: procStat(pgid)?.startTicks ?? '' };
    writeFileSync(this.#path(project), JSON.stringify(record));
  }

  remove(project: ProjectRef): void {
    rmSync(this.#path(project), { force: true });
  }

  /** Kills the groups recorded by a previous run of this node that still run; removes every record. */
  async cleanUp(sleep: (ms: number) => Promise<void>): Promise<ProjectRef[]> {
    const cleaned: ProjectRef[] = [];
    for (const name of readdirSync(this.dir).filter((entry) => entry.endsWith('.json'))) {
      const path = join(this.dir, name);
      let record: RunRecord | null = null;
      try {
        record = JSON.parse(readFileSync(path, 'utf8')) as RunRecord;
      } catch {
        record = null;
      }
      if (record !== null && record.node === this.node && Number.isInteger(record.pgid) && record.pgid > 1) {
        const stat = procStat(record.pgid);
        // Only the same process (same start time) is ours: a reused pid belongs to someone else.
        if (stat !== null && stat.state !== 'Z' && stat.startTicks === record.startTicks && groupAlive(record.pgid)) {
          signalGroup(record.pgid, 'SIGTERM');
          for (let waitedMs = 0; waitedMs < LEFTOVER_GRACE_MS && procStat(record.pgid)?.state !== 'Z' && procStat(record.pgid) !== null; waitedMs += LEFTOVER_POLL_MS) await sleep(LEFTOVER_POLL_MS);
          signalGroup(record.pgid, 'SIGKILL');
          cleaned.push(record.project);
        }
      }
      rmSync(path, { force: true });
    }
    return cleaned;
  }
}
