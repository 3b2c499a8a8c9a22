// CRC-32 (IEEE) and how to combine CRCs of adjacent pieces without reading them again.

/** CRC-32 (IEEE); pass the CRC of the preceding bytes as `seed` to continue a stream. */
export function crc32(bytes: Uint8Array, seed = 0): number {
  return Bun.hash.crc32(bytes, seed);
}

/** CRC-32 of stream bytes [from, to) kept in ring at their offset mod ringSize, continuing from seed. */
export function crcOfRing(ring: Uint8Array, ringSize: number, from: number, to: number, seed = 0): number {
  const at = from % ringSize;
  const len = to - from;
  const first = Math.min(len, ringSize - at);
  let crc = Bun.hash.crc32(ring.subarray(at, at + first), seed);
  if (first < len) crc = Bun.hash.crc32(ring.subarray(0, len - first), crc);
  return crc >>> 0;
}

// crc32Combine: zlib's GF(2) matrix method. A 32x32 bit matrix (32 u32 columns) maps a CRC to
// the CRC after appending zero bits. POW[k] is the operator for 2^k zero bytes, built once by
// repeated squaring, so a combine costs one 32-step matrix-vector product per set bit of lenB
// (a single one for power-of-two chunk sizes) and allocates nothing.
const MAX_POW = 53; // lengths up to 2^53 bytes
// Int32 entries: a Uint32Array read above 2^31 yields a double, several times slower.
let POW: Int32Array | null = null;

function matTimes(mat: Int32Array, base: number, vec: number): number {
  let sum = 0;
  let v = vec | 0;
  for (let i = base; v !== 0; i++) {
    sum ^= mat[i]! & -(v & 1);
    v >>>= 1;
  }
  return sum;
}

function matSquare(dst: Int32Array, dstBase: number, src: Int32Array, srcBase: number): void {
  for (let n = 0; n < 32; n++) dst[dstBase + n] = matTimes(src, srcBase, src[srcBase + n]!);
}

function powers(): Int32Array {
  if (POW) return POW;
  const pow = new Int32Array(MAX_POW * 32);
  const a = new Int32Array(32);
  const b = new Int32Array(32);
  // Operator for one zero bit: the reflected polynomial, then a shift.
  a[0] = 0xedb88320 | 0;
  for (let n = 1, row = 1; n < 32; n++, row <<= 1) a[n] = row;
  matSquare(b, 0, a, 0); // 2 bits
  matSquare(a, 0, b, 0); // 4 bits
  matSquare(pow, 0, a, 0); // 8 bits = 1 byte
  for (let k = 1; k < MAX_POW; k++) matSquare(pow, k * 32, pow, (k - 1) * 32);
  POW = pow;
  return pow;
}

/**
 * CRC-32 of A followed by B, from crc(A), crc(B) and B's length (0 <= lenB <= 2^53).
 * Lets the whole-stream CRC be built from per-chunk CRCs without a second pass over the data.
 */
export function crc32Combine(crcA: number, crcB: number, lenB: number): number {
  if (lenB <= 0) return crcA >>> 0;
  const pow = powers();
  let crc = crcA | 0;
  let len = lenB;
  for (let k = 0; len > 0 && k < MAX_POW; k++) {
    if (len % 2 === 1) crc = matTimes(pow, k * 32, crc);
    len = Math.floor(len / 2);
  }
  return (crc ^ crcB) >>> 0;
}

/**
 * crc32Combine for one fixed length of B, as tables: the shift by len bytes is linear over
 * GF(2), so it is the XOR of the shifts of a CRC's four bytes, each looked up. A combine costs
 * four loads (~20 ns a call) instead of a matrix product per set bit of the length (~300 ns): frames
 * of one size are combined this way, once per frame.
 */
export class Crc32Shift {
  /** table[k * 256 + b]: the shift of byte b at bits 8k..8k+7, as an int32. */
  private readonly table = new Int32Array(4 * 256);
  constructor(readonly len: number) {
    const bit = new Int32Array(32);
    for (let j = 0; j < 32; j++) bit[j] = crc32Combine(1 << j, 0, len) | 0;
    for (let k = 0; k < 4; k++) {
      for (let b = 0; b < 256; b++) {
        let v = 0;
        for (let j = 0; j < 8; j++) if (b & (1 << j)) v ^= bit[8 * k + j]!;
        this.table[k * 256 + b] = v;
      }
    }
  }

  /** CRC-32 of A followed by B, from crc(A) and crc(B), B being `len` bytes; as an int32 (the
   * per-frame paths keep CRCs so, see FrameCrc in wire.ts). */
  combine(crcA: number, crcB: number): number {
    const t = this.table;
    const a = crcA | 0;
    return t[a & 255]! ^ t[256 + ((a >>> 8) & 255)]! ^ t[512 + ((a >>> 16) & 255)]! ^ t[768 + (a >>> 24)]! ^ crcB;
  }
}

const SHIFTS_KEPT = 16;
/** A table is built for a length once it was asked for this often: most lengths come once. */
const SHIFT_AFTER = 8;
const shifts = new Map<number, Crc32Shift>();
const asked = new Map<number, number>();
let lastShift: Crc32Shift | null = null;

/**
 * CRC-32 of A followed by B from crc(A), crc(B) and B's length, as an int32: by table for the
 * lengths that recur (full frames), by crc32Combine for the others.
 */
export function crc32CombineFast(crcA: number, crcB: number, lenB: number): number {
  if (lastShift !== null && lastShift.len === lenB) return lastShift.combine(crcA, crcB);
  return combineOtherLength(crcA, crcB, lenB);
}

function combineOtherLength(crcA: number, crcB: number, lenB: number): number {
  let s = shifts.get(lenB);
  if (s === undefined) {
    const n = (asked.get(lenB) ?? 0) + 1;
    if (n < SHIFT_AFTER) {
      if (asked.size >= 4096) asked.clear();
      asked.set(lenB, n);
      return crc32Combine(crcA, crcB, lenB) | 0;
    }
    asked.delete(lenB);
    if (shifts.size >= SHIFTS_KEPT) shifts.clear();
    s = new Crc32Shift(lenB);
    shifts.set(lenB, s);
  }
  lastShift = s;
  return s.combine(crcA, crcB);
}
