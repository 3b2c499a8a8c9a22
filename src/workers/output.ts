// Output Worker: parses records from the reassembly ring in order, verifies each chunk (decode,
// length, CRC) before writing any of it, keeps the running stream length and CRC, and checks them
// against the END record. Blocking writes: stdout back-pressure stalls only this thread.
import { addressOf, EAGAIN, EPIPE, libc, setPipeSize, signalEventFd, strerror, writeFd } from "../../ffi/libc";
import { loadLz4, lz4Bound, type Lz4 } from "../../ffi/lz4";
import { L2Error } from "../errors";
import {
  OB_CONSUMED, OB_PUBLISHED, OB_WRITTEN, OF_STALL_MS, OI_CHUNKS, OI_ERROR_LEN, OI_LZ4_CHUNKS, OI_STATE,
  OI_STOP, OI_STREAM_CRC, OI_WAITING, OUT_ERROR_MAX, OUT_ERROR_OFF, STATE_FAILED, STATE_FINISHED,
  type OutputInit,
} from "../output-pipeline";
import {
  crc32Combine, END_BODY, KIND_END, KIND_LZ4, KIND_RAW, readCrc, readEncLen, readEndTotal, readFlags,
  readKind, readRawLen, readReserved, RECORD_HEADER,
} from "../record";

declare var self: Worker;

const hex = (n: number) => "0x" + (n >>> 0).toString(16).padStart(8, "0");

self.onmessage = (ev: MessageEvent) => {
  self.onmessage = null;
  const init = ev.data as OutputInit;
  let lz4: Lz4 | null = null;
  try {
    libc();
    if (init.needLz4) lz4 = loadLz4();
  } catch (e) {
    const err = e instanceof L2Error ? e : new L2Error(String(e));
    postMessage({ type: "error", message: err.message, exitCode: err.exitCode });
    return;
  }
  setPipeSize(init.outFd, 1 << 20); // fails harmlessly when the output is not a pipe
  postMessage({ type: "ready" });
  new Output(init, lz4).run();
  process.exit(0);
};

class Stop extends Error {}

class Output {
  private readonly big: BigInt64Array;
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private readonly ringU8: Uint8Array;
  private readonly ringDv: DataView;
  private readonly ringPtr: number;
  private readonly mask: number;
  // Scratch: a wrapped header, a wrapped LZ4 body, the decoded chunk. Allocated once.
  private readonly hdr = new Uint8Array(64);
  private readonly hdrDv = new DataView(this.hdr.buffer);
  private readonly scratch: Uint8Array;
  private readonly scratchPtr: number;
  private readonly out: Uint8Array;
  private readonly outPtr: number;
  private readonly maxEnc: number;
  private readonly wakeEvery: number;

  private pos = 0; // wire offset of the next record
  private published = 0;
  private lastWake = 0;
  private streamOff = 0; // original bytes verified and written
  private streamCrc = 0;
  private chunk = 0;

  constructor(
    private readonly o: OutputInit,
    private lz4: Lz4 | null,
  ) {
    this.big = new BigInt64Array(o.ctl);
    this.i32 = new Int32Array(o.ctl);
    this.f64 = new Float64Array(o.ctl);
    this.ringU8 = new Uint8Array(o.ring, 0, o.ringSize);
    this.ringDv = new DataView(o.ring, 0, o.ringSize);
    this.ringPtr = addressOf(this.ringU8);
    this.mask = o.ringSize - 1;
    this.maxEnc = lz4Bound(o.maxChunk);
    this.scratch = new Uint8Array(Math.max(this.maxEnc, 1024));
    this.scratchPtr = addressOf(this.scratch);
    this.out = new Uint8Array(Math.max(o.maxChunk, 1024));
    this.outPtr = addressOf(this.out);
    this.wakeEvery = Math.max(1, Math.floor(o.ringSize / 8));
  }

  run(): void {
    try {
      while (this.step());
      Atomics.store(this.i32, OI_STATE, STATE_FINISHED);
    } catch (e) {
      if (e instanceof Stop) return;
      this.fail(e instanceof Error ? e.message : String(e));
    }
    this.wake();
  }

