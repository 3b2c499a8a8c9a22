// Every failure ends as one L2Error: a one-line message for stderr and the exit code it maps to.

import { SystemError } from "../ffi/system-error";

/** The transfer started but failed: peer lost or aborted, verification failed, output closed. */
export const EXIT_TRANSFER = 1;
/** Bad command line: unknown option, bad value, unknown or down device. */
export const EXIT_USAGE = 2;
/** The host cannot run it: no permission for raw sockets, liblz4 missing, memory not available. */
export const EXIT_SYSTEM = 3;
/** No peer answered within the wait time. */
export const EXIT_NO_PEER = 4;
/** Interrupted by SIGINT or SIGTERM (128 + signal number is added by the caller). */
export const EXIT_SIGNAL_BASE = 128;

export class L2Error extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT_TRANSFER,
  ) {
    super(message);
    this.name = "L2Error";
  }
}

export function usageError(message: string): L2Error {
  return new L2Error(message, EXIT_USAGE);
}

export function systemError(message: string): L2Error {
  return new L2Error(message, EXIT_SYSTEM);
}

/** What ffi/ throws for the host's refusals (a failed system call, liblz4 missing) as the
 * L2Error it is (EXIT_SYSTEM); anything else unchanged. */
export function fromFfi(e: unknown): unknown {
  return e instanceof SystemError ? systemError(e.message) : e;
}
