// The command line: parseCommandLine on its own, then the compiled binary's answers to bad
// arguments (one line `l2pipe: ...` naming the culprit, exit 2), --help and --version, and the
// long option forms through a real transfer.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { MAX_DEVICES, parseCommandLine, parseSize, USAGE, VERSION, type Options } from "../src/cli";
import { EXIT_USAGE, L2Error } from "../src/errors";
import { formatDuration, progressBytes, type RunStats } from "../src/shell/report";
import { cleanupAll, createTopology, makeRandomFile, sha256File, type Topology } from "./support/netns";
import { BINARY, requireBinary, scratchDir, shellQuote } from "./support/transfer";

const scratch = scratchDir();
afterAll(async () => {
  await cleanupAll();
  scratch.remove();
});

function options(argv: string[]): Options {
  const r = parseCommandLine(argv);
  if (r.kind !== "run") throw new Error(`expected a run, got ${r.kind}`);
  return r.options;
}

/** The L2Error parseCommandLine throws for argv (fails the test if it does not throw one). */
function refusal(argv: string[]): L2Error {
  try {
    parseCommandLine(argv);
  } catch (e) {
    if (e instanceof L2Error) return e;
    throw e;
  }
  throw new Error(`parseCommandLine(${JSON.stringify(argv)}) accepted it`);
}

