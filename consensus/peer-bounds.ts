// Bounds on what a peer may send, checked before a message changes any state.
// A message that breaks one could only come from a broken or hostile peer: the
// core drops it and counts it, instead of persisting a term near 2^53 (which
// overflows the next campaign) or asserting on a snapshot chunk that does not
// add up (which stops the node). Shape (types, field presence) is the
// transport's to check; these are the numbers and how they relate.
import type { ConfState, Entry, Message } from './types.ts';

/**
 * Highest term or index accepted from a peer: 2^48, far beyond any real
 * cluster (an election every millisecond for 8,900 years), and far enough
 * below 2^53 that counting up from it stays exact.
 */
export const TERM_MAX = 2 ** 48;
export const INDEX_MAX = 2 ** 48;

/** Longest read request id or heartbeat read context accepted (ours are "<node>/<sequence>"). */
export const REQUEST_ID_CHARS_MAX = 256;

/** Most members a configuration in a snapshot may list. */
export const CONF_MEMBERS_MAX = 1024;

const ENTRY_TYPES: ReadonlySet<Entry['type']> = new Set(['normal', 'confChange', 'empty']);

export interface PeerLimits {
  /** Largest snapshot a follower assembles from chunks (RaftConfig.snapshotBytesMax). */
  readonly snapshotBytesMax: number;
}

const isCount = (value: number, max: number): boolean => Number.isSafeInteger(value) && value >= 0 && value <= max;

/** Why `message` cannot be honest, or null when it is within bounds. */
export function peerMessageProblem(message: Message, limits: PeerLimits): string | null {
  if (!isCount(message.term, TERM_MAX)) return `term ${String(message.term)} is not a whole number in [0, 2^48]`;
  if (message.from === message.to) return 'a message from a node to itself';
  switch (message.type) {
    case 'preVote':
    case 'vote':
      if (!isCount(message.lastLogIndex, INDEX_MAX)) return `lastLogIndex ${String(message.lastLogIndex)} out of range`;
      if (!isCount(message.lastLogTerm, message.term)) return `lastLogTerm ${String(message.lastLogTerm)} is beyond the term asked for (${message.term})`;
      return null;
    case 'append':
      return appendProblem(message);
    case 'appendResp':
      if (!isCount(message.index, INDEX_MAX) || !isCount(message.rejectHint, INDEX_MAX)) return `index ${String(message.index)} or hint ${String(message.rejectHint)} out of range`;
      if (!isCount(message.rejectHintTerm, message.term)) return `hint term ${String(message.rejectHintTerm)} is beyond the message's term`;
      return null;
    case 'heartbeat':
      if (!isCount(message.commit, INDEX_MAX)) return `commit ${String(message.commit)} out of range`;
      return readIdProblem(message.readContext);
    case 'heartbeatResp':
      return readIdProblem(message.readContext);
    case 'snapshotChunk':
      return snapshotChunkProblem(message, limits);
    case 'snapshotChunkResp':
      if (!isCount(message.snapshotIndex, INDEX_MAX) || !isCount(message.nextOffset, limits.snapshotBytesMax)) return 'snapshot index or offset out of range';
      return null;
    case 'preVoteResp':
    case 'voteResp':
    case 'timeoutNow':
      return null;
    case 'readIndex':
      return readIdProblem(message.requestId);
    case 'readIndexResp':
      if (!isCount(message.index, INDEX_MAX)) return `read index ${String(message.index)} out of range`;
      return readIdProblem(message.requestId);
    default: {
      const never: never = message;
      return `unknown message type ${String((never as { type: unknown }).type)}`;
    }
  }
}

function appendProblem(message: Extract<Message, { type: 'append' }>): string | null {
  if (!isCount(message.prevLogIndex, INDEX_MAX) || !isCount(message.commit, INDEX_MAX)) return 'prevLogIndex or commit out of range';
  if (!isCount(message.prevLogTerm, message.term)) return `prevLogTerm ${String(message.prevLogTerm)} is beyond the leader's term ${message.term}`;
  if (message.prevLogIndex + message.entries.length > INDEX_MAX) return 'entries run past the highest index';
  let previousTerm = message.prevLogTerm;
  for (let i = 0; i < message.entries.length; i += 1) {
    const entry = message.entries[i] as Entry;
    // A leader's log is contiguous, its terms never go down, and none is newer than its own.
    if (entry.index !== message.prevLogIndex + 1 + i) return `entry ${i} has index ${String(entry.index)}, expected ${message.prevLogIndex + 1 + i}`;
    if (!isCount(entry.term, message.term) || entry.term < previousTerm) return `entry ${entry.index} has term ${String(entry.term)} (previous ${previousTerm}, leader ${message.term})`;
    if (!ENTRY_TYPES.has(entry.type) || !(entry.data instanceof Uint8Array)) return `entry ${entry.index} has no valid type or data`;
    previousTerm = entry.term;
  }
  return null;
}

function snapshotChunkProblem(message: Extract<Message, { type: 'snapshotChunk' }>, limits: PeerLimits): string | null {
  const { meta, offset, totalBytes, chunk } = message;
  if (!isCount(meta.index, INDEX_MAX) || !isCount(meta.term, message.term)) return `snapshot index ${String(meta.index)} or term ${String(meta.term)} out of range`;
  if (!isCount(totalBytes, limits.snapshotBytesMax)) return `snapshot of ${String(totalBytes)} bytes exceeds the limit of ${limits.snapshotBytesMax}`;
  if (!isCount(offset, totalBytes) || !(chunk instanceof Uint8Array) || offset + chunk.byteLength > totalBytes) return `chunk at ${String(offset)} of ${chunk?.byteLength} bytes does not fit in ${totalBytes}`;
  if (message.done !== (offset + chunk.byteLength === totalBytes)) return `chunk at ${offset} says done=${String(message.done)} but ends at ${offset + chunk.byteLength} of ${totalBytes}`;
  return confProblem(meta.conf);
}

function confProblem(conf: ConfState): string | null {
  const { voters, learners } = conf;
  if (!Array.isArray(voters) || !Array.isArray(learners) || voters.length === 0 || voters.length + learners.length > CONF_MEMBERS_MAX) return 'snapshot configuration has no voters or too many members';
  const members = new Set<string>();
  for (const id of [...voters, ...learners]) {
    if (typeof id !== 'string' || id === '' || members.has(id)) return 'snapshot configuration lists an empty or repeated member';
    members.add(id);
  }
  return null;
}

function readIdProblem(id: string | null): string | null {
  if (id === null) return null;
  if (typeof id !== 'string' || id.length > REQUEST_ID_CHARS_MAX) return `read id longer than ${REQUEST_ID_CHARS_MAX} characters`;
  return null;
}
