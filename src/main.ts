// l2pipe: one binary for both ends. Parses the command line, runs a side, turns every
// failure into one line on stderr and an exit code.

import { parseCommandLine, USAGE, VERSION } from "./cli";
import { L2Error, EXIT_TRANSFER, fromFfi, usageError } from "./errors";
import { runSender } from "./shell/sender";
import { runReceiver } from "./shell/receiver";
import { Interrupts } from "./shell/interrupts";
import { restartWithoutFtl } from "./shell/jit-tier";
import { readFileSync, readlinkSync } from "node:fs";

const O_CLOEXEC = 0o2000000;

/**
 * Was this standard descriptor closed when we were started (`>&-`)? The runtime then puts
 * /dev/null there, opened close-on-exec, which no shell redirection does: without this check a
 * receiver would write the whole stream to /dev/null and exit 0.
 */
function wasClosed(fd: number): boolean {
  try {
    if (readlinkSync(`/proc/self/fd/${fd}`) !== "/dev/null") return false;
    const flags = /^flags:\s+([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "utf8"));
    return flags !== null && (parseInt(flags[1]!, 8) & O_CLOEXEC) !== 0;
  } catch {
    return false;
  }
}

async function main(argv: string[]): Promise<number> {
  const parsed = parseCommandLine(argv);
  if (parsed.kind === "help") {
    process.stdout.write(USAGE + "\n");
    return 0;
  }
  if (parsed.kind === "version") {
    process.stdout.write(`l2pipe ${VERSION}\n`);
    return 0;
  }
  const opts = parsed.options;
  const stream = opts.mode === "receive" ? 1 : 0;
  if (wasClosed(stream)) {
    throw usageError(`${stream === 1 ? "stdout" : "stdin"} is closed: give the stream a ${stream === 1 ? "file or pipe to go to" : "file or pipe to come from"}`);
  }
  if (opts.mode === "receive" && process.stdout.isTTY) {
    throw usageError("stdout is a terminal: redirect the stream to a file or a pipe (l2pipe -r DEV > FILE)");
  }
  const interrupts = new Interrupts();
  return opts.mode === "send" ? runSender(opts, interrupts) : runReceiver(opts, interrupts);
}

restartWithoutFtl();
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (thrown: unknown) => {
    const e = fromFfi(thrown);
    const err = e instanceof L2Error ? e : new L2Error(`internal error: ${(e as Error)?.message ?? String(e)}`, EXIT_TRANSFER);
    process.stderr.write(`l2pipe: ${err.message.replaceAll("\n", " ")}\n`);
    if (!(e instanceof L2Error) && process.env.L2PIPE_DEBUG) process.stderr.write(`${(e as Error)?.stack}\n`);
    process.exit(err.exitCode);
  },
);
