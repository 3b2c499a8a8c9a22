// Seeded fuzzing of what a hostile or broken network can feed l2pipe: the frame check
// (verifyFrame) on random and mutated frames, the typed frame parsers on frames cut short and on
// random bytes (refused unless long enough, never reading past the length), and the protocol cores through their public
// methods on random, mutated and replayed input. None may throw; the frame check may pass only
// intact frames; a ReceiverCore may have bytes stored only inside its window and acknowledge only
// what it holds; a SenderCore may never believe more acknowledged than it sent.

import { describe, expect, test } from "bun:test";
import { crc32 as zlibCrc32 } from "node:zlib";
import { Accept, ReceiverCore, RxPhase } from "../src/core/receiver";
import { RangeSet } from "../src/core/range-set";
import { LinkState, Phase, SenderCore } from "../src/core/sender";
import { defaultTiming, expandPn } from "../src/core/timing";
import {
  COMMON_END, DATA_HEADER, DONE_LEN, ETH_HEADER, ETHERTYPE, FrameCrc, FrameType, HELLO_LEN, MAGIC, MAX_ACK_RANGES, MAX_MTU,
  MIN_FRAME, MIN_MTU, OFF_CRC, OFF_LEN, OFF_MAGIC, OFF_VERSION, TWO32, VERSION, AbortFields, AckFields, DataFields,
  DoneFields, FrameHeader, HelloFields, buildAbort, buildAck, buildDone, buildHello, buildHelloAck, parseAbort, parseAck,
  parseData, parseDone, parseHeader, parseHeaderOnly, parseHello, parseHelloAck, readU64, sealFrame, verifyFrame,
  writeHeader, writeU64,
} from "../src/wire";
import { Rng } from "./support/impair";
import { provePaths } from "./support/prove-paths";


/** A failure message with the seed and case, so any find can be replayed. */
function where(seed: number, i: number, what: string): string {
  return `seed ${seed} case ${i}: ${what}`;
}

// ------------------------------------------------------------------------------- frames

describe("verifyFrame", () => {
  const BUF = 10000;
  const buf = new Uint8Array(BUF + 64);
  const view = new DataView(buf.buffer);
  const crc = new FrameCrc(buf);
  // The receive path caches CRC views of its slots: fuzz that variant too.
  const cached = new FrameCrc(buf, true);
  const src = new Uint8Array(6), dst = new Uint8Array(6);

  /** A valid frame at base with `body` type-specific bytes; returns its sealed length. */
  function build(r: Rng, base: number, body: number): { sent: number; meaningful: number } {
    for (let i = 0; i < 6; i++) (src[i] = r.int(0, 255)), (dst[i] = r.int(0, 255));
    const end = writeHeader(view, base, dst, src, r.int(1, 9), r.int(0, 0xffffffff) >>> 0, r.int(0, 255), r.int(0, 0xffffffff) >>> 0);
    for (let i = 0; i < body; i++) buf[end + i] = r.int(0, 255);
    const sent = sealFrame(view, crc, base, end + body);
    return { sent, meaningful: end + body - base };
  }

  test("random bytes: never throws, never passes anything but a checksummed length", () => {
    const seed = 101;
    const r = new Rng(seed);
    let passed = 0;
    for (let i = 0; i < 100_000; i++) {
      const base = r.int(0, 64);
      const received = r.int(0, 1600);
      for (let k = 0; k < received; k++) buf[base + k] = r.int(0, 255);
      // Get past the cheap checks often enough to reach length and CRC.
      if (received >= COMMON_END && r.next() < 0.7) {
        view.setUint16(base + 12, ETHERTYPE);
        view.setUint16(base + OFF_MAGIC, MAGIC);
        view.setUint8(base + OFF_VERSION, VERSION);
        if (r.next() < 0.5) view.setUint16(base + OFF_LEN, r.int(0, received));
        if (r.next() < 0.1) {
          // Occasionally a correct CRC over whatever the length says.
          const len = view.getUint16(base + OFF_LEN) + ETH_HEADER;
          if (len <= received && len >= OFF_LEN) view.setUint32(base + OFF_CRC, crc.of(base + OFF_LEN, base + len));
        }
      }
      const got = verifyFrame(view, (i & 1) === 0 ? crc : cached, base, received);
      if (got !== 0) {
        passed++;
        if (got < COMMON_END || got > received) throw new Error(where(seed, i, `length ${got} outside ${COMMON_END}..${received}`));
        if (crc.of(base + OFF_LEN, base + got) >>> 0 !== view.getUint32(base + OFF_CRC)) throw new Error(where(seed, i, "CRC does not match"));
        if (view.getUint16(base + OFF_LEN) + ETH_HEADER !== got) throw new Error(where(seed, i, "length is not the frame's"));
      }
    }
    // The constructed-CRC cases do get through: the check above ran.
    expect(passed).toBeGreaterThan(1000);
  });

  test("valid frames pass whole; any damage inside the checked part, or a cut, is refused", () => {
    const seed = 102;
    const r = new Rng(seed);
    const counts = { intact: 0, flipped: 0, multi: 0, cut: 0, macs: 0, padding: 0 };
    for (let i = 0; i < 60_000; i++) {
      const base = r.int(0, 64);
      // Mostly small and MTU-sized frames, some jumbo (the cached-view path starts at 4 KiB).
      const body = r.next() < 0.2 ? r.int(0, 40) : r.next() < 0.8 ? r.int(0, 1500 - 22) : r.int(4000, 9000 - 22);
      const { sent, meaningful } = build(r, base, body);
      const c = (i & 1) === 0 ? crc : cached;
      // What sealFrame must have made, by an independent CRC-32 (zlib's): the length field, the
      // checksum over [OFF_LEN, meaningful), zero padding up to the Ethernet minimum.
      if (sent !== Math.max(meaningful, MIN_FRAME)) throw new Error(where(seed, i, `sealed length ${sent} for ${meaningful} bytes`));
      if (view.getUint16(base + OFF_LEN) !== meaningful - ETH_HEADER) throw new Error(where(seed, i, "length field"));
      if (view.getUint32(base + OFF_CRC) !== zlibCrc32(buf.subarray(base + OFF_LEN, base + meaningful))) throw new Error(where(seed, i, "CRC field"));
      if (buf.subarray(base + meaningful, base + sent).some((b) => b !== 0)) throw new Error(where(seed, i, "padding not zero"));
      if (verifyFrame(view, c, base, sent) !== meaningful) throw new Error(where(seed, i, "intact frame refused"));
      counts.intact++;
      const mode = r.int(0, 4);
      if (mode === 0) {
        // One changed byte anywhere from the CRC field on: CRC-32 catches every one.
        const at = r.int(OFF_CRC, meaningful - 1);
        buf[base + at] ^= r.int(1, 255);
        if (verifyFrame(view, c, base, sent) !== 0) throw new Error(where(seed, i, `byte ${at} changed, frame passed`));
        counts.flipped++;
      } else if (mode === 1) {
        // A burst of up to 4 bytes (32 bits): also always caught.
        const at = r.int(OFF_CRC, meaningful - 1);
        const n = Math.min(4, meaningful - at);
        buf[base + at] ^= r.int(1, 255);
        for (let k = 1; k < n; k++) buf[base + at + k] ^= r.int(0, 255);
        if (verifyFrame(view, c, base, sent) !== 0) throw new Error(where(seed, i, `burst at ${at} passed`));
        counts.multi++;
      } else if (mode === 2) {
        const received = r.int(0, meaningful - 1);
        if (verifyFrame(view, c, base, received) !== 0) throw new Error(where(seed, i, `cut at ${received} passed`));
        counts.cut++;
      } else if (mode === 3) {
        // MAC addresses are not covered: the codec leaves them to the session checks.
        buf[base + r.int(0, 11)] ^= r.int(1, 255);
        if (verifyFrame(view, c, base, sent) !== meaningful) throw new Error(where(seed, i, "MAC change refused"));
        counts.macs++;
      } else if (sent > meaningful) {
        // Padding is not part of the frame.
        buf[base + r.int(meaningful, sent - 1)] ^= r.int(1, 255);
        if (verifyFrame(view, c, base, sent) !== meaningful) throw new Error(where(seed, i, "padding change refused"));
        counts.padding++;
      }
    }
    for (const v of Object.values(counts)) expect(v).toBeGreaterThan(100);
  });

  test("readU64 / writeU64 round-trip every offset a stream can reach", () => {
    const r = new Rng(103);
    for (let i = 0; i < 20_000; i++) {
      const x = i % 2 ? r.int(0, 0xffffffff) * TWO32 + r.int(0, 0xffffffff) : Math.floor(r.next() * 2 ** 53);
      if (x > Number.MAX_SAFE_INTEGER) continue;
      writeU64(view, 0, x);
      expect(readU64(view, 0)).toBe(x);
    }
  });
});

