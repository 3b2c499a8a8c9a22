// The receiver's output stage: a Worker parses records from the reassembly ring in stream order,
// verifies and decodes them and writes the original bytes to the output fd.
//
// The main thread publishes how much of the wire stream is complete; the worker reports how much
// it has consumed. Both are 64-bit offsets in a BigInt64Array (one BigInt per publish or per
// record, never per frame). Status and errors live in the shared buffer too, because the main
// thread sits in poll() and may not turn its event loop to receive messages.
import { lz4Bound } from "../ffi/lz4";
import { L2Error } from "./errors";
import { RECORD_HEADER } from "./record";

// BigInt64 indices
export const OB_PUBLISHED = 0;
export const OB_CONSUMED = 1;
export const OB_WRITTEN = 2;
export const OB_WORDS = 4;
// Int32 indices (after the BigInt words)
const I0 = OB_WORDS * 2;
export const OI_WAITING = I0 + 0; // worker is (about to be) blocked on OB_PUBLISHED
export const OI_STATE = I0 + 1;
export const OI_CHUNKS = I0 + 2;
export const OI_LZ4_CHUNKS = I0 + 3;
export const OI_STREAM_CRC = I0 + 4;
export const OI_ERROR_LEN = I0 + 5;
export const OI_STOP = I0 + 6;
// Float64 index
export const OF_STALL_MS = (I0 + 8) / 2;
export const OUT_ERROR_OFF = (I0 + 16) * 4; // UTF-8 error message bytes
export const OUT_ERROR_MAX = 1024;
export const OUT_CTL_BYTES = OUT_ERROR_OFF + OUT_ERROR_MAX;

export const STATE_RUNNING = 0;
export const STATE_FINISHED = 1;
export const STATE_FAILED = 2;

export interface OutputStatus {
  finished: boolean;
  error: string | null;
  written: number;
  streamCrc: number;
  chunks: number;
  /** Milliseconds the worker waited for wire data (the output stage was starved). */
  stallMs: number;
  lz4Chunks: number;
}

export interface OutputInit {
  ring: SharedArrayBuffer;
  ringSize: number;
  ctl: SharedArrayBuffer;
  outFd: number;
  wakeFd: number;
  needLz4: boolean;
  maxChunk: number;
}

export class OutputPipeline {
  private readonly big: BigInt64Array;
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private lastPublished = 0;
  private closed = false;

  private constructor(
    private readonly ctl: SharedArrayBuffer,
    private readonly worker: Worker,
  ) {
    this.big = new BigInt64Array(ctl);
    this.i32 = new Int32Array(ctl);
    this.f64 = new Float64Array(ctl);
  }

  static async create(opts: {
    ring: SharedArrayBuffer;
    ringSize: number;
    outFd: number;
    wakeFd: number;
    needLz4: boolean;
    maxChunk: number;
  }): Promise<OutputPipeline> {
    const { ring, ringSize, maxChunk } = opts;
    if (!(ringSize > 0) || (ringSize & (ringSize - 1)) !== 0 || ring.byteLength < ringSize) {
      throw new L2Error(`OutputPipeline: ringSize ${ringSize} must be a power of two within the ring buffer`);
    }
    // A record must fit in the ring whole, or the worker would wait for it forever.
    if (!(maxChunk >= 1) || RECORD_HEADER + lz4Bound(maxChunk) > ringSize) {
      throw new L2Error(`OutputPipeline: maxChunk ${maxChunk} does not fit a ring of ${ringSize} bytes`);
    }
    const ctl = new SharedArrayBuffer(OUT_CTL_BYTES);
    const w = new Worker(new URL("./workers/output.ts", import.meta.url).href);
    const init: OutputInit = { ...opts, ctl };
    await new Promise<void>((resolve, reject) => {
      w.onmessage = (ev: MessageEvent) => {
        const m = ev.data as { type: string; message?: string; exitCode?: number };
        w.onmessage = null;
        if (m.type === "ready") resolve();
        else reject(new L2Error(m.message ?? "output worker failed to start", m.exitCode));
      };
      w.onerror = (ev) => reject(new L2Error(`output worker failed to start: ${ev.message}`));
      w.postMessage(init);
    }).catch((e) => {
      w.terminate();
      throw e;
    });
    w.onerror = null;
    w.unref();
    return new OutputPipeline(ctl, w);
  }

  /** Wire-stream bytes [0, completeEnd) are in the ring and final. */
  publish(completeEnd: number): void {
    if (completeEnd <= this.lastPublished) return;
    this.lastPublished = completeEnd;
    Atomics.store(this.big, OB_PUBLISHED, BigInt(completeEnd));
    // Sequentially consistent with the worker's WAITING-then-recheck, so no wake-up is lost.
    if (Atomics.load(this.i32, OI_WAITING) !== 0) Atomics.notify(this.big, OB_PUBLISHED);
  }

  /** Wire-stream bytes the worker is finished with; their ring space may be reused. */
  consumed(): number {
    return Number(Atomics.load(this.big, OB_CONSUMED));
  }

  status(): OutputStatus {
    const state = Atomics.load(this.i32, OI_STATE);
    let error: string | null = null;
    if (state === STATE_FAILED) {
      const len = this.i32[OI_ERROR_LEN]!;
      error = new TextDecoder().decode(new Uint8Array(this.ctl, OUT_ERROR_OFF, len).slice());
    }
    return {
      finished: state === STATE_FINISHED,
      error,
      written: Number(Atomics.load(this.big, OB_WRITTEN)),
      streamCrc: Atomics.load(this.i32, OI_STREAM_CRC) >>> 0,
      chunks: Atomics.load(this.i32, OI_CHUNKS),
      stallMs: this.f64[OF_STALL_MS]!,
      lz4Chunks: Atomics.load(this.i32, OI_LZ4_CHUNKS),
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.i32, OI_STOP, 1);
    Atomics.notify(this.big, OB_PUBLISHED);
    this.worker.terminate();
  }
}
