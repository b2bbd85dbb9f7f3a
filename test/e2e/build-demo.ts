// Builds the browser demo with Vite into dist-demo/ in a child process. Invariant: the build runs with
// the test runner's VITEST variables removed, so vite.config.ts picks its demo configuration.
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const DEMO_DIR = resolve(REPO_ROOT, 'dist-demo');

export function buildDemo(): void {
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST') && k !== 'NODE_ENV'));
  const vite = resolve(REPO_ROOT, 'node_modules/vite/bin/vite.js');
  const run = spawnSync(process.execPath, [vite, 'build', '--logLevel', 'warn'], { cwd: REPO_ROOT, env, encoding: 'utf8' });
  if (run.status !== 0) {
    throw new Error(`vite build of the demo failed (exit ${run.status}):\n${run.stdout}\n${run.stderr}`);
  }
}
