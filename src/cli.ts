// The command line: the 2017 tool's letters with the same meanings, long forms, and the
// options l2pipe adds. Parsing only; devices are checked when they are opened.

import { parseArgs } from "citty";
import { usageError } from "./errors";
import { ZSTD_MAX_LEVEL, ZSTD_MIN_LEVEL } from "../ffi/zstd";

export const VERSION = "0.1.0";
export const MAX_DEVICES = 10;

export interface Options {
  mode: "send" | "receive";
  devices: string[];
  verbose: boolean;
  lowMemory: boolean;
  /** 0 = no compression. */
  compressors: number;
  /** --compress: auto = lz4 and zstd levels chosen live; none comes with compressors 0. */
  compress: "auto" | "lz4" | "zstd" | "none";
  /** The level of --compress zstd[:LEVEL]. */
  zstdLevel: number;
  /** -a weights, one per device (missing ones are 1); null = pull scheduling. */
  weights: number[] | null;
  timeoutMs: number;
  /** How long to wait for the peer to appear; 0 = forever. */
  waitMs: number;
  progress: boolean;
  sizeHint: number | null;
  statsJson: string | null;
  bufferBytes: number;
  startAtPct: number;
  resumeAtPct: number;
  blockBytes: number;
  /** --block given: every write is exactly one block (the last may be short), even when data trickles. */
  strictBlocks: boolean;
}

const argsDef = {
  send: { type: "boolean", alias: ["s"] },
  receive: { type: "boolean", alias: ["r"] },
  verbose: { type: "boolean", alias: ["v"] },
  "low-memory": { type: "boolean", alias: ["m"] },
  "0": { type: "boolean" },
  "1": { type: "boolean" },
  "2": { type: "boolean" },
  "3": { type: "boolean" },
  compress: { type: "string" },
  weights: { type: "string", alias: ["a"] },
  timeout: { type: "string", alias: ["t"] },
  wait: { type: "string", alias: ["w"] },
  progress: { type: "boolean", alias: ["p"] },
  size: { type: "string" },
  "stats-json": { type: "string" },
  buffer: { type: "string", alias: ["b"] },
  "start-at": { type: "string" },
  "resume-at": { type: "string" },
  block: { type: "string" },
  help: { type: "boolean", alias: ["h"] },
  version: { type: "boolean", alias: ["V"] },
} as const;

type OptionName = keyof typeof argsDef;
const LONG = new Map<string, OptionName>();
const SHORT = new Map<string, OptionName>();
for (const [name, def] of Object.entries(argsDef) as [OptionName, (typeof argsDef)[OptionName]][]) {
  // -0..-3 are letters, not long options.
  if (name.length === 1) SHORT.set(name, name);
  else LONG.set(name, name);
  for (const a of (def as { alias?: readonly string[] }).alias ?? []) SHORT.set(a, name);
}
const takesValue = (name: OptionName) => argsDef[name].type === "string";

/** Checks argv token by token and rewrites it into one unambiguous form for citty: citty
 * ignores unknown options, also accepts camelCase and --no-X forms, and would take the next
 * option as a missing value. */
function canonicalArgv(argv: string[]): string[] {
  const options: string[] = [];
  const positionals: string[] = [];
  const take = (name: OptionName, written: string, inline: string | undefined, i: number): number => {
    if (!takesValue(name)) {
      if (inline !== undefined) throw usageError(`${written} takes no value (see l2pipe --help)`);
      options.push(`--${name}`);
      return i;
    }
    if (inline === undefined) {
      const next = argv[i + 1];
      // "-t -1" is a negative number, not the -1 option: it goes to the option's own check,
      // which says what is wrong with it, rather than "needs a value".
      if (next === undefined || (next.startsWith("-") && !/^-\d/.test(next))) throw usageError(`${written} needs a value`);
      inline = next;
      i++;
    }
    if (inline === "") throw usageError(`${written} needs a value`);
    options.push(`--${name}=${inline}`);
    return i;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith("--")) {
      const eq = arg.indexOf("=");
      const key = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      const name = LONG.get(key);
      if (!name) throw usageError(`unknown option --${key} (see l2pipe --help)`);
      i = take(name, `--${key}`, eq < 0 ? undefined : arg.slice(eq + 1), i);
    } else if (arg.startsWith("-") && arg.length > 1) {
      // A group of letters (-sv); a letter that takes a value takes the rest (-t3) or the next.
      for (let j = 1; j < arg.length; j++) {
        const letter = arg[j]!;
        const name = SHORT.get(letter);
        if (!name) throw usageError(`unknown option -${letter}${arg.length > 2 ? ` in ${arg}` : ""} (see l2pipe --help)`);
        if (takesValue(name)) {
          i = take(name, `-${letter}`, j + 1 < arg.length ? arg.slice(j + 1) : undefined, i);
          break;
        }
        take(name, `-${letter}`, undefined, i);
      }
    } else {
      positionals.push(arg);
    }
  }
  return [...options, "--", ...positionals];
}

