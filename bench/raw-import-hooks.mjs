// Node module hooks that give `import text from './file.wgsl?raw'` the meaning Vite gives it (the file's
// text as the default export), so GPU scripts under bench/ run with tsx outside Vite. Invariant: only
// specifiers ending in `?raw` are touched; everything else goes to the next loader unchanged.
import { readFile } from 'node:fs/promises';

export async function load(url, context, nextLoad) {
  if (!url.startsWith('file:') || !url.endsWith('?raw')) return nextLoad(url, context);
  const text = await readFile(new URL(url.slice(0, -'?raw'.length)), 'utf8');
  return { format: 'module', source: `export default ${JSON.stringify(text)};`, shortCircuit: true };
}
