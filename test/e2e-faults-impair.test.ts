// Lossy, duplicating, reordering, slow and corrupting links end to end, through the seeded
// impairment bridge: every run must be exact, corrupt frames must be counted as bad and never
// written, and the cost in time against a clean bridged run is printed for the record.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { DirectionConfig } from "./support/impair";
import { type BridgeOptions, type BridgeStats, startBridge } from "./support/impair-bridge";
import { cleanupAll, createTopology, makeCompressibleFile, makeRandomFile, type Topology } from "./support/netns";
import { describe as verdict, scratchDir, transfer, type TransferResult } from "./support/transfer";
import { vcount } from "./support/e2e";

const scratch = scratchDir();
const MB = 1 << 20;
const BYTES = 32 * MB;
let input: string;
let topo: Topology;

beforeAll(async () => {
  input = `${scratch.dir}/in`;
  await makeRandomFile(input, BYTES);
  // Shaped below what the user-space bridge can forward on a busy 2-core machine, so the line
  // rate, not CPU contention, is the yardstick for the costs.
  topo = await createTopology([{ mtu: 1500, middle: true, rateMbit: 200 }, { mtu: 9000, middle: true, rateMbit: 400 }]);
});
afterAll(async () => {
  console.log(costs.map((c) => `  ${c}`).join("\n"));
  await cleanupAll();
  scratch.remove();
});

/** Seconds of the transfer proper, from a side's -v summary ("done in X s"). */
function doneSecs(stderr: string): number {
  return Number(/done in ([\d.]+) s/.exec(stderr)?.[1]);
}

const costs: string[] = [];
const lineMbit = (links: number[]) => links.reduce((a, l) => a + (l === 0 ? 200 : 400), 0);
let baseline = 0;

interface Run {
  r: TransferResult;
  bridges: BridgeStats[];
  secs: number;
}

/** One transfer through bridges on the given links (others unused), -v on both sides. */
async function run(name: string, bridges: Array<[number, BridgeOptions]>, opts: { senderArgs?: string[]; file?: string } = {}): Promise<Run> {
  const started = await Promise.all(bridges.map(([link, o]) => startBridge(topo, link, o)));
  const links = bridges.map(([l]) => l);
  // A failed transfer leaves the bridges to topo.cleanup(); stop() only when there are counters to read.
  const r = await transfer(topo, {
    input: opts.file ?? input,
    senderArgs: opts.senderArgs ?? ["-0", "-v"],
    receiverArgs: ["-v"],
    senderDevs: links.map((l) => topo.devsA[l]!),
    receiverDevs: links.map((l) => topo.devsB[l]!),
    timeoutMs: 60_000,
  });
  const stats = await Promise.all(started.map((b) => b.stop()));
  expect(verdict(r)).toContain("sha equal");
  expect(r.sender.code).toBe(0);
  expect(r.receiver.code).toBe(0);
  expect(r.outSha).toBe(r.inSha);
  const secs = doneSecs(r.sender.stderr);
  const devs = bridges.map(([l]) => topo.devsA[l]!);
  const resent = devs.reduce((a, d) => a + vcount(r.sender.stderr, d, "resent"), 0);
  const sent = devs.reduce((a, d) => a + Number(new RegExp(`^  ${d}:.*? (\\d+) frames sent`, "m").exec(r.sender.stderr)![1]), 0);
  costs.push(
    `${name.padEnd(34)} ${secs.toFixed(2).padStart(6)} s ${(BYTES / 1e6 / secs).toFixed(1).padStart(6)} MB/s` +
      ` ${((BYTES * 8) / 1e6 / secs / lineMbit(links)).toFixed(2)} of line rate` +
      (baseline ? ` ${(secs / baseline).toFixed(2).padStart(5)}x clean` : "") +
      `  ${resent} of ${sent} frames resent`,
  );
  return { r, bridges: stats, secs };
}

const ONE: number = 0; // the MTU 1500 link
const dev = (side: "A" | "B", l = ONE) => (side === "A" ? topo.devsA[l]! : topo.devsB[l]!);

