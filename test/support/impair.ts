// Seeded, socket-free fault injection for one direction of a link. The kernel here has no netem,
// so the impairment bridge (impair-bridge.ts) applies these decisions in user space. Everything
// that needs a random number draws it from one seeded stream, so a seed replays the same faults
// for the same input sequence.
//
// Stages, in order, for each offered frame:
//   blackout -> burst loss -> random loss -> duplicate -> corrupt (original only)
//   -> reorder (hold back) -> rate cap (token bucket: queue, or drop past the limit) + fixed delay
//   -> emit
// Rate and delay give each frame a release time that never decreases in arrival order, so one
// FIFO holds them. Frames are opaque handles owned by a FrameHost; nothing is allocated per frame.

/** mulberry32: tiny, fast, good enough for fault injection, and reproducible everywhere. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Uniform integer in [lo, hi], both inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
}

/** Derive independent per-direction seeds from one user seed (splitmix-style scramble). */
export function deriveSeed(seed: number, stream: number): number {
  let z = (seed + Math.imul(stream + 1, 0x9e3779b9)) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

export interface ReorderSpec {
  /** Probability that a frame is held back. */
  p: number;
  /** Hold until this many later frames have passed ("frames") or for this long ("ms"), drawn in [min, max]. */
  min: number;
  max: number;
  unit: "frames" | "ms";
  /** For "frames": release anyway after this long, so a held frame cannot stall when traffic stops. */
  timeoutMs?: number;
}

export interface DirectionConfig {
  loss?: number;
  /** With probability p a burst starts: this frame and the next len-1 frames are dropped. */
  burst?: { p: number; len: number };
  dup?: number;
  reorder?: ReorderSpec;
  corrupt?: number;
  delayMs?: number;
  /** Token-bucket rate cap in Mbit/s (0 = none). */
  rateMbit?: number;
  /** Bytes that may wait behind the rate cap before arriving frames are dropped. */
  rateQueueBytes?: number;
  /** Bucket depth in bytes: what may pass back-to-back after an idle period. */
  rateBurstBytes?: number;
  /** [fromMs, toMs) windows relative to start during which every frame is dropped. */
  blackouts?: Array<[number, number]>;
}

export interface ImpairCounters {
  frames: number;
  bytesIn: number;
  sent: number;
  bytesOut: number;
  dropBlackout: number;
  dropBurst: number;
  bursts: number;
  dropLoss: number;
  dropRate: number;
  /** Frames dropped because a holding queue was full (a sizing problem, not an impairment). */
  dropQueueFull: number;
  duplicated: number;
  /** Duplicates not made because the host had no free buffer. */
  dupNoBuffer: number;
  corrupted: number;
  reordered: number;
  /** Held (reorder) frames released by their timeout instead of their frame count. */
  reorderTimeouts: number;
  rateQueued: number;
  delayed: number;
}

export function emptyCounters(): ImpairCounters {
  return {
    frames: 0,
    bytesIn: 0,
    sent: 0,
    bytesOut: 0,
    dropBlackout: 0,
    dropBurst: 0,
    bursts: 0,
    dropLoss: 0,
    dropRate: 0,
    dropQueueFull: 0,
    duplicated: 0,
    dupNoBuffer: 0,
    corrupted: 0,
    reordered: 0,
    reorderTimeouts: 0,
    rateQueued: 0,
    delayed: 0,
  };
}

/** Who owns the frame bytes. Handles are small integers chosen by the host. */
export interface FrameHost {
  /** The frame's bytes, starting at index 0 (may be longer than the frame). */
  bytes(h: number): Uint8Array;
  length(h: number): number;
  /** A new handle holding a copy of h, or -1 when no buffer is free. */
  clone(h: number): number;
  /** Forward the frame; the host frees the handle once it is sent. */
  emit(h: number): void;
  /** The frame was dropped; the handle may be reused. */
  free(h: number): void;
}

const ETH_HEADER = 14;

export class Impairment {
  readonly counters: ImpairCounters = emptyCounters();
  private readonly rng: Rng;
  private readonly loss: number;
  private readonly burstP: number;
  private readonly burstLen: number;
  private burstLeft = 0;
  private readonly dup: number;
  private readonly corrupt: number;
  private readonly reorder: ReorderSpec | null;
  private readonly delayMs: number;
  private readonly bytesPerMs: number;
  private readonly rateQueueBytes: number;
  private readonly rateBurstMs: number;
  /** Virtual finish time of the token bucket (ms): tokens exist while it lies in the past. */
  private vt = -Infinity;
  private readonly blackFrom: Float64Array;
  private readonly blackTo: Float64Array;

  // Reorder-held frames: few at a time, so flat arrays with linear scans.
  private readonly heldH: Int32Array;
  private readonly heldLeft: Int32Array;
  private readonly heldDeadline: Float64Array;
  private heldCount = 0;

  // Timed FIFO (rate + delay). Release times are monotone in arrival order, so a ring suffices.
  private readonly fifoH: Int32Array;
  private readonly fifoT: Float64Array;
  private fifoHead = 0;
  private fifoLen = 0;

  constructor(
    cfg: DirectionConfig,
    seed: number,
    private readonly host: FrameHost,
    /** Time origin of blackout windows, in the same clock as the `now` arguments. */
    private startMs = 0,
    /** Upper bound on frames held at once (reorder + timed queue), normally the host's pool size. */
    capacity = 4096,
  ) {
    this.rng = new Rng(seed);
    this.loss = cfg.loss ?? 0;
    this.burstP = cfg.burst?.p ?? 0;
    this.burstLen = Math.max(1, cfg.burst?.len ?? 1);
    this.dup = cfg.dup ?? 0;
    this.corrupt = cfg.corrupt ?? 0;
    this.reorder = cfg.reorder && cfg.reorder.p > 0 ? cfg.reorder : null;
    this.delayMs = cfg.delayMs ?? 0;
    const rate = cfg.rateMbit ?? 0;
    this.bytesPerMs = rate > 0 ? rate * 125 : 0; // Mbit/s -> bytes per ms
    this.rateQueueBytes = cfg.rateQueueBytes ?? 1 << 20;
    this.rateBurstMs = this.bytesPerMs > 0 ? (cfg.rateBurstBytes ?? 2 * 9018) / this.bytesPerMs : 0;
    const bo = [...(cfg.blackouts ?? [])].sort((a, b) => a[0] - b[0]);
    this.blackFrom = Float64Array.from(bo.map((w) => w[0]));
    this.blackTo = Float64Array.from(bo.map((w) => w[1]));
    this.heldH = new Int32Array(capacity);
    this.heldLeft = new Int32Array(capacity);
    this.heldDeadline = new Float64Array(capacity);
    this.fifoH = new Int32Array(capacity);
    this.fifoT = new Float64Array(capacity);
  }

  /** Reset the blackout time origin (e.g. when the bridge reports ready). */
  setStart(ms: number): void {
    this.startMs = ms;
  }

  /** Frames currently held (reorder + timed queue). */
  get holding(): number {
    return this.heldCount + this.fifoLen;
  }

  inBlackout(now: number): boolean {
    const rel = now - this.startMs;
    const n = this.blackFrom.length;
    for (let i = 0; i < n; i++) {
      if (rel < this.blackFrom[i]!) return false; // sorted by start
      if (rel < this.blackTo[i]!) return true;
    }
    return false;
  }

  /** Take one arriving frame. The host hears back through emit/free, now or in a later poll(). */
  offer(h: number, now: number): void {
    const c = this.counters;
    const host = this.host;
    const len = host.length(h);
    c.frames++;
    c.bytesIn += len;
    if (this.blackFrom.length > 0 && this.inBlackout(now)) {
      c.dropBlackout++;
      host.free(h);
      return;
    }
    if (this.burstLeft > 0) {
      this.burstLeft--;
      c.dropBurst++;
      host.free(h);
      return;
    }
    if (this.burstP > 0 && this.rng.next() < this.burstP) {
      c.bursts++;
      c.dropBurst++;
      this.burstLeft = this.burstLen - 1;
      host.free(h);
      return;
    }
    if (this.loss > 0 && this.rng.next() < this.loss) {
      c.dropLoss++;
      host.free(h);
      return;
    }
    let copy = -1;
    if (this.dup > 0 && this.rng.next() < this.dup) {
      // Clone before corrupting so at most one copy carries the damage, as netem does.
      copy = host.clone(h);
      if (copy < 0) c.dupNoBuffer++;
      else c.duplicated++;
    }
    if (this.corrupt > 0 && this.rng.next() < this.corrupt && len > ETH_HEADER) {
      const at = this.rng.int(ETH_HEADER, len - 1);
      host.bytes(h)[at] ^= this.rng.int(1, 255);
      c.corrupted++;
    }
    this.reorderStage(h, now);
    if (copy >= 0) this.reorderStage(copy, now);
  }

  private reorderStage(h: number, now: number): void {
    const r = this.reorder;
    if (r !== null && this.heldCount < this.heldH.length && this.rng.next() < r.p) {
      const i = this.heldCount++;
      this.heldH[i] = h;
      if (r.unit === "frames") {
        this.heldLeft[i] = this.rng.int(r.min, r.max);
        this.heldDeadline[i] = now + (r.timeoutMs ?? 100);
      } else {
        this.heldLeft[i] = 0; // time only
        this.heldDeadline[i] = now + r.min + this.rng.next() * (r.max - r.min);
      }
      this.counters.reordered++;
      return;
    }
    this.timedStage(h, now);
    // This frame has passed every frame held by count; release those whose count ran out.
    for (let i = this.heldCount - 1; i >= 0; i--) {
      if (this.heldLeft[i]! > 0 && --this.heldLeft[i]! === 0) {
        const held = this.heldH[i]!;
        this.removeHeld(i);
        this.timedStage(held, now);
      }
    }
  }

  private removeHeld(i: number): void {
    // Order among held frames does not matter; swap with the last.
    const last = --this.heldCount;
    this.heldH[i] = this.heldH[last]!;
    this.heldLeft[i] = this.heldLeft[last]!;
    this.heldDeadline[i] = this.heldDeadline[last]!;
  }

  private timedStage(h: number, now: number): void {
    const host = this.host;
    let t = now;
    if (this.bytesPerMs > 0) {
      // Tokens at `now` are (now - vt) * rate, capped at the bucket depth; a frame leaves once
      // its bytes are covered, and whatever is still waiting counts against the queue limit.
      if (this.vt < now - this.rateBurstMs) this.vt = now - this.rateBurstMs;
      const done = this.vt + host.length(h) / this.bytesPerMs;
      if ((done - now) * this.bytesPerMs > this.rateQueueBytes + 0.5) { // 0.5: float slack
        this.counters.dropRate++;
        host.free(h);
        return;
      }
      this.vt = done;
      if (done > now) {
        t = done;
        this.counters.rateQueued++;
      }
    }
    if (this.delayMs > 0) {
      t += this.delayMs;
      this.counters.delayed++;
    }
    if (this.fifoLen === 0 && t <= now) {
      this.send(h);
      return;
    }
    if (this.fifoLen === this.fifoH.length) {
      this.counters.dropQueueFull++;
      host.free(h);
      return;
    }
    const at = (this.fifoHead + this.fifoLen++) % this.fifoH.length;
    this.fifoH[at] = h;
    this.fifoT[at] = t;
  }

  private send(h: number): void {
    this.counters.sent++;
    this.counters.bytesOut += this.host.length(h);
    this.host.emit(h);
  }

  /** Release everything whose time has come. Call before offering frames that arrive at `now`. */
  poll(now: number): void {
    if (this.heldCount > 0) {
      for (let i = this.heldCount - 1; i >= 0; i--) {
        if (this.heldDeadline[i]! <= now) {
          const h = this.heldH[i]!;
          if (this.heldLeft[i]! > 0) this.counters.reorderTimeouts++;
          this.removeHeld(i);
          this.timedStage(h, now);
        }
      }
    }
    const cap = this.fifoH.length;
    while (this.fifoLen > 0 && this.fifoT[this.fifoHead]! <= now) {
      const h = this.fifoH[this.fifoHead]!;
      this.fifoHead = (this.fifoHead + 1) % cap;
      this.fifoLen--;
      this.send(h);
    }
  }

  /** The earliest time poll() has something to release, or Infinity. */
  nextDeadline(): number {
    let d = this.fifoLen > 0 ? this.fifoT[this.fifoHead]! : Infinity;
    for (let i = 0; i < this.heldCount; i++) if (this.heldDeadline[i]! < d) d = this.heldDeadline[i]!;
    return d;
  }

  /** Free every held frame (shutdown). */
  discard(): void {
    for (let i = 0; i < this.heldCount; i++) this.host.free(this.heldH[i]!);
    this.heldCount = 0;
    while (this.fifoLen > 0) {
      this.host.free(this.fifoH[this.fifoHead]!);
      this.fifoHead = (this.fifoHead + 1) % this.fifoH.length;
      this.fifoLen--;
    }
  }
}
