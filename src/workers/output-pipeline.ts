// The receiver's output stage: Workers parse records from the reassembly ring in stream order,
// verify and decode them and write the original bytes to the output fd.
//
// The main thread publishes how much of the wire stream is complete; the workers report how much
// has been consumed. Both are 64-bit offsets in a BigInt64Array (one BigInt per publish or per
// record, never per frame). Status and errors live in the shared buffer too, because the main
// thread sits in poll() and may not turn its event loop to receive messages.
//
// With `workers` > 1 (parallel decode), worker i owns records i, i+n, i+2n, ...: the owner of
// record k parses its header, hands the offset of record k+1 to the next worker through a mailbox,
// then decodes and checks its chunk in parallel with the others; they write in turn (a shared
// record counter), so output order, verification before writing and the in-order stream CRC are
// as with one worker. (Workers do not walk the chain on their own: a lagging worker could read a
// header whose ring space was already consumed and reused.)
import { lz4Bound } from "../../ffi/lz4";
import { zstdBound } from "../../ffi/zstd";
import { createWorker, startWorker } from "./worker-start";
import { L2Error } from "../errors";
import { RECORD_HEADER } from "../record";

export const MAX_OUTPUT_WORKERS = 16;

// BigInt64 indices
export const OB_PUBLISHED = 0;
export const OB_CONSUMED = 1;
export const OB_WRITTEN = 2; // original bytes of the verified chunks handed to the output
export const OB_OUT = 3; // bytes write() took: what stdout really got, block buffer excluded
export const OB_CHAIN_POS = 4; // MAX_OUTPUT_WORKERS mailboxes: wire offset of record k in [k % n]
export const OB_WORDS = OB_CHAIN_POS + MAX_OUTPUT_WORKERS;
// Int32 indices (after the BigInt words)
const I0 = OB_WORDS * 2;
export const OI_WAITING = I0 + 0; // workers (about to be) blocked on OB_PUBLISHED
export const OI_STATE = I0 + 1;
export const OI_CHUNKS = I0 + 2;
export const OI_LZ4_CHUNKS = I0 + 3;
export const OI_STREAM_CRC = I0 + 4;
export const OI_ERROR_LEN = I0 + 5;
export const OI_STOP = I0 + 6;
export const OI_TURN = I0 + 7; // index of the next record to write (mod 2^32)
export const OI_LOCK = I0 + 8; // serialises a late dlopen of liblz4 between workers
export const OI_BLOCK_FILL = I0 + 9; // bytes waiting in the shared block buffer (touched by the turn holder only)
export const OI_CHAIN_SEQ = I0 + 10; // MAX_OUTPUT_WORKERS: record index whose offset is in the mailbox
export const OI_ACTIVE = OI_CHAIN_SEQ + MAX_OUTPUT_WORKERS; // workers taking records (0: not said yet)
export const OI_EXITED = OI_ACTIVE + 1; // workers whose loop has ended
export const OI_ZSTD_CHUNKS = OI_ACTIVE + 2;
// Float64 indices: per-worker stall milliseconds
export const OF_STALL_MS = (OI_ACTIVE + 4) / 2;
export const OUT_ERROR_OFF = (OF_STALL_MS + MAX_OUTPUT_WORKERS) * 8; // UTF-8 error message bytes
export const OUT_ERROR_MAX = 1024;
export const OUT_CTL_BYTES = OUT_ERROR_OFF + OUT_ERROR_MAX;

export const STATE_RUNNING = 0;
export const STATE_FINISHED = 1;
export const STATE_FAILED = 2;

export interface OutputStatus {
  finished: boolean;
  error: string | null;
  written: number;
  /** Bytes written to the output fd so far, exactly. */
  outBytes: number;
  streamCrc: number;
  chunks: number;
  /** Milliseconds a worker waited for wire data (the output stage was starved); mean over workers. */
  stallMs: number;
  lz4Chunks: number;
  /** How many workers take records: settled at the first publish, all of them before it. */
  workers: number;
  zstdChunks: number;
}

