// The role table: every tool and CLI verb × every role × own / other / every tenant against a reference written out here, and docs/security.md against the code.
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { authorize, authorizeIssue, CLI_VERB_RIGHTS, RIGHTS, ROLES, rightsOf, TOOL_RIGHTS, type Identity, type Role } from './identity.ts';

/** The lowest role each tool needs, as issue 10 states it (written out, not derived from the code). */
const LOWEST_ROLE: Record<string, Role> = {
  project_status: 'viewer',
  project_list: 'viewer',
  project_logs: 'viewer',
  project_events: 'viewer',
  tenant_usage: 'viewer',
  cluster_status: 'viewer',
  project_start: 'developer',
  project_stop: 'developer',
  project_restart: 'developer',
  project_remove: 'developer',
  project_batch: 'developer',
  project_wait: 'developer',
  project_http: 'developer',
  project_exec: 'exec',
  tenant_quota_set: 'tenant-admin',
  token_create: 'tenant-admin',
  token_revoke: 'tenant-admin',
  token_list: 'tenant-admin',
  audit_query: 'tenant-admin',
  image_list: 'admin',
  image_prune: 'admin',
};
/** Tools that act on the cluster, not on one tenant. */
const CLUSTER_TOOLS = new Set(['cluster_status', 'image_list', 'image_prune']);
const LADDER: Role[] = ['viewer', 'developer', 'exec', 'tenant-admin', 'admin'];

const identity = (role: Role, tenant = 'alice'): Identity => ({ tokenId: `id-${role}`, tokenName: `${role}-token`, tenant, role });

test('every tool has a right, and the reference names exactly the same tools', (t) => {
  t.deepEqual(Object.keys(TOOL_RIGHTS).sort(), Object.keys(LOWEST_ROLE).sort());
  t.deepEqual([...ROLES], LADDER);
});

test('tool × role × tenant: allowed exactly when the role reaches the tool and the tenant is its own (or the caller is admin)', (t) => {
  let cells = 0;
  for (const [tool, right] of Object.entries(TOOL_RIGHTS)) {
    const needed = LADDER.indexOf(LOWEST_ROLE[tool] as Role);
    for (const role of LADDER) {
      const reaches = LADDER.indexOf(role) >= needed;
      const caller = identity(role);
      const tenants: (string | null)[] = CLUSTER_TOOLS.has(tool) ? [null] : ['alice', 'bob', null];
      for (const tenant of tenants) {
        const expected = reaches && (CLUSTER_TOOLS.has(tool) || tenant === 'alice' || role === 'admin');
        const outcome = authorize(caller, right, tenant);
        t.is(outcome.ok, expected, `${tool} as ${role} of alice on tenant ${tenant ?? '(all)'}`);
        if (!outcome.ok) {
          t.is(outcome.reason, reaches ? 'otherTenant' : 'missingRight');
          t.true(outcome.message.includes(right) || outcome.message.includes(tenant ?? 'every tenant'), outcome.message);
        }
        cells += 1;
      }
    }
  }
  t.log(`${cells} cells checked`);
});

test('a refusal names the missing right and the role that has it', (t) => {
  const outcome = authorize(identity('developer'), 'project.exec', 'alice');
  t.false(outcome.ok);
  if (outcome.ok) return;
  t.is(outcome.reason, 'missingRight');
  t.is(outcome.right, 'project.exec');
  t.regex(outcome.message, /lacks the right 'project\.exec', which needs role exec or above/);
});

test('issuing tokens: a tenant-admin issues up to its own role in its own tenant; an admin anything', (t) => {
  const tenantAdmin = identity('tenant-admin');
  for (const role of LADDER) {
    t.is(authorizeIssue(tenantAdmin, 'alice', role).ok, role !== 'admin', `tenant-admin issues ${role}`);
    t.false(authorizeIssue(tenantAdmin, 'bob', role).ok, `tenant-admin issues ${role} for bob`);
    t.true(authorizeIssue(identity('admin', 'default'), 'bob', role).ok, `admin issues ${role} for bob`);
    t.false(authorizeIssue(identity('exec'), 'alice', role).ok, `exec issues ${role}`);
  }
});

test('rights grow along the ladder: each role has every right of the one below', (t) => {
  for (let i = 1; i < LADDER.length; i += 1) {
    const below = new Set(rightsOf(LADDER[i - 1] as Role));
    const here = new Set(rightsOf(LADDER[i] as Role));
    for (const right of below) t.true(here.has(right), `${LADDER[i]} has ${right}`);
    t.true(here.size > below.size, `${LADDER[i]} adds a right`);
  }
  t.is(rightsOf('admin').length, Object.keys(RIGHTS).length);
});

/** Rows of the markdown table whose header starts with `first`: cells by column. */
function table(markdown: string, first: string): string[][] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((line) => line.startsWith(`| ${first} |`));
  if (start < 0) return [];
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.split('|').slice(1, -1).map((cell) => cell.trim()));
  }
  return rows;
}

test('docs/security.md shows the same table as the code: every tool and CLI verb, its right, and a mark for each role that has it', async (t) => {
  const markdown = await readFile(new URL('../docs/security.md', import.meta.url), 'utf8');
  const rows = table(markdown, 'tool or verb');
  t.true(rows.length > 0, 'the table is in docs/security.md');
  const documented = new Map(rows.map((cells) => [cells[0]?.replace(/`/g, '') ?? '', cells.slice(1)]));
  const expected: [string, string | null][] = [...Object.entries(TOOL_RIGHTS), ...Object.entries(CLI_VERB_RIGHTS).map(([verb, right]) => [`debughost ${verb}`, right] as [string, string | null])];
  for (const [name, right] of expected) {
    const cells = documented.get(name);
    if (cells === undefined) {
      t.fail(`${name} is missing from the table in docs/security.md`);
      continue;
    }
    t.is(cells[0]?.replace(/`/g, ''), right ?? '—', `${name}: right`);
    const marks = cells.slice(1, 1 + LADDER.length);
    const wanted = LADDER.map((role) => (right === null || rightsOf(role).includes(right as keyof typeof RIGHTS) ? '✓' : ''));
    t.deepEqual(marks, wanted, `${name}: roles`);
  }
  t.is(documented.size, expected.length, 'the table has no row the code does not know');
});
