// Link faults end to end: one of three links goes down or blacks out mid-transfer (the others
// carry on, a link that comes back is used again), and every link dying (both sides fail within
// the peer timeout, each with one line naming its devices).

import { afterAll, describe, expect, test } from "bun:test";
import { startBridge } from "./support/impair-bridge";
import { cleanupAll, createTopology } from "./support/netns";
import { describe as verdict, scratchDir, transfer } from "./support/transfer";
import { outputOf, randomFile, running, sizeOf, until, vcount } from "./support/e2e";

const scratch = scratchDir();
afterAll(async () => {
  await cleanupAll();
  scratch.remove();
});

/** Output bytes over time, sampled every 10 ms until both sides exited. */
interface Sample {
  t: number;
  bytes: number;
}

async function sampleOutput(input: string, ctx: { sender: Bun.Subprocess; receiver: Bun.Subprocess }, samples: Sample[], onSample?: (s: Sample) => Promise<void> | void) {
  while (running(ctx.sender) || running(ctx.receiver)) {
    const s = { t: performance.now(), bytes: sizeOf(outputOf(input)) };
    samples.push(s);
    await onSample?.(s);
    await Bun.sleep(10);
  }
}

/** Rate in MB/s over [t0, t1] from the samples. */
function rateBetween(samples: Sample[], t0: number, t1: number): number {
  const a = samples.find((s) => s.t >= t0);
  const b = [...samples].reverse().find((s) => s.t <= t1);
  if (!a || !b || b.t <= a.t) return 0;
  return (b.bytes - a.bytes) / 1e6 / ((b.t - a.t) / 1000);
}

/** Longest time after `from` during which the output did not grow. */
function longestStall(samples: Sample[], from: number): number {
  let longest = 0;
  let lastGrowth = from;
  let lastBytes = -1;
  for (const s of samples) {
    if (s.t < from) {
      lastBytes = s.bytes;
      continue;
    }
    if (s.bytes !== lastBytes) {
      longest = Math.max(longest, s.t - lastGrowth);
      lastGrowth = s.t;
      lastBytes = s.bytes;
    }
  }
  return longest;
}

/** Time after `from` until the rate over a 200 ms window first reaches `target` MB/s. */
function recoveryTime(samples: Sample[], from: number, target: number): number {
  for (const s of samples) {
    if (s.t < from) continue;
    if (rateBetween(samples, s.t, s.t + 200) >= target) return s.t - from;
  }
  return Infinity;
}

async function ipLink(ns: string, dev: string, state: "up" | "down"): Promise<void> {
  const p = Bun.spawn(["ip", "-n", ns, "link", "set", "dev", dev, state], { stdout: "ignore", stderr: "pipe" });
  const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
  if (code !== 0) throw new Error(`ip link set ${dev} ${state} in ${ns}: ${err.trim()}`);
}

/** Frames the kernel counted into dev (so also those l2pipe rejected). */
async function rxPackets(ns: string, dev: string): Promise<number> {
  const p = Bun.spawn(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev], { stdout: "pipe", stderr: "ignore" });
  const out = await new Response(p.stdout).text();
  await p.exited;
  return (JSON.parse(out) as Array<{ stats64: { rx: { packets: number } } }>)[0]!.stats64.rx.packets;
}

interface JsonLink {
  device: string;
  state?: string;
  framesSent?: number;
  framesRetransmitted?: number;
  timesDown?: number;
}

async function statsJson(path: string): Promise<{ links: JsonLink[]; ok: boolean; error: string | null }> {
  return (await Bun.file(path).json()) as { links: JsonLink[]; ok: boolean; error: string | null };
}

const MB = 1 << 20;

describe("a flapping link", () => {
  test("down and up every 300 ms: exact, and the untouched link sees no frame fail its CRC", async () => {
    const topo = await createTopology([{ rateMbit: 200 }, { rateMbit: 200 }]);
    try {
      const input = await randomFile(scratch.dir, "flap", 160 * MB);
      let flaps = 0;
      const r = await transfer(topo, {
        input,
        senderArgs: ["-v"],
        receiverArgs: ["-v"],
        timeoutMs: 90_000,
        during: async (ctx) => {
          await until(() => sizeOf(outputOf(input)) > 4 * MB || !running(ctx.sender), 30_000, "the transfer to start");
          while (running(ctx.sender) && running(ctx.receiver)) {
            await ipLink(topo.nsB, topo.devsB[1]!, "down");
            await Bun.sleep(300);
            await ipLink(topo.nsB, topo.devsB[1]!, "up");
            await Bun.sleep(300);
            flaps++;
          }
        },
      });
      expect({ s: r.sender.code, r: r.receiver.code, same: r.outSha === r.inSha }, verdict(r)).toEqual({ s: 0, r: 0, same: true });
      expect(flaps).toBeGreaterThan(2);
      // A clean veth does not corrupt frames: a bad one on it was sent with bytes changed under its CRC.
      expect(vcount(r.receiver.stderr, topo.devsB[0]!, "bad")).toBe(0);
    } finally {
      await topo.cleanup();
    }
  }, 100_000);
});

