// The sender's CompressPool feeding records through a reassembly ring into the receiver's
// OutputPipeline. The test plays both main threads: it copies finished records into the ring,
// publishes them (sometimes half a record at a time) and waits for consumed() to make room.
import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { closeFd, createEventFd, drainEventFd, makePipe, POLLIN, Poller, readFd, addressOf, setNonBlocking } from "../ffi/libc";
import { lz4Bound } from "../ffi/lz4";
import { CompressPool } from "../src/workers/compress-pool";
import { L2Error } from "../src/errors";
import { OutputPipeline, type OutputStatus } from "../src/workers/output-pipeline";
import { crc32Combine, END_RECORD, KIND_LZ4, KIND_RAW, KIND_ZSTD, readCrc, readRawLen, RECORD_HEADER, writeEnd } from "../src/record";
import { CODEC_LZ4, type CodecWord } from "../src/codec";

const dir = mkdtempSync(join(tmpdir(), "l2pipe-pipeline-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  const u32 = new Uint32Array(out.buffer, 0, n >>> 2);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < u32.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    u32[i] = x;
  }
  for (let i = u32.length * 4; i < n; i++) out[i] = i * 31;
  return out;
}

function textBytes(n: number, seed = 1): Uint8Array {
  const words = ["record", "chunk", "stream", "ethernet", "link", "frame", "the", "of", "lz4", "pipe", "stripe", "\n"];
  const parts: string[] = [];
  let len = 0;
  let x = seed;
  while (len < n) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const w = words[x % words.length]! + (x % 13 === 0 ? String(x % 1000) : "") + " ";
    parts.push(w);
    len += w.length;
  }
  return new TextEncoder().encode(parts.join("")).subarray(0, n);
}

function mixed(n: number): Uint8Array {
  const out = new Uint8Array(n);
  const MiB = 1 << 20;
  for (let off = 0, i = 0; off < n; off += MiB, i++) {
    const len = Math.min(MiB, n - off);
    out.set(i % 2 === 0 ? randomBytes(len, i + 1) : textBytes(len, i), off);
  }
  return out;
}

const sha256 = (b: Uint8Array) => new Bun.CryptoHasher("sha256").update(b).digest("hex");

/** A stream too large to hold in memory: `length` bytes produced on demand by `read`. */
interface Source {
  length: number;
  read(off: number, dst: Uint8Array): void;
}

interface RunOpts {
  workers: number;
  chunkSize: number;
  ringSize: number;
  slots?: number;
  /** OutputPipeline workers (parallel decode); default 1. */
  decoders?: number;
  /** Tell the pipeline, before the first record, to take records with this many of them (each
   * number in turn, as a receiver does for each sender it greets). */
  useWorkers?: number | number[];
  /** Create the OutputPipeline with this L2PIPE_LZ4_LIB (the pool is unaffected). */
  lateLz4Lib?: string;
  /** Create the OutputPipeline with this L2PIPE_ZSTD_LIB (the pool is unaffected). */
  lateZstdLib?: string;
  /** The pool's codec (default lz4); the pool loads libzstd for any other. */
  codec?: CodecWord;
  /** A lazy pool: no Worker before the first chunk (checked here). */
  lazy?: boolean;
  /** Change the pool's codec to this one after `switchAfter` chunks were submitted. */
  switchTo?: CodecWord;
  switchAfter?: number;
  /** Flip one byte of this chunk's record once it is in the ring (at corruptOffset, default mid-body). */
  corruptChunk?: number;
  corruptOffset?: number;
  /** Claim one byte more in the END record than was sent. */
  badEndLength?: boolean;
  /** Output to a pipe whose reader is already gone. */
  brokenPipe?: boolean;
  /** Output to a pipe that the test drains, instead of a file. */
  pipe?: boolean;
  /** Output to /dev/null (huge streams): only the pipeline's own length and CRC checks remain. */
  discard?: boolean;
}

interface RunResult {
  status: OutputStatus;
  output: Uint8Array;
  records: { raw: number; lz4: number; zstd: number };
  poolStats: ReturnType<CompressPool["stats"]>;
  workersStarted: number;
}

