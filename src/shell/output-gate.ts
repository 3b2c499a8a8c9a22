// The receiver's tape buffer (-b): decides how much of the reassembled stream the output worker
// may write. Writing starts when the buffer is --start-at full (or the stream is complete), and
// after the buffer ran dry it waits until it is --resume-at full again, so a tape drive sees long
// bursts at full speed instead of a trickle. Without -b everything complete is released at once.

import { OFF_ENC_LEN, OFF_KIND, RECORD_HEADER, KIND_END } from "../record";

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