// ------------------------------------------------------------------------------- parsers

describe("frame parsers", () => {
  const MAC = new Uint8Array(6);
  /** One parser per frame type, each with its own result object, as the shells use them. */
  const parsers: Record<string, (v: DataView, base: number, len: number) => boolean> = {
    header: (v, b, l) => parseHeader(v, b, l, new FrameHeader()),
    hello: (v, b, l) => parseHello(v, b, l, new HelloFields()),
    helloAck: (v, b, l) => parseHelloAck(v, b, l, new HelloFields()),
    data: (v, b, l) => parseData(v, b, l, new DataFields()),
    ack: (v, b, l) => {
      const a = new AckFields();
      if (!parseAck(v, b, l, a)) return false;
      // Reading every range the count promises must stay inside the frame.
      for (let i = 0; i < a.rangeCount; i++) a.rangeAt(i, true) + a.rangeAt(i, false);
      return true;
    },
    done: (v, b, l) => parseDone(v, b, l, new DoneFields()),
    abort: (v, b, l) => parseAbort(v, b, l, new AbortFields()),
    headerOnly: (v, b, l) => parseHeaderOnly(v, b, l, new FrameHeader()),
  };

  /** A full, valid frame of each type (unsealed: the parsers come after verifyFrame) and the
   * length below which its parser must refuse it. */
  function frames(r: Rng): Array<{ name: string; bytes: Uint8Array; min: number }> {
    const make = (type: FrameType, fill: (v: DataView, base: number) => number) => {
      const buf = new Uint8Array(2048);
      const v = new DataView(buf.buffer);
      const end = fill(v, writeHeader(v, 0, MAC, MAC, type, r.int(0, 0xffffffff) >>> 0, r.int(0, 255), r.int(0, 0xffffffff) >>> 0) - COMMON_END);
      return buf.slice(0, end);
    };
    const n = r.int(0, MAX_ACK_RANGES);
    const ranges = Array.from({ length: n * 2 }, () => r.int(0, 0xffffffff) >>> 0);
    const text = "x".repeat(r.int(0, 80));
    const payload = r.int(0, 100);
    return [
      { name: "header", bytes: make(FrameType.Ping, (_v, b) => b + COMMON_END), min: COMMON_END },
      { name: "headerOnly", bytes: make(FrameType.DoneAck, (_v, b) => b + COMMON_END), min: COMMON_END },
      { name: "hello", bytes: make(FrameType.Hello, (v, b) => buildHello(v, b, 2, r.int(MIN_MTU, MAX_MTU), 3, "eth0")), min: HELLO_LEN },
      { name: "helloAck", bytes: make(FrameType.HelloAck, (v, b) => buildHelloAck(v, b, r.int(MIN_MTU, MAX_MTU), 1, 9, 1 << 26, "eth1")), min: HELLO_LEN },
      { name: "data", bytes: make(FrameType.Data, (v, b) => (writeU64(v, b + COMMON_END, r.int(0, 1 << 30)), b + DATA_HEADER + payload)), min: DATA_HEADER },
      {
        name: "ack",
        bytes: make(FrameType.Ack, (v, b) => buildAck(v, b, { cum: 1, limit: 2, delayUs: 3, rangeCount: n, rangeAt: (i, hi) => ranges[i * 2 + (hi ? 0 : 1)]! })),
        min: 60 + n * 8,
      },
      { name: "done", bytes: make(FrameType.Done, (v, b) => buildDone(v, b, r.int(0, 1 << 30), r.int(0, 0xffffffff))), min: DONE_LEN },
      { name: "abort", bytes: make(FrameType.Abort, (v, b) => buildAbort(v, b, 1, text)), min: 38 + text.length },
    ];
  }

  /** The first len bytes of a frame in a buffer of exactly that size: a read past it throws. */
  const exact = (bytes: Uint8Array, len: number) => new DataView(bytes.slice(0, len).buffer);

  test("every type cut at every length is refused below its minimum and parsed from it on", () => {
    const r = new Rng(110);
    for (let round = 0; round < 40; round++) {
      for (const f of frames(r)) {
        for (let len = 0; len <= f.bytes.length; len++) {
          const ok = parsers[f.name]!(exact(f.bytes, len), 0, len);
          if (ok !== len >= f.min) throw new Error(where(110, round, `${f.name} of ${f.bytes.length} bytes cut at ${len}: ${ok ? "parsed" : "refused"}`));
        }
      }
    }
  });

  test("builders and parsers agree", () => {
    const r = new Rng(111);
    for (let i = 0; i < 2000; i++) {
      const buf = new Uint8Array(1024);
      const v = new DataView(buf.buffer);
      const mtu = r.int(MIN_MTU, MAX_MTU), features = r.int(0, 3), instance = r.int(0, 0xffffffff) >>> 0, window = r.int(0, 0xffffffff) >>> 0;
      const h = new HelloFields();
      expect(parseHelloAck(v, 0, buildHelloAck(v, 0, mtu, features, instance, window, "dev"), h)).toBe(true);
      expect([h.mtu, h.features, h.instance, h.window]).toEqual([mtu, features, instance, window]);
      const n = r.int(0, MAX_ACK_RANGES);
      const ranges = Array.from({ length: n * 2 }, () => r.int(0, 0xffffffff) >>> 0);
      const cum = r.int(0, 2 ** 40), limit = r.int(0, 2 ** 40), delayUs = r.int(0, 0xffffffff) >>> 0;
      const a = new AckFields();
      expect(parseAck(v, 0, buildAck(v, 0, { cum, limit, delayUs, rangeCount: n, rangeAt: (k, hi) => ranges[k * 2 + (hi ? 0 : 1)]! }), a)).toBe(true);
      expect([a.cum, a.limit, a.delayUs, a.rangeCount]).toEqual([cum, limit, delayUs, n]);
      for (let k = 0; k < n; k++) expect([a.rangeAt(k, true), a.rangeAt(k, false)]).toEqual([ranges[k * 2]!, ranges[k * 2 + 1]!]);
      const text = "é".repeat(r.int(0, 120));
      const ab = new AbortFields();
      expect(parseAbort(v, 0, buildAbort(v, 0, 7, text), ab)).toBe(true);
      // Cut to MAX_ABORT_TEXT bytes: a cut through a character decodes as U+FFFD.
      expect(ab.code).toBe(7);
      expect(text.startsWith(ab.text.replace(/\uFFFD$/, ""))).toBe(true);
    }
  });

  test("values out of range are refused: MTU, ACK range count, ABORT text length", () => {
    const buf = new Uint8Array(1024);
    const v = new DataView(buf.buffer);
    const h = new HelloFields();
    for (const [mtu, ok] of [[0, false], [30, false], [MIN_MTU - 1, false], [MIN_MTU, true], [9000, true], [MAX_MTU, true], [MAX_MTU + 1, false], [65535, false]] as const) {
      expect(parseHello(v, 0, buildHello(v, 0, 1, mtu, 0, "a"), h)).toBe(ok);
      expect(parseHelloAck(v, 0, buildHelloAck(v, 0, mtu, 0, 1, 1, "a"), h)).toBe(ok);
    }
    const a = new AckFields();
    const end = buildAck(v, 0, { cum: 0, limit: 0, delayUs: 0, rangeCount: 3, rangeAt: () => 1 });
    expect(parseAck(v, 0, end, a)).toBe(true);
    // A count beyond what the frame holds is refused, not clamped.
    v.setUint16(56, 4);
    expect(parseAck(v, 0, end, a)).toBe(false);
    expect(parseAck(v, 0, end + 8, a)).toBe(true);
    v.setUint16(56, MAX_ACK_RANGES + 1);
    expect(parseAck(v, 0, 60 + (MAX_ACK_RANGES + 1) * 8, a)).toBe(false);
    const ab = new AbortFields();
    const abortEnd = buildAbort(v, 0, 1, "hello");
    expect(parseAbort(v, 0, abortEnd, ab)).toBe(true);
    expect(parseAbort(v, 0, abortEnd - 1, ab)).toBe(false);
  });

  test("random bytes of any length never make a parser read past the length", () => {
    const r = new Rng(112);
    const counts: Record<string, number> = {};
    for (let i = 0; i < 50_000; i++) {
      const len = r.int(0, 400);
      const bytes = new Uint8Array(len).map(() => r.int(0, 255));
      // Now and then a plausible count or MTU, so the paths past those checks run too.
      if (len > 58 && r.next() < 0.5) new DataView(bytes.buffer).setUint16(56, r.int(0, 40));
      if (len > 40 && r.next() < 0.3) new DataView(bytes.buffer).setUint16(38, r.int(0, 10000));
      for (const [name, parse] of Object.entries(parsers)) {
        try {
          if (parse(new DataView(bytes.buffer), 0, len)) counts[name] = (counts[name] ?? 0) + 1;
        } catch (e) {
          throw new Error(where(112, i, `${name} on ${len} random bytes: ${e}`));
        }
      }
    }
    for (const name of Object.keys(parsers)) expect(counts[name] ?? 0).toBeGreaterThan(100);
  });
});