async function transfer(input: Uint8Array | Source, o: RunOpts): Promise<RunResult> {
  const src: Source = input instanceof Uint8Array
    ? { length: input.length, read: (off, dst) => dst.set(input.subarray(off, off + dst.length)) }
    : input;
  const poolWake = createEventFd();
  const outWake = createEventFd();
  const ring = new SharedArrayBuffer(o.ringSize);
  const ringU8 = new Uint8Array(ring);
  let outFd: number;
  let pipeRead = -1;
  let path = "";
  if (o.brokenPipe) {
    [pipeRead, outFd] = makePipe();
    closeFd(pipeRead);
    pipeRead = -1;
  } else if (o.pipe) {
    [pipeRead, outFd] = makePipe();
    setNonBlocking(pipeRead, true); // the writer's end stays blocking, as stdout would be
  } else if (o.discard) {
    outFd = openSync("/dev/null", "w");
  } else {
    outFd = openSync((path = join(dir, `out-${Math.random().toString(36).slice(2)}`)), "w+");
  }

  const usesZstd = (o.codec ?? CODEC_LZ4) !== CODEC_LZ4 || (o.switchTo ?? CODEC_LZ4) !== CODEC_LZ4;
  const pool = await CompressPool.create({
    workers: o.workers, chunkSize: o.chunkSize, slots: o.slots ?? 4 * o.workers, wakeFd: poolWake, zstd: usesZstd, codec: o.codec,
    lazy: o.lazy,
  });
  if (o.lazy) expect(pool.workersStarted()).toBe(0);
  else expect(pool.workersStarted()).toBeGreaterThanOrEqual(1); // the first is up, the next on its way
  expect(pool.workerCount()).toBe(o.workers);
  const out = await withEnv({ L2PIPE_LZ4_LIB: o.lateLz4Lib, L2PIPE_ZSTD_LIB: o.lateZstdLib }, () => OutputPipeline.create({
    ring, ringSize: o.ringSize, outFd, wakeFd: outWake, maxChunk: o.chunkSize, workers: o.decoders,
  }));
  for (const n of [o.useWorkers ?? []].flat()) out.useWorkers(n);
  const poller = new Poller(2);
  poller.set(0, poolWake, POLLIN);
  poller.set(1, outWake, POLLIN);

  const piped: Uint8Array[] = [];
  const pipeBuf = new Uint8Array(1 << 20);
  const pipeBufPtr = addressOf(pipeBuf);
  const endRec = new Uint8Array(END_RECORD);
  const endDv = new DataView(endRec.buffer);

  let inPos = 0;
  let wire = 0; // wire bytes copied into the ring
  let chunk = 0;
  let streamCrc = 0;
  let streamLen = 0;
  let ended = false;
  let pending = -1; // a finished record waiting for ring room
  const records = { raw: 0, lz4: 0, zstd: 0 };
  let submitted = 0;

  // Copies bytes to wire offset `at`, wrapping at the ring end.
  const toRing = (src: Uint8Array, at: number) => {
    const off = at % o.ringSize;
    const first = Math.min(src.length, o.ringSize - off);
    ringU8.set(src.subarray(0, first), off);
    if (first < src.length) ringU8.set(src.subarray(first), 0);
  };

  let status = out.status();
  const deadline = Date.now() + 60_000;
  for (;;) {
    status = out.status();
    if (status.finished || status.error !== null) break;
    if (Date.now() > deadline) throw new Error(`transfer stuck: ${JSON.stringify(status)} wire=${wire} consumed=${out.consumed()}`);

    let s: number;
    while (inPos < src.length && (s = pool.acquireInput()) >= 0) {
      const n = Math.min(o.chunkSize, src.length - inPos);
      src.read(inPos, n === o.chunkSize ? pool.inputView(s) : pool.inputView(s).subarray(0, n));
      // Before the submit: with one slot, every chunk before this one was claimed with the old codec.
      if (submitted++ === o.switchAfter) pool.setCodec(o.switchTo!);
      pool.submit(s, n);
      inPos += n;
    }
    while (pending >= 0 || (pending = pool.nextDone()) >= 0) {
      const len = pool.recordLength(pending);
      if (wire + len - out.consumed() > o.ringSize) break;
      const rec = pool.recordView(pending);
      const dv = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
      const raw = readRawLen(dv, 0);
      streamCrc = crc32Combine(streamCrc, readCrc(dv, 0), raw);
      streamLen += raw;
      if (rec[0] === KIND_RAW) records.raw++;
      else if (rec[0] === KIND_LZ4) records.lz4++;
      else if (rec[0] === KIND_ZSTD) records.zstd++;
      toRing(rec, wire);
      if (chunk === o.corruptChunk) {
        const at = wire + (o.corruptOffset ?? RECORD_HEADER + Math.floor((len - RECORD_HEADER) / 2));
        ringU8[at % o.ringSize] ^= 0x10;
      }
      // Half a record first: the worker must wait for the rest.
      out.publish(wire + (len >>> 1));
      wire += len;
      out.publish(wire);
      pool.release(pending);
      pending = -1;
      chunk++;
    }
    if (!ended && inPos === src.length && streamLen === src.length && wire + END_RECORD - out.consumed() <= o.ringSize) {
      writeEnd(endDv, 0, streamLen + (o.badEndLength ? 1 : 0), streamCrc);
      toRing(endRec, wire);
      wire += END_RECORD;
      out.publish(wire);
      ended = true;
    }
    if (pipeRead >= 0) {
      for (let n; (n = readFd(pipeRead, pipeBufPtr, pipeBuf.length)) > 0; ) piped.push(pipeBuf.slice(0, n));
    }
    poller.wait(pipeRead >= 0 ? 1 : 50);
    drainEventFd(poolWake);
    drainEventFd(outWake);
  }
  const poolStats = pool.stats();
  const workersStarted = pool.workersStarted();
  pool.close();
  out.close();

  let output: Uint8Array;
  if (o.brokenPipe) {
    closeFd(outFd);
    output = new Uint8Array(0);
  } else if (pipeRead >= 0) {
    closeFd(outFd);
    for (let n; (n = readFd(pipeRead, pipeBufPtr, pipeBuf.length)) > 0; ) piped.push(pipeBuf.slice(0, n));
    closeFd(pipeRead);
    output = new Uint8Array(Buffer.concat(piped));
  } else {
    closeSync(outFd);
    output = o.discard ? new Uint8Array(0) : new Uint8Array(readFileSync(path));
  }
  closeFd(poolWake);
  closeFd(outWake);
  return { status, output, records, poolStats, workersStarted };
}

