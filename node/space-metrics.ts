// Disk space of a node: the data dir's file system (statfs at scrape time, so a
// filling disk shows before it hurts) and the out-of-space alarm, which the
// storage raises when a write fails for lack of space or its quota is reached,
// and clears when writes succeed again.
import { statfs } from 'node:fs/promises';
import { Gauge, type Registry } from 'prom-client';

export class SpaceMetrics {
  private dataDir: string | null = null;
  private readonly alarm: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    const dir = (): string | null => this.dataDir;
    const stats = async () => {
      const path = dir();
      if (path === null) return null;
      try {
        return await statfs(path);
      } catch {
        // Gone or unreadable: the storage itself reports that; the gauges just show nothing.
        return null;
      }
    };
    new Gauge({
      name: 'debughost_data_dir_free_bytes',
      help: 'Bytes an unprivileged writer may still use on the file system of this node\'s data dir.',
      registers,
      async collect() {
        const info = await stats();
        if (info === null) return this.reset();
        this.set(info.bavail * info.bsize);
      },
    });
    new Gauge({
      name: 'debughost_data_dir_size_bytes',
      help: 'Size of the file system of this node\'s data dir.',
      registers,
      async collect() {
        const info = await stats();
        if (info === null) return this.reset();
        this.set(info.blocks * info.bsize);
      },
    });
    this.alarm = new Gauge({
      name: 'debughost_storage_nospace_alarm',
      help: '1 while this node\'s storage is out of space (writes refused, reads served), else 0.',
      registers,
    });
    this.alarm.set(0);
  }

  /** The data dir whose file system the gauges report. */
  watch(dataDir: string): void {
    this.dataDir = dataDir;
  }

  /** Called by the storage when it raises (true) or clears (false) its out-of-space alarm. */
  setNoSpaceAlarm(active: boolean): void {
    this.alarm.set(active ? 1 : 0);
  }
}
