// Goal: the exactly-once checker counts real workload processes right: marked `sleep`s per project, no shells, no zombies, no other run's.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import test from 'ava';
import { countMarked } from './workload-mcp.ts';

const MARK = `DH_CHAOS_MARK_test${process.pid}`;
const children: ChildProcess[] = [];

test.after.always(() => {
  for (const child of children) if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(-child.pid, 'SIGKILL');
});

/** A process group: a shell that backgrounds one `sleep` and becomes another, both carrying the marker. */
function start(project: string, mark = MARK): ChildProcess {
  const child = spawn('sh', ['-c', 'sleep 1000 & exec sleep 1001'], { env: { ...process.env, [mark]: project }, detached: true, stdio: 'ignore' });
  children.push(child);
  return child;
}

function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);
}

async function until<T>(what: string, probe: () => T | null): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const value = probe();
    if (value !== null) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${what} did not happen within 5 s`);
}

test('marked sleeps are counted per project; a zombie and another run\'s marker are not', async (t) => {
  const a = start('p1');
  start('p2');
  start('p1', `${MARK}x`);
  await until('two copies of p1 and of p2', () => {
    const counts = countMarked(MARK);
    return counts.get('p1') === 2 && counts.get('p2') === 2 ? counts : null;
  });
  // Kill the backgrounded sleep: its parent (the exec'd sleep) never reaps it, so it stays a zombie.
  const inner = await until('the background sleep', () => childrenOf(a.pid as number)[0] ?? null);
  process.kill(inner, 'SIGKILL');
  await until('p1 down to one copy', () => (countMarked(MARK).get('p1') === 1 ? true : null));
  t.true(readFileSync(`/proc/${inner}/stat`, 'utf8').includes(') Z '), 'the killed sleep is a zombie, and is not counted');
  for (const child of children) process.kill(-(child.pid as number), 'SIGKILL');
  await until('nothing marked left', () => (countMarked(MARK).size === 0 && countMarked(`${MARK}x`).size === 0 ? true : null));
});
