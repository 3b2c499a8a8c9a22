// The receiver's log of verified DATA payloads: where each lies in the wire stream and its own
// CRC-32 (see wire.ts verifyFrame). The main thread writes an entry for each frame it stores
// whole, in stream order; the output workers build a RAW chunk's CRC from the entries that cover
// it (one combine per frame) and read only the bytes no entry covers, instead of reading every
// chunk a second time. An entry's bytes are the stream's at its offset, which never change, so
// a CRC built from entries is the CRC of what is in the ring, as the one read from it would be.

import { crc32CombineFast, crcOfRing } from "../crc32";

/** Entries kept (a power of two); a worker uses those within half of it of the newest. */
const ENTRIES = 16384;
const MASK = ENTRIES - 1;
const WINDOW = ENTRIES / 2;
/** One entry per 32 bytes (half a cache line): f64 start, then i32 len, crc, seq. */
const ENTRY_BYTES = 32;
const HEAD_BYTES = 32;

class Layout {
  /** [0]: entries written, mod 2^32. */
  readonly count: Int32Array;
  /** Entry i: start at f64[4i], len at i32[8i + 2], crc at i32[8i + 3], seq at i32[8i + 4]. The
   * seq is the entry's number (mod 2^32) once it is complete, its complement while it is written. */
  readonly f64: Float64Array;
  readonly i32: Int32Array;

  constructor(buf: SharedArrayBuffer) {
    this.count = new Int32Array(buf, 0, 1);
    this.f64 = new Float64Array(buf, HEAD_BYTES, ENTRIES * 4);
    this.i32 = new Int32Array(buf, HEAD_BYTES, ENTRIES * 8);
  }
}

/** The shared buffer of a new, empty log (made once, before any writer or reader). */
export function createCrcLog(): SharedArrayBuffer {
  const buf = new SharedArrayBuffer(HEAD_BYTES + ENTRIES * ENTRY_BYTES);
  const l = new Layout(buf);
  for (let i = 0; i < ENTRIES; i++) l.i32[8 * i + 4] = ~i; // no entry complete yet
  return buf;
}

export class CrcLogWriter {
  private readonly l: Layout;
  private written = 0;
  /** End of the last entry: entries only go forward, so a worker finds them in order. */
  private end = 0;

  constructor(buf: SharedArrayBuffer) {
    this.l = new Layout(buf);
  }

  /** Payload bytes [start, start + len) of the stream, verified, have CRC-32 crc. */
  note(start: number, len: number, crc: number): void {
    if (start < this.end || len <= 0) return;
    const l = this.l;
    const n = this.written;
    const i = n & MASK;
    Atomics.store(l.i32, 8 * i + 4, ~n);
    l.f64[4 * i] = start;
    l.i32[8 * i + 2] = len;
    l.i32[8 * i + 3] = crc;
    Atomics.store(l.i32, 8 * i + 4, n | 0);
    this.written = n + 1;
    this.end = start + len;
  }

  /** Lets the workers see the entries noted so far (before the data they cover is published). */
  publish(): void {
    Atomics.store(this.l.count, 0, this.written | 0);
  }
}

export class CrcLogReader {
  private readonly l: Layout;
  /** Number of the next entry this worker looks at. */
  private cursor = 0;

  constructor(buf: SharedArrayBuffer) {
    this.l = new Layout(buf);
  }

  /** CRC-32 of stream bytes [from, to), which are in ring at their offset mod ringSize. */
  crcOf(from: number, to: number, ring: Uint8Array, ringSize: number): number {
    const l = this.l;
    const written = this.cursor + ((Atomics.load(l.count, 0) - (this.cursor | 0)) | 0);
    if (written - this.cursor > WINDOW) this.cursor = written - WINDOW;
    let crc = 0;
    let pos = from;
    while (pos < to) {
      // The first complete entry that ends past pos.
      let start = Infinity;
      let len = 0;
      let eCrc = 0;
      while (this.cursor < written) {
        const i = this.cursor & MASK;
        const s = this.cursor | 0;
        if (Atomics.load(l.i32, 8 * i + 4) === s) {
          start = l.f64[4 * i]!;
          len = l.i32[8 * i + 2]!;
          eCrc = l.i32[8 * i + 3]!;
          // Overwritten while being read: treat as never logged.
          if (Atomics.load(l.i32, 8 * i + 4) !== s) start = Infinity;
        } else start = Infinity;
        if (start !== Infinity && start + len > pos) break;
        start = Infinity;
        this.cursor++;
      }
      if (start === pos && start + len <= to) {
        crc = crc32CombineFast(crc, eCrc, len);
        pos += len;
        this.cursor++;
        continue;
      }
      // Bytes no whole entry covers: before the next entry, or the part of one that straddles
      // the range's edge.
      const end = start > pos ? Math.min(start, to) : Math.min(start + len, to);
      crc = crcOfRing(ring, ringSize, pos, end, crc) | 0;
      pos = end;
    }
    return crc >>> 0;
  }
}
