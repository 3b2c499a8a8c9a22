// A shared LAN segment end to end: a Linux bridge in the middle namespace joins the links, with
// (1) a hostile station on it blasting random, truncated, oversized, replayed and altered 0x88b5
// frames during a transfer, and (2) two sender/receiver pairs at once.

import { afterAll, describe, expect, test } from "bun:test";
import { addressOf } from "../ffi/libc";
import { addDropRule } from "./support/nft";
import { lookupDevice } from "../src/shell/device";
import { PacketSocket } from "../src/shell/packet-socket";
import { Rng } from "./support/impair";
import { FrameType, HELLO_LEN, MAX_MTU, MIN_MTU, OFF_CRC, OFF_HELLO_MTU, OFF_LEN, OFF_MAGIC, OFF_PN, OFF_TYPE, OFF_VERSION } from "../src/wire";
import { cleanupAll, createTopology, inNamespace, type Topology } from "./support/netns";
import { describe as verdict, scratchDir, transfer, type TransferResult } from "./support/transfer";
import { outputOf, randomFile, running, sizeOf, until, vcount } from "./support/e2e";

const scratch = scratchDir();
afterAll(async () => {
  await cleanupAll();
  scratch.remove();
});

const MB = 1 << 20;

async function ip(ns: string, cmds: string[]): Promise<void> {
  const p = Bun.spawn(["ip", "-n", ns, "-batch", "-"], { stdin: new TextEncoder().encode(cmds.join("\n") + "\n"), stdout: "ignore", stderr: "pipe" });
  const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
  if (code !== 0) throw new Error(`ip -n ${ns} -batch failed: ${err.trim()}`);
}

/** Joins the middle ends of the given links into one Linux bridge in nsM, so their A and B ends
 * share a segment. With learning off it floods every frame to every port, like a hub, so a
 * station on it sees the whole session. Everything lives in nsM and goes with the topology. */
async function bridgeSegment(t: Topology, links: number[], opts: { hub: boolean; hostile?: { mtu: number } }): Promise<{ hostileDev?: string }> {
  const br = `${t.id}br`;
  const ports = links.flatMap((i) => [t.midA[i]!, t.midB[i]!]);
  const cmds = [`link add ${br} type bridge`];
  let hostileDev: string | undefined;
  if (opts.hostile) {
    hostileDev = `${t.id}h`;
    const peer = `${t.id}g`;
    cmds.push(`link add ${hostileDev} mtu ${opts.hostile.mtu} type veth peer name ${peer} mtu ${opts.hostile.mtu}`);
    ports.push(peer);
    cmds.push(`link set dev ${hostileDev} up`);
  }
  for (const p of ports) {
    cmds.push(`link set dev ${p} master ${br}`);
    if (opts.hub) cmds.push(`link set dev ${p} type bridge_slave learning off`);
    cmds.push(`link set dev ${p} up`);
  }
  cmds.push(`link set dev ${br} up`);
  await ip(t.nsM!, cmds);
  if (hostileDev) {
    const dev = hostileDev;
    await until(() => inNamespace(t.nsM!, () => lookupDevice(dev, { allowDown: true }).up), 5000, `${dev} up`);
  }
  return { hostileDev };
}

// ---- the hostile station


type Kind =
  | "random" // random bytes after a 0x88b5 header
  | "shaped" // l2pipe magic and version, random fields, wrong CRC
  | "foreignCrc" // l2pipe frame with a valid CRC but a session of its own
  | "replayPn" // captured frame of this session, packet number altered, CRC left
  | "replayOffset" // captured DATA frame, stream offset altered, CRC left
  | "truncated" // captured frame cut short of its length field
  | "oversized" // random, longer than the segment MTU (arrives cut to the socket's frame size)
  | "spoofedCrc" // captured frame, packet number altered and CRC fixed, from another MAC
  | "replay" // captured frame as it was (a duplicate, not counted as bad)
  | "forgedPn"; // captured DATA frame, packet number altered, CRC fixed, MAC and session kept

/** Kinds a receiver must count as bad or foreign. */
const COUNTED: Kind[] = ["random", "shaped", "foreignCrc", "replayPn", "replayOffset", "truncated", "oversized", "spoofedCrc"];

