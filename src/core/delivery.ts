// The receiver's delivery cycle, one owner for it: the contiguous end of the reassembled stream
// -> whole records (RecordWalker) -> what the output may write now (OutputGate, the -b tape
// buffer) -> published to the output Workers; what they consumed comes back and frees ring space
// (the flow-control limit is the core's: consumed + ring). Pure: ring bytes and offsets in,
// offsets out; the shell does the publishing.
//
// The tape buffer (-b): writing starts when the buffer is --start-at full (or the stream is
// complete), and after the buffer ran dry it waits until it is --resume-at full again, so a tape
// drive sees long bursts at full speed instead of a trickle. Without -b everything complete is
// released at once.

import { OFF_ENC_LEN, OFF_KIND, RECORD_HEADER, KIND_END } from "../record";

export interface DeliveryConfig {
  ring: Uint8Array;
  ringSize: number;
  /** -b, --start-at, --resume-at (0: no tape buffer). */
  bufferBytes: number;
  startAtPct: number;
  resumeAtPct: number;
}

/** From the stream's contiguous end and what the output consumed to what it may write next. */
export class Delivery {
  private readonly walker: RecordWalker;
  private readonly gate: OutputGate;
  private complete = 0;
  private consumedTo = 0;

  constructor(cfg: DeliveryConfig) {
    this.walker = new RecordWalker(cfg.ring, cfg.ringSize);
    this.gate = new OutputGate(cfg.bufferBytes, cfg.startAtPct, cfg.resumeAtPct);
  }

  /** The contiguous end moved to `contiguousEnd`, the output consumed up to `consumed`: the
   * wire offset the output may now write up to (whole records only, as the gate allows). */
  update(now: number, contiguousEnd: number, consumed: number): number {
    this.complete = this.walker.advance(contiguousEnd);
    this.consumedTo = consumed;
    return this.gate.release(now, this.complete, consumed, this.walker.ended);
  }

  /** The tape buffer's state for -p, -v and --stats-json. */
  bufferStats(bufferBytes: number): { bytes: number; fillPct: number; filling: boolean; stalls: number; stalledMs: number } {
    const g = this.gate;
    return { bytes: bufferBytes, fillPct: g.fillPct(this.complete, this.consumedTo), filling: g.isFilling(), stalls: g.stalls, stalledMs: g.stalledMs };
  }
}

/** Walks record headers in the reassembly ring as the contiguous end advances. */
export class RecordWalker {
  /** Wire offset where the next record starts. */
  private next = 0;
  /** Set once the END record is complete in the ring. */
  ended = false;

  constructor(
    private readonly ring: Uint8Array,
    private readonly ringSize: number,
  ) {}

  private byte(offset: number): number {
    return this.ring[offset % this.ringSize];
  }

  private u32(offset: number): number {
    return ((this.byte(offset) << 24) | (this.byte(offset + 1) << 16) | (this.byte(offset + 2) << 8) | this.byte(offset + 3)) >>> 0;
  }

  /** End of the last whole record below `contiguousEnd`. */
  advance(contiguousEnd: number): number {
    while (!this.ended && this.next + RECORD_HEADER <= contiguousEnd) {
      const end = this.next + RECORD_HEADER + this.u32(this.next + OFF_ENC_LEN);
      if (end > contiguousEnd) break;
      if (this.byte(this.next + OFF_KIND) === KIND_END) this.ended = true;
      this.next = end;
    }
    return this.next;
  }
}

export class OutputGate {
  private filling: boolean;
  private threshold: number;
  private released = 0;
  private pausedAt = -1;
  /** Times the buffer ran dry after writing had started, and the time spent refilling. */
  stalls = 0;
  stalledMs = 0;

  constructor(
    private readonly bufferBytes: number,
    startAtPct: number,
    private readonly resumeAtPct: number,
  ) {
    this.filling = bufferBytes > 0;
    this.threshold = (bufferBytes * startAtPct) / 100;
  }

  /**
   * completeEnd: end of the whole records received; consumed: what the writer is done with;
   * ended: the END record is among them. Returns the offset the writer may go up to.
   */
  release(now: number, completeEnd: number, consumed: number, ended: boolean): number {
    if (this.bufferBytes === 0) return completeEnd;
    if (this.filling) {
      if (completeEnd - consumed >= this.threshold || ended) {
        this.filling = false;
        if (this.pausedAt >= 0) this.stalledMs += now - this.pausedAt;
        this.pausedAt = -1;
      } else return this.released;
    } else if (consumed >= this.released && completeEnd === this.released && !ended) {
      // Ran dry: hold writing back until the buffer has filled up again.
      this.filling = true;
      this.threshold = (this.bufferBytes * this.resumeAtPct) / 100;
      this.stalls++;
      this.pausedAt = now;
      return this.released;
    }
    this.released = completeEnd;
    return completeEnd;
  }

  /** Fill level of the buffer in percent. */
  fillPct(completeEnd: number, consumed: number): number {
    return this.bufferBytes > 0 ? Math.min(100, (100 * (completeEnd - consumed)) / this.bufferBytes) : 0;
  }

  isFilling(): boolean {
    return this.filling;
  }
}
