// Tests that need a tool from outside npm: run when it is on PATH; otherwise
// registered as skipped with the reason in their title (what to install), and
// under CI=true (.ci/run) failed instead, so that CI cannot quietly skip them.
import { execFileSync } from 'node:child_process';
import test, { type ExecutionContext } from 'ava';

type Body = (t: ExecutionContext) => void | Promise<void>;

export interface Tool {
  /** The command looked up on PATH. */
  readonly command: string;
  /** How to get it, for the skip reason. */
  readonly install: string;
}

export const PROMTOOL: Tool = { command: 'promtool', install: 'apt-get install -y prometheus' };
export const DOCKER_COMPOSE: Tool = { command: 'docker-compose', install: 'apt-get install -y docker-compose' };

export function onPath(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Why the tools cannot run here, or null when they all can. */
export function missing(tools: readonly Tool[]): string | null {
  const absent = tools.filter((tool) => !onPath(tool.command));
  return absent.length === 0 ? null : absent.map((tool) => `${tool.command} is missing (${tool.install})`).join('; ');
}

/** `test`, or a skipped test whose title says what is missing (a failing one under CI=true). */
export function testWith(tools: readonly Tool[], reason: string | null = missing(tools)): (title: string, body: Body) => void {
  if (reason === null) return (title, body) => test(title, body);
  if (process.env.CI === 'true') return (title) => test(title, (t) => t.fail(`needs: ${reason}`));
  return (title, body) => test.skip(`${title} (skipped: ${reason})`, body);
}
