// The receiver's CRC log (src/workers/crc-log.ts): a chunk's CRC built from the verified
// frames' CRCs must equal the CRC of the bytes, whatever the log covers of it: whole frames,
// frames straddling the chunk's edges, gaps, a ring that wraps, entries overwritten.

import { describe, expect, test } from "bun:test";
import { CrcLogReader, CrcLogWriter, createCrcLog } from "../src/workers/crc-log";
import { crc32 } from "../src/record";
import { randomBytes } from "./support/random-bytes";

const RING = 1 << 20;
const FRAME = 8956;

/** A stream of `total` pseudo-random bytes, laid into a ring of RING bytes at offset mod RING. */
function streamAndRing(total: number, seed: number): { stream: Uint8Array; ring: Uint8Array } {
  const stream = randomBytes(total, seed);
  const ring = new Uint8Array(RING);
  // Only the last RING bytes of the stream are in the ring, as in the receiver.
  for (let o = Math.max(0, total - RING); o < total; o++) ring[o % RING] = stream[o]!;
  return { stream, ring };
}

function logFrames(w: CrcLogWriter, stream: Uint8Array, from: number, to: number, len: number): void {
  for (let o = from; o < to; o += len) {
    const n = Math.min(len, to - o);
    w.note(o, n, crc32(stream.subarray(o, o + n)));
  }
}

describe("CRC log", () => {
  test("a chunk's CRC from whole frames, straddling frames and unlogged bytes equals the bytes'", () => {
    const total = RING - 1000;
    const { stream, ring } = streamAndRing(total, 7);
    const buf = createCrcLog();
    const w = new CrcLogWriter(buf);
    // Frames of the first half logged in order; a gap; then more frames.
    logFrames(w, stream, 0, 40 * FRAME, FRAME);
    logFrames(w, stream, 45 * FRAME, 100 * FRAME, FRAME);
    w.publish();
    const r = new CrcLogReader(buf);
    // Chunks as a worker meets them, in order: edges inside frames, in the gap, past the log.
    const edges = [0, 16, 3 * FRAME, 3 * FRAME + 5, 39 * FRAME + 100, 44 * FRAME, 46 * FRAME + 1, 99 * FRAME, 110 * FRAME, total];
    for (let k = 0; k + 1 < edges.length; k++) {
      const [a, b] = [edges[k]!, edges[k + 1]!];
      expect(r.crcOf(a, b, ring, RING)).toBe(crc32(stream.subarray(a, b)));
    }
  });

  test("a frame noted behind the log's end is left out; the bytes are read instead", () => {
    const { stream, ring } = streamAndRing(20 * FRAME, 3);
    const buf = createCrcLog();
    const w = new CrcLogWriter(buf);
    logFrames(w, stream, 10 * FRAME, 20 * FRAME, FRAME);
    // Out of order: earlier frames arrive later. A wrong CRC here would show if it were used.
    w.note(0, FRAME, 0x12345678);
    w.publish();
    const r = new CrcLogReader(buf);
    expect(r.crcOf(0, 20 * FRAME, ring, RING)).toBe(crc32(stream.subarray(0, 20 * FRAME)));
  });

  test("an entry's CRC is what the chunk's CRC is built from (a wrong one gives a wrong CRC)", () => {
    const { stream, ring } = streamAndRing(4 * FRAME, 9);
    const buf = createCrcLog();
    const w = new CrcLogWriter(buf);
    w.note(0, FRAME, crc32(stream.subarray(0, FRAME)));
    w.note(FRAME, FRAME, crc32(stream.subarray(FRAME, 2 * FRAME)) ^ 1);
    w.publish();
    const r = new CrcLogReader(buf);
    expect(r.crcOf(0, 2 * FRAME, ring, RING)).not.toBe(crc32(stream.subarray(0, 2 * FRAME)));
  });

  test("the ring wraps and entries are overwritten: still exact", () => {
    const total = 6 * RING + 12345;
    const { stream, ring } = streamAndRing(total, 11);
    const buf = createCrcLog();
    const w = new CrcLogWriter(buf);
    const r = new CrcLogReader(buf);
    // Small frames, so the log laps many times before the reader asks.
    logFrames(w, stream, 0, total, 100);
    w.publish();
    const from = total - RING + 77;
    expect(r.crcOf(from, from + 200_000, ring, RING)).toBe(crc32(stream.subarray(from, from + 200_000)));
    expect(r.crcOf(from + 200_000, total, ring, RING)).toBe(crc32(stream.subarray(from + 200_000, total)));
  });

  test("entries not yet published are not used", () => {
    const { stream, ring } = streamAndRing(4 * FRAME, 5);
    const buf = createCrcLog();
    const w = new CrcLogWriter(buf);
    w.note(0, FRAME, 0xdeadbeef); // wrong, and never published
    const r = new CrcLogReader(buf);
    expect(r.crcOf(0, FRAME, ring, RING)).toBe(crc32(stream.subarray(0, FRAME)));
  });
});
