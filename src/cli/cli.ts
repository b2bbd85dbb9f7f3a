// Command dispatch for the `webgpu-paged-attention` binary: parses argv, runs one command, and maps
// every failure to a clear message and a non-zero exit code. Invariants: usage and configuration
// mistakes (a pool too small for the workload included) exit 2 with a pointer to --help; every other
// failure (no adapter — with its install hint —, failed verification, GPU errors) exits 1; only
// unexpected errors print a stack trace.
import { parseArgs } from 'node:util';
import { createGpu, PRECISE_TIMING_DAWN_OPTIONS } from '../gpu/create-gpu';
import { probeParallelism } from '../gpu/parallelism-probe';
import { runBench } from './bench-command';
import { benchHelp, infoHelp, mainHelp, PROGRAM, serveHelp, tuneHelp } from './help';
import { printInfo } from './info-command';
import type { ProgressStream } from './progress-bar';
import { serve } from './serve-command';
import { tune, TUNE_SHAPE_FLAGS } from './tune-command';
import { WORKLOAD_FLAGS } from './serve-flags';
import { UsageError } from './usage-error';

export interface CliIO {
  stdout: ProgressStream;
  stderr: ProgressStream;
}

type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string }>;

const COMMON: OptionSpec = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
  'force-fallback': { type: 'boolean' },
};

const SERVE: OptionSpec = {
  ...COMMON,
  preset: { type: 'string' },
  'no-progress': { type: 'boolean' },
  tuning: { type: 'string' },
  'subgroup-matrix': { type: 'boolean' },
  'no-bounds-checks': { type: 'boolean' },
  ...Object.fromEntries(WORKLOAD_FLAGS.map((f) => [f.name, { type: 'string' as const }])),
};

const INFO: OptionSpec = { ...COMMON, 'subgroup-matrix': { type: 'boolean' }, 'no-bounds-checks': { type: 'boolean' } };

const BENCH: OptionSpec = { ...COMMON, quick: { type: 'boolean' }, tune: { type: 'boolean' }, 'no-tune': { type: 'boolean' } };

const TUNE: OptionSpec = {
  ...COMMON,
  out: { type: 'string' },
  'kv-dtype': { type: 'string' },
  'decode-shapes': { type: 'string' },
  'prefill-shape': { type: 'string' },
  ...Object.fromEntries(TUNE_SHAPE_FLAGS.map((f) => [f.name, { type: 'string' as const }])),
};

function parse(args: string[], options: OptionSpec, command: string): Record<string, string | boolean | undefined> {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values as Record<string, string | boolean | undefined>;
  } catch (error) {
    const message = error instanceof Error ? error.message.split('\n')[0]! : String(error);
    throw new UsageError(`${command}: ${message}`);
  }
}

export async function runCli(argv: readonly string[], io: CliIO): Promise<number> {
  let command = 'serve';
  try {
    let args = [...argv];
    if (args[0] === '--help' || args[0] === '-h' || args[0] === 'help') {
      io.stdout.write(mainHelp());
      return 0;
    }
    if (args[0] !== undefined && !args[0].startsWith('-')) {
      command = args[0];
      args = args.slice(1);
    }
    switch (command) {
      case 'serve': {
        const flags = parse(args, SERVE, command);
        if (flags.help) return write(io.stdout, serveHelp());
        return await serve(flags, io);
      }
      case 'info': {
        const flags = parse(args, INFO, command);
        if (flags.help) return write(io.stdout, infoHelp());
        const gpu = await createGpu({
          forceFallback: !!flags['force-fallback'],
          subgroupMatrix: !!flags['subgroup-matrix'],
          boundsChecks: !flags['no-bounds-checks'],
        });
        try {
          printInfo(gpu, await probeParallelism(gpu.device), !!flags.json, io.stdout);
        } finally {
          gpu.device.destroy();
        }
        return 0;
      }
      case 'bench': {
        const flags = parse(args, BENCH, command);
        if (flags.help) return write(io.stdout, benchHelp());
        const gpu = await createGpu({
          forceFallback: !!flags['force-fallback'],
          subgroupMatrix: true,
          dawnOptions: PRECISE_TIMING_DAWN_OPTIONS,
        });
        try {
          if (flags.tune && flags['no-tune']) throw new UsageError('bench: --tune and --no-tune contradict each other');
          const tune = flags.tune ? true : flags['no-tune'] ? false : undefined;
          await runBench(gpu, { json: !!flags.json, quick: !!flags.quick, tune });
        } finally {
          gpu.device.destroy();
        }
        return 0;
      }
      case 'tune': {
        const flags = parse(args, TUNE, command);
        if (flags.help) return write(io.stdout, tuneHelp());
        return await tune(flags, io);
      }
      default:
        throw new UsageError(`unknown command "${command}" (commands: serve, info, bench, tune)`);
    }
  } catch (error) {
    return reportError(error, command, io.stderr);
  }
}

function write(stream: ProgressStream, text: string): number {
  stream.write(text);
  return 0;
}

export function reportError(error: unknown, command: string, stderr: ProgressStream): number {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'USAGE' || code === 'CONFIG' || code === 'SIM_POOL_TOO_SMALL') {
    stderr.write(`${PROGRAM}: ${message}\nRun \`${PROGRAM} ${command} --help\` for usage.\n`);
    return 2;
  }
  if (code === 'NO_ADAPTER') {
    stderr.write(`${PROGRAM}: ${message}\n`);
    return 1;
  }
  if (code === 'SIM_VERIFICATION') {
    stderr.write(`${PROGRAM}: verification FAILED — the GPU's attention output disagrees with the CPU reference.\n${message}\n`);
    return 1;
  }
  if (typeof code === 'string') {
    stderr.write(`${PROGRAM}: ${message} [${code}]\n`);
    return 1;
  }
  stderr.write(`${PROGRAM}: unexpected error: ${error instanceof Error && error.stack ? error.stack : message}\n`);
  return 1;
}
