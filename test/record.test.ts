// The record layout (RAW, LZ4, ZSTD, END), the CRC-32 helpers and the codec bindings: round trips,
// crc32Combine against a direct CRC, and clear errors for missing libraries.
import { describe, expect, test } from "bun:test";
import { dlopen, FFIType, ptr } from "bun:ffi";
import { loadLz4, lz4Bound } from "../ffi/lz4";
import { loadZstd, zstdBound } from "../ffi/zstd";
import {
  crc32, crc32Combine, crc32CombineFast, Crc32Shift, END_BODY, END_RECORD, KIND_END, KIND_LZ4, KIND_RAW, KIND_ZSTD, readCrc, readEncLen, readEndTotal,
  readFlags, readKind, readRawLen, readReserved, RECORD_HEADER, writeEnd, writeHeader,
} from "../src/record";
import { randomBytes } from "./support/random-bytes";

const CHUNK = 65536;

function textBytes(n: number): Uint8Array {
  const words = ["record", "chunk", "stream", "ethernet", "link", "frame", "the", "of", "lz4", "pipe", "\n"];
  let s = "";
  let i = 0;
  while (s.length < n) s += words[(i++ * 7919) % words.length] + " ";
  return new TextEncoder().encode(s.slice(0, n));
}

describe("record header", () => {
  test("layout constants", () => {
    expect(RECORD_HEADER).toBe(16);
    expect([KIND_RAW, KIND_LZ4, KIND_END, KIND_ZSTD]).toEqual([1, 2, 3, 4]);
    expect(END_BODY).toBe(8);
    expect(END_RECORD).toBe(24);
  });

  test("round trips at any offset, big-endian, unsigned CRC", () => {
    const buf = new Uint8Array(256).fill(0xaa);
    const dv = new DataView(buf.buffer);
    for (const off of [0, 1, 7, 100]) {
      for (const [kind, raw, enc, crc] of [
        [KIND_RAW, 65536, 65536, 0xffffffff],
        [KIND_LZ4, 262144, 1234, 0x80000001],
        [KIND_RAW, 0, 0, 0],
        [KIND_LZ4, 0xffffffff, 0xfffffffe, 0x12345678],
      ] as const) {
        writeHeader(dv, off, kind, raw, enc, crc);
        expect(readKind(dv, off)).toBe(kind);
        expect(readFlags(dv, off)).toBe(0);
        expect(readReserved(dv, off)).toBe(0);
        expect(readRawLen(dv, off)).toBe(raw);
        expect(readEncLen(dv, off)).toBe(enc);
        expect(readCrc(dv, off)).toBe(crc);
      }
    }
    writeHeader(dv, 0, KIND_LZ4, 0x01020304, 0x05060708, 0x090a0b0c);
    expect([...buf.subarray(0, 16)]).toEqual([2, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  });

  test("END record carries a 64-bit total", () => {
    const buf = new Uint8Array(64);
    const dv = new DataView(buf.buffer);
    for (const total of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 12345, 5 * 2 ** 40 + 7, 2 ** 53 - 1]) {
      writeEnd(dv, 3, total, 0xdeadbeef);
      expect(readKind(dv, 3)).toBe(KIND_END);
      expect(readRawLen(dv, 3)).toBe(0);
      expect(readEncLen(dv, 3)).toBe(END_BODY);
      expect(readCrc(dv, 3)).toBe(0xdeadbeef);
      expect(readEndTotal(dv, 3)).toBe(total);
    }
  });
});

describe("crc32", () => {
  test("check value and seed chaining", () => {
    expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
    expect(crc32(new Uint8Array(0))).toBe(0);
    const data = randomBytes(10000);
    expect(crc32(data.subarray(3000), crc32(data.subarray(0, 3000)))).toBe(crc32(data));
  });

  test("crc32Combine matches real concatenations", () => {
    const data = new Uint8Array(3 * CHUNK + 5000);
    data.set(randomBytes(CHUNK + 3, 7));
    data.set(textBytes(data.length - CHUNK - 3), CHUNK + 3);
    const lens = [0, 1, 2, 3, 4, 7, 8, 15, 16, 255, 256, 1000, 4095, 4096, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 4999];
    let checked = 0;
    for (const la of lens) {
      for (const lb of lens) {
        if (la + lb > data.length) continue;
        const a = data.subarray(0, la);
        const b = data.subarray(la, la + lb);
        expect(crc32Combine(crc32(a), crc32(b), lb)).toBe(crc32(data.subarray(0, la + lb)));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(300);
  });

  test("crc32Combine builds a stream CRC from chunk CRCs", () => {
    const data = randomBytes(10 * 4000 + 123, 99);
    let stream = 0;
    for (let off = 0; off < data.length; off += 4000) {
      const c = data.subarray(off, Math.min(off + 4000, data.length));
      stream = crc32Combine(stream, crc32(c), c.length);
    }
    expect(stream).toBe(crc32(data));
  });

  test("Bun.hash.crc32 continues from a seed given as an int32 as from the same bits unsigned", () => {
    // The per-frame paths pass CRCs as int32s (see FrameCrc in wire.ts), half of them negative.
    const data = randomBytes(4096, 9);
    let negatives = 0;
    for (let i = 0; i < 64; i++) {
      const prefix = data.subarray(i, i + 64);
      const seed = crc32(prefix);
      if ((seed | 0) < 0) negatives++;
      const whole = new Uint8Array(prefix.length + data.length);
      whole.set(prefix);
      whole.set(data, prefix.length);
      expect(Bun.hash.crc32(data, seed | 0)).toBe(crc32(whole));
      expect(Bun.hash.crc32(data, seed >>> 0)).toBe(crc32(whole));
    }
    expect(negatives).toBeGreaterThan(10);
  });

  test("Crc32Shift and crc32CombineFast combine like crc32Combine", () => {
    const data = randomBytes(3 * 9000, 5);
    for (const lb of [1, 16, 8940, 8956, 9000 - 16, 1470]) {
      const shift = new Crc32Shift(lb);
      for (const la of [0, 1, 26, 8956, 9000]) {
        const a = data.subarray(0, la);
        const b = data.subarray(la, la + lb);
        const whole = crc32(data.subarray(0, la + lb));
        expect(shift.combine(crc32(a), crc32(b)) >>> 0).toBe(whole);
        // Asked often enough, a length gets its table: both ways must agree.
        for (let k = 0; k < 10; k++) expect(crc32CombineFast(crc32(a), crc32(b), lb) >>> 0).toBe(whole);
      }
    }
    // A different length gives a different (wrong) combination: the shift is per length.
    expect(new Crc32Shift(100).combine(crc32(data.subarray(0, 10)), crc32(data.subarray(10, 111))) | 0)
      .not.toBe(crc32(data.subarray(0, 111)) | 0);
  });

  test("crc32Combine is consistent for lengths beyond 4 GiB", () => {
    // Associativity over huge lengths exercises the high powers of the operator table.
    const [a, b, c] = [0x12345678, 0x9abcdef0, 0x0fedcba9];
    for (const [l1, l2] of [[2 ** 32, 2 ** 32 + 5], [2 ** 40 + 3, 17], [2 ** 52, 2 ** 52 - 1], [65536, 2 ** 33]]) {
      const left = crc32Combine(crc32Combine(a, b, l1!), c, l2!);
      const right = crc32Combine(a, crc32Combine(b, c, l2!), l1! + l2!);
      expect(left).toBe(right);
    }
  });
});

interface Codec {
  name: string;
  /** Body bytes, 0 (or less) if it did not fit into cap. */
  compress(src: number, len: number, dst: number, cap: number): number;
  /** Bytes decoded, negative for a malformed body. */
  decompress(src: number, len: number, dst: number, cap: number): number;
  bound(n: number): number;
}

const lz4 = loadLz4();
const zstd = loadZstd();
const cctx = zstd.createCCtx();
const dctx = zstd.createDCtx();
const codecs: Codec[] = [
  {
    name: "lz4",
    compress: (s, n, d, c) => lz4.compress(s, n, d, c, 1),
    decompress: (s, n, d, c) => lz4.decompress(s, n, d, c),
    bound: lz4Bound,
  },
  ...[1, 3, 6, 19].map((level): Codec => ({
    name: `zstd-${level}`,
    compress: (s, n, d, c) => zstd.compress(cctx, s, n, d, c, level),
    decompress: (s, n, d, c) => zstd.decompress(dctx, s, n, d, c),
    bound: zstdBound,
  })),
];

describe("codec bindings", () => {
  test("bounds match LZ4_compressBound and ZSTD_compressBound", () => {
    const zbound = dlopen("libzstd.so.1", { ZSTD_compressBound: { args: [FFIType.u64], returns: FFIType.u64_fast } });
    for (const n of [0, 1, 255, 4000, 65536, 131071, 131072, 262144, 1 << 20]) {
      expect(lz4.bound(n)).toBe(lz4Bound(n));
      expect(Number(zbound.symbols.ZSTD_compressBound(n))).toBe(zstdBound(n));
    }
    zbound.close();
  });

  const text = textBytes(CHUNK);
  const random = randomBytes(CHUNK, 5);
  const cases: [string, Uint8Array][] = [
    ["empty", new Uint8Array(0)],
    ["1 byte", text.subarray(0, 1)],
    ["chunk-1 text", text.subarray(0, CHUNK - 1)],
    ["chunk text", text],
    ["chunk incompressible", random],
    ["chunk-1 incompressible", random.subarray(1)],
  ];
  const enc = new Uint8Array(Math.max(lz4Bound(CHUNK), zstdBound(CHUNK)) + 64);
  const dec = new Uint8Array(CHUNK + 64);
  for (const codec of codecs) {
    for (const [name, src] of cases) {
      test(`${codec.name} round trip: ${name}`, () => {
        const copy = new Uint8Array(Math.max(src.length, 1024)); // own buffer: a stable pointer
        copy.set(src);
        const n = codec.compress(ptr(copy), src.length, ptr(enc), enc.length);
        expect(n).toBeGreaterThan(0);
        expect(n).toBeLessThanOrEqual(codec.bound(src.length));
        if (name === "chunk text") expect(n).toBeLessThan(src.length / 4);
        const m = codec.decompress(ptr(enc), n, ptr(dec), src.length);
        expect(m).toBe(src.length);
        expect(crc32(dec.subarray(0, m))).toBe(crc32(src));
      });
    }

    test(`${codec.name}: incompressible input does not fit below its own size`, () => {
      const copy = new Uint8Array(random);
      expect(codec.compress(ptr(copy), copy.length, ptr(enc), copy.length - 1)).toBeLessThanOrEqual(0);
    });

    test(`${codec.name}: a body decoding to more than the room given is refused, not overrun`, () => {
      const src = new Uint8Array(text);
      const n = codec.compress(ptr(src), src.length, ptr(enc), enc.length);
      const guard = new Uint8Array(CHUNK + 64).fill(0xee);
      const m = codec.decompress(ptr(enc), n, ptr(guard), CHUNK - 1);
      expect(m === CHUNK - 1 || m < 0).toBe(true);
      expect(m).not.toBe(CHUNK);
      expect(guard[CHUNK - 1]).toBe(0xee);
    });

    test(`${codec.name}: a corrupted body is caught by the decoder or the CRC`, () => {
      const src = new Uint8Array(text);
      const crc = crc32(src);
      const n = codec.compress(ptr(src), src.length, ptr(enc), enc.length);
      const good = enc.slice(0, n);
      let byDecoder = 0;
      let byCrc = 0;
      let harmless = 0;
      for (let i = 0; i < 200; i++) {
        const bad = new Uint8Array(Math.max(n, 1024));
        bad.set(good);
        const at = (i * 7919) % n;
        bad[at] ^= 1 << i % 8;
        const m = codec.decompress(ptr(bad), n, ptr(dec), src.length);
        if (m !== src.length) byDecoder++;
        else if (crc32(dec.subarray(0, m)) !== crc) byCrc++;
        // A flipped bit zstd never reads (say, in a table entry no symbol uses) decodes to the
        // original: what passes the CRC must be exactly the original bytes.
        else if (Buffer.compare(dec.subarray(0, m), src) === 0) harmless++;
        else throw new Error(`corruption at byte ${at} went undetected`);
      }
      expect(byDecoder + byCrc + harmless).toBe(200);
      // zstd frames carry no checksum of their own here: the chunk CRC catches much of it.
      expect(byDecoder).toBeGreaterThan(20);
      expect(harmless).toBeLessThan(10);
    });
  }

  test("zstd: random bytes as a body are refused or fail the CRC, and never write past the room given", () => {
    const guard = new Uint8Array(CHUNK + 64);
    for (let seed = 1; seed <= 300; seed++) {
      const junk = randomBytes(64 + (seed % 7) * 100, seed);
      // A valid frame header now and then, so the decoder gets past the magic number.
      if (seed % 2) junk.set([0x28, 0xb5, 0x2f, 0xfd], 0);
      guard.fill(0xee);
      const m = zstd.decompress(dctx, ptr(junk), junk.length, ptr(guard), 4096);
      expect(m).toBeLessThanOrEqual(4096);
      expect(guard[4096]).toBe(0xee);
      if (m < 0) expect(zstd.lastError().length).toBeGreaterThan(0);
    }
  });

  for (const [lib, load, env, pkg, instead] of [
    ["liblz4", "loadLz4", "L2PIPE_LZ4_LIB", "install liblz4-1", "-0"],
    ["libzstd", "loadZstd", "L2PIPE_ZSTD_LIB", "install libzstd1", "--compress lz4"],
  ] as const) {
    test(`a missing ${lib} gives a clear system error`, () => {
      const module = lib === "liblz4" ? "lz4" : "zstd";
      const r = Bun.spawnSync({
        cmd: [process.execPath, "-e", `
          import { ${load} } from ${JSON.stringify(`${import.meta.dir}/../ffi/${module}`)};
          import { fromFfi } from ${JSON.stringify(import.meta.dir + "/../src/errors")};
          try { ${load}(); } catch (e) { console.log(JSON.stringify({ name: e.name, code: fromFfi(e).exitCode, message: e.message })); }
        `],
        env: { ...process.env, [env]: `/nonexistent/${lib}.so.1` },
      });
      const out = JSON.parse(r.stdout.toString());
      expect(out.name).toBe("SystemError"); // ffi/'s own; src/ makes it exit code 3
      expect(out.code).toBe(3);
      expect(out.message).toStartWith(`cannot load ${lib} (/nonexistent/${lib}.so.1: `);
      expect(out.message).toContain(pkg);
      expect(out.message).toContain(instead);
    });
  }
});
