// Vite configuration for three jobs:
//   - `vite` / `vite build`     : the browser demo in examples/browser (cross-origin isolated, so
//                                 SharedArrayBuffer and worker threads are available);
//   - `vite build --mode lib`   : the Node library + CLI bundle in dist/ (WGSL inlined with ?raw);
//   - `vitest`                  : the test suite (Node environment, GPU tests on Dawn).
import { availableParallelism } from 'node:os';
import { defineConfig } from 'vite';

const isolationHeaders = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

export default defineConfig(({ mode }) => {
  if (mode === 'lib') {
    return {
      build: {
        outDir: 'dist',
        // Chunks are named by content hash, so a build that kept the old ones would pile them up (13 MB
        // after a few dozen builds); tsc writes dist/types after this step.
        emptyOutDir: true,
        target: 'node20',
        ssr: true,
        minify: false,
        sourcemap: true,
        rollupOptions: {
          input: { index: 'src/index.ts', cli: 'src/cli/main.ts' },
          output: { format: 'es', entryFileNames: '[name].js', chunkFileNames: 'chunks/[name]-[hash].js' },
          external: [/^node:/, 'webgpu'],
        },
      },
    };
  }
  if (process.env.VITEST) {
    return {
      test: {
        include: ['test/**/*.test.ts'],
        environment: 'node',
        testTimeout: 120_000,
        hookTimeout: 120_000,
        pool: 'forks',
        // One test file per core (Vitest's default leaves one core free). On SwiftShader a GPU test
        // file spends most of its time compiling shaders on one thread, so a 2-core machine runs the
        // suite in about two thirds of the time with both cores taking files.
        maxWorkers: availableParallelism(),
      },
    };
  }
  return {
    root: 'examples/browser',
    server: { headers: isolationHeaders },
    preview: { headers: isolationHeaders },
    worker: { format: 'es' },
    build: { outDir: '../../dist-demo', emptyOutDir: true, target: 'es2022' },
  };
});