export const USAGE = `l2pipe ${VERSION}: pipe one byte stream between two hosts over raw Ethernet (layer 2 only)

usage:  l2pipe -r [options] DEV...          receive: wire -> stdout
        l2pipe -s [options] DEV...          send:    stdin -> wire

  -s, --send           sender mode
  -r, --receive        receiver mode
  -v, --verbose        statistics per link and in total on stderr at the end
  -m, --low-memory     reduced memory footprint (smaller buffers and chunks)
  -3 | -2 | -1 | -0    3, 2, 1 or no parallel compressors (default 4; sender)
      --compress C     sender: auto (default: lz4 or zstd levels, chosen live by
                       whether links or compressors are the bottleneck), lz4,
                       zstd[:LEVEL] (1..19, default 3), none (= -0)
  -a, --weights N.N..  share of the stream per device, 1..10 each, in device order
                       (default: each link takes what it has room for)
  -t, --timeout SEC    fail when the peer is silent, or the stream stops moving, this
                       long (default 5; 0.5 to 86400, in steps of 0.001)
  -w, --wait SEC       how long to wait for the peer to appear (sender default 30,
                       receiver default 0 = forever; else 0.1 to 86400)
  -p, --progress       live progress on stderr
      --size BYTES     expected stream size for progress (10G, 512M, ...)
      --stats-json F   write the final statistics as JSON to file F
  -b, --buffer SIZE    receiver: memory buffer before stdout (tape streaming)
      --start-at PCT   receiver with -b: start writing when the buffer is PCT full (80)
      --resume-at PCT  receiver with -b: after running dry, resume at PCT full (20)
      --block SIZE     receiver: write stdout in blocks of exactly SIZE (tape drives);
                       without it writes are up to 256K, trickles go out as they come
  -h, --help           this text;  -V, --version  the version

DEV: 1 to 10 network interfaces, directly connected to the peer's. Ethertype 0x88b5.
Needs root or CAP_NET_RAW (setcap cap_net_raw+ep l2pipe). No authentication or
encryption: use it on cables and LANs you trust.

example (tape on the receiving host, 1 GbE + USB3 host-to-host cable):
  receiver:  l2pipe -r eth0 usb0 | dd bs=262144 of=/dev/st0
  sender:    tar -c -f - -b 512 / | l2pipe -s -a 1.2 eth0 usb0

exit codes: 0 done and verified, 1 transfer failed, 2 usage, 3 system (permission,
liblz4/libzstd on either host, memory), 4 no peer appeared, 130/143 interrupted`;

export type ParseResult = { kind: "run"; options: Options } | { kind: "help" } | { kind: "version" };

/** Parses sizes such as 4096, 64K, 256M, 10G (powers of 1024). */
export function parseSize(text: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)(i?B)?$/i.exec(text.trim());
  if (!m) throw usageError(`${option}: '${text}' is not a size (examples: 65536, 256K, 64M, 2G)`);
  const scale = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[m[2].toUpperCase() as "" | "K"]!;
  const bytes = Math.floor(Number(m[1]) * scale);
  if (!Number.isFinite(bytes)) throw usageError(`${option}: '${text}' is not a size`);
  return bytes;
}