/** Runs `f` with these environment variables set (undefined: left as they are), then restores them. */
async function withEnv<T>(vars: Record<string, string | undefined>, f: () => Promise<T>): Promise<T> {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) continue;
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  try {
    return await f();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

function expectIdentical(input: Uint8Array, r: RunResult) {
  expect(r.status.error).toBeNull();
  expect(r.status.finished).toBe(true);
  expect(r.status.written).toBe(input.length);
  expect(r.status.streamCrc).toBe(Bun.hash.crc32(input));
  expect(r.output.length).toBe(input.length);
  expect(sha256(r.output)).toBe(sha256(input));
}

const MiB = 1 << 20;
const inputs: Record<string, Uint8Array> = {
  compressible: textBytes(8 * MiB + 12345),
  random: randomBytes(8 * MiB + 777, 42),
  mixed: mixed(12 * MiB + 5),
};

describe("CompressPool -> ring -> OutputPipeline", () => {
  for (const workers of [1, 3]) {
    for (const [name, input] of Object.entries(inputs)) {
      test(`${name} data, ${workers} worker(s)`, async () => {
        const r = await transfer(input, { workers, chunkSize: 65536, ringSize: 1 << 20 });
        expectIdentical(input, r);
        if (name === "compressible") {
          expect(r.records.raw).toBe(0);
          expect(r.status.lz4Chunks).toBe(r.status.chunks);
        }
        if (name === "random") {
          expect(r.records.lz4).toBe(0);
          // The incompressible streak turns lz4 off except for probes.
          expect(r.poolStats.skippedChunks).toBeGreaterThan(r.poolStats.chunks / 2);
        }
        if (name === "mixed") {
          expect(r.records.raw).toBeGreaterThan(0);
          expect(r.records.lz4).toBeGreaterThan(0);
        }
        expect(r.poolStats.rawBytes).toBe(input.length);
        expect(r.status.chunks).toBe(r.poolStats.chunks);
      });
    }
  }

  test("a lazy pool starts its Workers at the first chunk (one after another), and the stream arrives exactly", async () => {
    const r = await transfer(inputs.mixed!, { workers: 3, chunkSize: 65536, ringSize: 1 << 20, lazy: true });
    expectIdentical(inputs.mixed!, r);
    expect(r.poolStats.rawBytes).toBe(inputs.mixed!.length);
    expect(r.workersStarted).toBeGreaterThanOrEqual(1);
  });

  test("empty and one-byte streams", async () => {
    for (const input of [new Uint8Array(0), new Uint8Array([0x5a])]) {
      const r = await transfer(input, { workers: 1, chunkSize: 65536, ringSize: 1 << 20 });
      expectIdentical(input, r);
      expect(r.status.chunks).toBe(input.length);
    }
  });

  test("a stream beyond 4 GiB (wire offsets past 2^32, 2 output workers)", async () => {
    // Incompressible 1 MiB pattern repeated: RAW records, so the wire stream is as long as the input.
    const pattern = randomBytes(MiB, 77);
    const length = 4 * 1024 * MiB + 3 * 65536 + 1234;
    const source: Source = {
      length,
      read(off, dst) {
        const p = off % MiB; // chunks never straddle the pattern end: 64 KiB divides 1 MiB
        dst.set(pattern.subarray(p, p + dst.length));
      },
    };
    let crc = 0;
    for (let off = 0; off < length; off += MiB) crc = Bun.hash.crc32(pattern.subarray(0, Math.min(MiB, length - off)), crc);
    const r = await transfer(source, { workers: 2, chunkSize: 65536, ringSize: 4 * MiB, discard: true, decoders: 2 });
    expect(r.status.error).toBeNull();
    expect(r.status.finished).toBe(true);
    expect(r.status.written).toBe(length);
    expect(r.status.streamCrc).toBe(crc);
    expect(r.records.lz4).toBe(0);
  }, 120_000);

  test("small ring: records and headers wrap around the ring end", async () => {
    // 4000-byte chunks in an 8 KiB ring: nearly every record straddles the end at some offset.
    const input = mixed(3 * MiB + 999);
    for (const ringSize of [8192, 16384]) {
      const r = await transfer(input, { workers: 2, chunkSize: 4000, ringSize });
      expectIdentical(input, r);
    }
  });

  test("output through a pipe", async () => {
    const input = inputs.mixed!;
    const r = await transfer(input, { workers: 2, chunkSize: 262144, ringSize: 4 * MiB, pipe: true });
    expectIdentical(input, r);
  });

  for (const [name, input, expected, codec] of [
    ["RAW", randomBytes(2 * MiB, 3), /CRC mismatch/, CODEC_LZ4],
    ["LZ4", textBytes(2 * MiB), /LZ4 body|CRC mismatch/, CODEC_LZ4],
    ["ZSTD", textBytes(2 * MiB), /ZSTD body|CRC mismatch/, 3],
  ] as const) {
    test(`a corrupted ${name} record stops the output before that chunk`, async () => {
      const chunkSize = 65536;
      const r = await transfer(input, { workers: 2, chunkSize, ringSize: 1 << 20, corruptChunk: 9, codec });
      expect(r.records[name.toLowerCase() as "raw" | "lz4" | "zstd"]).toBeGreaterThan(9);
      expect(r.status.finished).toBe(false);
      expect(r.status.error).toContain("chunk 9 (stream offset 589824");
      expect(r.status.error).toMatch(expected);
      expect(r.output.length).toBe(9 * chunkSize);
      expect(sha256(r.output)).toBe(sha256(input.subarray(0, 9 * chunkSize)));
      expect(r.status.written).toBe(9 * chunkSize);
    });
  }

  describe("parallel decode", () => {
    test("3 output workers told to use 1 (a stream that does not compress): exact, corruption still named", async () => {
      const input = inputs.mixed!;
      expectIdentical(input, await transfer(input, { workers: 2, chunkSize: 4000, ringSize: 16384, decoders: 3, useWorkers: 1 }));
      const random = randomBytes(2 * MiB, 5);
      expectIdentical(random, await transfer(random, { workers: 2, chunkSize: 65536, ringSize: 1 << 20, decoders: 3, useWorkers: 1 }));
      const r = await transfer(random, { workers: 2, chunkSize: 65536, ringSize: 1 << 20, corruptChunk: 10, decoders: 3, useWorkers: 1 });
      expect(r.status.error).toContain("chunk 10 (stream offset 655360");
    });

    test("the last word before the first record counts: a receiver that greeted a RAW sender, then listened again", async () => {
      const input = inputs.mixed!;
      const r = await transfer(input, { workers: 2, chunkSize: 65536, ringSize: 1 << 20, decoders: 3, useWorkers: [1, Infinity] });
      expectIdentical(input, r);
      expect(r.status.workers).toBe(3);
      const raw = await transfer(input, { workers: 2, chunkSize: 65536, ringSize: 1 << 20, decoders: 3, useWorkers: [Infinity, 1] });
      expectIdentical(input, raw);
      expect(raw.status.workers).toBe(1);
      expect((await transfer(input, { workers: 2, chunkSize: 65536, ringSize: 1 << 20, decoders: 3 })).status.workers).toBe(3);
    });

    for (const decoders of [2, 3]) {
      test(`${decoders} output workers: mixed data, small and large rings`, async () => {
        const input = inputs.mixed!;
        expectIdentical(input, await transfer(input, { workers: 2, chunkSize: 65536, ringSize: 1 << 20, decoders }));
        expectIdentical(input, await transfer(input, { workers: 2, chunkSize: 4000, ringSize: 16384, decoders }));
      });

      test(`${decoders} output workers: corruption is reported at its chunk, nothing after it is written`, async () => {
        for (const [input, expected] of [[randomBytes(2 * MiB, 3), /CRC mismatch/], [textBytes(2 * MiB), /LZ4 body|CRC mismatch/]] as const) {
          for (const bad of [9, 10, 11]) {
            const r = await transfer(input, { workers: 2, chunkSize: 65536, ringSize: 1 << 20, corruptChunk: bad, decoders });
            expect(r.status.error).toContain(`chunk ${bad} (stream offset ${bad * 65536}`);
            expect(r.status.error).toMatch(expected);
            expect(r.output.length).toBe(bad * 65536);
            expect(sha256(r.output)).toBe(sha256(input.subarray(0, bad * 65536)));
          }
        }
        const r = await transfer(textBytes(MiB), { workers: 1, chunkSize: 65536, ringSize: 1 << 20, corruptChunk: 5, corruptOffset: 0, decoders });
        expect(r.status.error).toContain("chunk 5 (stream offset 327680");
        expect(r.status.error).toContain("corrupt record header");
        expect(r.output.length).toBe(5 * 65536);
        const e = await transfer(textBytes(MiB), { workers: 1, chunkSize: 65536, ringSize: 1 << 20, badEndLength: true, decoders });
        expect(e.status.error).toContain("stream length mismatch at END");
        expect(e.output.length).toBe(MiB);
      });
    }
  });

  test("a corrupted header, a wrong END and a closed output are reported", async () => {
    const input = textBytes(MiB);
    const opts = { workers: 1, chunkSize: 65536, ringSize: 1 << 20 };
    let r = await transfer(input, { ...opts, corruptChunk: 3, corruptOffset: 4 }); // rawLen's top byte
    expect(r.status.error).toContain("chunk 3 (stream offset 196608");
    expect(r.status.error).toContain("corrupt record header");
    expect(r.output.length).toBe(3 * 65536);

    r = await transfer(input, { ...opts, badEndLength: true });
    expect(r.status.error).toContain(`stream length mismatch at END: sender sent ${MiB + 1} bytes, ${MiB} received`);
    expect(r.output.length).toBe(MiB);

    r = await transfer(input, { ...opts, brokenPipe: true });
    expect(r.status.error).toBe("stdout closed (broken pipe)");
    // Verified bytes wait in the 256 KiB block buffer; the first block's write met the closed pipe.
    expect(r.status.written).toBeLessThanOrEqual(256 * 1024);
  });

  test("a missing liblz4 makes create() reject with a clear message", async () => {
    const saved = process.env.L2PIPE_LZ4_LIB;
    process.env.L2PIPE_LZ4_LIB = "/nonexistent";
    try {
      const err = await CompressPool.create({ workers: 2, chunkSize: 65536, slots: 4, wakeFd: -1 }).then(
        (p) => (p.close(), null),
        (e) => e,
      );
      expect(err).toBeInstanceOf(L2Error);
      expect(err.exitCode).toBe(3);
      expect(err.message).toContain("liblz4");
      expect(err.message).toContain("install liblz4-1");

    } finally {
      if (saved === undefined) delete process.env.L2PIPE_LZ4_LIB;
      else process.env.L2PIPE_LZ4_LIB = saved;
    }
  });

  test("without liblz4 a receiver takes RAW streams and names the first LZ4 chunk it cannot decode", async () => {
    const raw = randomBytes(MiB, 9);
    expectIdentical(raw, await transfer(raw, { workers: 1, chunkSize: 65536, ringSize: 1 << 20, lateLz4Lib: "/nonexistent" }));
    for (const decoders of [1, 2]) {
      const input = new Uint8Array(2 * MiB);
      input.set(raw);
      input.set(textBytes(MiB), MiB);
      const r = await transfer(input, { workers: 1, chunkSize: 65536, ringSize: 1 << 20, lateLz4Lib: "/nonexistent", decoders });
      expect(r.status.error).toContain("chunk 16 (stream offset 1048576");
      expect(r.status.error).toContain("liblz4");
      expect(r.output.length).toBe(MiB);
    }
  });

  test("ring too small for a record is refused up front", async () => {
    const ring = new SharedArrayBuffer(65536);
    expect(OutputPipeline.create({ ring, ringSize: 65536, outFd: 1, wakeFd: -1, maxChunk: 65536 })).rejects.toThrow(
      "does not fit",
    );
    expect(lz4Bound(65536) + RECORD_HEADER).toBeGreaterThan(65536);
  });
});

describe("zstd through the pool and the output workers", () => {
  const C = 65536;
  const text = textBytes(4 * C + 100, 7);
  for (const codec of [CODEC_LZ4, 1, 3, 19]) {
    test(`codec ${codec === CODEC_LZ4 ? "lz4" : `zstd-${codec}`}: sizes 0, 1, chunk-1, chunk, chunk+1, 3 chunks+5`, async () => {
      for (const n of [0, 1, C - 1, C, C + 1, 3 * C + 5]) {
        const input = text.subarray(0, n);
        const r = await transfer(input, { workers: 2, chunkSize: C, ringSize: 1 << 20, codec });
        expectIdentical(input, r);
        expect(r.status.chunks).toBe(Math.ceil(n / C));
        // Every chunk of text shrinks but a tail of a few bytes (1 or 5), which travels RAW.
        const compressed = Math.floor(n / C) + (n % C >= 64 ? 1 : 0);
        expect(codec === CODEC_LZ4 ? r.records.lz4 : r.records.zstd).toBe(compressed);
        expect(codec === CODEC_LZ4 ? r.status.lz4Chunks : r.status.zstdChunks).toBe(compressed);
        const name = codec === CODEC_LZ4 ? "lz4" : `zstd-${codec}`;
        expect(r.poolStats.codecs[name]?.chunks ?? 0).toBe(compressed);
      }
    });
  }

  test("zstd-3 on a stream switching between text and random bytes, records wrapping a small ring", async () => {
    const input = inputs.mixed!;
    for (const [chunkSize, ringSize] of [[65536, 1 << 20], [4000, 16384]]) {
      const r = await transfer(input, { workers: 2, chunkSize, ringSize, codec: 3, decoders: 2 });
      expectIdentical(input, r);
      expect(r.records.zstd).toBeGreaterThan(0);
      expect(r.records.raw).toBeGreaterThan(0);
      expect(r.records.lz4).toBe(0);
      expect(r.poolStats.codecs["zstd-3"]!.chunks).toBe(r.records.zstd);
    }
  });

  test("the codec changes mid-stream (the control word): both kinds arrive, counted per codec", async () => {
    const input = inputs.compressible!;
    const r = await transfer(input, { workers: 3, chunkSize: 65536, ringSize: 1 << 20, switchTo: 1, switchAfter: 40, decoders: 2 });
    expectIdentical(input, r);
    expect(r.records.lz4).toBeGreaterThanOrEqual(30); // chunks claimed before the switch
    expect(r.records.zstd).toBeGreaterThan(50);
    expect(r.poolStats.codecs.lz4!.chunks + r.poolStats.codecs["zstd-1"]!.chunks).toBe(r.status.chunks);
    expect(r.poolStats.codecs["zstd-1"]!.encodedBytes).toBeLessThan(r.poolStats.codecs["zstd-1"]!.rawBytes);
  });

  test("without libzstd a receiver takes RAW and LZ4 records and names the first ZSTD chunk", async () => {
    const mixedInput = inputs.mixed!;
    expectIdentical(mixedInput, await transfer(mixedInput, { workers: 1, chunkSize: 65536, ringSize: 1 << 20, lateZstdLib: "/nonexistent" }));
    const input = textBytes(2 * MiB);
    const r = await transfer(input, {
      workers: 1, chunkSize: 65536, ringSize: 1 << 20, lateZstdLib: "/nonexistent", switchTo: 1, switchAfter: 16, slots: 1,
    });
    expect(r.status.error).toContain("chunk 16 (stream offset 1048576");
    expect(r.status.error).toContain("ZSTD record, but cannot load libzstd");
    expect(r.status.error).toContain("install libzstd1");
    expect(r.output.length).toBe(MiB);
    expect(sha256(r.output)).toBe(sha256(input.subarray(0, MiB)));
  });

  test("fuzz: a damaged ZSTD record never lets unverified bytes out (40 seeds)", async () => {
    const C = 16384;
    const input = textBytes(24 * C, 11);
    let x = 12345;
    const rnd = (n: number) => ((x = (x * 1103515245 + 12345) & 0x7fffffff) % n);
    const seen = new Set<string>();
    for (let seed = 0; seed < 40; seed++) {
      const bad = 2 + rnd(20);
      // Anywhere in the record: header fields included (offset < 16).
      const r = await transfer(input, { workers: 1, chunkSize: C, ringSize: 1 << 20, codec: 3, corruptChunk: bad, corruptOffset: rnd(600) });
      expect(r.status.finished).toBe(false);
      expect(r.status.error).toContain(`chunk ${bad} `);
      seen.add(/ZSTD body is corrupt|ZSTD body decodes|CRC mismatch|corrupt record header|did not fit|ZSTD/.exec(r.status.error!)?.[0] ?? r.status.error!);
      // Exactly the chunks before the damaged one, verified.
      expect(r.output.length).toBe(bad * C);
      expect(sha256(r.output)).toBe(sha256(input.subarray(0, bad * C)));
    }
    // The decoder itself caught some (not only the CRC after it).
    expect([...seen].some((m) => m.startsWith("ZSTD body"))).toBe(true);
  });
});
