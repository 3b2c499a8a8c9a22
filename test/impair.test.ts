// The impairment bridge that the fault tests put between two namespaces: its seeded loss, duplication,
// reordering, corruption, delay and blackout, checked against what a probe sees, and nftables rules.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type DirectionConfig, type FrameHost, Impairment, Rng } from "./support/impair";
import { type BridgeOptions, type BridgeStats, type ProbeRun, parseBridgeArgs, bridgeArgs, runProbe, startBridge } from "./support/impair-bridge";
import { createTopology, type Topology } from "./support/netns";
import { addDropRule, addDupRule } from "./support/nft";

// A host backed by plain arrays: frames carry their sequence number at offset 14.
class ArrayHost implements FrameHost {
  bufs: Uint8Array[] = [];
  orig: Uint8Array[] = []; // pristine copies, to find corruption
  out: number[] = []; // emitted handles, in order
  outAt: number[] = []; // time of each emit
  freed = 0;
  limit = Infinity;
  now = 0;
  make(seq: number, len = 100): number {
    const b = new Uint8Array(len);
    if (len >= 18) new DataView(b.buffer).setUint32(14, seq);
    for (let i = 18; i < len; i++) b[i] = (seq + i) & 0xff;
    this.bufs.push(b);
    this.orig.push(b.slice());
    return this.bufs.length - 1;
  }
  seq(h: number): number {
    return new DataView(this.bufs[h]!.buffer).getUint32(14);
  }
  bytes(h: number): Uint8Array {
    return this.bufs[h]!;
  }
  length(h: number): number {
    return this.bufs[h]!.length;
  }
  clone(h: number): number {
    if (this.bufs.length >= this.limit) return -1;
    this.bufs.push(this.bufs[h]!.slice());
    this.orig.push(this.orig[h]!.slice());
    return this.bufs.length - 1;
  }
  emit(h: number): void {
    this.out.push(h);
    this.outAt.push(this.now);
  }
  free(): void {
    this.freed++;
  }
  seqs(): number[] {
    return this.out.map((h) => this.seq(h));
  }
}

function run(cfg: DirectionConfig, seed: number, n: number, len = 100, stepMs = 0) {
  const host = new ArrayHost();
  const imp = new Impairment(cfg, seed, host, 0, 8192);
  for (let i = 0; i < n; i++) {
    host.now = i * stepMs;
    imp.poll(host.now);
    imp.offer(host.make(i, len), host.now);
  }
  host.now = n * stepMs + 1e6;
  imp.poll(host.now);
  return { host, imp, c: imp.counters };
}

describe("Rng", () => {
  test("same seed, same stream; different seed, different stream", () => {
    const a = new Rng(42), b = new Rng(42), c = new Rng(43);
    const xa = Array.from({ length: 100 }, () => a.next());
    const xb = Array.from({ length: 100 }, () => b.next());
    const xc = Array.from({ length: 100 }, () => c.next());
    expect(xa).toEqual(xb);
    expect(xa).not.toEqual(xc);
    for (const x of xa) expect(x >= 0 && x < 1).toBe(true);
  });
  test("int stays in range and hits both ends", () => {
    const r = new Rng(1);
    const seen = new Set<number>();
    for (let i = 0; i < 10000; i++) {
      const v = r.int(3, 7);
      expect(v >= 3 && v <= 7).toBe(true);
      seen.add(v);
    }
    expect([...seen].sort()).toEqual([3, 4, 5, 6, 7]);
  });
});

