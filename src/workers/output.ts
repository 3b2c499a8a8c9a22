// Output Worker (one of n, n >= 1): takes every n-th record of the chain in the reassembly ring,
// verifies its chunk (decode, length, CRC) before writing any of it, and writes when it holds the
// write turn, so output is in stream order. The running stream length and CRC live in the shared
// buffer, advanced by the turn holder, and are checked against the END record. Blocking writes:
// stdout back-pressure stalls only the workers.
import { addressOf, EAGAIN, EPIPE, libc, setPipeSize, signalEventFd, strerror, writeFd } from "../../ffi/libc";
import { loadLz4, type Lz4 } from "../../ffi/lz4";
import { loadZstd, type Zstd } from "../../ffi/zstd";
import { L2Error } from "../errors";
import { CrcLogReader } from "./crc-log";
import { crcOfRing } from "../crc32";
import {
  MAX_OUTPUT_WORKERS, OB_CHAIN_POS, OB_CONSUMED, OB_OUT, OB_PUBLISHED, OB_WRITTEN, OF_STALL_MS, OI_CHAIN_SEQ, OI_CHUNKS, OI_EXITED,
  OI_ACTIVE, OI_BLOCK_FILL, OI_ERROR_LEN, OI_LOCK, OI_LZ4_CHUNKS, OI_STATE, OI_STOP, OI_STREAM_CRC, OI_TURN, OI_WAITING, OI_ZSTD_CHUNKS, OUT_ERROR_MAX,
  OUT_ERROR_OFF, STATE_FAILED, STATE_FINISHED, STATE_RUNNING, maxBodyLength, type OutputInit,
} from "./output-pipeline";
import {
  crc32Combine, END_BODY, hex, KIND_END, KIND_LZ4, KIND_RAW, KIND_ZSTD, readCrc, readEncLen, readEndTotal, readFlags,
  readKind, readRawLen, readReserved, RECORD_HEADER,
} from "../record";

declare var self: Worker;

self.onmessage = (ev: MessageEvent) => {
  self.onmessage = null;
  const init = ev.data as OutputInit;
  try {
    libc(); // open libc now, while workers are started one at a time
  } catch (e) {
    const err = e instanceof L2Error ? e : new L2Error(String(e));
    postMessage({ type: "error", message: err.message, exitCode: err.exitCode });
    return;
  }
  if (init.id === 0) setPipeSize(init.outFd, 1 << 20); // fails harmlessly when not a pipe
  postMessage({ type: "ready" });
  const i32 = new Int32Array(init.ctl);
  try {
    new Output(init).run();
  } finally {
    Atomics.add(i32, OI_EXITED, 1);
    Atomics.notify(i32, OI_EXITED);
  }
  process.exit(0);
};

/** close(), or another worker failed: leave quietly. */
class Stop extends Error {}

// Problems found before this worker's write turn, reported once it holds the turn (so that the
// chunk index and stream offset in the message are exact and everything before is written).
const OK = 0;
const BAD_CRC = 1;
const BAD_LZ4 = 2;
const BAD_ZSTD = 3;

class Output {
  private readonly big: BigInt64Array;
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private readonly ringU8: Uint8Array;
  private readonly ringDv: DataView;
  private readonly ringPtr: number;
  // Scratch: a wrapped header, a wrapped LZ4 body, the decoded chunk. Allocated once.
  private readonly hdr = new Uint8Array(64);
  private readonly hdrDv = new DataView(this.hdr.buffer);
  private readonly scratch: Uint8Array;
  private readonly scratchPtr: number;
  private readonly out: Uint8Array;
  private readonly outPtr: number;
  private readonly blk: Uint8Array;
  private readonly blkPtr: number;
  private readonly maxEnc: number;
  private readonly wakeEvery: number;
  /** libzstd and this worker's decoding context, made at the first ZSTD record. */
  private zstd: Zstd | null = null;
  private dctx = 0;

  /** Workers taking records, decided by the main thread before the first record (see awaitActive). */
  private n = 1;
  private pos = 0; // wire offset of this worker's next record
  private rec: number; // index of that record
  private published = 0;
  private lastWake = 0;
  private consumedTo = 0;
  /** Where RAW chunks' CRCs are built from, mostly without reading them (null: read them). */
  private readonly crcLog: CrcLogReader | null;
  /** Loaded at the first LZ4 record: a receiver of RAW streams needs no liblz4. */
  private lz4: Lz4 | null = null;

