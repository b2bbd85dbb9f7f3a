// Prompt generation for the fuzzers: a few prompt families sharing long prefixes (so the prefix cache
// gets hits), a few namespaces (so a hit in the wrong namespace would show), and unique filler tokens.
// Invariant: the same spec always yields the same tokens.
import { mix32 } from './kv-content';

export const NAMESPACES = ['', 'tenant-a', 'tenant-b'] as const;
export const FAMILIES = 3;

export interface PromptSpec {
  family: number;
  /** Leading tokens taken from the family's fixed prompt. */
  shared: number;
  /** Tokens after them, derived from `seed`. */
  tail: number;
  seed: number;
  namespace: number;
}

export function familyToken(family: number, position: number): number {
  return 1000 * (family + 1) + position;
}

export function promptTokens(spec: PromptSpec): number[] {
  const tokens: number[] = [];
  for (let i = 0; i < spec.shared; i++) tokens.push(familyToken(spec.family % FAMILIES, i));
  for (let i = 0; i < spec.tail; i++) tokens.push(mix32(spec.seed, i) % 50_000);
  return tokens;
}

export function namespaceOf(spec: { namespace: number }): string {
  return NAMESPACES[spec.namespace % NAMESPACES.length]!;
}

/** `n` tokens that no prompt family or tail produces (so they never hit the prefix cache). */
export function uniqueTokens(n: number, salt: number): number[] {
  return Array.from({ length: n }, (_, i) => 4_000_000_000 - (mix32(salt, i) % 1_000_000));
}