describe("Impairment (pure)", () => {
  const mixed: DirectionConfig = {
    loss: 0.05,
    burst: { p: 0.001, len: 20 },
    dup: 0.05,
    reorder: { p: 0.1, min: 2, max: 6, unit: "frames" },
    corrupt: 0.01,
  };

  test("deterministic for a seed", () => {
    const r1 = run(mixed, 7, 20000);
    const r2 = run(mixed, 7, 20000);
    const r3 = run(mixed, 8, 20000);
    expect(r1.host.seqs()).toEqual(r2.host.seqs());
    expect(r1.c).toEqual(r2.c);
    expect(r1.host.out.map((h) => r1.host.bufs[h])).toEqual(r2.host.out.map((h) => r2.host.bufs[h]));
    expect(r1.host.seqs()).not.toEqual(r3.host.seqs());
  });

  test("every frame is accounted for", () => {
    const { c, host } = run(mixed, 3, 20000);
    expect(c.frames).toBe(20000);
    const drops = c.dropBlackout + c.dropBurst + c.dropLoss + c.dropRate + c.dropQueueFull;
    expect(c.sent + drops).toBe(c.frames + c.duplicated);
    expect(host.out.length).toBe(c.sent);
    expect(host.freed).toBe(drops);
  });

  test("loss and duplicate rates are close to the asked ones", () => {
    const { c, host } = run({ loss: 0.1, dup: 0.2 }, 11, 100000);
    expect(c.dropLoss / c.frames).toBeCloseTo(0.1, 1.5);
    expect(Math.abs(c.dropLoss / c.frames - 0.1)).toBeLessThan(0.005);
    expect(Math.abs(c.duplicated / (c.frames - c.dropLoss) - 0.2)).toBeLessThan(0.006);
    // Without reordering a duplicate follows its original directly.
    const s = host.seqs();
    let dups = 0;
    for (let i = 1; i < s.length; i++) {
      expect(s[i]! >= s[i - 1]!).toBe(true);
      if (s[i] === s[i - 1]) dups++;
    }
    expect(dups).toBe(c.duplicated);
  });

  test("bursts drop runs of the asked length", () => {
    const { c, host } = run({ burst: { p: 0.002, len: 25 } }, 5, 100000);
    expect(c.bursts).toBeGreaterThan(100);
    expect(c.bursts).toBeLessThan(300);
    expect(c.dropBurst).toBeLessThanOrEqual(c.bursts * 25);
    expect(c.dropBurst).toBeGreaterThan(c.bursts * 25 - 25); // only the last burst may be cut short
    // Gaps in the received sequence: back-to-back bursts merge, so each gap is a multiple of 25.
    const s = host.seqs();
    let gaps = 0;
    for (let i = 1; i < s.length; i++) {
      const gap = s[i]! - s[i - 1]! - 1;
      if (gap > 0) {
        expect(gap % 25).toBe(0);
        gaps += gap / 25;
      }
    }
    expect(gaps + (s[0]! > 0 ? s[0]! / 25 : 0)).toBeGreaterThanOrEqual(c.bursts - 1);
  });

  test("reorder by count: held frames are overtaken by min..max later frames", () => {
    const { c, host } = run({ reorder: { p: 0.02, min: 3, max: 5, unit: "frames" } }, 9, 50000);
    const s = host.seqs();
    expect(s.length).toBe(50000);
    expect(new Set(s).size).toBe(50000);
    // For each frame, how many larger sequence numbers were emitted before it.
    let late = 0;
    const dist: number[] = [];
    for (let i = 0; i < s.length; i++) {
      let d = 0;
      for (let j = Math.max(0, i - 40); j < i; j++) if (s[j]! > s[i]!) d++;
      if (d > 0) {
        late++;
        dist.push(d);
      }
    }
    expect(late).toBe(c.reordered);
    expect(Math.abs(c.reordered / 50000 - 0.02)).toBeLessThan(0.003);
    expect(Math.min(...dist)).toBeGreaterThanOrEqual(3);
    // Distances beyond max only when another held frame was released in between.
    expect(dist.filter((d) => d <= 5).length / dist.length).toBeGreaterThan(0.95);
    for (const k of [3, 4, 5]) expect(dist.filter((d) => d === k).length).toBeGreaterThan(200);
  });

  test("reorder by count releases on timeout when traffic stops", () => {
    const host = new ArrayHost();
    const imp = new Impairment({ reorder: { p: 1, min: 10, max: 10, unit: "frames", timeoutMs: 30 } }, 1, host);
    imp.offer(host.make(0), 0);
    expect(host.out.length).toBe(0);
    expect(imp.nextDeadline()).toBe(30);
    imp.poll(29);
    expect(host.out.length).toBe(0);
    imp.poll(30);
    expect(host.seqs()).toEqual([0]);
    expect(imp.counters.reorderTimeouts).toBe(1);
  });

  test("reorder by time holds for min..max ms", () => {
    const host = new ArrayHost();
    const imp = new Impairment({ reorder: { p: 0.5, min: 5, max: 10, unit: "ms" } }, 4, host);
    const offeredAt = new Map<number, number>();
    for (let t = 0; t < 2020; t++) {
      host.now = t;
      imp.poll(t);
      if (t >= 2000) continue;
      const h = host.make(t);
      offeredAt.set(h, t);
      imp.offer(h, t);
    }
    expect(host.out.length).toBe(2000);
    let held = 0;
    for (let i = 0; i < host.out.length; i++) {
      const wait = host.outAt[i]! - offeredAt.get(host.out[i]!)!;
      if (wait > 0) {
        held++;
        expect(wait).toBeGreaterThanOrEqual(5);
        expect(wait).toBeLessThanOrEqual(10);
      }
    }
    expect(held).toBe(imp.counters.reordered);
    expect(held).toBeGreaterThan(900);
  });

  test("corruption flips exactly one byte after the Ethernet header", () => {
    const { c, host } = run({ corrupt: 0.05 }, 13, 20000, 64);
    let changed = 0;
    const positions = new Set<number>();
    for (const h of host.out) {
      const b = host.bufs[h]!, o = host.orig[h]!;
      const diff: number[] = [];
      for (let i = 0; i < b.length; i++) if (b[i] !== o[i]) diff.push(i);
      if (diff.length > 0) {
        changed++;
        expect(diff.length).toBe(1);
        positions.add(diff[0]!);
      }
    }
    expect(changed).toBe(c.corrupted);
    expect(Math.abs(c.corrupted / 20000 - 0.05)).toBeLessThan(0.006);
    expect(Math.min(...positions)).toBe(14);
    expect(Math.max(...positions)).toBe(63);
  });

  test("corruption never touches the Ethernet header and always changes the byte", () => {
    const host = new ArrayHost();
    const imp = new Impairment({ corrupt: 1 }, 99, host);
    for (let i = 0; i < 5000; i++) {
      const h = host.make(0, 15 + (i % 3)); // tiny frames: offsets 14..16 only
      const before = host.bufs[h]!.slice();
      imp.offer(h, 0);
      const after = host.bufs[h]!;
      let diffs = 0;
      for (let k = 0; k < after.length; k++) {
        if (after[k] !== before[k]) {
          diffs++;
          expect(k).toBeGreaterThanOrEqual(14);
        }
      }
      expect(diffs).toBe(1);
    }
    // A bare header has nothing to corrupt.
    const h = host.make(0, 14);
    imp.offer(h, 0);
    expect(imp.counters.corrupted).toBe(5000);
  });

  test("duplicate copy stays clean when the original is corrupted", () => {
    const { host } = run({ dup: 1, corrupt: 1 }, 2, 100);
    for (let i = 0; i < host.out.length; i += 2) {
      const a = host.bufs[host.out[i]!]!, b = host.bufs[host.out[i + 1]!]!;
      let d = 0;
      for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) d++;
      expect(d).toBe(1);
    }
  });

  test("duplicates are skipped when the host has no buffer", () => {
    const host = new ArrayHost();
    host.limit = 10;
    const imp = new Impairment({ dup: 1 }, 2, host);
    for (let i = 0; i < 8; i++) imp.offer(host.make(i), 0);
    // Frames 0-4 and their copies fill the 10 buffers; frames 5-7 find none.
    expect(imp.counters.duplicated).toBe(5);
    expect(imp.counters.dupNoBuffer).toBe(3);
  });

  test("blackout windows drop everything inside, relative to start", () => {
    const host = new ArrayHost();
    const imp = new Impairment({ blackouts: [[300, Infinity], [100, 200]] }, 1, host, 1000);
    for (let t = 1000; t < 1500; t++) imp.offer(host.make(t - 1000), t);
    const s = host.seqs();
    expect(s.length).toBe(200);
    expect(s.filter((x) => x < 100).length).toBe(100);
    expect(s.filter((x) => x >= 200 && x < 300).length).toBe(100);
    expect(imp.counters.dropBlackout).toBe(300);
    expect(imp.inBlackout(1099.9)).toBe(false);
    expect(imp.inBlackout(1100)).toBe(true);
    expect(imp.inBlackout(1200)).toBe(false);
    expect(imp.inBlackout(1e12)).toBe(true);
  });

  test("fixed delay holds every frame for exactly that long, in order", () => {
    const host = new ArrayHost();
    const imp = new Impairment({ delayMs: 10 }, 1, host);
    for (let t = 0; t < 100; t++) {
      host.now = t;
      imp.poll(t);
      imp.offer(host.make(t), t);
    }
    host.now = 200;
    imp.poll(200);
    // Frames offered at t were released by the poll at t+10, except the last 10 (at 200).
    expect(host.seqs()).toEqual(Array.from({ length: 100 }, (_, i) => i));
    for (let i = 0; i < 90; i++) expect(host.outAt[i]).toBe(i + 10);
    expect(imp.counters.delayed).toBe(100);
  });

  test("rate cap: queue up to the limit, drop beyond, drain at the rate", () => {
    const host = new ArrayHost();
    // 80 Mbit/s = 10000 bytes/ms; 1000-byte frames -> one frame per 0.1 ms.
    const imp = new Impairment({ rateMbit: 80, rateQueueBytes: 20000, rateBurstBytes: 5000 }, 1, host);
    for (let i = 0; i < 100; i++) imp.offer(host.make(i, 1000), 0);
    // 5 pass on the bucket's depth, 20 wait (20000 bytes), the rest is dropped.
    expect(host.out.length).toBe(5);
    expect(imp.counters.rateQueued).toBe(20);
    expect(imp.counters.dropRate).toBe(75);
    for (let t = 0.05; t < 3; t += 0.1) {
      host.now = t;
      imp.poll(t);
    }
    expect(host.seqs()).toEqual(Array.from({ length: 25 }, (_, i) => i));
    // Frame k (k >= 5) is covered at (k - 4) * 0.1 ms; polls come every 0.1 ms.
    for (let k = 5; k < 25; k++) expect(Math.abs(host.outAt[k]! - (k - 4) * 0.1)).toBeLessThan(0.1);
  });

  test("rate cap: long-run throughput matches the rate", () => {
    const host = new ArrayHost();
    const imp = new Impairment({ rateMbit: 500 }, 1, host); // 62500 bytes/ms
    // Offer 9000-byte frames at twice the rate for one second, polling every ms.
    let seq = 0;
    for (let t = 0; t < 1000; t++) {
      host.now = t;
      imp.poll(t);
      for (let k = 0; k < 14; k++) imp.offer(host.make(seq++, 9000), t);
    }
    const sentBytes = host.out.filter((_, i) => host.outAt[i]! < 1000).length * 9000;
    expect(Math.abs(sentBytes / 62.5e6 - 1)).toBeLessThan(0.02);
    expect(imp.counters.dropRate).toBeGreaterThan(6000);
  });

  test("discard frees what is held", () => {
    const host = new ArrayHost();
    const imp = new Impairment({ delayMs: 50, reorder: { p: 0.5, min: 100, max: 100, unit: "frames" } }, 1, host);
    for (let i = 0; i < 50; i++) imp.offer(host.make(i), 0);
    expect(imp.holding).toBe(50);
    imp.discard();
    expect(imp.holding).toBe(0);
    expect(host.freed).toBe(50);
  });
});

