// Minimal assertions usable both inside vitest and in the bench scripts (which run without it).
// Invariant: every failed assertion throws an Error whose message says what was expected and found.

export function assert(condition: unknown, message: string | (() => string)): asserts condition {
  if (!condition) throw new Error(typeof message === 'string' ? message : message());
}

export function assertEqual<T>(actual: T, expected: T, what: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

type ErrorClass = abstract new (...args: never[]) => Error;

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** Runs `action`, capturing a thrown error or rejection instead of propagating it. */
export async function attempt<T>(action: () => T | Promise<T>): Promise<Outcome<Awaited<T>>> {
  try {
    return { ok: true, value: await action() };
  } catch (error) {
    return { ok: false, error };
  }
}

/** Rethrows `error` unless it is an instance of one of `allowed`. */
export function expectErrorOf(error: unknown, allowed: readonly ErrorClass[], what: string): Error {
  if (allowed.some((c) => error instanceof c)) return error as Error;
  const name = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  throw new Error(`${what}: expected ${allowed.map((c) => c.name).join(' or ')}, got ${name}`, { cause: error });
}

/** Asserts `action` fails with one of `allowed` and returns the error. */
export async function expectFailure(action: () => unknown, allowed: readonly ErrorClass[], what: string): Promise<Error> {
  const outcome = await attempt(action);
  if (outcome.ok) throw new Error(`${what}: expected ${allowed.map((c) => c.name).join(' or ')}, but it succeeded`);
  return expectErrorOf(outcome.error, allowed, what);
}