describe("one bridged link (MTU 1500, 200 Mbit), 32 MiB", () => {
  test("clean bridge (baseline for the costs below)", async () => {
    // Twice: the first run on a fresh topology pays for warming up.
    for (const name of ["clean (first)", "clean"]) {
      const { secs, bridges, r } = await run(name, [[ONE, { seed: 1 }]]);
      baseline = baseline ? Math.min(baseline, secs) : secs;
      expect(bridges[0]!.ab.dropLoss + bridges[0]!.ab.dropBurst).toBe(0);
      expect(vcount(r.receiver.stderr, dev("B"), "bad")).toBe(0);
    }
  }, 60_000);

  const cases: Array<[string, DirectionConfig | undefined, DirectionConfig | undefined, (s: BridgeStats, r: TransferResult) => void]> = [
    ["loss 0.1% on data", { loss: 0.001 }, undefined, (s, r) => expectResent(s.ab.dropLoss, r)],
    ["loss 1% on data", { loss: 0.01 }, undefined, (s, r) => expectResent(s.ab.dropLoss, r)],
    ["loss 5% on data", { loss: 0.05 }, undefined, (s, r) => expectResent(s.ab.dropLoss, r)],
    ["loss 0.1% on acks", undefined, { loss: 0.001 }, () => {}],
    ["loss 1% on acks", undefined, { loss: 0.01 }, (s) => expect(s.ba.dropLoss).toBeGreaterThan(0)],
    ["loss 5% on acks", undefined, { loss: 0.05 }, (s) => expect(s.ba.dropLoss).toBeGreaterThan(0)],
    ["bursts of 50 on data (p 0.001)", { burst: { p: 0.001, len: 50 } }, undefined, (s, r) => expectResent(s.ab.dropBurst, r)],
    ["bursts of 50 on acks (p 0.01)", undefined, { burst: { p: 0.01, len: 50 } }, (s) => expect(s.ba.dropBurst).toBeGreaterThan(0)],
    ["duplication 5% both ways", { dup: 0.05 }, { dup: 0.05 }, (s, r) => {
      expect(s.ab.duplicated).toBeGreaterThan(0);
      // Every copy of a DATA frame is recognised as one (pings are copied too, uncounted).
      expect(vcount(r.receiver.stderr, dev("B"), "duplicates")).toBeGreaterThanOrEqual(s.ab.duplicated * 0.8);
    }],
    ["reorder 20% by 3..50 frames", { reorder: { p: 0.2, min: 3, max: 50, unit: "frames" } }, undefined, (s) => expect(s.ab.reordered).toBeGreaterThan(1000)],
    ["delay 10 ms both ways", { delayMs: 10 }, { delayMs: 10 }, (_, r) => {
      const rtt = Number(new RegExp(`^  ${dev("A")}:.* rtt ([\\d.]+) ms`, "m").exec(r.sender.stderr)?.[1]);
      expect(rtt).toBeGreaterThanOrEqual(20);
    }],
    ["corruption 1% both ways", { corrupt: 0.01 }, { corrupt: 0.01 }, (s, r) => {
      expect(s.ab.corrupted).toBeGreaterThan(50);
      expect(s.ba.corrupted).toBeGreaterThan(0);
      // A flipped byte in a padded PING (or DONE) leaves its meaningful bytes intact: at most
      // those few are not counted bad.
      const rBad = vcount(r.receiver.stderr, dev("B"), "bad");
      const sBad = vcount(r.sender.stderr, dev("A"), "bad");
      expect(rBad).toBeLessThanOrEqual(s.ab.corrupted);
      expect(rBad).toBeGreaterThanOrEqual(s.ab.corrupted * 0.9);
      expect(sBad).toBeLessThanOrEqual(s.ba.corrupted);
      expect(sBad).toBeGreaterThanOrEqual(Math.floor(s.ba.corrupted * 0.8));
      expect(vcount(r.receiver.stderr, dev("B"), "foreign")).toBe(0);
    }],
  ];

  for (const [name, ab, ba, check] of cases) {
    test(name, async () => {
      const { r, bridges } = await run(name, [[ONE, { seed: 11, ab, ba }]]);
      check(bridges[0]!, r);
      expect(vcount(r.receiver.stderr, dev("B"), "dropped by kernel")).toBe(0);
    }, 60_000);
  }
});

describe("two bridged links (MTU 1500 at 200 Mbit, 9000 at 400 Mbit), everything at once", () => {
  test("loss, bursts, dup, reorder and corruption on one link; lossy, delayed acks on the other", async () => {
    const { r, bridges } = await run("mixed, two links", [
      [0, { seed: 21, ab: { loss: 0.01, burst: { p: 0.0005, len: 50 }, dup: 0.05, reorder: { p: 0.2, min: 3, max: 50, unit: "frames" }, corrupt: 0.01 }, ba: { loss: 0.01, corrupt: 0.01 } }],
      [1, { seed: 22, both: { delayMs: 10 }, ba: { loss: 0.05 } }],
    ]);
    expect(vcount(r.receiver.stderr, dev("B", 0), "bad")).toBeGreaterThan(0);
    expect(bridges[1]!.ba.dropLoss).toBeGreaterThan(0);
    // Both links carried data.
    for (const l of [0, 1]) expect(r.sender.stderr).toMatch(new RegExp(`${dev("A", l)}: up mtu \\d+ [1-9]\\d* frames sent`));
  }, 60_000);

  test("compressed (default compressors), compressible data, 1% loss and 1% corruption", async () => {
    const file = `${scratch.dir}/compressible`;
    await makeCompressibleFile(file, BYTES);
    const { r } = await run("lz4, 1% loss + 1% corrupt", [[0, { seed: 31, both: { loss: 0.01, corrupt: 0.01 } }]], { senderArgs: ["-v"], file });
    expect(r.sender.stderr).toMatch(/compression: ratio 0\.[0-8]/);
    expect(vcount(r.receiver.stderr, dev("B", 0), "bad")).toBeGreaterThan(0);
  }, 60_000);
});

function expectResent(dropped: number, r: TransferResult) {
  expect(dropped).toBeGreaterThan(0);
  // Every lost DATA frame is sent again (a few of the dropped may have been PINGs).
  expect(vcount(r.sender.stderr, dev("A"), "resent")).toBeGreaterThanOrEqual(dropped * 0.8);
}