describe("one of three links fails mid-transfer", () => {
  // 3 x 60 Mbit: ~22 MB/s in all, slow enough to watch the dip at 10 ms resolution.
  const RATE = 60;

  for (const side of ["sender", "receiver"] as const) {
    test(`ip link set down on the ${side}'s side: completes on the other two`, async () => {
      const topo = await createTopology([{ rateMbit: RATE }, { rateMbit: RATE }, { rateMbit: RATE }]);
      try {
        const input = await randomFile(scratch.dir, `down-${side}`, 64 * MB);
        const sJson = `${scratch.dir}/down-${side}.s.json`;
        const samples: Sample[] = [];
        let downAt = 0;
        const r = await transfer(topo, {
          input,
          senderArgs: ["-0", "-v", "--stats-json", sJson],
          receiverArgs: ["-v"],
          timeoutMs: 60_000,
          during: (ctx) =>
            sampleOutput(input, ctx, samples, async (s) => {
              if (!downAt && s.bytes >= 16 * MB) {
                if (side === "sender") await ipLink(topo.nsB, topo.devsB[1]!, "down");
                else await ipLink(topo.nsB, topo.devsB[1]!, "down");
                downAt = performance.now();
              }
            }),
        });
        expect(verdict(r)).toContain("sha equal");
        expect(r.sender.code).toBe(0);
        expect(r.receiver.code).toBe(0);
        expect(downAt).toBeGreaterThan(0);
        const st = await statsJson(sJson);
        expect(st.links[1]!.state).toBe("down");
        expect(st.links[1]!.timesDown).toBeGreaterThanOrEqual(1);
        const before = rateBetween(samples, downAt - 500, downAt);
        const after = rateBetween(samples, downAt + 1500, downAt + 2500);
        const stall = longestStall(samples, downAt);
        const recover = recoveryTime(samples, downAt, (before * 2) / 3 * 0.8);
        console.log(
          `link down (${side}): ${before.toFixed(1)} MB/s before, ${after.toFixed(1)} MB/s on two links after; ` +
            `longest output stall ${stall.toFixed(0)} ms, back to 80% of two links' rate after ${recover.toFixed(0)} ms; ` +
            `total ${(r.ms / 1000).toFixed(2)} s`,
        );
        // Failover within the link timeout (1 s at -t 5), not the peer timeout.
        expect(stall).toBeLessThan(1500);
        expect(after).toBeGreaterThan(0.5 * before);
      } finally {
        await topo.cleanup();
      }
    }, 60_000);
  }

  test("3 s blackout of one link: completes, and the link carries data again afterwards", async () => {
    const topo = await createTopology([{ rateMbit: RATE, middle: true }, { rateMbit: RATE }, { rateMbit: RATE }]);
    try {
      const input = await randomFile(scratch.dir, "blackout", 96 * MB);
      const sJson = `${scratch.dir}/blackout.s.json`;
      const samples: Sample[] = [];
      const BLACK_FROM = 1000;
      const BLACK_TO = 4000;
      const bridge = await startBridge(topo, 0, { seed: 7, blackouts: [[BLACK_FROM, BLACK_TO]] });
      const ready = performance.now();
      let atEnd = -1;
      const r = await transfer(topo, {
        input,
        senderArgs: ["-0", "-v", "--stats-json", sJson],
        receiverArgs: ["-v"],
        timeoutMs: 60_000,
        during: async (ctx) => {
          const watch = sampleOutput(input, ctx, samples);
          // Frames into B's end of the link by the end of the blackout.
          await until(() => performance.now() >= ready + BLACK_TO || !running(ctx.sender), 10_000, "blackout end");
          atEnd = await rxPackets(topo.nsB, topo.devsB[0]!);
          await watch;
        },
      });
      const stats = await bridge.stop();
      const total = await rxPackets(topo.nsB, topo.devsB[0]!);
      expect(verdict(r)).toContain("sha equal");
      expect(r.sender.code).toBe(0);
      expect(r.receiver.code).toBe(0);
      expect(stats.ab.dropBlackout).toBeGreaterThan(0);
      const st = await statsJson(sJson);
      expect(st.links[0]!.timesDown).toBeGreaterThanOrEqual(1);
      expect(st.links[0]!.state).toBe("up");
      const from = ready + BLACK_FROM;
      const before = rateBetween(samples, from - 500, from);
      const during = rateBetween(samples, from + 1500, ready + BLACK_TO);
      const afterRate = rateBetween(samples, ready + BLACK_TO + 500, ready + BLACK_TO + 1500);
      const stall = longestStall(samples, from);
      const back = recoveryTime(samples, ready + BLACK_TO, 0.8 * before);
      console.log(
        `blackout: ${before.toFixed(1)} MB/s before, ${during.toFixed(1)} MB/s during, ${afterRate.toFixed(1)} MB/s after; ` +
          `longest output stall ${stall.toFixed(0)} ms; back to 80% of the 3-link rate ${back.toFixed(0)} ms after the blackout; ` +
          `link 0 frames into B: ${atEnd} by the blackout's end, ${total} in all; total ${(r.ms / 1000).toFixed(2)} s`,
      );
      // The link came back into use: thousands of frames after the blackout (5000/s at 60 Mbit).
      expect(total - atEnd).toBeGreaterThan(1000);
      expect(stall).toBeLessThan(1500);
      expect(back).toBeLessThan(2000);
    } finally {
      await topo.cleanup();
    }
  }, 60_000);
});

