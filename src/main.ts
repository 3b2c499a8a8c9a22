// l2pipe: one binary for both ends. Parses the command line, runs a side, turns every
// failure into one line on stderr and an exit code.

import { parseCommandLine, USAGE, VERSION } from "./cli";
import { L2Error, EXIT_TRANSFER, fromFfi, usageError } from "./errors";
import { runSender } from "./shell/sender";
import { runReceiver } from "./shell/receiver";
import { Interrupts } from "./shell/interrupts";

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
  if (opts.mode === "receive" && process.stdout.isTTY) {
    throw usageError("stdout is a terminal: redirect the stream to a file or a pipe (l2pipe -r DEV > FILE)");
  }
  const interrupts = new Interrupts();
  return opts.mode === "send" ? runSender(opts, interrupts) : runReceiver(opts, interrupts);
}

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