/** The longest compressed body a chunk of n bytes may have, whichever codec made it. */
export function maxBodyLength(n: number): number {
  return Math.max(lz4Bound(n), zstdBound(n));
}

export interface OutputInit {
  ring: SharedArrayBuffer;
  ringSize: number;
  ctl: SharedArrayBuffer;
  outFd: number;
  wakeFd: number;
  maxChunk: number;
  id: number;
  workers: number;
  /** Size of every write to the output fd but the stream's last. */
  blockSize: number;
  /** The block buffer, shared by the workers. */
  block: SharedArrayBuffer;
  /** Every write a whole block (the stream's last excepted), even when the input trickles. */
  strictBlocks: boolean;
  /** The main thread's log of verified payload CRCs (crc-log.ts), or null. */
  crcLog: SharedArrayBuffer | null;
}

export class OutputPipeline {
  private readonly big: BigInt64Array;
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private lastPublished = 0;
  private closed = false;
  private wantWorkers: number;

  private constructor(
    private readonly ctl: SharedArrayBuffer,
    private readonly workers: Worker[],
  ) {
    this.big = new BigInt64Array(ctl);
    this.i32 = new Int32Array(ctl);
    this.f64 = new Float64Array(ctl);
    this.wantWorkers = workers.length;
  }

  /** `workers` (default 1, at most 16) > 1 decodes in parallel; one worker decodes ~2-4 GB/s. */
  static async create(opts: {
    ring: SharedArrayBuffer;
    ringSize: number;
    outFd: number;
    wakeFd: number;
    maxChunk: number;
    workers?: number;
    blockSize?: number;
    strictBlocks?: boolean;
    crcLog?: SharedArrayBuffer;
  }): Promise<OutputPipeline> {
    const { ring, ringSize, maxChunk } = opts;
    const n = opts.workers ?? 1;
    if (!(ringSize > 0 && ringSize <= 2 ** 40) || ring.byteLength < ringSize) {
      throw new L2Error(`OutputPipeline: ringSize ${ringSize} must fit the ring buffer`);
    }
    const blockSize = opts.blockSize ?? 256 * 1024;
    const block = new SharedArrayBuffer(blockSize);
    // A record must fit in the ring whole, or the workers would wait for it forever.
    if (!(maxChunk >= 1) || RECORD_HEADER + maxBodyLength(maxChunk) > ringSize) {
      throw new L2Error(`OutputPipeline: maxChunk ${maxChunk} does not fit a ring of ${ringSize} bytes`);
    }
    if (!(n >= 1 && n <= MAX_OUTPUT_WORKERS)) throw new L2Error(`OutputPipeline: workers ${n} out of range 1..${MAX_OUTPUT_WORKERS}`);
    const ctl = new SharedArrayBuffer(OUT_CTL_BYTES);
    const workers: Worker[] = [];
    try {
      // One at a time: concurrent first dlopen() in fresh Workers can crash Bun (oven-sh/bun#40972).
      for (let id = 0; id < n; id++) {
        const w = createWorker("output");
        workers.push(w);
        const init: OutputInit = {
          ring, ringSize, ctl, outFd: opts.outFd, wakeFd: opts.wakeFd, maxChunk, id, workers: n,
          blockSize, block, strictBlocks: opts.strictBlocks ?? false, crcLog: opts.crcLog ?? null,
        };
        await startWorker(w, init, "output worker");
      }
    } catch (e) {
      stopWorkers(new Int32Array(ctl), workers);
      throw e;
    }
    for (const w of workers) {
      // Bun extension, absent from the DOM typings: idle workers must not keep the process alive.
      (w as unknown as { unref(): void }).unref();
    }
    return new OutputPipeline(ctl, workers);
  }

