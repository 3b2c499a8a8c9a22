// zstd end to end: each --compress choice on a stream switching between text and random bytes,
// edge sizes, auto on a slow link (the level rises), and hosts without libzstd or liblz4 (the
// handshake falls back, or a pinned codec fails at once on the sender, naming it and the receiver;
// lz4 pinned against a receiver without liblz4 is in e2e-compress.test.ts).

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { PROBE_AHEAD } from "../src/core/codec-policy";
import { cleanupAll, createTopology, makeCompressibleFile, makeRandomFile, type Topology } from "./support/netns";
import { scratchDir, transfer, type TransferResult } from "./support/transfer";
import type { RunStats } from "../src/shell/report";

const scratch = scratchDir();
const MiB = 1 << 20;
const NO_ZSTD = { L2PIPE_ZSTD_LIB: "/nonexistent/libzstd.so.1" };
const NO_LZ4 = { L2PIPE_LZ4_LIB: "/nonexistent/liblz4.so.1" };
let topo: Topology;
let text = "";
let mixed = "";

beforeAll(async () => {
  // Link 0 unshaped, link 1 at 200 Mbit: there the links are the bottleneck.
  topo = await createTopology([{ mtu: 9000 }, { mtu: 9000, rateMbit: 200 }]);
  text = `${scratch.dir}/text`;
  mixed = `${scratch.dir}/mixed`;
  const random = `${scratch.dir}/random`;
  await makeCompressibleFile(text, 160 * MiB);
  await makeRandomFile(random, 12 * MiB);
  // 1 MiB of random bytes, 1 MiB of text, alternating, 24 MiB.
  const t = readFileSync(text);
  const r = readFileSync(random);
  const fd = openSync(mixed, "w");
  for (let i = 0; i < 24; i++) writeSync(fd, (i % 2 ? t : r).subarray((i >> 1) * MiB, ((i >> 1) + 1) * MiB));
  closeSync(fd);
});

afterAll(async () => {
  await cleanupAll();
  scratch.remove();
});

/** Compressed chunks the receiver wrote, by its -v line. */
function received(r: TransferResult): { lz4: number; zstd: number } {
  const m = /\((\d+) lz4, (\d+) zstd\)/.exec(r.receiver.stderr);
  if (!m) throw new Error(`no output line in: ${r.receiver.stderr}`);
  return { lz4: Number(m[1]), zstd: Number(m[2]) };
}

function senderStats(path: string): NonNullable<RunStats["compression"]> {
  return (JSON.parse(readFileSync(path, "utf8")) as RunStats).compression!;
}

function expectExact(r: TransferResult) {
  expect(r.sender.code).toBe(0);
  expect(r.receiver.code).toBe(0);
  expect(r.outSha).toBe(r.inSha);
}

let statsN = 0;
interface SendOptions {
  senderEnv?: Record<string, string>;
  receiverEnv?: Record<string, string>;
  /** Over the 200 Mbit link. */
  slow?: boolean;
  /** Without -v (a failing run's stderr is then its one error line) and with this receiver -w. */
  quiet?: boolean;
  receiverWait?: number;
}

async function send(input: string, senderArgs: string[], o: SendOptions = {}) {
  const stats = `${scratch.dir}/stats-${statsN++}.json`;
  const dev = o.slow ? 1 : 0;
  const verbose = o.quiet ? [] : ["-v"];
  const r = await transfer(topo, {
    input,
    senderArgs: [...verbose, "--stats-json", stats, ...senderArgs],
    receiverArgs: [...verbose, ...(o.receiverWait ? ["-w", String(o.receiverWait)] : [])],
    senderDevs: [topo.devsA[dev]!],
    receiverDevs: [topo.devsB[dev]!],
    senderEnv: o.senderEnv,
    receiverEnv: o.receiverEnv,
    timeoutMs: 60_000,
  });
  return { r, stats };
}

describe("--compress on a stream switching between text and random bytes", () => {
  for (const [args, codec] of [
    [["--compress", "lz4"], "lz4"],
    [["--compress", "zstd"], "zstd-3"],
    [["--compress", "zstd:1"], "zstd-1"],
    [["--compress", "zstd:19", "-1"], "zstd-19"],
    [["--compress", "none"], null],
  ] as const) {
    test(args.join(" "), async () => {
      const { r, stats } = await send(mixed, [...args]);
      expectExact(r);
      const got = received(r);
      if (codec === null) {
        expect(got).toEqual({ lz4: 0, zstd: 0 });
        expect(r.sender.stderr).not.toContain("compression:");
        return;
      }
      const c = senderStats(stats);
      expect(Object.keys(c.codecs!)).toEqual([codec]);
      expect(c.policy).toBe("pinned");
      // The 12 text stretches compress; the random ones go raw.
      expect(c.codecs![codec]!.chunks).toBeGreaterThanOrEqual(12 * 4 - 8);
      expect(c.rawChunks).toBeGreaterThanOrEqual(12 * 4 - 8);
      expect(codec === "lz4" ? got.lz4 : got.zstd).toBe(c.codecs![codec]!.chunks);
      expect(codec === "lz4" ? got.zstd : got.lz4).toBe(0);
    });
  }

  test("zstd: empty, 1 byte, chunk-1 and chunk+1 bytes", async () => {
    const chunk = 256 * 1024;
    const all = readFileSync(text);
    for (const n of [0, 1, chunk - 1, chunk + 1]) {
      const path = `${scratch.dir}/size-${n}`;
      const fd = openSync(path, "w");
      writeSync(fd, all.subarray(0, n));
      closeSync(fd);
      const { r } = await send(path, ["--compress", "zstd:3"]);
      expectExact(r);
      // Text chunks shrink; a tail of 1 byte travels RAW.
      expect(received(r).zstd).toBe(Math.floor(n / chunk) + (n % chunk >= 64 ? 1 : 0));
    }
  });
});

