// A command-line mistake (unknown command or flag, malformed value). Invariant: reported as one line
// plus a pointer to --help, with exit code 2, never with a stack trace.
export class UsageError extends Error {
  readonly code = 'USAGE';
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
