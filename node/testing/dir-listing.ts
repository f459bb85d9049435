// Test support: a directory's files with size and modification time, to prove a command left them as they were.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

export async function dirListing(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const path = join(entry.parentPath, entry.name);
    const info = await stat(path);
    out.push(`${path} ${info.size} ${info.mtimeMs}`);
  }
  return out.sort();
}