describe("bridge command line", () => {
  test("options round-trip through bridgeArgs and parseBridgeArgs", () => {
    const opts: BridgeOptions = {
      seed: 77,
      both: { loss: 0.01, delayMs: 5 },
      ab: {
        dup: 0.05,
        burst: { p: 0.001, len: 50 },
        reorder: { p: 0.2, min: 3, max: 50, unit: "frames", timeoutMs: 80 },
        corrupt: 0.01,
        rateMbit: 500,
        rateQueueBytes: 256 * 1024,
        rateBurstBytes: 32 * 1024,
        blackouts: [[100, 200]],
      },
      ba: { loss: 0.02, reorder: { p: 0.1, min: 2, max: 9, unit: "ms" } },
      blackouts: [[2000, Infinity]],
    };
    const p = parseBridgeArgs(["--a", "x0", "--b", "y0", ...bridgeArgs(opts)]);
    expect(p.seed).toBe(77);
    expect(p.ab).toEqual({
      loss: 0.01,
      delayMs: 5,
      dup: 0.05,
      burst: { p: 0.001, len: 50 },
      reorder: { p: 0.2, min: 3, max: 50, unit: "frames", timeoutMs: 80 },
      corrupt: 0.01,
      rateMbit: 500,
      rateQueueBytes: 256 * 1024,
      rateBurstBytes: 32 * 1024,
      blackouts: [[100, 200], [2000, Infinity]],
    });
    expect(p.ba).toEqual({
      loss: 0.02,
      delayMs: 5,
      reorder: { p: 0.1, min: 2, max: 9, unit: "ms" },
      blackouts: [[2000, Infinity]],
    });
  });

  test("the brief's spellings parse; bad values are refused", () => {
    const p = parseBridgeArgs(
      "--a x --b y --seed 1 --ab-loss 0.01 --ba-loss 0.01 --ab-burst 0.001:50 --ab-dup 0.05 --ab-reorder 0.2:3:50 --ab-corrupt 0.01 --ab-delay 10 --ab-rate 500 --blackout 2000:5000 --ba-blackout 0:inf".split(" "),
    );
    expect(p.ab.reorder).toEqual({ p: 0.2, min: 3, max: 50, unit: "frames" });
    expect(p.ab.blackouts).toEqual([[2000, 5000]]);
    expect(p.ba.blackouts).toEqual([[2000, 5000], [0, Infinity]]);
    for (const bad of [["--ab-loss", "2"], ["--ab-reorder", "0.1:5"], ["--ab-jitter", "1"], ["--ab-blackout", "5:1"], ["--ab-reorder", "0.1:3ms:5"]]) {
      expect(() => parseBridgeArgs(["--a", "x", "--b", "y", ...bad])).toThrow();
    }
    expect(() => parseBridgeArgs(["--a", "x"])).toThrow();
  });
});