/** Time options: seconds with millisecond resolution, from `minSeconds` to a day; 0 only where it means forever. */
export const TIMEOUT_MIN_S = 0.5;
export const WAIT_MIN_S = 0.1;
const SECONDS_MAX = 86400;

function parseSeconds(text: string, option: string, minSeconds: number, zeroIsForever: boolean): number {
  const n = Number(text);
  const range = `${zeroIsForever ? "0 (forever) or " : ""}${minSeconds} to ${SECONDS_MAX}`;
  if (text.trim() === "" || !Number.isFinite(n)) throw usageError(`${option}: '${text}' is not a number of seconds (${range})`);
  if (zeroIsForever && n === 0) return 0;
  // Below the minimum a value means nothing the protocol can act on (keepalives come every
  // 0.1 s), and below the resolution it would round to 0, which means forever.
  if (n < minSeconds || n > SECONDS_MAX) throw usageError(`${option}: '${text}' is out of range: seconds from ${range}`);
  return Math.round(n * 1000);
}

function parsePercent(text: string, option: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isInteger(n) || n < 1 || n > 100) {
    throw usageError(`${option}: '${text}' must be a whole percentage from 1 to 100`);
  }
  return n;
}

/** The -a text as an error message shows it: in full when short, else by its count of values. */
function weightsShown(text: string, count: number): string {
  return text.length <= 40 ? `-a ${text}` : `-a (${count} values)`;
}

export function parseWeights(text: string, deviceCount: number): number[] {
  const parts = text.split(".");
  const shown = weightsShown(text, parts.length);
  // Each value first: in "-a 1.x" the culprit is the 'x', not the count.
  const weights = parts.map((p) => {
    const n = Number(p);
    if (!/^\d+$/.test(p) || n < 1 || n > 10) {
      throw usageError(`${shown}: each weight must be a whole number from 1 to 10 ('${p.slice(0, 20)}' is not)`);
    }
    return n;
  });
  if (weights.length > deviceCount) {
    throw usageError(`${shown}: ${weights.length} weights for ${deviceCount} device${deviceCount === 1 ? "" : "s"}`);
  }
  while (weights.length < deviceCount) weights.push(1);
  return weights;
}

const DEFAULT_ZSTD_LEVEL = 3;

/** --compress auto|lz4|zstd[:LEVEL]|none */
export function parseCompress(text: string): { compress: Options["compress"]; zstdLevel: number } {
  const m = /^(auto|lz4|zstd|none)(?::(.*))?$/.exec(text);
  if (!m) throw usageError(`--compress ${text}: unknown codec (say auto, lz4, zstd, zstd:LEVEL or none)`);
  const compress = m[1] as Options["compress"];
  if (m[2] === undefined) return { compress, zstdLevel: DEFAULT_ZSTD_LEVEL };
  if (compress !== "zstd") throw usageError(`--compress ${text}: only zstd takes a level`);
  const level = Number(m[2]);
  if (!/^\d+$/.test(m[2]) || level < ZSTD_MIN_LEVEL || level > ZSTD_MAX_LEVEL) {
    throw usageError(`--compress ${text}: the zstd level must be a whole number from ${ZSTD_MIN_LEVEL} to ${ZSTD_MAX_LEVEL}`);
  }
  return { compress, zstdLevel: level };
}

