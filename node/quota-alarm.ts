// The NOSPACE alarm's raising and clearing, on the leader: when the replicated
// state grows past the quota it puts NOSPACE_ALARM_KEY (from then on every
// replica refuses commands that put, see KvStateMachine.apply), and once
// deletes bring it to QUOTA_CLEAR_FRACTION of the quota it deletes the key.
// Every node reports the alarm as the metric debughost_alarm_active{alarm="nospace"}.
import { encodeCommand, NOSPACE_ALARM_KEY } from '../consensus/kv-state-machine.ts';
import type { Logger } from './log.ts';
import type { NodeMetrics } from './metrics.ts';
import type { KvNode } from './node.ts';

/** Cleared only this far below the quota, so that one delete and one put do not flap the alarm. */
export const QUOTA_CLEAR_FRACTION = 0.9;
/**
 * 512 MiB: the whole state lives in the node's heap and a snapshot is one
 * LevelDB value and one allocation, so the quota stays well below V8's limits
 * (etcd's default --quota-bytes-backend is 2 GiB of B-tree on disk).
 */
export const QUOTA_BYTES_DEFAULT = 512 * 1024 * 1024;

export class QuotaAlarm {
  private proposing = false;
  private reported: boolean | null = null;

  constructor(
    private readonly quotaBytes: number,
    private readonly metrics: NodeMetrics,
    private readonly log: Logger,
  ) {}

  /** After entries are applied (cheap: a lookup and a comparison). */
  check(raft: KvNode): void {
    const kv = raft.machine.kv;
    const raised = kv.get(NOSPACE_ALARM_KEY) !== null;
    if (raised !== this.reported) {
      this.reported = raised;
      this.metrics.nospace(raised);
      if (raised) this.log.warn({ stateBytes: kv.stateBytes, quotaBytes: this.quotaBytes }, 'NOSPACE alarm: the state is over the quota; writes that put are refused until keys are deleted');
      else this.log.info({ stateBytes: kv.stateBytes }, 'NOSPACE alarm cleared');
    }
    if (this.proposing || raft.raft.role !== 'leader') return;
    const bytes = kv.stateBytes;
    if (!raised && bytes > this.quotaBytes) {
      const value = JSON.stringify({ stateBytes: bytes, quotaBytes: this.quotaBytes, raisedBy: raft.id });
      this.propose(raft, encodeCommand({ type: 'put', key: NOSPACE_ALARM_KEY, value }));
    } else if (raised && bytes <= this.quotaBytes * QUOTA_CLEAR_FRACTION) {
      this.propose(raft, encodeCommand({ type: 'delete', key: NOSPACE_ALARM_KEY }));
    }
  }

  private propose(raft: KvNode, command: Uint8Array): void {
    this.proposing = true;
    raft.propose(command, () => {
      // Whatever the outcome, the next applied entry looks again.
      this.proposing = false;
    });
  }
}
