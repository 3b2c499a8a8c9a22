// What ffi/ throws when the host refuses: a system call that failed, a library that cannot be
// loaded. ffi/ knows nothing of exit codes; src/errors.ts maps this to an L2Error (EXIT_SYSTEM).

export class SystemError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SystemError";
  }
}