export function parseCommandLine(argv: string[]): ParseResult {
  const args = parseArgs(canonicalArgv(argv), argsDef as unknown as Parameters<typeof parseArgs>[1]) as Record<string, unknown> & { _: string[] };
  if (args.help) return { kind: "help" };
  if (args.version) return { kind: "version" };

  const send = Boolean(args.send);
  const receive = Boolean(args.receive);
  if (send === receive) throw usageError(send ? "-s and -r exclude each other" : "say -s (send) or -r (receive)");
  const mode = send ? "send" : "receive";

  const levels = ["0", "1", "2", "3"].filter((k) => args[k]);
  if (levels.length > 1) throw usageError(`-${levels.join(" and -")} exclude each other`);
  let compressors = levels.length ? Number(levels[0]) : 4;
  const compressText = args.compress === undefined ? undefined : String(args.compress);
  const { compress, zstdLevel } = compressText === undefined
    ? { compress: compressors === 0 ? "none" as const : "auto" as const, zstdLevel: DEFAULT_ZSTD_LEVEL }
    : parseCompress(compressText);
  if (compressText !== undefined && levels.length && (compress === "none") !== (compressors === 0)) {
    throw usageError(`-${levels[0]} and --compress ${compressText} exclude each other`);
  }
  if (compress === "none") compressors = 0;

  const str = (k: string) => (args[k] === undefined ? undefined : String(args[k]));
  const weightsText = str("weights");

  const timeoutText = str("timeout");
  const timeoutMs = timeoutText === undefined ? 5000 : parseSeconds(timeoutText, "-t", TIMEOUT_MIN_S, false);
  const waitText = str("wait");
  const waitMs = waitText === undefined ? (mode === "send" ? 30_000 : 0) : parseSeconds(waitText, "-w", WAIT_MIN_S, true);

  const sizeText = str("size");
  const sizeHint = sizeText === undefined ? null : parseSize(sizeText, "--size");

  const receiverOnly = ["buffer", "start-at", "resume-at", "block"] as const;
  for (const k of receiverOnly) {
    if (mode === "send" && args[k] !== undefined) throw usageError(`${k === "buffer" ? "-b/--buffer" : `--${k}`} is a receiver option (-r)`);
  }
  if (mode === "receive" && weightsText !== undefined) throw usageError("-a is a sender option (-s)");
  if (mode === "receive" && levels.length) throw usageError(`-${levels[0]} is a sender option (-s); the receiver follows the sender`);
  if (mode === "receive" && compressText !== undefined) throw usageError("--compress is a sender option (-s); the receiver follows the sender");

  const bufferText = str("buffer");
  let bufferBytes = 0;
  if (bufferText !== undefined) {
    bufferBytes = parseSize(bufferText, "-b");
    if (bufferBytes < 1 << 20) throw usageError(`-b ${bufferText}: the buffer must be at least 1M`);
  }
  const startAt = str("start-at");
  const resumeAt = str("resume-at");
  if ((startAt !== undefined || resumeAt !== undefined) && bufferBytes === 0) {
    throw usageError("--start-at and --resume-at need -b SIZE");
  }
  const startAtPct = startAt === undefined ? 80 : parsePercent(startAt, "--start-at");
  const resumeAtPct = resumeAt === undefined ? 20 : parsePercent(resumeAt, "--resume-at");
  if (resumeAtPct > startAtPct) throw usageError(`--resume-at ${resumeAtPct} is above --start-at ${startAtPct}`);
  const blockText = str("block");
  let blockBytes = 256 * 1024;
  if (blockText !== undefined) {
    blockBytes = parseSize(blockText, "--block");
    if (blockBytes < 1 || blockBytes > 64 << 20) throw usageError(`--block ${blockText}: must be from 1 byte to 64M`);
  }

  // Devices last: '-t eth0' should be blamed on -t, not reported as 'no device'.
  const devices = args._.map(String);
  if (devices.length === 0) throw usageError("no device given (for example: l2pipe -r eth0)");
  if (devices.length > MAX_DEVICES) throw usageError(`${devices.length} devices given; at most ${MAX_DEVICES} are supported`);
  for (const d of devices) {
    if (d.startsWith("-")) throw usageError(`device ${d}: a device name cannot start with '-'`);
  }
  const seen = new Set<string>();
  for (const d of devices) {
    if (seen.has(d)) throw usageError(`device ${d} is listed twice`);
    seen.add(d);
  }
  const weights = weightsText === undefined ? null : parseWeights(weightsText, devices.length);

  return {
    kind: "run",
    options: {
      mode,
      devices,
      verbose: Boolean(args.verbose),
      lowMemory: Boolean(args["low-memory"]),
      compressors,
      compress,
      zstdLevel,
      weights,
      timeoutMs,
      waitMs,
      progress: Boolean(args.progress),
      sizeHint,
      statsJson: str("stats-json") ?? null,
      bufferBytes,
      startAtPct,
      resumeAtPct,
      blockBytes,
      strictBlocks: blockText !== undefined,
    },
  };
}