// ------------------------------------------------------------------------------- receiver

/** Intervals of stream bytes the receiver holds, for checking it: a plain sorted list. */
class Held {
  readonly r = new RangeSet(1 << 16);
  has(start: number, end: number): boolean {
    return end <= start || this.r.contains(start, end);
  }
  add(start: number, end: number): void {
    if (!this.r.add(start, end)) throw new Error("model overflow");
  }
  contiguous(): number {
    return this.r.count > 0 && this.r.start(0) === 0 ? this.r.end(0) : 0;
  }
}

describe("ReceiverCore on random, mutated and replayed DATA", () => {
  for (const seed of [201, 202, 203]) {
    test(`seed ${seed}: stores only inside its window, acknowledges only what it holds`, () => {
      const r = new Rng(seed);
      const RING = 1 << 16;
      const timing = defaultTiming(5000);
      const core = new ReceiverCore({ deviceCount: 3, ringSize: RING, timing, now: 0 });
      const macs = [0, 1, 2].map((i) => new Uint8Array([2, 0, 0, 0, 9, i]));
      const SESSION = 0x1234567;
      let now = 0;
      for (let d = 0; d < 3; d++) expect(core.onHello(d, now, SESSION, d, 9000, macs[d]!, 0)).toBe(true);
      const held = new Held();
      // Per device, a model of the packet numbers it took note of (wire values) and of its
      // largest (expanded, as a receiver must) with the time it arrived: what ACKs report.
      const noted = [0, 1, 2].map(() => new Set<number>());
      const largest = [0, 1, 2].map(() => ({ pn: -1, at: 0 }));
      const note = (dev: number, wirePn: number) => {
        noted[dev]!.add(wirePn);
        const m = largest[dev]!;
        const pn = expandPn(wirePn, m.pn < 0 ? 0 : m.pn);
        if (pn > m.pn) (m.pn = pn), (m.at = now);
      };
      const sentFrames: Array<[number, number]> = [];
      const stats = { store: 0, dup: 0, drop: 0, replays: 0 };
      let lastCum = 0;
      for (let i = 0; i < 150_000; i++) {
        now += r.next() * 0.05;
        const d = r.int(0, 2);
        const op = r.next();
        if (op < 0.8) {
          let offset: number, len: number;
          const pick = r.next();
          if (pick < 0.15 && sentFrames.length) {
            [offset, len] = sentFrames[r.int(0, sentFrames.length - 1)]!;
            stats.replays++;
          } else if (pick < 0.85) {
            // Around the window, overlapping its edges.
            offset = Math.max(0, core.cum + r.int(-3000, RING + 3000));
            len = r.int(-8, 9000 - 30);
          } else if (pick < 0.95) {
            // Anything a u64 field can say (readU64 of random bytes).
            offset = r.int(0, 0xffffffff) * TWO32 + r.int(0, 0xffffffff);
            len = r.int(-8, 9000);
          } else {
            offset = core.limit() - r.int(-5, 5);
            len = r.int(1, 20);
          }
          const cumBefore = core.cum, limit = core.limit();
          const wirePn = r.next() < 0.5 ? r.int(0, 0xffffffff) : r.int(0, 100) + i;
          const verdict = core.onData(d, now, wirePn >>> 0, offset, len);
          if (verdict !== Accept.Drop) note(d, wirePn >>> 0);
          const end = offset + len;
          if (verdict === Accept.Store) {
            stats.store++;
            const from = core.storeFrom;
            if (!(len > 0 && end <= limit && from >= cumBefore && from >= offset && from < end)) {
              throw new Error(where(seed, i, `Store of [${offset}, ${end}) from ${from}: cum was ${cumBefore}, limit ${limit}`));
            }
            // Below cum it already held everything: the shell copies only [from, end).
            if (!held.has(offset, from)) throw new Error(where(seed, i, "bytes below storeFrom were not held"));
            held.add(from, end);
            if (sentFrames.length < 5000) sentFrames.push([offset, len]);
          } else if (verdict === Accept.Duplicate) {
            stats.dup++;
            // Acknowledged without copying: it must hold every byte already.
            if (!(len > 0 && end <= limit && held.has(offset, end))) {
              throw new Error(where(seed, i, `Duplicate of [${offset}, ${end}) it does not hold`));
            }
          } else {
            stats.drop++;
            if (core.cum !== cumBefore) throw new Error(where(seed, i, "a dropped frame moved cum"));
          }
        } else if (op < 0.85) {
          // The output stage releases part of what is contiguous.
          if (core.cum > core.consumed) core.setConsumed(core.consumed + r.int(0, core.cum - core.consumed));
        } else if (op < 0.9) {
          const pn = r.int(0, 0xffffffff) >>> 0;
          core.onPing(d, now, pn);
          note(d, pn);
        } else if (op < 0.95) {
          if (core.ackDue(d, now) || r.next() < 0.5) {
            let calls = 0;
            const ack = core.ackContent(d, now);
            const n = ack.rangeCount;
            for (let k = 0; k < n; k++) {
              const high = ack.rangeAt(k, true), low = ack.rangeAt(k, false);
              if (!(k === calls++ && k < MAX_ACK_RANGES && high >= 0 && high < TWO32 && low >= 0 && low < TWO32)) {
                throw new Error(where(seed, i, `ACK range ${k}: ${high}..${low}`));
              }
              // The highest range ends at the largest packet number; every range holds only
              // numbers the device took note of (all of them checked where the range is short).
              if (k === 0 && high !== largest[d]!.pn % TWO32) throw new Error(where(seed, i, `ACK starts at ${high}, largest ${largest[d]!.pn}`));
              const seen = noted[d]!;
              if (!seen.has(high) || !seen.has(low)) throw new Error(where(seed, i, `ACK range ${k}: ${high}..${low} not received`));
              for (let pn = low + 1; pn < high && high - low < 64; pn++) {
                if (!seen.has(pn)) throw new Error(where(seed, i, `ACK range ${k}: ${high}..${low} holds ${pn}, never received`));
              }
            }
            core.onAckSent(d, now);
            if (n !== calls || (n === 0) !== (largest[d]!.pn < 0)) throw new Error(where(seed, i, `${n} ACK ranges, ${calls} written`));
            // The delay since the largest packet arrived, in microseconds.
            const delay = largest[d]!.pn < 0 ? 0 : Math.round((now - largest[d]!.at) * 1000);
            if (core.ackDelayUs(d, now) !== delay) throw new Error(where(seed, i, `ack delay ${core.ackDelayUs(d, now)} µs, model ${delay}`));
          }
        } else if (op < 0.97) {
          // Rival senders and forged joins: never re-pin the session or a link.
          const mac = new Uint8Array(6).map(() => r.int(0, 255));
          const same = r.next() < 0.5;
          const ok = core.onHello(d, now, same ? SESSION : r.int(0, 0xffffffff) >>> 0, r.int(0, 255), r.int(0, 65535), mac, 0);
          if (ok) throw new Error(where(seed, i, "HELLO from another MAC accepted"));
          expect(core.session).toBe(SESSION);
          expect(core.authentic(d, SESSION, d, macs[d]!, 0)).toBe(true);
          expect(core.authentic(d, SESSION, d, mac, 0)).toBe(false);
        } else if (op < 0.98) {
          // A late REJECT must not undo a session that has data.
          core.onReject(d);
          if (core.cum > 0 || stats.store > 0) expect(core.session).toBe(SESSION);
        } else {
          core.tick(now);
          // The shell sleeps until nextTimeout: no ACK timer may fall due before it (a device
          // whose ACK is not due now is not due just before it either).
          const next = core.nextTimeout(now);
          const before = Math.max(now, next - 1e-6);
          for (let dev = 0; dev < 3; dev++) {
            if (!core.ackDue(dev, now) && core.ackDue(dev, before)) throw new Error(where(seed, i, `ACK on ${dev} due before ${next}`));
          }
        }
        // Invariants after every step.
        if (core.cum < lastCum) throw new Error(where(seed, i, "cum went back"));
        lastCum = core.cum;
        if (core.cum !== held.contiguous()) throw new Error(where(seed, i, `cum ${core.cum}, model ${held.contiguous()}`));
        if (core.consumed > core.cum) throw new Error(where(seed, i, "consumed beyond cum"));
        if (core.phase !== RxPhase.Transfer) throw new Error(where(seed, i, `phase ${core.phase}: ${JSON.stringify(core.failure)}`));
      }
      console.log(`receiver fuzz seed ${seed}: ${JSON.stringify(stats)}, cum ${core.cum}`);
      expect(stats.store).toBeGreaterThan(1000);
      expect(stats.dup).toBeGreaterThan(1000);
      expect(stats.drop).toBeGreaterThan(1000);
    });
  }
});

