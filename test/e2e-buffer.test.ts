// The receiver's tape buffer (-b, --start-at, --resume-at) and fixed-size writes (--block),
// seen from the consumer's side of stdout.

import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { cleanupAll, createTopology, makeRandomFile } from "./support/netns";
import { BINARY, scratchDir, shellQuote, transfer } from "./support/transfer";

const scratch = scratchDir();
afterAll(async () => {
  await cleanupAll();
  scratch.remove();
});

const READER = new URL("./support/read-log.ts", import.meta.url).pathname;
const MiB = 1 << 20;

interface Burst { start: number; end: number; bytes: number }

function bursts(logPath: string, gapMs: number): Burst[] {
  const reads = readFileSync(logPath, "utf8").trim().split("\n").map((l) => l.split(" ").map(Number));
  const out: Burst[] = [];
  for (const [t, n] of reads) {
    const last = out.at(-1);
    if (last && t - last.end <= gapMs) {
      last.end = t;
      last.bytes += n;
    } else out.push({ start: t, end: t, bytes: n });
  }
  return out;
}

describe("tape buffer", () => {
  // 25 MB/s into a fast reader: with -b the reader must see long bursts and pauses.
  const bufferBytes = 32 * MiB;
  const size = 112 * MiB;

  async function run(receiverArgs: string[]) {
    const topo = await createTopology([{ mtu: 9000, rateMbit: 200 }]);
    try {
      const input = `${scratch.dir}/tape-${receiverArgs.length}`;
      await makeRandomFile(input, size);
      const log = `${input}.log`;
      const r = await transfer(topo, {
        input,
        senderArgs: ["-0"],
        receiverArgs,
        receiverPipe: `bun ${shellQuote(READER)} ${shellQuote(log)}`,
        timeoutMs: 60_000,
      });
      return { r, log };
    } finally {
      await topo.cleanup();
    }
  }

  test("-b 32M --start-at 80 --resume-at 20: writing waits for 80%, then bursts of at least 20%", async () => {
    const { r, log } = await run(["-v", "-b", "32M", "--start-at", "80", "--resume-at", "20"]);
    expect(r.sender.code).toBe(0);
    expect(r.receiver.code).toBe(0);
    expect(r.outSha).toBe(r.inSha);
    // Reads less than 80 ms apart belong to one burst (a scheduling hiccup is not a pause);
    // a refill from 0 to 20% at 25 MB/s takes ~270 ms.
    const b = bursts(log, 80);
    // The first burst holds at least the 80% the buffer waited for; later ones (but the last,
    // which flushes the end) at least the 20% it resumes at.
    expect(b.length).toBeGreaterThanOrEqual(3);
    expect(b[0].bytes).toBeGreaterThanOrEqual(0.8 * bufferBytes - MiB);
    for (const x of b.slice(1, -1)) expect(x.bytes).toBeGreaterThanOrEqual(0.2 * bufferBytes - MiB);
    // Between bursts the reader waited for the buffer to refill.
    for (let i = 1; i < b.length; i++) expect(b[i].start - b[i - 1].end).toBeGreaterThanOrEqual(150);
    expect(r.receiver.stderr).toMatch(/buffer: 32\.0 MiB, output paused [1-9]\d* times? after running dry/);
  });

  test("without -b the reader sees a steady trickle (the check above can fail)", async () => {
    const { r, log } = await run([]);
    expect(r.sender.code).toBe(0);
    expect(r.receiver.code).toBe(0);
    expect(r.outSha).toBe(r.inSha);
    // Data flows as it arrives: no long pauses between reads (at most one scheduling hiccup).
    const b = bursts(log, 100);
    if (b.length > 2) console.log("bursts without -b:", JSON.stringify(b));
    expect(b.length).toBeLessThanOrEqual(2);
  });
});

describe("--block", () => {
  // Neither is a divisor of the sender's 256 KiB chunks, so only a block writer passes; 100000
  // fits twice into one chunk, which must still go out as two writes.
  for (const BLOCK of [196608, 100000]) test(`--block ${BLOCK}: every write to stdout is one block but the last`, async () => {
    const topo = await createTopology([{ mtu: 1500 }]);
    try {
      const input = `${scratch.dir}/block`;
      // Not a multiple of the block: the last write is short.
      await makeRandomFile(input, 40 * MiB + 12345);
      const trace = `${input}.strace`;
      const r = await transfer(topo, {
        input,
        receiverArgs: ["--block", String(BLOCK)],
        receiverPipe: "cat",
        timeoutMs: 60_000,
        receiverWrap: ["strace", "-f", "-qq", "-e", "trace=write", "-e", "signal=none", "-o", trace],
      });
      expect(r.sender.code).toBe(0);
      expect(r.receiver.code).toBe(0);
      expect(r.outSha).toBe(r.inSha);
      // strace -f lines: "PID write(1, ...) = N", or split in two when threads interleave:
      // "PID write(1, ... <unfinished ...>" then "PID <... write resumed>) = N".
      const sizes: number[] = [];
      const open = new Set<string>();
      for (const line of readFileSync(trace, "utf8").split("\n")) {
        const pid = line.split(" ")[0];
        // strace pads the pid column: "2154  write(...)" and "12345 write(...)" both occur.
        let m = /^\S+\s+write\(1, .*\) = (\d+)$/.exec(line);
        if (m) sizes.push(Number(m[1]));
        else if (/^\S+\s+write\(1, .*<unfinished \.\.\.>$/.test(line)) open.add(pid);
        else if (/^\S+\s+<\.\.\. write resumed>/.test(line) && open.delete(pid)) {
          // A write a signal interrupted ends "= ? ERESTARTSYS" and is made again: it wrote
          // nothing, and the thread's next resumed write (an eventfd's 8 bytes) is not stdout's.
          if ((m = / = (\d+)$/.exec(line))) sizes.push(Number(m[1]));
        }
      }
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(40 * MiB + 12345);
      // A blocking write to a pipe can return early when a signal interrupts it (the runtime's
      // garbage collector uses signals); the rest of that block follows at once. So blocks are
      // counted as runs of writes: each must end exactly on a block boundary.
      let inBlock = 0;
      let split = 0;
      const blocks: number[] = [];
      for (const s of sizes) {
        if (inBlock > 0) split++;
        inBlock += s;
        expect(inBlock).toBeLessThanOrEqual(BLOCK);
        if (inBlock === BLOCK) {
          blocks.push(inBlock);
          inBlock = 0;
        }
      }
      if (inBlock > 0) blocks.push(inBlock);
      expect(blocks.length).toBe(Math.ceil((40 * MiB + 12345) / BLOCK));
      expect(blocks.at(-1)).toBe((40 * MiB + 12345) % BLOCK);
      expect(split).toBeLessThan(blocks.length / 10);
    } finally {
      await topo.cleanup();
    }
  });
});

describe("bad values", () => {
  for (const [args, pattern] of [
    [["-r", "-b", "0", "lo"], /-b/],
    [["-r", "-b", "12Q", "lo"], /-b/],
    [["-r", "-b", "64M", "--start-at", "120", "lo"], /--start-at/],
    [["-s", "-b", "64M", "lo"], /-b/],
  ] as const) {
    test(args.join(" "), () => {
      const p = Bun.spawnSync([BINARY, ...args], { stderr: "pipe", stdout: "pipe" });
      expect(p.exitCode).toBe(2);
      expect(p.stderr.toString()).toMatch(pattern);
      expect(p.stderr.toString().trim().split("\n")).toHaveLength(1);
    });
  }
});