describe("parseCommandLine", () => {
  test("defaults of each side", () => {
    const s = options(["-s", "eth0"]);
    expect(s).toEqual({
      mode: "send", devices: ["eth0"], verbose: false, lowMemory: false, compressors: 4, compress: "auto", zstdLevel: 3, weights: null,
      timeoutMs: 5000, waitMs: 30_000, progress: false, sizeHint: null, statsJson: null, bufferBytes: 0,
      startAtPct: 80, resumeAtPct: 20, blockBytes: 256 * 1024, strictBlocks: false,
    });
    const r = options(["-r", "eth0", "usb0"]);
    expect(r.mode).toBe("receive");
    expect(r.devices).toEqual(["eth0", "usb0"]);
    // The receiver waits for a sender as long as it takes.
    expect(r.waitMs).toBe(0);
  });

  test("every option is read", () => {
    const s = options(["-s", "-v", "-m", "-2", "-a", "1.3", "-t", "2.5", "-w", "0", "-p", "--size", "10G", "--stats-json", "/tmp/x.json", "a", "b", "c"]);
    expect(s).toMatchObject({
      verbose: true, lowMemory: true, compressors: 2, weights: [1, 3, 1], timeoutMs: 2500, waitMs: 0,
      progress: true, sizeHint: 10 * 1024 ** 3, statsJson: "/tmp/x.json", devices: ["a", "b", "c"],
    });
    for (const n of [0, 1, 2, 3]) expect(options(["-s", `-${n}`, "eth0"]).compressors).toBe(n);
    const r = options(["-r", "-b", "512M", "--start-at", "90", "--resume-at", "10", "--block", "1M", "eth0"]);
    expect(r).toMatchObject({ bufferBytes: 512 << 20, startAtPct: 90, resumeAtPct: 10, blockBytes: 1 << 20, strictBlocks: true });
  });

  test("long forms mean the same as the short ones", () => {
    const pairs: [string[], string[]][] = [
      [["-s", "-v", "-m", "-p", "-a", "1.2", "-t", "3", "-w", "7", "d0", "d1"],
        ["--send", "--verbose", "--low-memory", "--progress", "--weights", "1.2", "--timeout", "3", "--wait", "7", "d0", "d1"]],
      [["-r", "-v", "-m", "-b", "8M", "-t", "9", "-w", "2", "d0"],
        ["--receive", "--verbose", "--low-memory", "--buffer", "8M", "--timeout", "9", "--wait", "2", "d0"]],
      // --name=value, letters grouped, a value stuck to its letter
      [["-s", "-v", "-p", "-t", "3", "-a", "2", "d0"], ["--send", "--verbose", "--progress", "--timeout=3", "--weights=2", "d0"]],
      [["-s", "-v", "-p", "-t", "3", "-a", "2", "d0"], ["-svp", "-t3", "-a2", "d0"]],
      [["-s", "-v", "-3", "d0"], ["-sv3", "d0"]],
      // -- ends the options
      [["-s", "-v", "d0", "d1"], ["-s", "-v", "--", "d0", "d1"]],
    ];
    for (const [short, long] of pairs) expect(options(long)).toEqual(options(short));
    expect(options(["-v", "-s", "d0"]).mode).toBe("send");
  });

  test("--help, -h, --version, -V", () => {
    expect(parseCommandLine(["--help"]).kind).toBe("help");
    expect(parseCommandLine(["-h"]).kind).toBe("help");
    // Help wins over everything else that is well-formed, even a missing -s/-r.
    expect(parseCommandLine(["-s", "--help", "eth0"]).kind).toBe("help");
    expect(parseCommandLine(["--version"]).kind).toBe("version");
    expect(parseCommandLine(["-V"]).kind).toBe("version");
  });

  test("sizes", () => {
    expect(parseSize("65536", "-b")).toBe(65536);
    expect(parseSize("64K", "-b")).toBe(64 << 10);
    expect(parseSize("256m", "-b")).toBe(256 << 20);
    expect(parseSize("2G", "-b")).toBe(2 * 1024 ** 3);
    expect(parseSize("1.5K", "-b")).toBe(1536);
    expect(parseSize("1T", "-b")).toBe(1024 ** 4);
    expect(parseSize("4MiB", "-b")).toBe(4 << 20);
    for (const bad of ["", "12Q", "-1", "K", "1 2", "0x10"]) expect(() => parseSize(bad, "-b")).toThrow(/-b/);
  });

  const eleven = Array.from({ length: MAX_DEVICES + 1 }, (_, i) => `d${i}`);
  // [argv, what the message must name]
  const refusals: [string[], RegExp][] = [
    [["-s", "-x", "d0"], /unknown option -x\b/],
    [["-s", "-sx", "d0"], /unknown option -x in -sx/],
    [["-s", "--frobnicate", "d0"], /unknown option --frobnicate\b/],
    [["-s", "--frobnicate=1", "d0"], /unknown option --frobnicate\b/],
    // citty's own spellings must not slip through either
    [["-s", "--lowMemory", "d0"], /unknown option --lowMemory/],
    [["-s", "--no-verbose", "d0"], /unknown option --no-verbose/],
    [["-s", "--verbose=false", "d0"], /--verbose takes no value/],
    [["-s"], /no device/],
    [["-s", ...eleven], /11 devices.*at most 10/],
    [["-s", "-r", "d0"], /-s and -r/],
    [["d0"], /-s.*-r/],
    [["-s", "d0", "d1", "d0"], /device d0 is listed twice/],
    [["-s", "--", "-d0"], /device -d0/],
    [["-s", "-a", "1.2.3", "d0", "d1"], /-a 1\.2\.3: 3 weights for 2 devices/],
    [["-s", "-a", "0", "d0"], /-a 0:.*'0'/],
    [["-s", "-a", "11", "d0"], /-a 11:.*'11'/],
    [["-s", "-a", "x", "d0"], /-a x:.*'x'/],
    [["-s", "-a", "1..2", "d0", "d1", "d2"], /-a 1\.\.2:.*'' is not/],
    [["-s", "-a", "1.5.", "d0", "d1", "d2"], /-a 1\.5\.:/],
    [["-s", "-a", "1..2", "d0"], /-a 1\.\.2:.*'' is not/],
    [["-s", "-a", "1.x", "d0"], /-a 1\.x:.*'x' is not/],
    [["-s", "-0", "-3", "d0"], /-0 and -3/],
    [["-s", "-1", "-2", "-3", "d0"], /-1 and -2 and -3/],
    [["-s", "-t", "0", "d0"], /-t: '0'/],
    [["-s", "-t", "abc", "d0"], /-t: 'abc'/],
    [["-s", "--timeout=-5", "d0"], /-t: '-5'/],
    [["-s", "-t", "d0"], /-t: 'd0' is not a number of seconds/],
    [["-s", "d0", "-t"], /-t needs a value/],
    [["-s", "-w", "-1", "d0"], /-w: '-1'/],
    [["-s", "-t", "-1", "d0"], /-t: '-1'/],
    [["-s", "-a", "-1", "d0"], /-a -1:/],
    [["-s", "--size", "-1", "d0"], /--size: '-1'/],
    [["-s", "-w", "-x", "d0"], /-w needs a value/],
    [["-s", "--stats-json=", "d0"], /--stats-json needs a value/],
    [["-s", "-w", "x", "d0"], /-w: 'x'/],
    // Below the resolution a wait would round to 0 (forever); below the minimum it means nothing.
    [["-s", "-w", "0.0004", "d0"], /-w: '0\.0004' is out of range: seconds from 0 \(forever\) or 0\.1 to 86400/],
    [["-r", "-w", "0.0006", "d0"], /-w: '0\.0006' is out of range/],
    [["-r", "-t", "0.001", "d0"], /-t: '0\.001' is out of range: seconds from 0\.5 to 86400/],
    [["-s", "-t", "0.49", "d0"], /-t: '0\.49' is out of range/],
    [["-s", "-t", "86401", "d0"], /-t: '86401' is out of range/],
    [["-s", "-a", Array(10_000).fill("1").join("."), "d0", "d1"], /^-a \(10000 values\): 10000 weights for 2 devices$/],
    [["-s", "--size", "lots", "d0"], /--size: 'lots'/],
    [["-s", "-b", "4M", "d0"], /-b.*receiver option/],
    [["-s", "--start-at", "50", "d0"], /--start-at is a receiver option/],
    [["-s", "--block", "1M", "d0"], /--block is a receiver option/],
    [["-r", "-b", "0", "d0"], /-b 0: the buffer must be at least 1M/],
    [["-r", "-b", "12Q", "d0"], /-b: '12Q'/],
    [["-r", "-b", "4M", "--start-at", "120", "d0"], /--start-at: '120'/],
    [["-r", "-b", "4M", "--start-at", "0", "d0"], /--start-at: '0'/],
    [["-r", "-b", "4M", "--start-at", "50", "--resume-at", "60", "d0"], /--resume-at 60 is above --start-at 50/],
    [["-r", "-b", "4M", "--resume-at", "90", "d0"], /--resume-at 90 is above --start-at 80/],
    [["-r", "--start-at", "50", "d0"], /--start-at.*need -b/],
    [["-r", "--block", "0", "d0"], /--block 0/],
    [["-r", "-a", "1", "d0"], /-a is a sender option/],
    [["-r", "-3", "d0"], /-3 is a sender option/],
    [["-s", "--compress", "brotli", "d0"], /^--compress brotli: unknown codec \(say auto, lz4, zstd, zstd:LEVEL or none\)$/],
    [["-s", "--compress", "zstd:0", "d0"], /^--compress zstd:0: the zstd level must be a whole number from 1 to 19$/],
    [["-s", "--compress", "zstd:20", "d0"], /zstd:20: the zstd level must be a whole number from 1 to 19/],
    [["-s", "--compress", "zstd:3.5", "d0"], /zstd:3\.5: the zstd level/],
    [["-s", "--compress", "zstd:", "d0"], /zstd:: the zstd level/],
    [["-s", "--compress", "lz4:1", "d0"], /lz4:1: only zstd takes a level/],
    [["-s", "--compress", "ZSTD", "d0"], /--compress ZSTD: unknown codec/],
    [["-s", "-0", "--compress", "lz4", "d0"], /-0 and --compress lz4 exclude each other/],
    [["-s", "-2", "--compress", "none", "d0"], /-2 and --compress none exclude each other/],
    [["-r", "--compress", "lz4", "d0"], /--compress is a sender option/],
  ];

  test("--compress: codec and level; none is -0; -1..-3 stay compressor counts", () => {
    const c = (...args: string[]) => {
      const o = options(["-s", ...args, "d0"]);
      return { compress: o.compress, zstdLevel: o.zstdLevel, compressors: o.compressors };
    };
    expect(c()).toEqual({ compress: "auto", zstdLevel: 3, compressors: 4 });
    expect(c("--compress", "auto")).toEqual({ compress: "auto", zstdLevel: 3, compressors: 4 });
    expect(c("--compress", "lz4", "-2")).toEqual({ compress: "lz4", zstdLevel: 3, compressors: 2 });
    expect(c("--compress", "zstd")).toEqual({ compress: "zstd", zstdLevel: 3, compressors: 4 });
    expect(c("--compress=zstd:19", "-1")).toEqual({ compress: "zstd", zstdLevel: 19, compressors: 1 });
    expect(c("--compress", "zstd:1")).toEqual({ compress: "zstd", zstdLevel: 1, compressors: 4 });
    expect(c("--compress", "none")).toEqual({ compress: "none", zstdLevel: 3, compressors: 0 });
    expect(c("-0")).toEqual({ compress: "none", zstdLevel: 3, compressors: 0 });
    expect(c("-0", "--compress", "none")).toEqual({ compress: "none", zstdLevel: 3, compressors: 0 });
    expect(USAGE).toContain("--compress C");
  });

  test("refusals: a usage error naming the culprit", () => {
    for (const [argv, culprit] of refusals) {
      const e = refusal(argv);
      expect({ argv, exit: e.exitCode }).toEqual({ argv, exit: EXIT_USAGE });
      expect({ argv, message: e.message }).toEqual({ argv, message: expect.stringMatching(culprit) });
      expect(e.message).not.toContain("\n");
    }
  });
});