// ------------------------------------------------------------------------------- sender

describe("SenderCore on random and replayed ACKs", () => {
  for (const seed of [301, 302, 303]) {
    test(`seed ${seed}: never believes more acknowledged than it sent`, () => {
      const r = new Rng(seed);
      const RING = 1 << 20;
      const timing = defaultTiming(5000);
      const mtus = [1500, 9000];
      const weighted = r.next() >= 0.5;
      const core = new SenderCore({ linkCount: 2, mtus, weights: weighted ? [1, 2] : null, ringSize: RING, maxCwnd: RING / 2, timing, now: 0 });
      let now = 0;
      const INSTANCE = 77;
      for (const l of [0, 1]) expect(core.onHelloAck(l, now, mtus[l]!, INSTANCE, RING)).toBe(true);
      provePaths(core, now);
      core.tick(now);
      expect(core.phase).toBe(Phase.Transfer);
      let appended = 0;
      const acks: Array<{ link: number; cum: number; limit: number; ranges: number[] }> = [];
      const stats = { frames: 0, resent: 0, acks: 0, replays: 0 };
      let lastCum = 0;
      for (let i = 0; i < 100_000; i++) {
        now += r.next() * 0.2;
        const link = r.int(0, 1);
        const op = r.next();
        if (op < 0.3) {
          // The shell appends only into free ring space.
          const room = core.ringFreeUpTo() + RING - appended;
          if (room > 0) {
            appended += r.int(0, Math.min(room, 200_000));
            core.streamAppended(appended);
            core.inputFlows(r.next() < 0.5);
          }
        } else if (op < 0.6) {
          for (let k = r.int(1, 40); k > 0; k--) {
            // canSend says what pollData will do (weights aside): the shell sleeps, or not, on it.
            const can = core.canSend(link);
            const got = core.pollData(link, now);
            if (!weighted && can !== got) throw new Error(where(seed, i, `canSend ${can} but pollData ${got} on link ${link}`));
            if (!got) break;
            const tx = core.tx;
            stats.frames++;
            if (tx.retransmit) stats.resent++;
            const l = core.inspectLink(link);
            const ok =
              tx.len > 0 && tx.len <= l.payloadMax && tx.offset >= 0 && tx.offset + tx.len <= appended &&
              (tx.offset % RING) + tx.len <= RING && tx.offset + tx.len <= core.sentUpTo &&
              (tx.retransmit ? tx.offset >= core.ackedUpTo : tx.offset + tx.len <= core.limit);
            if (!ok) throw new Error(where(seed, i, `bad frame ${JSON.stringify(tx)} (appended ${appended}, cumAcked ${core.ackedUpTo}, limit ${core.limit})`));
          }
        } else if (op < 0.9) {
          let a: { link: number; cum: number; limit: number; ranges: number[] };
          if (r.next() < 0.2 && acks.length) {
            a = acks[r.int(0, acks.length - 1)]!;
            stats.replays++;
          } else {
            const pnNext = core.inspectLink(link).pnNext;
            const n = r.int(0, 40);
            const ranges: number[] = [];
            let hi = r.next() < 0.7 ? pnNext - 1 - r.int(0, 50) : r.int(0, 0xffffffff);
            for (let k = 0; k < n; k++) {
              const lo = r.next() < 0.9 ? hi - r.int(0, 200) : r.int(0, 0xffffffff);
              ranges.push((((hi % TWO32) + TWO32) % TWO32) >>> 0, (((lo % TWO32) + TWO32) % TWO32) >>> 0);
              hi = lo - r.int(1, 100);
            }
            const cumPick = r.next();
            const cum = cumPick < 0.6 ? Math.max(0, core.ackedUpTo + r.int(-100_000, 30_000)) : cumPick < 0.8 ? r.int(0, 0xffffffff) * TWO32 + r.int(0, 0xffffffff) : r.int(0, appended);
            const limit = r.next() < 0.8 ? cum + RING : r.int(0, 0xffffffff) * TWO32;
            a = { link, cum, limit, ranges };
            if (acks.length < 2000) acks.push(a);
          }
          stats.acks++;
          const rr = a.ranges;
          core.onAck(a.link, now, a.cum, a.limit, r.int(0, 0xffffffff) / 1000, rr.length / 2, (k, high) => rr[k * 2 + (high ? 0 : 1)]!);
        } else if (op < 0.95) {
          core.onHeard(link, now);
          // A HELLO_ACK from another receiver is refused and changes nothing.
          expect(core.onHelloAck(link, now, r.int(0, 65535), INSTANCE + r.int(1, 1000), r.int(0, 0xffffffff))).toBe(false);
        } else {
          core.tick(now);
          for (const l of [0, 1]) {
            if (core.pollPing(l) >= 0) core.onPingSent(l, now);
            while (core.pollProbe(l)) core.onProbeSent(l, now);
          }
          // The shell sleeps until nextTimeout: a tick just before it finds no loss or probe
          // timer and no keepalive due on a link that stays up.
          const next = core.nextTimeout(now);
          if (next - now > 0.01) {
            const links = () => [0, 1].map((k) => core.inspectLink(k));
            const was = links().map((l) => ({ state: l.state, lost: l.framesLost, pto: l.ptoCount }));
            now = next - 0.001;
            core.tick(now);
            for (const l of links()) {
              const w = was[l.index]!;
              if (w.state !== LinkState.Up || l.state !== LinkState.Up) continue;
              if (l.framesLost !== w.lost || l.ptoCount !== w.pto || core.pollPing(l.index) >= 0) {
                throw new Error(where(seed, i, `link ${l.index}: a timer fell due before nextTimeout ${next}`));
              }
            }
          }
        }
        // Invariants after every step.
        if (core.ackedUpTo > core.sentUpTo) throw new Error(where(seed, i, `cumAcked ${core.ackedUpTo} beyond sent ${core.sentUpTo}`));
        if (core.sentUpTo > appended) throw new Error(where(seed, i, "sent beyond the appended stream"));
        if (core.ackedUpTo < lastCum) throw new Error(where(seed, i, "cumAcked went back"));
        lastCum = core.ackedUpTo;
        for (const l of [0, 1].map((k) => core.inspectLink(k))) {
          if (l.bytesInFlight < 0 || l.packetsInFlight < 0) throw new Error(where(seed, i, `negative in flight on link ${l.index}`));
          if (l.oldestPn > l.pnNext || l.largestAcked >= l.pnNext) throw new Error(where(seed, i, `pn bookkeeping on link ${l.index}`));
          if (!(l.cwnd > 0 && Number.isFinite(l.cwnd) && Number.isFinite(l.srtt) && l.srtt >= 0)) {
            throw new Error(where(seed, i, `cwnd ${l.cwnd} srtt ${l.srtt} on link ${l.index}`));
          }
        }
        if (core.phase === Phase.Failed) throw new Error(where(seed, i, `failed: ${JSON.stringify(core.failure)}`));
      }
      console.log(`sender fuzz seed ${seed}: ${JSON.stringify(stats)}, cumAcked ${core.ackedUpTo} of ${core.sentUpTo} sent`);
      expect(stats.frames).toBeGreaterThan(10_000);
      expect(stats.resent).toBeGreaterThan(10);
    });
  }

  test("DONE: only the exact total and CRC, after END, completes", () => {
    const r = new Rng(310);
    for (let i = 0; i < 2_000; i++) {
      const core = new SenderCore({ linkCount: 1, mtus: [1500], weights: null, ringSize: 1 << 16, maxCwnd: 1 << 15, timing: defaultTiming(), now: 0 });
      core.onHelloAck(0, 0, 1500, 1, 1 << 16);
      provePaths(core, 0);
      core.tick(0);
      const total = r.int(0, 1 << 30), crc = r.int(0, 0xffffffff) >>> 0;
      const ended = r.next() < 0.8;
      if (ended) core.streamEnded(r.int(0, 1 << 16), total, crc);
      const exact = r.next() < 0.3;
      const t = exact ? total : r.next() < 0.5 ? total : r.int(0, 1 << 30);
      const c = exact ? crc : r.next() < 0.5 ? (crc ^ (1 << r.int(0, 31))) >>> 0 : crc;
      core.onDone(t, c);
      const match = t === total && c === crc;
      if (!ended) expect(core.phase).toBe(Phase.Transfer);
      else if (match) expect(core.phase).toBe(Phase.Done);
      else expect(core.phase).toBe(Phase.Failed);
    }
  });
});