  constructor(
    private readonly o: OutputInit,
  ) {
    this.big = new BigInt64Array(o.ctl);
    this.i32 = new Int32Array(o.ctl);
    this.f64 = new Float64Array(o.ctl);
    this.ringU8 = new Uint8Array(o.ring, 0, o.ringSize);
    this.ringDv = new DataView(o.ring, 0, o.ringSize);
    this.ringPtr = addressOf(this.ringU8);
    this.blk = new Uint8Array(o.block);
    this.blkPtr = addressOf(this.blk);
    this.maxEnc = maxBodyLength(o.maxChunk);
    this.scratch = new Uint8Array(Math.max(this.maxEnc, 1024));
    this.scratchPtr = addressOf(this.scratch);
    this.out = new Uint8Array(Math.max(o.maxChunk, 1024));
    this.outPtr = addressOf(this.out);
    this.wakeEvery = Math.max(1, Math.floor(o.ringSize / 8));
    this.rec = o.id;
    this.crcLog = o.crcLog ? new CrcLogReader(o.crcLog) : null;
  }

  run(): void {
    try {
      this.n = this.awaitActive();
      // Not needed for this stream (it has no LZ4 chunks to decode in parallel): stand aside.
      if (this.o.id >= this.n) return;
      while (this.step());
    } catch (e) {
      // What is in the block buffer was verified: it belongs to the prefix that gets out.
      this.flushVerified();
      if (e instanceof Stop) return;
      this.fail(e instanceof Error ? e.message : String(e));
    }
  }

  private flushVerified(): void {
    if (this.n !== 1 && Atomics.load(this.i32, OI_TURN) !== (this.rec | 0)) return;
    try {
      this.flushBlock();
    } catch {
      // the output itself failed: nothing more to save
    }
  }

