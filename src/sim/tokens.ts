// Deterministic token generation: what a sample "decodes" is a pure function of the previous token and
// the sample's seed, so a whole conversation can be written down before it is run and recomputed later.
// Invariants: tokens are integers in [0, vocabSize); sampleSeed differs between samples of one request.
import { hash2, type SeededRandom } from './hash';

export function nextToken(previous: number, seed: number, vocabSize: number): number {
  return hash2(previous, seed) % vocabSize;
}

/** Seed of parallel sample `index` of a request with seed `requestSeed`. */
export function sampleSeed(requestSeed: number, index: number): number {
  return hash2(requestSeed, 0x5a3d + index);
}

/** The `count` tokens a sample generates after `previous`. */
export function generateTokens(previous: number, seed: number, count: number, vocabSize: number): number[] {
  const out: number[] = [];
  let token = previous;
  for (let i = 0; i < count; i++) {
    token = nextToken(token, seed, vocabSize);
    out.push(token);
  }
  return out;
}

/** `count` random tokens (user text) from a seeded source. */
export function randomTokens(random: SeededRandom, count: number, vocabSize: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(random.nextUint32() % vocabSize);
  return out;
}