// ------------------------------------------------------------------------------- both

describe("both cores through a lossy, duplicating, reordering, replaying channel", () => {
  const MAX_STREAM = 2_000_000;
  const stream = new Uint8Array(MAX_STREAM);
  {
    const r = new Rng(999);
    for (let i = 0; i < MAX_STREAM; i++) stream[i] = r.int(0, 255);
  }
  /** Stream bytes [from, to) into a ring, wrapping at its end (as the receiver's shell does). */
  function copyIn(ring: Uint8Array, from: number, to: number): void {
    while (from < to) {
      const pos = from % ring.length;
      const n = Math.min(to - from, ring.length - pos);
      ring.set(stream.subarray(from, from + n), pos);
      from += n;
    }
  }
  /** Bytes of [from, to) in the ring that differ from the stream. */
  function mismatches(ring: Uint8Array, from: number, to: number): number {
    let bad = 0;
    while (from < to) {
      const pos = from % ring.length;
      const n = Math.min(to - from, ring.length - pos);
      const a = Buffer.from(ring.buffer, ring.byteOffset + pos, n), b = Buffer.from(stream.buffer, from, n);
      if (!a.equals(b)) for (let k = 0; k < n; k++) if (a[k] !== b[k]) bad++;
      from += n;
    }
    return bad;
  }

  /** One run; returns what the receiver released, checked byte by byte against the stream. */
  function run(seed: number, forge = 0) {
    const r = new Rng(seed);
    const RING = 1 << 16;
    const STREAM = r.next() < 0.1 ? r.int(0, 100) : r.int(0, MAX_STREAM);
    const links = r.int(1, 3);
    const mtus = Array.from({ length: links }, () => (r.next() < 0.5 ? 1500 : 9000));
    const timing = defaultTiming(5000);
    const sender = new SenderCore({ linkCount: links, mtus, weights: null, ringSize: RING, maxCwnd: RING / 2, timing, now: 0 });
    const receiver = new ReceiverCore({ deviceCount: links, ringSize: RING, timing: { ...timing, waitMs: 0 }, now: 0 });
    const recvRing = new Uint8Array(RING);
    const loss = r.next() * 0.1, dup = r.next() * 0.1, reorder = r.next() * 0.3, replay = r.next() * 0.05;
    const mac = new Uint8Array([2, 0, 0, 0, 0, 1]);
    type F = { at: number; toR: boolean; link: number; kind: string; pn: number; offset: number; len: number; cum: number; limit: number; ranges: number[] };
    const transit: F[] = [];
    const history: F[] = [];
    let now = 0, appended = 0, consumed = 0, corrupt = 0, frames = 0;
    const send = (f: Omit<F, "at">) => {
      frames++;
      if (history.length < 3000) history.push({ ...f, at: 0 });
      else history[r.int(0, 2999)] = { ...f, at: 0 };
      if (r.next() < loss) return;
      const at = now + 0.05 + (r.next() < reorder ? r.next() * 2 : 0);
      transit.push({ ...f, at });
      if (r.next() < dup) transit.push({ ...f, at: at + r.next() });
      // Old frames of the same session come back (a replaying switch or station).
      if (r.next() < replay) transit.push({ ...history[r.int(0, history.length - 1)]!, at: at + r.next() });
      // A station that knows the session forges a checksum-correct DATA frame: an old payload
      // under a nearby packet number, maybe that of a frame yet to be sent and then lost.
      if (f.toR && f.kind === "data" && r.next() < forge) {
        const old = history[r.int(0, history.length - 1)]!;
        if (old.kind === "data") transit.push({ ...old, link: f.link, pn: Math.max(0, f.pn + r.int(-20, r.next() < 0.5 ? 100 : 2000)), at: at + r.next() });
      }
    };
    const blank = (toR: boolean, link: number, kind: string): Omit<F, "at"> => ({ toR, link, kind, pn: 0, offset: 0, len: 0, cum: 0, limit: 0, ranges: [] });
    while (now < 20_000) {
      transit.sort((a, b) => a.at - b.at);
      let k = 0;
      for (; k < transit.length && transit[k]!.at <= now; k++) {
        const f = transit[k]!;
        if (f.toR) {
          if (f.kind === "hello") {
            if (receiver.onHello(f.link, now, 5, f.link, mtus[f.link]!, mac, 0)) {
              const a = blank(false, f.link, "helloAck");
              a.limit = RING;
              send(a);
            }
          } else if (f.kind === "data") {
            const v = receiver.onData(f.link, now, f.pn % TWO32, f.offset, f.len);
            if (v === Accept.Store) copyIn(recvRing, receiver.storeFrom, f.offset + f.len);
          } else if (f.kind === "ping") receiver.onPing(f.link, now, f.pn % TWO32);
          else if (f.kind === "doneAck") receiver.onDoneAck();
        } else if (f.kind === "helloAck") sender.onHelloAck(f.link, now, mtus[f.link]!, 1, f.limit);
        else {
          sender.onHeard(f.link, now);
          if (f.kind === "ack") sender.onAck(f.link, now, f.cum, f.limit, 0, f.ranges.length / 2, (i, hi) => f.ranges[i * 2 + (hi ? 0 : 1)]!);
          else if (f.kind === "done") sender.onDone(f.cum, 0);
        }
      }
      transit.splice(0, k);
      let busy = false;
      sender.tick(now);
      const target = Math.min(STREAM, sender.ringFreeUpTo() + RING);
      if (target > appended || (STREAM === 0 && !sender.ended)) {
        appended = target;
        if (appended === STREAM) sender.streamEnded(appended, appended, 0);
        else sender.streamAppended(appended);
      }
      for (let l = 0; l < links; l++) {
        if (sender.helloDue(l, now)) {
          send(blank(true, l, "hello"));
          sender.onHelloSent(l, now);
        }
        if (sender.phase === Phase.Done) send(blank(true, l, "doneAck"));
        const pingPn = sender.pollPing(l);
        if (pingPn >= 0) {
          const p = blank(true, l, "ping");
          p.pn = pingPn;
          send(p);
          sender.onPingSent(l, now);
        }
        while (sender.pollProbe(l)) {
          const p = blank(true, l, "ping");
          p.pn = sender.probeTx.pn;
          send(p);
          sender.onProbeSent(l, now);
        }
        for (let n = 0; n < 20 && sender.pollData(l, now); n++) {
          if (n === 19) busy = true;
          const d = blank(true, l, "data");
          d.pn = sender.tx.pn;
          d.offset = sender.tx.offset;
          d.len = sender.tx.len;
          send(d);
        }
      }
      receiver.tick(now);
      // The reader checks every released byte.
      corrupt += mismatches(recvRing, consumed, receiver.cum);
      consumed = receiver.cum;
      receiver.setConsumed(consumed);
      if (consumed === STREAM && sender.ended && receiver.phase === RxPhase.Transfer) receiver.finished(now, STREAM, 0);
      for (let l = 0; l < links; l++) {
        const ack = receiver.pollAck(l, now);
        if (ack !== null) {
          const a = blank(false, l, "ack");
          a.cum = ack.cum;
          a.limit = ack.limit;
          for (let k = 0; k < ack.rangeCount; k++) a.ranges.push(ack.rangeAt(k, true), ack.rangeAt(k, false));
          send(a);
          receiver.onAckSent(l, now);
        }
        const done = receiver.pollDone(l, now);
        if (done !== null) {
          const d = blank(false, l, "done");
          d.cum = done.total;
          send(d);
          receiver.onDoneSent(l, now);
        }
      }
      if (sender.phase >= Phase.Done && receiver.phase >= RxPhase.Done) break;
      // Straight to the next event: an arrival or a timer of either side.
      let next = busy ? now : Math.min(now + 5, sender.nextTimeout(now), receiver.nextTimeout(now));
      for (const f of transit) if (f.at < next) next = f.at;
      now = Math.max(next, now + 0.01);
    }
    return { sender, receiver, consumed, corrupt, STREAM, frames, now, loss, dup, reorder, replay };
  }

  test("every run ends exact (200 seeds)", () => {
    let frames = 0;
    for (let seed = 1000; seed < 1200; seed++) {
      const x = run(seed);
      frames += x.frames;
      const what = `seed ${seed} (loss ${x.loss.toFixed(3)} dup ${x.dup.toFixed(3)} reorder ${x.reorder.toFixed(3)} replay ${x.replay.toFixed(3)}, ${x.STREAM} bytes)`;
      if (x.corrupt !== 0) throw new Error(`${what}: ${x.corrupt} corrupt bytes`);
      if (x.sender.phase !== Phase.Done || x.receiver.phase !== RxPhase.Done || x.consumed !== x.STREAM) {
        throw new Error(`${what}: sender ${x.sender.phase} (${JSON.stringify(x.sender.failure)}), receiver ${x.receiver.phase} (${JSON.stringify(x.receiver.failure)}), ${x.consumed} bytes out at ${x.now.toFixed(0)} ms`);
      }
    }
    console.log(`cores fuzz: 200 runs, ${frames} frames`);
  });

  test("forged packet numbers do not stall the transfer for good (100 seeds)", () => {
    // Each forged number may mark a lost frame as delivered; the sender must notice that the
    // receiver's contiguous end is stuck and resend what lies there.
    for (let seed = 2000; seed < 2100; seed++) {
      const x = run(seed, 0.1);
      if (x.corrupt !== 0 || x.sender.phase !== Phase.Done || x.receiver.phase !== RxPhase.Done || x.consumed !== x.STREAM) {
        throw new Error(`seed ${seed} (loss ${x.loss.toFixed(3)}, ${x.STREAM} bytes): sender ${x.sender.phase}, receiver ${x.receiver.phase}, ${x.consumed} bytes out at ${x.now.toFixed(0)} ms, ${x.corrupt} corrupt`);
      }
    }
  });
});