  /** Handles this worker's next record; false once it has nothing more to do. */
  private step(): boolean {
    const { ringSize } = this.o;
    const workers = this.n;
    if (workers > 1) {
      this.pos = this.receiveChain();
      if (this.pos < 0) {
        this.handChain(-1); // past END: tell the next worker too
        return false;
      }
    }
    this.waitFor(this.pos + RECORD_HEADER);
    const at = this.pos % ringSize; // not `&`: offsets go beyond 2^32
    let dv = this.ringDv;
    let h = at;
    if (at + RECORD_HEADER > ringSize) {
      for (let i = 0; i < RECORD_HEADER; i++) this.hdr[i] = this.ringU8[(at + i) % ringSize]!;
      dv = this.hdrDv;
      h = 0;
    }
    const kind = readKind(dv, h);
    const rawLen = readRawLen(dv, h);
    const encLen = readEncLen(dv, h);
    const crc = readCrc(dv, h);
    const bad =
      readFlags(dv, h) !== 0 || readReserved(dv, h) !== 0 ||
      (kind === KIND_RAW && (rawLen > this.o.maxChunk || encLen !== rawLen)) ||
      ((kind === KIND_LZ4 || kind === KIND_ZSTD) && (rawLen > this.o.maxChunk || encLen === 0 || encLen > this.maxEnc)) ||
      (kind === KIND_END && (rawLen !== 0 || encLen !== END_BODY)) ||
      (kind !== KIND_RAW && kind !== KIND_LZ4 && kind !== KIND_ZSTD && kind !== KIND_END);
    if (bad) {
      this.awaitTurn();
      throw new Error(`${this.where()}: corrupt record header (kind ${kind}, rawLen ${rawLen}, encLen ${encLen})`);
    }
    const end = this.pos + RECORD_HEADER + encLen;
    if (workers > 1) this.handChain(kind === KIND_END ? -1 : end);
    this.waitFor(end);
    const body = (at + RECORD_HEADER) % ringSize;
    const first = Math.min(encLen, ringSize - body); // body bytes before the ring end

    if (kind === KIND_END) {
      for (let i = 0; i < END_BODY; i++) this.hdr[RECORD_HEADER + i] = this.ringU8[(body + i) % ringSize]!;
      const total = readEndTotal(this.hdrDv, 0);
      this.awaitTurn();
      const written = Number(Atomics.load(this.big, OB_WRITTEN));
      const streamCrc = Atomics.load(this.i32, OI_STREAM_CRC) >>> 0;
      if (total !== written) {
        throw new Error(`stream length mismatch at END: sender sent ${total} bytes, ${written} received`);
      }
      if (crc !== streamCrc) {
        throw new Error(`stream CRC mismatch at END: sender 0x${hex(crc)}, received 0x${hex(streamCrc)}`);
      }
      this.flushBlock();
      this.consume(end);
      Atomics.store(this.i32, OI_STATE, STATE_FINISHED);
      this.wake();
      return false;
    }

    // Verify (and decode) before taking the turn: this is the part that runs in parallel.
    let chunkCrc: number;
    let problem = OK;
    let decoded = 0;
    if (kind === KIND_RAW) {
      const from = this.pos + RECORD_HEADER;
      chunkCrc = this.crcLog
        ? this.crcLog.crcOf(from, from + encLen, this.ringU8, ringSize)
        : crcOfRing(this.ringU8, ringSize, from, from + encLen);
      if (chunkCrc !== crc) problem = BAD_CRC;
    } else {
      const lz4 = kind === KIND_LZ4 ? (this.lz4 ?? this.loadLz4Late()) : null;
      const zstd = kind === KIND_ZSTD ? (this.zstd ?? this.loadZstdLate()) : null;
      let src = this.ringPtr + body;
      if (first < encLen) {
        this.scratch.set(this.ringU8.subarray(body, ringSize), 0);
        this.scratch.set(this.ringU8.subarray(0, encLen - first), first);
        src = this.scratchPtr;
      }
      // Decoded into `out` (rawLen bytes at most: a longer chunk is an error, never an overrun).
      decoded = lz4 ? lz4.decompress(src, encLen, this.outPtr, rawLen) : zstd!.decompress(this.dctx, src, encLen, this.outPtr, rawLen);
      chunkCrc = decoded === rawLen ? Bun.hash.crc32(rawLen === this.out.length ? this.out : this.out.subarray(0, rawLen)) : 0;
      if (decoded !== rawLen) problem = lz4 ? BAD_LZ4 : BAD_ZSTD;
      else if (chunkCrc !== crc) problem = BAD_CRC;
    }

    this.awaitTurn();
    if (problem === BAD_CRC) throw new Error(`${this.where()}: CRC mismatch (record 0x${hex(crc)}, data 0x${hex(chunkCrc)})`);
    if (problem === BAD_LZ4) {
      throw new Error(decoded < 0
        ? `${this.where()}: LZ4 body is corrupt (LZ4_decompress_safe returned ${decoded})`
        : `${this.where()}: LZ4 body decodes to ${decoded} bytes, header says ${rawLen}`);
    }
    if (problem === BAD_ZSTD) {
      throw new Error(decoded < 0
        ? `${this.where()}: ZSTD body is corrupt (ZSTD_decompressDCtx: ${this.zstd!.lastError()})`
        : `${this.where()}: ZSTD body decodes to ${decoded} bytes, header says ${rawLen}`);
    }
    if (kind === KIND_RAW) {
      // Written straight from the ring (in two pieces if it wraps), then its space is released.
      this.emit(this.ringU8, body, first, this.ringPtr + body);
      if (first < encLen) this.emit(this.ringU8, 0, encLen - first, this.ringPtr);
      this.consume(end);
    } else {
      this.consume(end); // decoded: the main thread may reuse the ring space during the write
      this.emit(this.out, 0, rawLen, this.outPtr);
      Atomics.add(this.i32, kind === KIND_LZ4 ? OI_LZ4_CHUNKS : OI_ZSTD_CHUNKS, 1);
    }
    // int32s in, as every caller passes them (see FrameCrc in wire.ts).
    const streamCrc = Atomics.load(this.i32, OI_STREAM_CRC);
    Atomics.store(this.i32, OI_STREAM_CRC, crc32Combine(streamCrc, chunkCrc | 0, rawLen) | 0);
    Atomics.store(this.big, OB_WRITTEN, BigInt(Number(Atomics.load(this.big, OB_WRITTEN)) + rawLen));
    Atomics.add(this.i32, OI_CHUNKS, 1);
    // Nothing more has arrived yet: a trickling stream is written as it comes, not held back
    // for a whole block (unless --block asked for whole blocks). Done while holding the turn.
    if (!this.o.strictBlocks && Number(Atomics.load(this.big, OB_PUBLISHED)) <= end) this.flushBlock();
    this.rec++;
    this.passTurn();
    this.pos = end;
    this.rec += workers - 1;
    return true;
  }