describe("progress arithmetic", () => {
  test("ETA durations", () => {
    expect([0, 9.4, 59.6, 75, 3599, 4000, 90061].map(formatDuration)).toEqual(["0 s", "9 s", "1:00", "1:15", "59:59", "1:06:40", "25:01:01"]);
  });

  test("the sender's progress is what is on the wire, not what it read ahead", () => {
    const link = (sent: number, resent: number) => ({ device: "x", bytesSent: sent, bytesRetransmitted: resent, badFrames: 0, foreignFrames: 0 });
    const s: RunStats = { role: "send", elapsedMs: 1, inputBytes: 1000, wireBytes: 500, links: [link(100, 0), link(160, 10)] };
    // 250 of 500 wire bytes out (resends not counted twice): half of the 1000 bytes read.
    expect(progressBytes(s)).toBe(500);
    expect(progressBytes({ ...s, ackedWireBytes: 400 })).toBe(800);
    expect(progressBytes({ ...s, links: [link(900, 0)] })).toBe(1000);
    expect(progressBytes({ ...s, wireBytes: 0, inputBytes: 0 })).toBe(0);
    expect(progressBytes({ role: "receive", elapsedMs: 1, inputBytes: 77, wireBytes: 50, links: [] })).toBe(77);
  });
});

// ---- the compiled binary --------------------------------------------------------------------

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options that never reach the network: safe outside a namespace. */
async function runHere(args: string[]): Promise<Run> {
  const p = Bun.spawn([BINARY, ...args], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, stdout, stderr };
}