class Hostile {
  private readonly sock: PacketSocket;
  private readonly buf = new Uint8Array(64 * 10240);
  private readonly bufPtr = addressOf(this.buf);
  private readonly view = new DataView(this.buf.buffer);
  private readonly rng: Rng;
  readonly captured: Uint8Array[] = [];
  capturedTotal = 0;
  /** foreignCrc frames that are HELLOs a receiver must refuse as malformed (see build). */
  malformedHellos = 0;
  readonly sent: Record<Kind, number> = {
    random: 0, shaped: 0, foreignCrc: 0, replayPn: 0, replayOffset: 0, truncated: 0, oversized: 0, spoofedCrc: 0, replay: 0, forgedPn: 0,
  };

  constructor(ns: string, dev: string, private readonly segmentMtu: number, seed: number) {
    this.sock = inNamespace(ns, () => PacketSocket.open(lookupDevice(dev), { batch: 64, maxFrame: 9018, rxRing: 4 << 20, sndBuf: 4 << 20 }));
    this.rng = new Rng(seed);
  }

  /** Keeps a sample of the session's frames (the segment floods them here). */
  capture(): void {
    for (;;) {
      const n = this.sock.recv();
      for (let i = 0; i < n; i++) {
        this.capturedTotal++;
        const f = this.sock.rx.slice(this.sock.rxOffset(i), this.sock.rxOffset(i) + this.sock.rxLength(i));
        if (this.captured.length < 4096) this.captured.push(f);
        else this.captured[this.rng.int(0, 4095)] = f;
      }
      if (n < this.sock.batch) {
        this.sock.rxRelease();
        return;
      }
    }
  }

  private data: Uint8Array[] = [];
  private capturedData(): Uint8Array[] {
    if (this.data.length < 64) this.data = this.captured.filter((f) => f.length > 44 && f[OFF_TYPE] === 3);
    return this.data;
  }

  private randomMac(o: number): void {
    for (let i = 0; i < 6; i++) this.buf[o + i] = this.rng.int(0, 255);
    this.buf[o] &= 0xfe; // unicast
  }

  private fixCrc(o: number): void {
    const len = this.view.getUint16(o + OFF_LEN) + 14;
    this.view.setUint32(o + OFF_CRC, Bun.hash.crc32(this.buf.subarray(o + OFF_LEN, o + len)) >>> 0);
  }

  private pick<T>(a: readonly T[]): T {
    return a[this.rng.int(0, a.length - 1)]!;
  }

  /** Writes one frame of `kind` at o; returns its length. */
  private build(kind: Kind, o: number): number {
    const b = this.buf, v = this.view, r = this.rng;
    const header = () => {
      if (r.next() < 0.5) b.fill(0xff, o, o + 6);
      else this.randomMac(o);
      this.randomMac(o + 6);
      v.setUint16(o + 12, 0x88b5);
    };
    const fill = (from: number, to: number) => {
      for (let i = from; i < to; i++) b[o + i] = r.int(0, 255);
    };
    switch (kind) {
      case "random": {
        const len = r.int(15, this.segmentMtu + 14);
        header();
        fill(14, len);
        return len;
      }
      case "oversized": {
        // Up to 4 bytes over: the bridge forwards what fits MTU + Ethernet + VLAN tag.
        const len = this.segmentMtu + 14 + r.int(1, 4);
        header();
        fill(14, len);
        return len;
      }
      case "shaped":
      case "foreignCrc": {
        const len = r.int(36, Math.min(this.segmentMtu + 14, 1600));
        header();
        fill(14, len);
        v.setUint16(o + OFF_LEN, r.int(22, len - 14));
        v.setUint16(o + OFF_MAGIC, 0x4c32);
        b[o + OFF_VERSION] = 1;
        // Type 9 (REJECT) of another session is ignored without being counted: leave it out
        // where the count is checked.
        b[o + OFF_TYPE] = kind === "shaped" ? r.int(0, 12) : this.pick([1, 2, 3, 4, 5, 6, 7, 8]);
        if (kind === "foreignCrc") {
          this.fixCrc(o);
          // A HELLO is parsed before its session is looked at (a HELLO starts one): one too short
          // for its fields or with an MTU no link has is malformed, bad rather than foreign.
          const meaningful = v.getUint16(o + OFF_LEN) + 14;
          const mtu = meaningful >= OFF_HELLO_MTU + 2 ? v.getUint16(o + OFF_HELLO_MTU) : 0;
          if (b[o + OFF_TYPE] === FrameType.Hello && (meaningful < HELLO_LEN || mtu < MIN_MTU || mtu > MAX_MTU)) this.malformedHellos++;
        }
        return len;
      }
      default: {
        // Only DATA has an offset: elsewhere those bytes may be padding, and the frame still valid.
        const src = kind === "replayOffset" || kind === "forgedPn" ? this.pick(this.capturedData()) : this.pick(this.captured);
        const len = src.length;
        b.set(src, o);
        const meaningful = len >= 20 ? v.getUint16(o + OFF_LEN) + 14 : len;
        if (kind === "replayPn") v.setUint32(o + OFF_PN, v.getUint32(o + OFF_PN) + r.int(1, 1000));
        else if (kind === "replayOffset") {
          // Only DATA carries an offset; on other frames the same bytes are type fields.
          v.setUint32(o + 40, v.getUint32(o + 40) ^ (r.int(1, 255) << r.int(0, 24)));
        } else if (kind === "spoofedCrc") {
          v.setUint32(o + OFF_PN, v.getUint32(o + OFF_PN) + r.int(1, 1000));
          this.randomMac(o + 6);
          this.fixCrc(o);
        } else if (kind === "forgedPn") {
          // Numbers of frames about to be sent, and far ahead of anything sent.
          v.setUint32(o + OFF_PN, v.getUint32(o + OFF_PN) + r.int(-50, 2000));
          this.fixCrc(o);
        } else if (kind === "truncated") return r.int(15, Math.max(15, Math.min(len, meaningful) - 1));
        return len;
      }
    }
  }

