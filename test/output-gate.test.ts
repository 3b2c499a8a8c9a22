// The receiver's tape buffer: RecordWalker finds whole records in the ring, OutputGate decides
// how much of them the output may write (-b, --start-at, --resume-at).
import { describe, expect, test } from "bun:test";
import { Delivery, OutputGate, RecordWalker } from "../src/core/delivery";
import { END_RECORD, KIND_LZ4, KIND_RAW, RECORD_HEADER, writeEnd, writeHeader } from "../src/record";
import { Rng } from "./support/impair";

/** A wire stream of records with these body lengths, then END; and where each record ends. */
function stream(bodies: number[]): { wire: Uint8Array; ends: number[] } {
  const total = bodies.reduce((a, b) => a + RECORD_HEADER + b, 0) + END_RECORD;
  const wire = new Uint8Array(total);
  const dv = new DataView(wire.buffer);
  const ends: number[] = [];
  let at = 0;
  bodies.forEach((len, i) => {
    writeHeader(dv, at, i % 2 ? KIND_LZ4 : KIND_RAW, len + 1, len, 0);
    // A body that looks like an END header must not confuse the walker.
    wire.fill(3, at + RECORD_HEADER, at + RECORD_HEADER + len);
    at += RECORD_HEADER + len;
    ends.push(at);
  });
  writeEnd(dv, at, 12345, 0);
  ends.push(at + END_RECORD);
  return { wire, ends };
}

describe("RecordWalker", () => {
  test("stops before a record whose header or body is not complete, passes END and no further", () => {
    const { wire, ends } = stream([10, 0, 100]);
    const ring = new Uint8Array(4096);
    ring.set(wire);
    const w = new RecordWalker(ring, ring.length);
    expect(w.advance(0)).toBe(0);
    expect(w.advance(RECORD_HEADER - 1)).toBe(0); // header incomplete
    expect(w.advance(RECORD_HEADER)).toBe(0); // header complete, body not
    expect(w.advance(ends[0]! - 1)).toBe(0);
    expect(w.advance(ends[0]!)).toBe(ends[0]);
    expect(w.advance(ends[1]! + 5)).toBe(ends[1]); // the empty record, then a part of the next header
    expect(w.advance(ends[3]! - 1)).toBe(ends[2]);
    expect(w.ended).toBe(false);
    expect(w.advance(ends[3]!)).toBe(ends[3]);
    expect(w.ended).toBe(true);
    // Bytes after END (none should come) are not taken for a record.
    expect(w.advance(ends[3]! + 1000)).toBe(ends[3]);
  });

  test("random streams through a small ring, headers split at its end: agrees with the record ends", () => {
    const r = new Rng(3);
    for (let round = 0; round < 300; round++) {
      const bodies = Array.from({ length: r.int(0, 12) }, () => r.int(0, 40));
      const { wire, ends } = stream(bodies);
      const ringSize = r.int(RECORD_HEADER + 41, 120);
      const ring = new Uint8Array(ringSize);
      const w = new RecordWalker(ring, ringSize);
      let have = 0; // wire bytes put into the ring
      let consumed = 0; // what the walker returned: the ring may be reused below it
      while (have < wire.length) {
        // The receiver never holds more than the ring's size past what was consumed.
        const to = Math.min(wire.length, consumed + ringSize, have + r.int(1, 30));
        for (let i = have; i < to; i++) ring[i % ringSize] = wire[i]!;
        have = to;
        const got = w.advance(have);
        const want = ends.filter((e) => e <= have).at(-1) ?? 0;
        if (got !== want) throw new Error(`round ${round}: advance(${have}) = ${got}, want ${want} (ends ${ends}, ring ${ringSize})`);
        consumed = got;
        expect(w.ended).toBe(have === wire.length);
      }
    }
  });
});

describe("OutputGate", () => {
  test("without a buffer everything complete is released at once", () => {
    const g = new OutputGate(0, 50, 25);
    expect(g.isFilling()).toBe(false);
    expect(g.release(0, 100, 0, false)).toBe(100);
    expect(g.release(1, 100, 100, false)).toBe(100);
    expect(g.release(2, 300, 100, false)).toBe(300);
    expect(g.fillPct(300, 100)).toBe(0);
    expect(g.stalls).toBe(0);
  });

  test("holds back until --start-at full, refills to --resume-at after running dry, counts the stalls", () => {
    const g = new OutputGate(1000, 50, 25);
    expect(g.isFilling()).toBe(true);
    expect(g.release(0, 499, 0, false)).toBe(0);
    expect(g.fillPct(499, 0)).toBeCloseTo(49.9, 6);
    expect(g.release(1, 500, 0, false)).toBe(500); // 50 % reached
    expect(g.isFilling()).toBe(false);
    expect(g.release(2, 700, 300, false)).toBe(700); // writing: all that arrives goes out
    expect(g.release(3, 700, 600, false)).toBe(700); // the writer has not caught up: not dry
    expect(g.stalls).toBe(0);
    expect(g.release(10, 700, 700, false)).toBe(700); // all written, nothing new: dry
    expect(g.isFilling()).toBe(true);
    expect(g.stalls).toBe(1);
    expect(g.release(20, 949, 700, false)).toBe(700); // 24.9 %: still held
    expect(g.release(30, 950, 700, false)).toBe(950); // 25 %: writing again
    expect(g.stalledMs).toBe(20); // from 10 to 30
    expect(g.fillPct(2000, 0)).toBe(100);
  });

  test("the end of the stream releases everything, full or not", () => {
    const g = new OutputGate(1000, 50, 25);
    expect(g.release(0, 100, 0, false)).toBe(0);
    expect(g.release(5, 120, 0, true)).toBe(120);
    expect(g.isFilling()).toBe(false);
    // Written to the end: no stall is counted for a stream that is over.
    expect(g.release(6, 120, 120, true)).toBe(120);
    expect(g.stalls).toBe(0);
    expect(g.stalledMs).toBe(0);
  });
});

describe("Delivery: the whole cycle from contiguous end to what is published", () => {
  test("only whole records are published; with -b nothing until the start level, then all, and the fill level follows", () => {
    const { wire, ends } = stream([1000, 1000, 1000]);
    const ring = new Uint8Array(8192);
    ring.set(wire);
    const plain = new Delivery({ ring, ringSize: ring.length, bufferBytes: 0, startAtPct: 80, resumeAtPct: 20 });
    expect(plain.update(0, ends[0]! + 10, 0)).toBe(ends[0]);
    expect(plain.update(1, ends[3]!, ends[0]!)).toBe(ends[3]);
    // A 2500-byte tape buffer starting at 80 %: 2000 bytes of whole records before any writing.
    const taped = new Delivery({ ring, ringSize: ring.length, bufferBytes: 2500, startAtPct: 80, resumeAtPct: 20 });
    expect(taped.update(0, ends[0]!, 0)).toBe(0);
    expect(taped.bufferStats(2500)).toEqual({ bytes: 2500, fillPct: (100 * ends[0]!) / 2500, filling: true, stalls: 0, stalledMs: 0 });
    expect(taped.update(1, ends[1]!, 0)).toBe(ends[1]);
    expect(taped.bufferStats(2500).filling).toBe(false);
  });
});