function expectUsageError(r: Run, culprit: RegExp): void {
  // One line, prefixed, naming what is wrong; nothing on stdout (it may be a tape).
  expect({ code: r.code, stderr: r.stderr, stdout: r.stdout }).toEqual({
    code: EXIT_USAGE,
    stderr: expect.stringMatching(/^l2pipe: [^\n]+\n$/),
    stdout: "",
  });
  expect(r.stderr).toMatch(culprit);
}

describe("the binary", () => {
  beforeAll(() => requireBinary());

  test("--help prints the whole usage on stdout and exits 0", async () => {
    for (const flag of ["--help", "-h"]) {
      const r = await runHere([flag]);
      expect(r.code).toBe(0);
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe(USAGE + "\n");
    }
    const text = USAGE;
    // Every option, the tape example and the exit codes are in it.
    for (const opt of ["--send", "--receive", "--verbose", "--low-memory", "--weights", "--timeout", "--wait", "--progress",
      "--size", "--stats-json", "--buffer", "--start-at", "--resume-at", "--block", "--help", "--version", "-3 | -2 | -1 | -0"]) {
      expect(text).toContain(opt);
    }
    expect(text).toMatch(/example \(tape/);
    expect(text).toContain("l2pipe -r eth0 usb0 | dd bs=262144 of=/dev/st0");
    expect(text).toContain("l2pipe -s -a 1.2 eth0 usb0");
    expect(text).toMatch(/exit codes: 0 .*1 .*2 usage.*3 system[\s\S]*4 no peer/);
    expect(text).toMatch(/CAP_NET_RAW/);
  });

  test("--version prints the package version", async () => {
    const pkg = (await Bun.file(new URL("../package.json", import.meta.url).pathname).json()) as { version: string };
    expect(VERSION).toBe(pkg.version);
    for (const flag of ["--version", "-V"]) {
      const r = await runHere([flag]);
      expect(r).toEqual({ code: 0, stdout: `l2pipe ${pkg.version}\n`, stderr: "" });
    }
  });

  test("no argument at all: a usage error, not a hang", async () => {
    expectUsageError(await runHere([]), /say -s \(send\) or -r \(receive\)/);
  });

  test("a closed stdout (receiver) or stdin (sender) is refused at once, not taken for /dev/null", async () => {
    const run = async (script: string) => {
      const p = Bun.spawn(["sh", "-c", script], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
      const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
      return { code: await p.exited, stdout, stderr };
    };
    expectUsageError(await run(`exec '${BINARY}' -r nosuchdev0 >&-`), /^l2pipe: stdout is closed/);
    expectUsageError(await run(`exec '${BINARY}' -s nosuchdev0 <&-`), /^l2pipe: stdin is closed/);
    // /dev/null given on purpose is the user's choice: the run goes on to the device check.
    expectUsageError(await run(`exec '${BINARY}' -r nosuchdev0 > /dev/null`), /nosuchdev0/);
  });

  describe("refusals on real devices", () => {
    // Links 0 and 1 are up; link 2 is down on the sender's side (so the receiver's end has no
    // carrier). Every run is inside the topology's namespaces: a refusal that wrongly went
    // ahead would only ever broadcast there.
    let topo: Topology;
    let a: string[];
    let b: string[];
    beforeAll(async () => {
      topo = await createTopology([{}, {}, {}]);
      a = topo.devsA;
      b = topo.devsB;
      const down = await topo.exec(topo.nsA, ["ip", "link", "set", "dev", a[2]!, "down"]);
      if (down.code !== 0) throw new Error(`ip link set down: ${down.stderr}`);
    });
    afterAll(() => topo.cleanup());

    const inA = (args: string[]) => topo.exec(topo.nsA, [BINARY, ...args], { timeoutMs: 10_000 });
    const inB = (args: string[]) => topo.exec(topo.nsB, [BINARY, ...args], { timeoutMs: 10_000 });

    test("command-line refusals", async () => {
      const cases: [string[], RegExp][] = [
        [["-s", "-x", a[0]!], /unknown option -x/],
        [["-s", "--frobnicate", a[0]!], /unknown option --frobnicate/],
        // The option is refused before any device is looked at.
        [["-s", "--frobnicate", "nosuchdev0"], /unknown option --frobnicate/],
        [["-s"], /no device/],
        [["-s", ...Array.from({ length: 11 }, (_, i) => `d${i}`)], /11 devices/],
        [["-s", "-r", a[0]!], /-s and -r exclude each other/],
        [[a[0]!], /say -s \(send\) or -r \(receive\)/],
        [["-s", a[0]!, a[1]!, a[0]!], new RegExp(`device ${a[0]} is listed twice`)],
        [["-s", "-a", "1.2.3", a[0]!, a[1]!], /-a 1\.2\.3: 3 weights for 2 devices/],
        [["-s", "-a", "0", a[0]!], /-a 0:/],
        [["-s", "-a", "11", a[0]!], /-a 11:/],
        [["-s", "-a", "x", a[0]!], /-a x:/],
        [["-s", "-a", "1..2", a[0]!, a[1]!], /-a 1\.\.2:/],
        [["-s", "-0", "-3", a[0]!], /-0 and -3/],
        [["-s", "-t", "0", a[0]!], /-t: '0'/],
        [["-s", "-t", "abc", a[0]!], /-t: 'abc'/],
        [["-s", "-b", "4M", a[0]!], /-b.*receiver option/],
        [["-r", "-b", "0", b[0]!], /-b 0/],
        [["-r", "-b", "12Q", b[0]!], /12Q/],
        [["-r", "-b", "4M", "--start-at", "120", b[0]!], /--start-at: '120'/],
        [["-r", "-b", "4M", "--start-at", "50", "--resume-at", "60", b[0]!], /--resume-at 60 is above --start-at 50/],
        [["-r", "-a", "1.2", b[0]!, b[1]!], /-a is a sender option/],
        [["-s", "--compress", "zstd:42", a[0]!], /--compress zstd:42: the zstd level must be a whole number from 1 to 19/],
        [["-s", "--compress", "gzip", a[0]!], /--compress gzip: unknown codec/],
      ];
      for (const [args, culprit] of cases) {
        const r = await (args[0] === "-r" ? inB(args) : inA(args));
        expect({ args, code: r.code }).toEqual({ args, code: EXIT_USAGE });
        expectUsageError(r, culprit);
      }
    });

    test("a device that does not exist", async () => {
      expectUsageError(await inA(["-s", "-w", "1", a[0]!, "nosuchdev0"]), /device nosuchdev0: no such device/);
      expectUsageError(await inB(["-r", "-w", "1", "nosuchdev0"]), /device nosuchdev0: no such device/);
      // A device of the other namespace does not exist here either.
      expectUsageError(await inA(["-s", "-w", "1", b[0]!]), new RegExp(`device ${b[0]}: no such device`));
    });

    test("a device that is down, or has no carrier", async () => {
      expectUsageError(await inA(["-s", "-w", "1", a[0]!, a[2]!]), new RegExp(`device ${a[2]} is down`));
      expectUsageError(await inB(["-r", "-w", "1", b[0]!, b[2]!]), new RegExp(`device ${b[2]} has no carrier`));
    });

    test("a --stats-json file that cannot be written: refused at the start, not after the transfer", async () => {
      const path = `${scratch.dir}/no-such-dir/stats.json`;
      const culprit = new RegExp(`--stats-json ${path}: cannot write it`);
      expectUsageError(await inA(["-s", "-w", "1", "--stats-json", path, a[0]!]), culprit);
      expectUsageError(await inB(["-r", "-w", "1", "--stats-json", path, b[0]!]), culprit);
    });

    test("a name no device can have", async () => {
      expectUsageError(await inA(["-s", "-w", "1", "a-name-longer-than-15"]), /longer than 15/);
      expectUsageError(await inA(["-s", "-w", "1", "lo"]), /device lo is not an Ethernet device/);
    });

    test("a binary runs the Workers built into it, never source files at the paths it was built from", async () => {
      // Build a copy of the project, then put Workers that fail at those paths: a stale checkout
      // (or anything else a user has there) must not run inside the binary.
      const root = new URL("..", import.meta.url).pathname;
      const copy = `${scratch.dir}/project`;
      mkdirSync(copy);
      for (const d of ["src", "ffi", "scripts"]) cpSync(`${root}${d}`, `${copy}/${d}`, { recursive: true });
      for (const f of ["package.json", "tsconfig.json"]) cpSync(`${root}${f}`, `${copy}/${f}`);
      symlinkSync(`${root}node_modules`, `${copy}/node_modules`);
      const built = Bun.spawnSync(["bun", "scripts/build.ts"], { cwd: copy, stdout: "pipe", stderr: "pipe" });
      expect(built.exitCode).toBe(0);
      for (const w of ["output", "compressor"]) {
        writeFileSync(`${copy}/src/workers/${w}.ts`, `throw new Error("stale ${w} Worker source was loaded");\n`);
      }
      const bin = `${copy}/dist/l2pipe`;
      const input = `${scratch.dir}/embedded-workers`;
      const out = `${input}.out`;
      await makeRandomFile(input, 4 << 20);
      const q = shellQuote;
      const receiver = topo.spawn(topo.nsB, ["sh", "-c", `exec ${q(bin)} -r --wait 20 ${b[0]} > ${q(out)}`], { stdout: "ignore", stderr: "pipe" });
      const sender = await topo.exec(topo.nsA, ["sh", "-c", `exec ${q(bin)} -s -1 --wait 20 ${a[0]} < ${q(input)}`], { timeoutMs: 30_000 });
      const rCode = await receiver.exited;
      const rErr = await new Response(receiver.stderr).text();
      expect({ sender: sender.code, receiver: rCode, err: sender.stderr + rErr }).toEqual({ sender: 0, receiver: 0, err: "" });
      expect(await sha256File(out)).toBe(await sha256File(input));
    });

    test("long forms run a real transfer", async () => {
      const input = `${scratch.dir}/long-forms`;
      const out = `${input}.out`;
      // Long enough that the scheduler's slack of 256 KiB per link does not blur the weights.
      await makeRandomFile(input, 16 << 20);
      const q = shellQuote;
      const receiver = topo.spawn(
        topo.nsB,
        ["sh", "-c", `exec ${q(BINARY)} --receive --verbose --low-memory --timeout 5 --wait 20 ${b[0]} ${b[1]} > ${q(out)}`],
        { stdout: "ignore", stderr: "pipe" },
      );
      const sender = await topo.exec(
        topo.nsA,
        ["sh", "-c", `exec ${q(BINARY)} --send --verbose --low-memory --weights 1.2 --timeout 5 --wait 20 ${a[0]} ${a[1]} < ${q(input)}`],
        { timeoutMs: 30_000 },
      );
      const rCode = await receiver.exited;
      const rErr = await new Response(receiver.stderr).text();
      expect({ sender: sender.code, receiver: rCode, err: sender.stderr + rErr }).toMatchObject({ sender: 0, receiver: 0 });
      expect(await sha256File(out)).toBe(await sha256File(input));
      // --verbose: the summary per link, with both links carrying data
      expect(sender.stderr).toMatch(/^l2pipe send: done in /);
      for (const d of [a[0], a[1]]) expect(sender.stderr).toMatch(new RegExp(`${d}: up mtu \\d+ [1-9]\\d* frames sent`));
      expect(rErr).toMatch(/^l2pipe receive: done in /);
      // --weights 1.2: the second link carried about twice the first's bytes.
      const frames = [...sender.stderr.matchAll(/: up mtu \d+ (\d+) frames sent/g)].map((m) => Number(m[1]));
      expect(frames.length).toBe(2);
      expect(frames[1]! / frames[0]!).toBeGreaterThan(1.6);
      expect(frames[1]! / frames[0]!).toBeLessThan(2.4);
    });

    test("--wait: a sender alone gives up after that long", async () => {
      const t0 = performance.now();
      const r = await inA(["--send", "--wait", "1", a[0]!]);
      const ms = performance.now() - t0;
      expect(r.code).toBe(4);
      expect(r.stderr).toMatch(new RegExp(`^l2pipe: no receiver answered on ${a[0]} within 1 s`));
      expect(ms).toBeLessThan(3000);
    });

    test("--wait 0.3: the message says 0.3 s, as given (not rounded to 0 s)", async () => {
      const r = await inA(["--send", "--wait", "0.3", a[0]!]);
      expect(r.code).toBe(4);
      expect(r.stderr).toMatch(new RegExp(`^l2pipe: no receiver answered on ${a[0]} within 0\\.3 s`));
    });
  });
});
