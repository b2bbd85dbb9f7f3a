// Size and usage of GPUBuffers, read from the implementation once per buffer. Invariant: both are fixed
// when a buffer is created (WebGPU has no resize and no usage change), so a value cached by buffer
// identity stays true for the buffer's whole life; the WeakMap lets collected buffers go. Reading them
// through Dawn's Node binding costs a native call each; hot paths (every layer of every step) validate
// the same few buffers again and again.

export interface BufferFacts {
  readonly size: number;
  readonly usage: number;
}

const facts = new WeakMap<GPUBuffer, BufferFacts>();

/** The buffer's size and usage, or undefined when `buffer` is not a GPUBuffer-like object. */
export function bufferFacts(buffer: unknown): BufferFacts | undefined {
  if (typeof buffer !== 'object' || buffer === null) return undefined;
  let known = facts.get(buffer as GPUBuffer);
  if (known !== undefined) return known;
  const { size, usage } = buffer as GPUBuffer;
  if (typeof usage !== 'number' || typeof size !== 'number') return undefined;
  known = { size, usage };
  facts.set(buffer as GPUBuffer, known);
  return known;
}