  /** Sends n frames of kinds drawn from `kinds` (replays need captured frames). */
  blast(n: number, kinds: readonly Kind[]): void {
    const usable = this.capturedData().length > 0 ? kinds : kinds.filter((k) => !["replayPn", "replayOffset", "truncated", "spoofedCrc", "replay"].includes(k));
    if (usable.length === 0) return;
    const s = this.sock;
    for (let i = 0; i < n && s.txSlot() >= 0; i++) {
      const kind = this.pick(usable);
      const o = s.txSlot() * 10240;
      const len = this.build(kind, o);
      s.txCommit(0, this.bufPtr + o, len);
      this.sent[kind]++;
    }
    // Frames point into buf: all must be gone before it is written again.
    for (let tries = 0; s.txPending() > 0 && tries < 1000; tries++) if (s.flush() === 0) Bun.sleepSync(0.1);
    if (s.txPending() > 0) throw new Error("hostile station: cannot send");
  }

  close(): void {
    this.sock.close();
  }
}

// ---- tests

describe("a hostile station on the segment", () => {
  test("random, truncated, oversized, replayed and altered frames during a transfer: exact, and counted", async () => {
    // Shaped, so the blast lasts a couple of seconds.
    const topo = await createTopology([{ mtu: 1500, middle: true, rateMbit: 300 }]);
    try {
      const { hostileDev } = await bridgeSegment(topo, [0], { hub: true, hostile: { mtu: 9000 } });
      const input = await randomFile(scratch.dir, "hostile", 64 * MB);
      const h = new Hostile(topo.nsM!, hostileDev!, 1500, 4242);
      let blasting = 0;
      let r: TransferResult;
      try {
        r = await transfer(topo, {
          input,
          senderArgs: ["-0", "-v"],
          receiverArgs: ["-v"],
          timeoutMs: 60_000,
          during: async ({ sender, receiver }) => {
            // Only once the session is pinned: a hostile HELLO first would be a rival sender,
            // which is the next test's business.
            await until(() => sizeOf(outputOf(input)) > 0 || !running(receiver), 20_000, "first output");
            const t0 = performance.now();
            // Stop well before the end, so both sides read everything before their summaries.
            while (running(sender) && running(receiver) && sizeOf(outputOf(input)) < 48 * MB) {
              h.capture();
              h.blast(32, COUNTED.concat("replay"));
              await Bun.sleep(1);
            }
            blasting = performance.now() - t0;
          },
        });
      } finally {
        h.close();
      }
      const sentCounted = COUNTED.reduce((a, k) => a + h.sent[k], 0);
      expect(blasting).toBeGreaterThan(0);
      const rBad = vcount(r.receiver.stderr, topo.devsB[0]!, "bad");
      const rForeign = vcount(r.receiver.stderr, topo.devsB[0]!, "foreign");
      const sBad = vcount(r.sender.stderr, topo.devsA[0]!, "bad");
      const sForeign = vcount(r.sender.stderr, topo.devsA[0]!, "foreign");
      console.log(
        `hostile: ${JSON.stringify(h.sent)} in ${blasting.toFixed(0)} ms (${h.capturedTotal} frames of the session seen); ` +
          `receiver ${rBad} bad ${rForeign} foreign, sender ${sBad} bad ${sForeign} foreign; transfer ${(r.ms / 1000).toFixed(2)} s`,
      );
      expect(verdict(r)).toContain("sha equal");
      expect(r.sender.code).toBe(0);
      expect(r.receiver.code).toBe(0);
      for (const k of COUNTED) expect(h.sent[k]).toBeGreaterThan(50);
      // Every hostile frame reaches both ends (flooded) and each is accounted for: the damaged
      // ones exactly as bad; the well-formed ones of the wrong session or MAC as foreign, with
      // the verbatim replays of the other end's frames.
      const expectBad = sentCounted - h.sent.foreignCrc - h.sent.spoofedCrc;
      // Both ends drain their sockets faster than the flood fills them: no frame is lost uncounted.
      expect(vcount(r.receiver.stderr, topo.devsB[0]!, "dropped by kernel")).toBe(0);
      expect(vcount(r.sender.stderr, topo.devsA[0]!, "dropped by kernel")).toBe(0);
      expect(rBad).toBe(expectBad + h.malformedHellos);
      expect(sBad).toBe(expectBad);
      expect(rForeign).toBeGreaterThanOrEqual(h.sent.foreignCrc + h.sent.spoofedCrc - h.malformedHellos);
      expect(sForeign).toBeGreaterThanOrEqual(h.sent.foreignCrc + h.sent.spoofedCrc);
    } finally {
      await topo.cleanup();
    }
  }, 90_000);

  test("checksum-correct forgeries under this session's MAC and id, with altered packet numbers, and 1% loss: exact", async () => {
    // No CRC-32 tells these from the sender's own frames: the receiver takes their packet
    // numbers in and acknowledges them. That must cost time, not hang the run: a forged number
    // may mark a lost frame as delivered, or lie beyond anything the sender sent.
    const topo = await createTopology([{ mtu: 1500, middle: true, rateMbit: 400 }]);
    try {
      const { hostileDev } = await bridgeSegment(topo, [0], { hub: true, hostile: { mtu: 1500 } });
      await addDropRule(topo.nsB, topo.devsB[0]!, 1, "ingress");
      const input = await randomFile(scratch.dir, "forged", 64 * MB);
      const h = new Hostile(topo.nsM!, hostileDev!, 1500, 77);
      let r: TransferResult;
      try {
        r = await transfer(topo, {
          input,
          senderArgs: ["-0", "-v"],
          receiverArgs: ["-v"],
          timeoutMs: 40_000,
          during: async ({ sender, receiver }) => {
            await until(() => sizeOf(outputOf(input)) > 0 || !running(receiver), 20_000, "first output");
            // ~200 forgeries a second for most of the run.
            for (let n = 0; running(sender) && running(receiver) && sizeOf(outputOf(input)) < 48 * MB; n++) {
              h.capture();
              if (n % 10 === 0) h.blast(2, ["forgedPn"]);
              await Bun.sleep(1);
            }
          },
        });
      } finally {
        h.close();
      }
      console.log(`forged packet numbers: ${h.sent.forgedPn} forgeries; transfer ${(r.ms / 1000).toFixed(2)} s; exits ${r.sender.code}/${r.receiver.code}`);
      expect(h.sent.forgedPn).toBeGreaterThan(100);
      expect(verdict(r)).toContain("sha equal");
      expect(r.sender.code).toBe(0);
      expect(r.receiver.code).toBe(0);
    } finally {
      await topo.cleanup();
    }
  }, 60_000);
});

