// Validation of token inputs. A token is an integer in 0..2^32-1 (stored in a Uint32Array slot).
// Invariant: checkTokens either returns the token count or throws InvalidTokenError naming the first
// bad element; it reads `tokens` once per element and never mutates it.
import { InvalidTokenError } from './errors';

/** Returns tokens.length after checking every element; throws InvalidTokenError otherwise. */
export function checkTokens(tokens: ArrayLike<number>): number {
  if (tokens instanceof Uint32Array) return tokens.length;
  if (typeof tokens !== 'object' || tokens === null) throw new InvalidTokenError(-1, tokens);
  const n = tokens.length;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new InvalidTokenError(-1, tokens);
  for (let i = 0; i < n; i++) {
    const t = tokens[i];
    if (typeof t !== 'number' || t !== t >>> 0) throw new InvalidTokenError(i, t);
  }
  return n;
}
