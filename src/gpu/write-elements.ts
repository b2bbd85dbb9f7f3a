// Uploads of typed-array elements through queue.writeBuffer, in its byte form. Invariant:
// writeElements(queue, buffer, at, view, first, count) writes exactly view[first .. first + count) at
// byte offset `at`, as writeBuffer(buffer, at, view, first, count) would. It passes the view's
// ArrayBuffer with byte offsets instead of the view with element offsets: Dawn's Node binding takes
// about 0.5 µs longer per call for a typed-array source (1.5 against 1.0 µs for 4 B to 1 KiB on the
// 2-core VM, bench/RESULTS.md), and the runtime's hot paths (block-table rows, slot maps, kernel
// parameters) upload a few small ranges per decode step.

type ElementView = Uint32Array<ArrayBufferLike> | Int32Array<ArrayBufferLike> | Float32Array<ArrayBufferLike>;

export function writeElements(
  queue: GPUQueue,
  buffer: GPUBuffer,
  at: number,
  view: ElementView,
  first = 0,
  count = view.length - first,
): void {
  const bytes = view.BYTES_PER_ELEMENT;
  queue.writeBuffer(buffer, at, view.buffer, view.byteOffset + first * bytes, count * bytes);
}
