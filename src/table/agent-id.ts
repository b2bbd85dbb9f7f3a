// A random non-zero 31-bit id for this agent (main thread, worker, or browser worker), drawn once when
// this module is first evaluated in the agent. Invariant: it never changes within an agent, and two
// agents collide with probability 2^-31 per pair. It only labels the lock owner (re-entrance detection,
// error messages); mutual exclusion rests on the lock's state word alone, so a collision could at worst
// make a waiting agent report ReentrantLockError, never admit two holders.

function drawAgentId(): number {
  const cryptoApi = (globalThis as { crypto?: { getRandomValues?: (a: Uint32Array) => Uint32Array } }).crypto;
  const word = new Uint32Array(1);
  if (cryptoApi?.getRandomValues) cryptoApi.getRandomValues(word);
  else word[0] = Math.floor(Math.random() * 0x100000000);
  return (word[0] & 0x7fffffff) || 1;
}

export const AGENT_ID: number = drawAgentId();