  /** The wire offset of record this.rec, from the worker that parsed the record before it (-1: past END). */
  private receiveChain(): number {
    if (this.rec === 0) return 0;
    const slot = this.rec % this.n;
    const want = this.rec | 0;
    for (;;) {
      const seq = Atomics.load(this.i32, OI_CHAIN_SEQ + slot);
      if (seq === want) return Number(Atomics.load(this.big, OB_CHAIN_POS + slot));
      if (this.stopped()) throw new Stop();
      Atomics.wait(this.i32, OI_CHAIN_SEQ + slot, seq);
    }
  }

  /** Hands the offset of record this.rec + 1 to its owner. */
  private handChain(next: number): void {
    const k = this.rec + 1;
    const slot = k % this.n;
    Atomics.store(this.big, OB_CHAIN_POS + slot, BigInt(next));
    Atomics.store(this.i32, OI_CHAIN_SEQ + slot, k | 0);
    Atomics.notify(this.i32, OI_CHAIN_SEQ + slot);
  }

  private where(): string {
    return `chunk ${this.rec} (stream offset ${Number(Atomics.load(this.big, OB_WRITTEN))}, wire offset ${this.pos})`;
  }

  private stopped(): boolean {
    return Atomics.load(this.i32, OI_STOP) !== 0 || Atomics.load(this.i32, OI_STATE) !== STATE_RUNNING;
  }

  /** Blocks until every record before this.rec has been written. */
  private awaitTurn(): void {
    if (this.n === 1) return;
    const me = this.rec | 0;
    for (;;) {
      const t = Atomics.load(this.i32, OI_TURN);
      if (t === me) return;
      if (this.stopped()) throw new Stop();
      Atomics.wait(this.i32, OI_TURN, t);
    }
  }

  private passTurn(): void {
    if (this.n === 1) return;
    Atomics.store(this.i32, OI_TURN, this.rec | 0);
    Atomics.notify(this.i32, OI_TURN);
  }

  private loadLz4Late(): Lz4 {
    return this.loadLate("LZ4", () => (this.lz4 = loadLz4()));
  }

  private loadZstdLate(): Zstd {
    return this.loadLate("ZSTD", () => {
      const zstd = loadZstd();
      this.dctx = zstd.createDCtx();
      return (this.zstd = zstd);
    });
  }

  /** Loads a decoder at its first record, or fails naming that record and why. */
  private loadLate<T>(kind: string, load: () => T): T {
    // Two workers may meet their first such record together: one dlopen at a time.
    while (Atomics.compareExchange(this.i32, OI_LOCK, 0, 1) !== 0) Atomics.wait(this.i32, OI_LOCK, 1, 10);
    let reason = "";
    let loaded: T | null = null;
    try {
      loaded = load();
    } catch (e) {
      reason = e instanceof Error ? e.message : String(e);
    } finally {
      Atomics.store(this.i32, OI_LOCK, 0);
      Atomics.notify(this.i32, OI_LOCK);
    }
    if (loaded) return loaded;
    this.awaitTurn(); // outside the lock: the turn holder may need it
    throw new Error(`${this.where()}: ${kind} record, but ${reason}`);
  }

  /** Blocks until the main thread has said how many workers take records (OutputPipeline.useWorkers). */
  private awaitActive(): number {
    for (;;) {
      if (this.stopped()) throw new Stop();
      const n = Atomics.load(this.i32, OI_ACTIVE);
      if (n > 0) return Math.min(n, this.o.workers);
      Atomics.wait(this.i32, OI_ACTIVE, 0);
    }
  }

