// Pushes the dashboard to its viewers as changes happen: one watch on the
// node's WatchHub (every applied write, delivered at apply time) and a
// listener on Raft's persisted readies (leader, term, role, configuration).
// Changes of one event-loop turn go out together; each viewer gets only the
// projects its identity may see. Nothing polls; idle, it costs nothing.
import { prefixEnd, type KeyValue } from '../../consensus/kv-state-machine.ts';
import { LIVENESS_PREFIX, MEMBERS_PREFIX, PROJECTS_PREFIX } from '../../actors/messages.ts';
import { RING_EPOCH_KEY } from '../../consensus/kv-machine.ts';
import { WatchLimitError, type RevisionEvents, type WatchHub } from '../watch-hub.ts';
import { maySee, type UiIdentity } from './authorize.ts';
import { clusterView, projectIdOf, projectView, STATUS_PREFIX, type ClusterSource, type DashboardCluster, type DashboardProject } from './dashboard-model.ts';

export type DashboardMessage =
  | { readonly type: 'hello'; readonly identity: UiIdentity }
  /** `at`: wall-clock ms when this node saw the change (the page measures how long showing it took). */
  | { readonly type: 'cluster'; readonly at: number; readonly cluster: DashboardCluster }
  | { readonly type: 'projects'; readonly at: number; readonly full: boolean; readonly upsert: readonly DashboardProject[]; readonly remove: readonly string[] };

/** What the feed reads from its node. */
export interface FeedSource {
  readonly hub: WatchHub;
  /** Called after every persisted Raft ready. */
  readonly raftListeners: Set<() => void>;
  /** Raft's and the store's view, or null while Raft has not started. */
  cluster(): ClusterSource | null;
  /** The applied store, or null while Raft has not started. */
  store(): { get(key: string): KeyValue | null; range(start: string, end: string): readonly KeyValue[] } | null;
}

export interface FeedOptions {
  /** Most viewers at once on one node (each holds an open stream). */
  readonly viewersMax: number;
  /** Wall clock, for the `at` stamps. */
  readonly nowMs: () => number;
  /** Runs a callback after the current turn: changes of one turn go out as one message. */
  readonly defer: (callback: () => void) => void;
}

export const feedOptionsDefault: FeedOptions = Object.freeze({ viewersMax: 200, nowMs: () => Date.now(), defer: (callback: () => void) => setImmediate(callback) });

export class FeedLimitError extends Error {
  override readonly name = 'FeedLimitError';
}

interface Viewer {
  readonly identity: UiIdentity;
  readonly send: (message: DashboardMessage) => void;
}

const ALL_KEYS = { key: '', end: '\0' } as const;

export class DashboardFeed {
  private readonly viewers = new Set<Viewer>();
  private projects = new Map<string, DashboardProject>();
  private cluster: DashboardCluster | null = null;
  private clusterJson = '';
  private watch: { cancel: () => void } | null = null;
  private loaded = false;
  /** Projects whose keys changed since the last flush, and when the first change was seen. */
  private changed = new Set<string>();
  private clusterMayHaveChanged = false;
  private changedAtMs = 0;
  private flushQueued = false;
  private readonly onRaft = (): void => this.markCluster();

  constructor(
    private readonly source: FeedSource,
    private readonly options: FeedOptions = feedOptionsDefault,
  ) {}

  get viewerCount(): number {
    return this.viewers.size;
  }

  get isFull(): boolean {
    return this.viewers.size >= this.options.viewersMax;
  }

  limitMessage(): string {
    return `this node already serves ${this.viewers.size} dashboards (the most it allows); close some, or open the dashboard of another node`;
  }

  /** Start pushing to one viewer: hello, the cluster, every visible project, then changes. Throws FeedLimitError when full. */
  subscribe(identity: UiIdentity, send: Viewer['send']): () => void {
    if (this.isFull) throw new FeedLimitError(this.limitMessage());
    if (this.viewers.size === 0) this.open();
    const viewer: Viewer = { identity, send };
    this.viewers.add(viewer);
    const at = this.options.nowMs();
    send({ type: 'hello', identity });
    send({ type: 'cluster', at, cluster: this.currentCluster() });
    send({ type: 'projects', at, full: true, upsert: [...this.projects.values()].filter((p) => maySee(identity, p.tenant)), remove: [] });
    return () => {
      if (!this.viewers.delete(viewer)) return;
      if (this.viewers.size === 0) this.close();
    };
  }

  private open(): void {
    this.source.raftListeners.add(this.onRaft);
    this.reload();
  }