describe("two sender/receiver pairs on one segment", () => {
  test("pair 2 starts while pair 1 is transferring: both exact", async () => {
    const topo = await createTopology([{ mtu: 1500, middle: true, rateMbit: 300 }, { mtu: 1500, middle: true, rateMbit: 300 }]);
    try {
      await bridgeSegment(topo, [0, 1], { hub: false });
      const [in1, in2] = await Promise.all([randomFile(scratch.dir, "pair1", 48 * MB), randomFile(scratch.dir, "pair2", 48 * MB)]);
      let second: Promise<TransferResult> | null = null;
      let overlapped = false;
      const first = transfer(topo, {
        input: in1,
        senderArgs: ["-0", "-v"],
        receiverArgs: ["-v"],
        senderDevs: [topo.devsA[0]!],
        receiverDevs: [topo.devsB[0]!],
        timeoutMs: 60_000,
        during: async ({ receiver }) => {
          await until(() => sizeOf(outputOf(in1)) > 4 * MB || !running(receiver), 20_000, "pair 1 output");
          overlapped = running(receiver) && sizeOf(outputOf(in1)) < 40 * MB;
          second = transfer(topo, {
            input: in2,
            senderArgs: ["-0", "-v"],
            receiverArgs: ["-v"],
            senderDevs: [topo.devsA[1]!],
            receiverDevs: [topo.devsB[1]!],
            timeoutMs: 60_000,
          });
        },
      });
      const r1 = await first;
      expect(second).not.toBeNull();
      expect(overlapped).toBe(true);
      const r2 = await second!;
      console.log(`two pairs: pair 1 ${(r1.ms / 1000).toFixed(2)} s, pair 2 ${(r2.ms / 1000).toFixed(2)} s`);
      for (const r of [r1, r2]) {
        expect(verdict(r)).toContain("sha equal");
        expect(r.sender.code).toBe(0);
        expect(r.receiver.code).toBe(0);
      }
      // They did share the segment: receiver 1 heard pair 2's HELLO broadcasts and refused them.
      expect(vcount(r1.receiver.stderr, topo.devsB[0]!, "foreign")).toBeGreaterThan(0);
    } finally {
      await topo.cleanup();
    }
  }, 90_000);

  // The REJECT that sends a second receiver back to listening must get out even while DATA
  // fills every send slot; and a receiver greeted but never sent to listens again after -t.
  test("both pairs start at once: each receiver gets one whole stream, each a different one", async () => {
    // Both receivers hear both senders' HELLO broadcasts and may answer either: a sender keeps
    // the first answer and sends REJECT to the other, which goes back to listening. Which
    // receiver ends up with which stream is a race; that each gets exactly one is not.
    const topo = await createTopology([{ mtu: 1500, middle: true, rateMbit: 300 }, { mtu: 1500, middle: true, rateMbit: 300 }]);
    try {
      await bridgeSegment(topo, [0, 1], { hub: false });
      const [in1, in2] = await Promise.all([randomFile(scratch.dir, "both1", 16 * MB), randomFile(scratch.dir, "both2", 16 * MB)]);
      const pair = (input: string, l: number) =>
        transfer(topo, { input, senderArgs: ["-0"], senderDevs: [topo.devsA[l]!], receiverDevs: [topo.devsB[l]!], timeoutMs: 60_000 });
      const [r1, r2] = await Promise.all([pair(in1, 0), pair(in2, 1)]);
      const crossed = r1.outSha === r2.inSha;
      console.log(`both at once: ${crossed ? "crossed (receiver 1 got stream 2)" : "straight"}`);
      for (const r of [r1, r2]) {
        expect(r.sender.code).toBe(0);
        expect(r.receiver.code).toBe(0);
        expect(r.sender.stderr).toBe("");
        expect(r.receiver.stderr).toBe("");
      }
      expect(r1.inSha).not.toBe(r2.inSha);
      expect([r1.outSha, r2.outSha].sort()).toEqual([r1.inSha, r2.inSha].sort());
    } finally {
      await topo.cleanup();
    }
  }, 90_000);

  // Two receivers on one host share its MAC: the sender's REJECT and everything after the
  // handshake name the receiver's instance, or a REJECT meant for one resets both and DATA
  // for one is taken by both.
  for (const stagger of [0, 300]) {
    test(`two pairs on the same two devices (one MAC per side), ${stagger ? "staggered" : "at once"}: each receiver gets one whole stream`, async () => {
      const topo = await createTopology([{ mtu: 1500 }]);
      try {
        const [in1, in2] = await Promise.all([randomFile(scratch.dir, `mac1-${stagger}`, 16 * MB), randomFile(scratch.dir, `mac2-${stagger}`, 16 * MB)]);
        const pair = (input: string) => transfer(topo, { input, senderArgs: ["-0"], timeoutMs: 60_000 });
        const first = pair(in1);
        await Bun.sleep(stagger);
        const [r1, r2] = await Promise.all([first, pair(in2)]);
        console.log(`one MAC per side, stagger ${stagger} ms: ${r1.outSha === r2.inSha ? "crossed" : "straight"}; ${verdict(r1)}; ${verdict(r2)}`);
        for (const r of [r1, r2]) {
          expect(r.sender.code).toBe(0);
          expect(r.receiver.code).toBe(0);
        }
        expect([r1.outSha, r2.outSha].sort()).toEqual([r1.inSha, r2.inSha].sort());
      } finally {
        await topo.cleanup();
      }
    }, 90_000);
  }
});