  /**
   * How many of the workers take records: all of them for a stream with LZ4 chunks (decoded in
   * parallel), one for a RAW stream (nothing to decode; hand-offs between workers only cost).
   * The last word before the first publish counts (a receiver that listens again may greet
   * another sender); without one, all of them. The workers learn it at the first publish.
   */
  useWorkers(n: number): void {
    this.wantWorkers = Math.max(1, Math.min(n, this.workers.length));
  }

  /** Wire-stream bytes [0, completeEnd) are in the ring and final. */
  publish(completeEnd: number): void {
    if (completeEnd <= this.lastPublished) return;
    if (this.lastPublished === 0) {
      Atomics.store(this.i32, OI_ACTIVE, this.wantWorkers);
      Atomics.notify(this.i32, OI_ACTIVE);
    }
    this.lastPublished = completeEnd;
    Atomics.store(this.big, OB_PUBLISHED, BigInt(completeEnd));
    // Sequentially consistent with the workers' WAITING-then-recheck, so no wake-up is lost.
    if (Atomics.load(this.i32, OI_WAITING) !== 0) Atomics.notify(this.big, OB_PUBLISHED);
  }

  /** Wire-stream bytes the workers are finished with; their ring space may be reused. */
  consumed(): number {
    return Number(Atomics.load(this.big, OB_CONSUMED));
  }

  status(): OutputStatus {
    const state = Atomics.load(this.i32, OI_STATE);
    let error: string | null = null;
    if (state === STATE_FAILED) {
      const len = Math.max(0, Atomics.load(this.i32, OI_ERROR_LEN));
      error = new TextDecoder().decode(new Uint8Array(this.ctl, OUT_ERROR_OFF, len).slice());
    }
    let stall = 0;
    const active = Atomics.load(this.i32, OI_ACTIVE) || this.workers.length;
    for (let i = 0; i < active; i++) stall += this.f64[OF_STALL_MS + i]!;
    return {
      finished: state === STATE_FINISHED,
      error,
      written: Number(Atomics.load(this.big, OB_WRITTEN)),
      outBytes: Number(Atomics.load(this.big, OB_OUT)),
      streamCrc: Atomics.load(this.i32, OI_STREAM_CRC) >>> 0,
      chunks: Atomics.load(this.i32, OI_CHUNKS),
      stallMs: stall / active,
      lz4Chunks: Atomics.load(this.i32, OI_LZ4_CHUNKS),
      workers: active,
      zstdChunks: Atomics.load(this.i32, OI_ZSTD_CHUNKS),
    };
  }

  /**
   * Stops the workers and waits up to `waitMs` for them to leave, so that outBytes is final: a
   * failed run reports exactly how much of the stream reached stdout. (A write blocked on a
   * reader that stopped reading cannot be waited out.)
   */
  stop(waitMs: number): void {
    Atomics.store(this.i32, OI_STOP, 1);
    wakeAll(this.i32);
    const until = performance.now() + waitMs;
    for (;;) {
      const exited = Atomics.load(this.i32, OI_EXITED);
      const left = until - performance.now();
      if (exited >= this.workers.length || left <= 0) return;
      Atomics.wait(this.i32, OI_EXITED, exited, left);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    stopWorkers(this.i32, this.workers);
  }
}

function stopWorkers(i32: Int32Array, workers: Worker[]): void {
  // Workers leave their waits on STOP and exit by themselves; terminate() is the backstop
  // (it cannot interrupt a write() blocked on a stalled reader: process exit does).
  Atomics.store(i32, OI_STOP, 1);
  wakeAll(i32);
  for (const w of workers) w.terminate();
}

/** Wakes every wait a worker may be in, so that it sees STOP. */
function wakeAll(i32: Int32Array): void {
  Atomics.notify(new BigInt64Array(i32.buffer), OB_PUBLISHED);
  Atomics.notify(i32, OI_TURN);
  Atomics.notify(i32, OI_ACTIVE);
  for (let i = 0; i < MAX_OUTPUT_WORKERS; i++) Atomics.notify(i32, OI_CHAIN_SEQ + i);
}