describe("auto", () => {
  test("on a 200 Mbit link the level rises to zstd and the links are named the bottleneck", async () => {
    const { r, stats } = await send(text, [], { slow: true });
    expectExact(r);
    const c = senderStats(stats);
    expect(c.policy).toBe("auto");
    expect(c.codec).toMatch(/^zstd-[36]$/);
    // The first window goes out as it is (none), read ahead of the acknowledged bytes by
    // PROBE_AHEAD at most (not the ring's 64 MiB); the links holding it back end that at once,
    // with zstd-1. The link takes at most 25 MB/s.
    const trace = c.codecTrace!;
    expect(trace[0]!.codec).toBe("none");
    expect(trace[1]!.codec).toBe("zstd-1");
    expect(trace[1]!.ms).toBeLessThan(1000);
    expect(trace[1]!.read).toBeLessThanOrEqual(PROBE_AHEAD + 25e3 * trace[1]!.ms + 2 * 256 * 1024);
    const zstdChunks = Object.entries(c.codecs!).filter(([k]) => k.startsWith("zstd")).reduce((n, [, v]) => n + v.chunks, 0);
    expect(zstdChunks).toBeGreaterThan(100);
    expect(received(r).zstd).toBe(zstdChunks);
    expect(c.bottleneck!.links).toBeGreaterThan(0.5);
    expect(c.bottleneck!.compressors).toBeLessThan(0.1);
    // Chunks per codec (lz4 ones only when a probe of a raw stretch used it), the codec at the end.
    expect(r.sender.stderr).toMatch(/codecs: (lz4|zstd-\d+) \d+ chunks .*at the end \(auto, \d+ changes\); bottleneck: links \d+ %, compressors \d+ % of the time/);
  }, 120_000);

  test("a receiver without libzstd: the sender keeps to lz4, exact", async () => {
    const { r, stats } = await send(text, [], { slow: true, receiverEnv: NO_ZSTD });
    expectExact(r);
    expect(Object.keys(senderStats(stats).codecs!)).toEqual(["lz4"]);
    expect(received(r).zstd).toBe(0);
    expect(received(r).lz4).toBeGreaterThan(500);
  }, 120_000);

  test("a receiver without liblz4: the sender keeps to zstd, exact", async () => {
    const { r, stats } = await send(mixed, [], { slow: true, receiverEnv: NO_LZ4 });
    expectExact(r);
    expect(Object.keys(senderStats(stats).codecs!).every((k) => k.startsWith("zstd-"))).toBe(true);
    expect(received(r).lz4).toBe(0);
    expect(received(r).zstd).toBeGreaterThan(0);
  });

  test("a sender without libzstd: lz4 only, exact", async () => {
    const { r, stats } = await send(mixed, [], { senderEnv: NO_ZSTD });
    expectExact(r);
    // On this unshaped link auto may also send chunks as they are (none), which no codec counts.
    expect(Object.keys(senderStats(stats).codecs!).filter((k) => k !== "lz4")).toEqual([]);
    expect(received(r).zstd).toBe(0);
  });
});

describe("a codec the other host lacks", () => {
  for (const [what, args, env, message] of [
    ["--compress zstd, receiver without libzstd", ["--compress", "zstd:3"], NO_ZSTD,
      /^l2pipe: receiver cannot decode zstd: libzstd\.so\.1 is not available on the receiving host \(install libzstd1 there, or send with --compress lz4\)$/],
    ["auto, receiver with neither", [], { ...NO_LZ4, ...NO_ZSTD },
      /^l2pipe: receiver cannot decode lz4 or zstd: neither liblz4\.so\.1 nor libzstd\.so\.1 is available on the receiving host \(install liblz4-1 or libzstd1 there, or send with -0\)$/],
  ] as const) {
    test(`${what}: the sender fails at once (exit 3) naming the codec and the receiver; the receiver fails too`, async () => {
      const { r } = await send(mixed, [...args], { receiverEnv: env, quiet: true });
      expect(r.sender.code).toBe(3);
      expect(r.sender.stderr.trim()).toMatch(message);
      expect(r.sender.ms).toBeLessThan(5000);
      expect(r.receiver.code).toBe(1);
      expect(r.receiver.stderr).toContain("sender aborted: receiver cannot decode");
      expect(readFileSync(r.outPath).length).toBe(0);
    });
  }

  test("--compress zstd on a sender without libzstd: exit 3 naming libzstd1 before any frame", async () => {
    const { r } = await send(mixed, ["--compress", "zstd"], { senderEnv: NO_ZSTD, quiet: true, receiverWait: 3 });
    expect(r.sender.code).toBe(3);
    expect(r.sender.stderr.trim()).toMatch(/^l2pipe: cannot load libzstd \(\/nonexistent\/libzstd\.so\.1: .*\): install libzstd1 .*--compress lz4$/);
    // The receiver never heard from it.
    expect(r.receiver.code).toBe(4);
    expect(r.outSha).not.toBe(r.inSha);
  });
});