  /** Handles one record; false after END. */
  private step(): boolean {
    const { ringSize } = this.o;
    this.waitFor(this.pos + RECORD_HEADER);
    const at = this.pos % ringSize; // not `&`: offsets go beyond 2^32
    let dv = this.ringDv;
    let h = at;
    if (at + RECORD_HEADER > ringSize) {
      for (let i = 0; i < RECORD_HEADER; i++) this.hdr[i] = this.ringU8[(at + i) & this.mask]!;
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
      (kind === KIND_LZ4 && (rawLen > this.o.maxChunk || encLen === 0 || encLen > this.maxEnc)) ||
      (kind === KIND_END && (rawLen !== 0 || encLen !== END_BODY)) ||
      (kind !== KIND_RAW && kind !== KIND_LZ4 && kind !== KIND_END);
    if (bad) {
      throw new Error(`${this.where()}: corrupt record header (kind ${kind}, rawLen ${rawLen}, encLen ${encLen})`);
    }
    const end = this.pos + RECORD_HEADER + encLen;
    this.waitFor(end);
    const body = (at + RECORD_HEADER) & this.mask;
    const first = Math.min(encLen, ringSize - body); // body bytes before the ring end

    if (kind === KIND_END) {
      for (let i = 0; i < END_BODY; i++) this.hdr[RECORD_HEADER + i] = this.ringU8[(body + i) & this.mask]!;
      const total = readEndTotal(this.hdrDv, 0);
      if (total !== this.streamOff) {
        throw new Error(`stream length mismatch at END: sender sent ${total} bytes, ${this.streamOff} received`);
      }
      if (crc !== this.streamCrc) {
        throw new Error(`stream CRC mismatch at END: sender ${hex(crc)}, received ${hex(this.streamCrc)}`);
      }
      this.consume(end);
      return false;
    }

    let chunkCrc: number;
    if (kind === KIND_RAW) {
      // Verified in place, written straight from the ring (in two pieces if it wraps).
      chunkCrc = Bun.hash.crc32(this.ringU8.subarray(body, body + first));
      if (first < encLen) chunkCrc = Bun.hash.crc32(this.ringU8.subarray(0, encLen - first), chunkCrc);
      this.checkCrc(crc, chunkCrc);
      this.writeAll(this.ringPtr + body, first);
      if (first < encLen) this.writeAll(this.ringPtr, encLen - first);
      this.consume(end);
    } else {
      const lz4 = this.lz4 ?? this.loadLz4();
      let src = this.ringPtr + body;
      if (first < encLen) {
        this.scratch.set(this.ringU8.subarray(body, ringSize), 0);
        this.scratch.set(this.ringU8.subarray(0, encLen - first), first);
        src = this.scratchPtr;
      }
      const n = lz4.decompress(src, encLen, this.outPtr, rawLen);
      if (n !== rawLen) {
        throw new Error(n < 0
          ? `${this.where()}: LZ4 body is corrupt (decoder error at input byte ${-n})`
          : `${this.where()}: LZ4 body decodes to ${n} bytes, header says ${rawLen}`);
      }
      chunkCrc = Bun.hash.crc32(rawLen === this.out.length ? this.out : this.out.subarray(0, rawLen));
      this.checkCrc(crc, chunkCrc);
      this.consume(end); // the ring space is free once decoded: let the main thread reuse it during the write
      this.writeAll(this.outPtr, rawLen);
      Atomics.add(this.i32, OI_LZ4_CHUNKS, 1);
    }
    this.streamCrc = crc32Combine(this.streamCrc, chunkCrc, rawLen);
    this.streamOff += rawLen;
    this.chunk++;
    Atomics.store(this.big, OB_WRITTEN, BigInt(this.streamOff));
    Atomics.store(this.i32, OI_STREAM_CRC, this.streamCrc | 0);
    Atomics.add(this.i32, OI_CHUNKS, 1);
    return true;
  }

  private where(): string {
    return `chunk ${this.chunk} (stream offset ${this.streamOff}, wire offset ${this.pos})`;
  }

  private checkCrc(expected: number, got: number): void {
    if (expected !== got) throw new Error(`${this.where()}: CRC mismatch (record ${hex(expected)}, data ${hex(got)})`);
  }

  private loadLz4(): Lz4 {
    try {
      this.lz4 = loadLz4();
      return this.lz4;
    } catch (e) {
      throw new Error(`${this.where()}: LZ4 record, but ${e instanceof Error ? e.message : e}`);
    }
  }

  /** Blocks until wire bytes [0, target) are published. */
  private waitFor(target: number): void {
    if (this.published >= target) return;
    this.published = Number(Atomics.load(this.big, OB_PUBLISHED));
    if (this.published >= target) return;
    // Going idle: whatever was consumed since the last wake-up must reach the main thread now.
    if (this.pos > this.lastWake) this.wake();
    const t0 = performance.now();
    for (;;) {
      if (Atomics.load(this.i32, OI_STOP) !== 0) throw new Stop();
      Atomics.store(this.i32, OI_WAITING, 1);
      const seen = Atomics.load(this.big, OB_PUBLISHED);
      if (Number(seen) < target) Atomics.wait(this.big, OB_PUBLISHED, seen);
      Atomics.store(this.i32, OI_WAITING, 0);
      this.published = Number(Atomics.load(this.big, OB_PUBLISHED));
      if (this.published >= target) break;
    }
    this.f64[OF_STALL_MS] += performance.now() - t0;
  }

  private consume(end: number): void {
    this.pos = end;
    Atomics.store(this.big, OB_CONSUMED, BigInt(end));
    if (end - this.lastWake >= this.wakeEvery) this.wake();
  }

  private wake(): void {
    this.lastWake = this.pos;
    if (this.o.wakeFd >= 0) signalEventFd(this.o.wakeFd);
  }

  private writeAll(p: number, len: number): void {
    while (len > 0) {
      const n = writeFd(this.o.outFd, p, len);
      if (n > 0) {
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

  private fail(message: string): void {
    const bytes = new TextEncoder().encode(message);
    const len = Math.min(bytes.length, OUT_ERROR_MAX);
    new Uint8Array(this.o.ctl, OUT_ERROR_OFF, len).set(bytes.subarray(0, len));
    this.i32[OI_ERROR_LEN] = len;
    Atomics.store(this.i32, OI_STATE, STATE_FAILED);
  }
}