  /** Blocks until wire bytes [0, target) are published. */
  private waitFor(target: number): void {
    if (this.published >= target) return;
    this.published = Number(Atomics.load(this.big, OB_PUBLISHED));
    if (this.published >= target) return;
    // Going idle: whatever was consumed since the last wake-up must reach the main thread now.
    if (this.consumedTo > this.lastWake) this.wake();
    const t0 = performance.now();
    for (;;) {
      if (this.stopped()) throw new Stop();
      Atomics.add(this.i32, OI_WAITING, 1);
      const seen = Atomics.load(this.big, OB_PUBLISHED);
      if (Number(seen) < target && !this.stopped()) Atomics.wait(this.big, OB_PUBLISHED, seen);
      Atomics.sub(this.i32, OI_WAITING, 1);
      this.published = Number(Atomics.load(this.big, OB_PUBLISHED));
      if (this.published >= target) break;
    }
    this.f64[OF_STALL_MS + this.o.id] += performance.now() - t0;
  }

  private consume(end: number): void {
    this.consumedTo = end;
    Atomics.store(this.big, OB_CONSUMED, BigInt(end));
    if (end - this.lastWake >= this.wakeEvery) this.wake();
  }

  private wake(): void {
    this.lastWake = this.consumedTo;
    if (this.o.wakeFd >= 0) signalEventFd(this.o.wakeFd);
  }

  /**
   * Writes verified bytes in blocks of exactly blockSize (the last one of the stream may be
   * short), as tape drives want. Whole blocks go straight from the source; the rest waits in the
   * shared block buffer, whose fill level is shared by the workers, who write in turn.
   */
  private emit(src: Uint8Array, off: number, len: number, ptr: number): void {
    const bs = this.o.blockSize;
    let fill = this.i32[OI_BLOCK_FILL]!;
    if (fill > 0) {
      const take = Math.min(bs - fill, len);
      this.blk.set(src.subarray(off, off + take), fill);
      fill += take;
      off += take;
      ptr += take;
      len -= take;
      if (fill === bs) {
        this.writeAll(this.blkPtr, bs);
        fill = 0;
      }
    }
    // One block per write: a tape drive in variable-block mode makes a record of each write.
    while (fill === 0 && len >= bs) {
      this.writeAll(ptr, bs);
      off += bs;
      ptr += bs;
      len -= bs;
    }
    if (len > 0) {
      this.blk.set(src.subarray(off, off + len), fill);
      fill += len;
    }
    this.i32[OI_BLOCK_FILL] = fill;
  }

  private flushBlock(): void {
    const fill = this.i32[OI_BLOCK_FILL]!;
    if (fill > 0) this.writeAll(this.blkPtr, fill);
    this.i32[OI_BLOCK_FILL] = 0;
  }

  private writeAll(p: number, len: number): void {
    while (len > 0) {
      const n = writeFd(this.o.outFd, p, len);
      if (n > 0) {
        Atomics.add(this.big, OB_OUT, BigInt(n));
        p += n;
        len -= n;
      } else if (n === -EAGAIN) {
        // Someone left the fd non-blocking: back off instead of spinning.
        Atomics.wait(this.i32, OI_STOP, 0, 1);
        if (Atomics.load(this.i32, OI_STOP) !== 0) throw new Stop();
      } else if (n === -EPIPE) {
        throw new Error("stdout closed (broken pipe)");
      } else {
        throw new Error(`write to stdout failed: ${n === 0 ? "wrote nothing" : strerror(-n)}`);
      }
    }
  }

  /** Called by the worker holding the write turn (or by any worker for an internal fault). */
  private fail(message: string): void {
    // First failure wins; the message is in place before the state says FAILED.
    if (Atomics.compareExchange(this.i32, OI_ERROR_LEN, 0, -1) !== 0) return;
    const bytes = new TextEncoder().encode(message);
    const len = Math.min(bytes.length, OUT_ERROR_MAX);
    new Uint8Array(this.o.ctl, OUT_ERROR_OFF, len).set(bytes.subarray(0, len));
    Atomics.store(this.i32, OI_ERROR_LEN, len);
    if (Atomics.compareExchange(this.i32, OI_STATE, STATE_RUNNING, STATE_FAILED) !== STATE_RUNNING) return;
    // Wake the other workers so they see the failure and leave.
    Atomics.notify(this.i32, OI_TURN);
    for (let i = 0; i < MAX_OUTPUT_WORKERS; i++) Atomics.notify(this.i32, OI_CHAIN_SEQ + i);
    Atomics.notify(this.big, OB_PUBLISHED);
    this.wake();
  }
}