// ---------------------------------------------------------------- real kernel

describe("impairment bridge and nft rules (network namespaces)", () => {
  let topo: Topology;
  let plain: Topology;

  beforeAll(async () => {
    // Assigned one by one so afterAll can clean up whichever got built.
    await Promise.all([
      createTopology([{ mtu: 9000, middle: true }]).then((t) => (topo = t)),
      createTopology([{}]).then((t) => (plain = t)),
    ]);
  });
  afterAll(async () => {
    await Promise.all([topo?.cleanup(), plain?.cleanup()]);
  });

  const through = (extra: Partial<ProbeRun>): ProbeRun => ({
    fromNs: topo.nsA,
    fromDev: topo.devsA[0]!,
    toNs: topo.nsB,
    toDev: topo.devsB[0]!,
    count: 20000,
    size: 1000,
    rateMbit: 160,
    ...extra,
  });

  /** Runs the probe through a bridge started right before the sender. */
  async function bridged(opts: BridgeOptions, run: Partial<ProbeRun>) {
    let bridge: { stop(): Promise<BridgeStats> } | null = null;
    try {
      const res = await runProbe(topo, through({ ...run, beforeSend: async () => void (bridge = await startBridge(topo, 0, opts)) }));
      const stats = await bridge!.stop();
      return { ...res, stats };
    } finally {
      await (bridge as { stop(): Promise<BridgeStats> } | null)?.stop().catch(() => {});
    }
  }

  test("clean pass-through: every frame intact and in order, nothing comes back", async () => {
    const { recv, stats } = await bridged({ seed: 1 }, {});
    expect(stats.a.kernelDrops).toBe(0);
    expect(recv).toMatchObject({ received: 20000, distinct: 20000, dups: 0, corrupt: 0, late: 0, missing: 0 });
    expect(stats.ab.frames).toBe(20000);
    expect(stats.ab.sent).toBe(20000);
    // The bridge's own sends on midB must not be read back and sent towards A.
    expect(stats.ba.frames).toBe(0);
    expect(stats.b.rxFrames).toBe(0);
  });

  test("keeps up with 1.5 Gbit/s of 9000-byte frames", async () => {
    const { recv, stats, send } = await bridged({ seed: 1 }, { count: 20000, size: 9000, rateMbit: 1500, verify: false });
    const gbit = (recv.bytes * 8) / (recv.spanMs * 1e6);
    console.log(
      `bridge: ${recv.received}/${send.sent} frames, ${gbit.toFixed(2)} Gbit/s, ` +
        `bridge CPU ${((100 * stats.cpuMs) / stats.elapsedMs).toFixed(0)}% of ${(stats.elapsedMs / 1000).toFixed(1)} s, ` +
        `socket drops ${stats.a.kernelDrops}`,
    );
    // A little slack for the JIT warming up on a loaded 2-core machine.
    expect(recv.missing).toBeLessThan(200);
    expect(gbit).toBeGreaterThan(1.3);
  });

  test("5% loss, 5% dup, 10% reorder, 1% corrupt: observed matches asked and the bridge's counters", async () => {
    const ab: DirectionConfig = {
      loss: 0.05,
      dup: 0.05,
      reorder: { p: 0.1, min: 3, max: 8, unit: "frames" },
      corrupt: 0.01,
    };
    const { recv, stats } = await bridged({ seed: 42, ab }, {});
    const c = stats.ab;
    expect(stats.a.kernelDrops).toBe(0);
    expect(recv.kernelDrops).toBe(0);
    expect(c.frames).toBe(20000);
    // Asked vs done (20000 frames: 1 % of slack is > 4 sigma for 5 %).
    expect(Math.abs(c.dropLoss / 20000 - 0.05)).toBeLessThan(0.01);
    expect(Math.abs(c.duplicated / (20000 - c.dropLoss) - 0.05)).toBeLessThan(0.01);
    expect(Math.abs(c.reordered / c.sent - 0.1)).toBeLessThan(0.015);
    expect(Math.abs(c.corrupted / (20000 - c.dropLoss) - 0.01)).toBeLessThan(0.004);
    // Done vs observed: every sent frame arrived; each damaged frame is seen as corrupt.
    expect(recv.received).toBe(c.sent);
    expect(recv.corrupt).toBe(c.corrupted);
    // A corrupted original's clean copy counts as distinct, not as a dup.
    expect(recv.dups).toBeLessThanOrEqual(c.duplicated);
    expect(recv.dups).toBeGreaterThanOrEqual(c.duplicated - c.corrupted);
    expect(recv.missing).toBeGreaterThanOrEqual(c.dropLoss);
    expect(recv.missing).toBeLessThanOrEqual(c.dropLoss + c.corrupted);
    // Held frames show up late unless their duplicate or corruption hid it.
    expect(recv.late).toBeLessThanOrEqual(c.reordered);
    expect(recv.late).toBeGreaterThan(c.reordered * 0.8);
    const meanBack = recv.lateDistance / recv.late;
    expect(meanBack).toBeGreaterThan(3);
    expect(meanBack).toBeLessThan(12);
  });

  test("blackout window: one contiguous gap of the window's length", async () => {
    // 10 frames per ms for 2 s; the bridge drops everything 700..1000 ms after it is ready.
    const { recv, stats } = await bridged({ seed: 3, blackouts: [[700, 1000]] }, { count: 20000, size: 1000, rateMbit: 80 });
    expect(stats.ab.dropBlackout).toBe(recv.missing);
    expect(recv.longestGap.len).toBe(recv.missing);
    expect(recv.longestGap.from).toBeGreaterThan(0);
    expect(recv.longestGap.from + recv.longestGap.len).toBeLessThan(20000);
    expect(Math.abs(recv.missing - 3000)).toBeLessThan(300);
  });

  test("rate cap: arrival rate follows the cap, the excess is dropped", async () => {
    const { recv, stats } = await bridged(
      { seed: 4, ab: { rateMbit: 200 } },
      { count: 4000, size: 9000, rateMbit: 1000, verify: false },
    );
    const mbit = (recv.bytes * 8) / (recv.spanMs * 1e3);
    expect(Math.abs(mbit / 200 - 1)).toBeLessThan(0.15);
    expect(stats.ab.dropRate).toBeGreaterThan(2000);
    expect(recv.received).toBe(stats.ab.sent);
  });

  const plainRun = (count: number): ProbeRun => ({
    fromNs: plain.nsA,
    fromDev: plain.devsA[0]!,
    toNs: plain.nsB,
    toDev: plain.devsB[0]!,
    count,
    size: 500,
    rateMbit: 80,
  });

  test("nft rules: egress dup and ingress drop act as asked", async () => {
    const dup = await addDupRule(plain.nsA, plain.devsA[0]!, 10, plain.devsA[0]!);
    const drop = await addDropRule(plain.nsB, plain.devsB[0]!, 10, "ingress");
    try {
      const { recv } = await runProbe(plain, plainRun(20000));
      const [nDup, nDrop] = await Promise.all([dup.packets(), drop.packets()]);
      expect(Math.abs(nDup / 20000 - 0.1)).toBeLessThan(0.015);
      expect(Math.abs(nDrop / (20000 + nDup) - 0.1)).toBeLessThan(0.015);
      // Each copy is made once; what reached B was either dropped there or received.
      expect(recv.received + nDrop).toBe(20000 + nDup);
      expect(recv.corrupt).toBe(0);
      expect(recv.missing).toBe(20000 - recv.distinct);
      expect(Math.abs(recv.missing / 20000 - 0.1)).toBeLessThan(0.015);
    } finally {
      await Promise.all([dup.remove(), drop.remove()]);
    }
  });

  test("nft rules: an egress drop under a packet socket becomes a retried send, not a loss", async () => {
    const drop = await addDropRule(plain.nsA, plain.devsA[0]!, 20, "egress");
    try {
      const { recv } = await runProbe(plain, plainRun(5000));
      const n = await drop.packets();
      // ~20 % of the attempts hit the rule (retries included), yet every frame arrived once.
      expect(Math.abs(n / (5000 + n) - 0.2)).toBeLessThan(0.03);
      expect(recv).toMatchObject({ received: 5000, distinct: 5000, dups: 0, missing: 0 });
    } finally {
      await drop.remove();
    }
  });
});
