#!/usr/bin/env node
// Entry point of the `webgpu-paged-attention` binary (built to dist/cli.js). Invariant: the process
// exits with runCli's code even if a GPU device or timer would keep the event loop alive.
import { runCli } from './cli';

const code = await runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr });
process.exit(code);