  private close(): void {
    this.source.raftListeners.delete(this.onRaft);
    this.watch?.cancel();
    this.watch = null;
    this.loaded = false;
    this.projects = new Map();
    this.changed.clear();
  }

  /** Read every project from the store and watch from the next revision: one synchronous step, so nothing falls between. */
  private reload(): void {
    this.watch?.cancel();
    this.watch = null;
    const store = this.source.store();
    this.loaded = store !== null;
    if (store === null) return;
    const ids = new Set<string>();
    for (const prefix of [PROJECTS_PREFIX, STATUS_PREFIX]) {
      for (const kv of store.range(prefix, prefixEnd(prefix))) {
        const id = projectIdOf(kv.key);
        if (id !== null) ids.add(id);
      }
    }
    this.projects = new Map();
    for (const id of ids) {
      const view = projectView(id, store.get(`${PROJECTS_PREFIX}${id}`), store.get(`${STATUS_PREFIX}${id}`));
      if (view !== null) this.projects.set(id, view);
    }
    try {
      // The history before a reset (a snapshot installed) is gone: the watch is lost, and a reload sends everything again.
      this.watch = this.source.hub.watch(ALL_KEYS, 0, (batch) => this.delivered(batch), () => {
        this.watch = null;
        // Told while the new state machine is being built: read it once it is in place.
        this.options.defer(() => {
          if (this.viewers.size === 0 || this.watch !== null) return;
          this.reload();
          this.sendFull();
        });
      });
    } catch (error) {
      if (!(error instanceof WatchLimitError)) throw error;
      // The node's watches are all taken: try again at the next Raft event.
      this.loaded = false;
    }
  }

  private sendFull(): void {
    const at = this.options.nowMs();
    const cluster = this.currentCluster();
    for (const viewer of this.viewers) {
      viewer.send({ type: 'cluster', at, cluster });
      viewer.send({ type: 'projects', at, full: true, upsert: [...this.projects.values()].filter((p) => maySee(viewer.identity, p.tenant)), remove: [] });
    }
  }

  private currentCluster(): DashboardCluster {
    const source = this.source.cluster();
    this.cluster =
      source === null ? { node: '', clusterId: '', role: 'starting', term: 0, leader: null, ringEpoch: 0, members: [] } : clusterView(source);
    this.clusterJson = JSON.stringify(this.cluster);
    return this.cluster;
  }

  private delivered(batch: RevisionEvents): void {
    for (const event of batch.events) {
      const key = event.kv.key;
      const id = projectIdOf(key);
      if (id !== null) this.changed.add(id);
      else if (key.startsWith(MEMBERS_PREFIX) || key.startsWith(LIVENESS_PREFIX) || key === RING_EPOCH_KEY) this.clusterMayHaveChanged = true;
      else continue;
      this.schedule();
    }
  }

  private markCluster(): void {
    if (!this.loaded) {
      // Raft has started since the first viewer came: now there is a store to read.
      if (this.source.store() === null) return;
      this.reload();
      this.sendFull();
      return;
    }
    this.clusterMayHaveChanged = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    this.changedAtMs = this.options.nowMs();
    this.options.defer(() => this.flush());
  }

  private flush(): void {
    this.flushQueued = false;
    const at = this.changedAtMs;
    if (this.viewers.size === 0) return;
    if (this.clusterMayHaveChanged) {
      this.clusterMayHaveChanged = false;
      const before = this.clusterJson;
      const cluster = this.currentCluster();
      if (this.clusterJson !== before) for (const viewer of this.viewers) viewer.send({ type: 'cluster', at, cluster });
    }
    if (this.changed.size === 0) return;
    const store = this.source.store();
    if (store === null) return;
    const upsert: DashboardProject[] = [];
    const remove: string[] = [];
    for (const id of this.changed) {
      const view = projectView(id, store.get(`${PROJECTS_PREFIX}${id}`), store.get(`${STATUS_PREFIX}${id}`));
      const old = this.projects.get(id);
      if (view === null) {
        if (old !== undefined) remove.push(id);
        this.projects.delete(id);
      } else if (old === undefined || JSON.stringify(old) !== JSON.stringify(view)) {
        upsert.push(view);
        this.projects.set(id, view);
      }
    }
    this.changed.clear();
    if (upsert.length === 0 && remove.length === 0) return;
    for (const viewer of this.viewers) {
      const mine = upsert.filter((p) => maySee(viewer.identity, p.tenant));
      const gone = remove.filter((id) => maySee(viewer.identity, id.slice(0, id.indexOf('/'))));
      if (mine.length > 0 || gone.length > 0) viewer.send({ type: 'projects', at, full: false, upsert: mine, remove: gone });
    }
  }
}