describe("every link dead for longer than the timeout (-t 2)", () => {
  const T = 2000;

  function expectOneLineNaming(stderr: string, side: "sender" | "receiver", devs: string[]) {
    const lines = stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]!).toStartWith("l2pipe: ");
    expect(lines[0]!).toContain(side === "sender" ? "receiver lost" : "sender lost");
    for (const d of devs) expect(lines[0]!).toContain(d);
  }

  test("bridge blackout forever on both links", async () => {
    const topo = await createTopology([{ middle: true, rateMbit: 100 }, { middle: true, rateMbit: 100 }]);
    try {
      const input = await randomFile(scratch.dir, "allblack", 128 * MB);
      const DEATH = 1000;
      const bridges = await Promise.all([0, 1].map((i) => startBridge(topo, i, { seed: 9 + i, blackouts: [[DEATH, Infinity]] })));
      const dead = performance.now() + DEATH;
      const r = await transfer(topo, {
        input,
        senderArgs: ["-0", "-t", "2"],
        receiverArgs: ["-t", "2"],
        timeoutMs: 20_000,
      });
      const sEnd = r.sender.endedAt, rEnd = r.receiver.endedAt;
      await Promise.all(bridges.map((b) => b.stop()));
      console.log(`all links black: sender exit ${r.sender.code} after ${(sEnd - dead).toFixed(0)} ms, receiver exit ${r.receiver.code} after ${(rEnd - dead).toFixed(0)} ms`);
      expect(r.sender.code).toBe(1);
      expect(r.receiver.code).toBe(1);
      // Still transferring when the links died: a partial output.
      expect(sizeOf(r.outPath)).toBeLessThan(128 * MB);
      expect(sEnd - dead).toBeLessThan(T + 2000);
      expect(rEnd - dead).toBeLessThan(T + 2000);
      expect(sEnd - dead).toBeGreaterThan(T - 500);
      expect(rEnd - dead).toBeGreaterThan(T - 500);
      expectOneLineNaming(r.sender.stderr, "sender", topo.devsA);
      expectOneLineNaming(r.receiver.stderr, "receiver", topo.devsB);
    } finally {
      await topo.cleanup();
    }
  }, 30_000);

  test("every sender device set down", async () => {
    const topo = await createTopology([{ rateMbit: 100 }, { rateMbit: 100 }]);
    try {
      const input = await randomFile(scratch.dir, "alldown", 128 * MB);
      let dead = 0;
      const r = await transfer(topo, {
        input,
        senderArgs: ["-0", "-t", "2"],
        receiverArgs: ["-t", "2"],
        timeoutMs: 20_000,
        during: async ({ receiver }) => {
          await until(() => sizeOf(outputOf(input)) >= 8 * MB || !running(receiver), 10_000, "output");
          await Promise.all(topo.devsA.map((d) => ipLink(topo.nsA, d, "down")));
          dead = performance.now();
        },
      });
      const sEnd = r.sender.endedAt, rEnd = r.receiver.endedAt;
      console.log(`all links down: sender exit ${r.sender.code} after ${(sEnd - dead).toFixed(0)} ms, receiver exit ${r.receiver.code} after ${(rEnd - dead).toFixed(0)} ms`);
      expect(dead).toBeGreaterThan(0);
      expect(r.sender.code).toBe(1);
      expect(r.receiver.code).toBe(1);
      expect(sEnd - dead).toBeLessThan(T + 2000);
      expect(rEnd - dead).toBeLessThan(T + 2000);
      expectOneLineNaming(r.sender.stderr, "sender", topo.devsA);
      expectOneLineNaming(r.receiver.stderr, "receiver", topo.devsB);
    } finally {
      await topo.cleanup();
    }
  }, 30_000);
});
