// Which codec the compressors use next, chosen from what the last window of time says is the
// bottleneck. Pure: the shell passes in the time and its running totals; nothing here reads a
// clock or touches I/O.
//
// Two measurements decide, both as shares of a window (~150 ms), and at none a third (below):
// - starved: the links had room and window but no finished chunk to send, while the compressors
//   still worked on chunks already read. The compressors are the bottleneck: a cheaper codec.
// - backlog: data waited in the send ring for the links, and the links never starved. The links
//   (or the receiver's window) are the bottleneck: the compressors have time for a better ratio.
// A step up is taken only after UP_WINDOWS such windows in a row, and only if the compressors'
// load times the next codec's relative cost stays below UP_MAX_LOAD. The load is their busy share
// scaled by what the links took of what they made (wire bytes drained / produced): while the send
// ring fills, the compressors run flat out, yet the links need only a part of that. A level the policy
// had to leave because the compressors starved the links is not tried again for a hold time that
// doubles with each such failure, so a level that does not fit is not retried every window.
// At none the compressors idle and say nothing; there the time the sender spent in sendmmsg
// tells whether the links cost it more per byte than compressing would (see PROBE_MAX_MS).
import { CODEC_LZ4, CODEC_NONE, type CodecWord } from "../codec";

export interface Rung {
  word: CodecWord;
  /** Compression CPU per input byte relative to the rung below it is what counts; lz4 = 1. */
  cost: number;
  /** Typical wire bytes per input byte (1 if not given); only ratios between rungs are used. */
  ratio?: number;
}

// Costs from one core on a tar of /usr, 256 KiB chunks (MB/s of input): lz4 1012, zstd-1 582,
// zstd-3 313, zstd-6 142; ratios 0.678, 0.594, 0.579, 0.568. Above 6 the ratio gains under 1 %
// per doubling of CPU (zstd-9: 95 MB/s, 0.563), so the ladder stops there; its contexts stay
// small too (4.4 MiB per Worker at level 6 with 256 KiB chunks, 2.1 MiB with 64 KiB).
// Below lz4, none: on a link faster than the compressors (an unshaped 10 GbE, a veth) sending
// the chunks as they are beats any codec; it costs the CRC only (~5 GB/s).
export const AUTO_LADDER: readonly Rung[] = [
  { word: CODEC_NONE, cost: 0.2, ratio: 1 },
  { word: CODEC_LZ4, cost: 1, ratio: 0.678 },
  { word: 1, cost: 1.75, ratio: 0.594 },
  { word: 3, cost: 3.25, ratio: 0.579 },
  { word: 6, cost: 7, ratio: 0.568 },
];

/**
 * The codec auto compresses with once it knows the links are the bottleneck: zstd-1 when the
 * ladder has it (links slower than the compressors, 1 GbE or USB, are the common case).
 */
export const START_WORD: CodecWord = 1;

/**
 * Before compressing anything, auto finds out whether the links are slower than the raw stream:
 * the chunks go out at none, with at most PROBE_AHEAD wire bytes read ahead of what the receiver
 * acknowledged, until a window shows one of
 * - the links holding data back while they drain under FAST_LINKS (backlog: the start codec);
 * - the links costing this thread most of the window (SEND_BOUND) at under FAST_LINKS per
 *   second of sending: over 1 Gbit at MTU 1500 htb taxes every frame, the sender only keeps pace
 *   with the link and never backlogs, yet each byte compressed away is a byte it need not send
 *   (the start codec);
 * - more than FAST_LINKS of input moved (none stays);
 * or PROBE_MAX_MS pass (none of these: a slow producer; the start codec).
 * Rates of input say little in the first half second, when each side's code is still being
 * compiled (a veth and a 1 Gbit link both move ~120-140 MB/s then), so the first two look at
 * what the kernel does: a cold receiver on a veth makes a backlog too, but one that drains at
 * 600-800 MB/s, and sendmmsg costs the same whether the JavaScript around it is compiled or not
 * (measured per second of sendmmsg: 1 Gbit at MTU 1500 135-157 MB/s; veths 560-815 at MTU
 * 1500, 2000-2400 at 9000). A fast link's sender passes FAST_LINKS once its code is compiled,
 * ~0.5-0.6 s in here.
 * The bound keeps what goes out raw over a slow link to about the kernel's queues, and it
 * hardly holds back a fast one.
 */
export const PROBE_MAX_MS = 750;
export const PROBE_AHEAD = 8 << 20;
/** Input bytes/ms at none, without backlog, that say the links are faster than compression would
 * feed them (2 x lz4 at ~1000 MB/s each halves the wire bytes, but the sender thread copying
 * records and cutting frames keeps that well below 1 GB/s of input here). A veth at MTU 1500
 * moves 330-500 MB/s at none. */
export const FAST_LINKS = 300_000;
/** Share of a probe window in sendmmsg from which the links' cost to this thread decides. */
export const SEND_BOUND = 0.5;

export const WINDOW_MS = 150;
/**
 * Windows in this span after the policy first compresses only set the baseline: the links wait
 * for the compressors' first chunks, and the kernel's queues (the socket buffer, up to
 * txqueuelen frames in the qdisc) take megabytes at any rate, so the links look starved
 * whatever the codec (measured: 16 % of the first window, over a 300 Mbit link that the
 * compressors outran by far).
 */
export const WARMUP_MS = 3 * WINDOW_MS;
/** Starved share of a window above which it votes down; DOWN_WINDOWS such windows in a row step down. */
export const DOWN_STARVED = 0.1;
export const DOWN_WINDOWS = 2;
/** Starved share at which one window is enough. */
export const DOWN_AT_ONCE = 0.5;
/** Backlog share at or above which (with starved under UP_STARVED_MAX) a window votes up. */
export const UP_BACKLOG = 0.5;
export const UP_STARVED_MAX = 0.02;
export const UP_WINDOWS = 2;
/** Predicted compressor load (busy share x cost ratio) a step up may lead to. */
export const UP_MAX_LOAD = 0.85;
export const HOLD_MIN_MS = 1000;
export const HOLD_MAX_MS = 16_000;
/** A level kept this long without starving the links counts as fitting: its hold is reset. */
const FIT_MS = 5000;
/** How long what was measured at a level is believed (each new try of a level costs a few windows). */
const RATE_MS = 30_000;
/** A level known to move less than this much more input than the one in use is not gone to. */
const RATE_GAIN = 1.1;

/** Running totals the shell keeps (milliseconds since its start; only differences are used). */
export interface PolicyTotals {
  starvedMs: number;
  backlogMs: number;
  /** Compressor busy time summed over the workers. */
  busyMs: number;
  /** Wire bytes put into the send ring, and taken from it by the links. */
  producedBytes: number;
  drainedBytes: number;
  /** Input bytes read (what the user's stream gains); optional for callers that do not know. */
  inputBytes?: number;
  /** Time the sending thread spent handing frames to the kernel; optional likewise. */
  sendMs?: number;
}

export interface PolicyWindow {
  starved: number;
  backlog: number;
  /** Share of the compressors' time (0..1, per worker) it takes to keep the links fed. */
  load: number;
}

export class CodecPolicy {
  private rung: number;
  private windowStart: number;
  private last: PolicyTotals = { starvedMs: 0, backlogMs: 0, busyMs: 0, producedBytes: 0, drainedBytes: 0 };
  private upVotes = 0;
  private downVotes = 0;
  /** Until then the level in use is on trial (see stepUp). */
  private trialUntil = -Infinity;
  private enteredAt: number;
  private readonly holdUntil: number[];
  private readonly holdMs: number[];
  private warmUntil: number;
  /** Per rung, the input bytes per ms it moved when it last starved the links (what its
   * compressors can do), and when. */
  private readonly capRate: number[];
  private readonly capAt: number[];
  /** Per rung, the wire bytes per ms the links took when they were last its bottleneck, and when. */
  private readonly linkWire: number[];
  private readonly linkAt: number[];
  /** Until this time at most, the links are measured at none (-Infinity: no probe, or it ended). */
  private probeUntil = -Infinity;
  /** Windows in which the codec changed (for reports and tests). */
  changes = 0;
  lastWindow: PolicyWindow = { starved: 0, backlog: 0, load: 0 };

  constructor(
    private readonly ladder: readonly Rung[],
    private readonly workers: number,
    now: number,
    private readonly windowMs = WINDOW_MS,
  ) {
    if (ladder.length === 0) throw new Error("CodecPolicy: empty ladder");
    this.rung = this.startRung();
    // With none on the ladder, the links are measured first (see PROBE_MAX_MS).
    if (ladder[0]!.word === CODEC_NONE && this.rung > 0) {
      this.rung = 0;
      this.probeUntil = now + PROBE_MAX_MS;
    }
    this.windowStart = now;
    this.warmUntil = now + WARMUP_MS;
    this.enteredAt = now;
    this.holdUntil = ladder.map(() => -Infinity);
    this.holdMs = ladder.map(() => HOLD_MIN_MS);
    this.capRate = ladder.map(() => 0);
    this.capAt = ladder.map(() => -Infinity);
    this.linkWire = ladder.map(() => 0);
    this.linkAt = ladder.map(() => -Infinity);
  }

  current(): CodecWord {
    return this.ladder[this.rung]!.word;
  }

  /** zstd-1, else lz4 (a receiver without libzstd), else the cheapest codec there is. */
  private startRung(): number {
    const start = this.ladder.findIndex((r) => r.word === START_WORD);
    return start >= 0 ? start : Math.max(0, this.ladder.findIndex((r) => r.word === CODEC_LZ4));
  }

  /** Wire bytes the input may read ahead of what the receiver acknowledged (Infinity: the ring's size). */
  readAhead(now: number): number {
    return now < this.probeUntil ? PROBE_AHEAD : Infinity;
  }

  /** A window has passed: call update (the probe, too, decides at a window's end). */
  due(now: number): boolean {
    return now - this.windowStart >= this.windowMs;
  }

  /** Closes the window ending now and returns the codec for the next one. */
  update(now: number, totals: PolicyTotals): CodecWord {
    const span = now - this.windowStart;
    if (span <= 0) return this.current();
    const busy = (totals.busyMs - this.last.busyMs) / (span * this.workers);
    const produced = totals.producedBytes - this.last.producedBytes;
    const drained = totals.drainedBytes - this.last.drainedBytes;
    const w: PolicyWindow = {
      starved: Math.min(1, (totals.starvedMs - this.last.starvedMs) / span),
      backlog: Math.min(1, (totals.backlogMs - this.last.backlogMs) / span),
      load: Math.min(1, produced > 0 ? busy * Math.max(0, drained / produced) : busy),
    };
    const inRate = totals.inputBytes === undefined ? -1 : (totals.inputBytes - (this.last.inputBytes ?? 0)) / span;
    const sendMs = (totals.sendMs ?? 0) - (this.last.sendMs ?? 0);
    this.lastWindow = w;
    this.last = { ...totals };
    this.windowStart = now;
    const wireRate = drained / span;
    // Sending the frames took most of this thread's window, at a rate at which compressing
    // pays (see the probe).
    const sendBound = sendMs >= SEND_BOUND * span && drained < FAST_LINKS * sendMs;
    if (this.probeUntil !== -Infinity) {
      // A backlog that drains fast is a receiver still starting, not slow links.
      const linksSlow = w.backlog >= UP_BACKLOG && wireRate < FAST_LINKS;
      const faster = inRate >= FAST_LINKS;
      const slower = !faster && (linksSlow || sendBound);
      // Links that held the raw stream back, or cost this thread its time, took the window's
      // wire bytes: what none moves (so that a starved level later is not left for none).
      if (slower && inRate >= 0) [this.linkWire[0], this.linkAt[0]] = [wireRate, now];
      if (slower || faster || now >= this.probeUntil) this.endProbe(now, !faster);
      return this.current();
    }
    if (now <= this.warmUntil) return this.current();
    const at = this.rung;
    const known = inRate >= 0;
    // At none the compressors are idle, so neither share says who is the bottleneck (a sender
    // busy with frames, as at MTU 1500, leaves no backlog either): none moves what the links
    // and this thread take, and that is what counts. It is recorded as what the links took, and
    // lz4 is gone back to, whatever the shares, while it fed more than that when it starved.
    if (known && this.ladder[at]!.word === CODEC_NONE) {
      [this.linkWire[at], this.linkAt[at]] = [inRate, now];
      const next = at + 1;
      // Known to have fed more: back at once (its hold is for levels that did not fit, and this
      // one moved more even while starving the links). Not measured lately: worth a try again,
      // after its hold, where the links or the data may have changed so that it pays.
      const known = next < this.ladder.length && now - this.capAt[next]! < RATE_MS;
      const fedMore = known && this.capRate[next]! > inRate * RATE_GAIN;
      // Tried again only where the raw stream is held back (by the links, or by what sending
      // its frames costs this thread): on links that keep pace with it, a try only costs.
      const rawHeldBack = w.backlog >= UP_BACKLOG || sendBound;
      const retry = next < this.ladder.length && !known && now >= this.holdUntil[next]! && rawHeldBack;
      this.upVotes = fedMore || retry ? this.upVotes + 1 : 0;
      if (this.upVotes >= UP_WINDOWS) this.stepUp(now, next);
      if (now - this.enteredAt >= FIT_MS) this.holdMs[this.rung] = HOLD_MIN_MS;
      return this.current();
    }
    if (w.starved > DOWN_STARVED) {
      this.upVotes = 0;
      // One mildly starved window is not enough: the other side's start-up or any process on
      // these cores takes the compressors' CPU for a moment (1 Gbit, MTU 9000: 11-37 % starved
      // in the first window after the warm-up, none in the next), and a level left waits out
      // its hold. Links starved for most of a window (links suddenly faster than the
      // compressors) step at once, and so does a level just stepped up to, which is on trial
      // (at none, lz4 tried again on a veth where it never fits: each try costs windows).
      const atOnce = w.starved >= DOWN_AT_ONCE || now <= this.trialUntil;
      if (++this.downVotes < DOWN_WINDOWS && !atOnce) return this.current();
      if (known) [this.capRate[at], this.capAt[at]] = [inRate, now];
      // Starved links do not mean the level below moves more input: on links that take more
      // than lz4 makes but less than the raw stream, a starved lz4 still beats none (and on a
      // 1 Gbit link a sender short of CPU for a moment starves them at any level). The level
      // below would move what the links take (the most they took when they last held any
      // level back, if they are no faster now) over its ratio (1 for none, else this level's
      // on this data, scaled by their typical ratios: a starved zstd-1 still moving more than
      // lz4 could over those links is kept through a moment's shortage of CPU).
      const below = at - 1;
      const typical = (r: number) => this.ladder[r]?.ratio ?? 1;
      const ratio = this.ladder[below]?.word === CODEC_NONE ? 1 : inRate > 0 ? (wireRate / inRate) * (typical(below) / typical(at)) : 1;
      const links = this.linksTake(now);
      const lowerMovesLess = known && below >= 0 && links > 0 && wireRate <= links * RATE_GAIN && links / ratio < inRate * RATE_GAIN;
      if (below >= 0 && !lowerMovesLess) this.step(now, below, true);
    } else if (w.backlog >= UP_BACKLOG && w.starved < UP_STARVED_MAX) {
      this.downVotes = 0;
      if (known) [this.linkWire[at], this.linkAt[at]] = [wireRate, now];
      const next = at + 1;
      // Known, from when it last starved the links, to move less input than this level does
      // now (a fast link at none, where idle compressors make their load say nothing): stay.
      const nextMovesLess = known && next < this.ladder.length && now - this.capAt[next]! < RATE_MS && this.capRate[next]! < inRate * RATE_GAIN;
      const fits = next < this.ladder.length && !nextMovesLess && w.load * (this.ladder[next]!.cost / this.ladder[at]!.cost) <= UP_MAX_LOAD;
      this.upVotes = fits && now >= this.holdUntil[next]! ? this.upVotes + 1 : 0;
      if (this.upVotes >= UP_WINDOWS) this.stepUp(now, next);
    } else {
      this.upVotes = 0;
      this.downVotes = 0;
    }
    if (now - this.enteredAt >= FIT_MS) this.holdMs[this.rung] = HOLD_MIN_MS;
    return this.current();
  }

  /**
   * The probe's verdict. Links faster than FAST_LINKS stay at none, and lz4 is tried after its
   * hold, as from any window at none. Otherwise the start codec, and the usual warm-up: the
   * compressors' first chunks make the first windows after it say little.
   */
  private endProbe(now: number, compress: boolean): void {
    this.probeUntil = -Infinity;
    if (!compress) {
      this.holdUntil[1] = now + HOLD_MIN_MS;
      return;
    }
    this.step(now, this.startRung(), false);
    this.warmUntil = now + WARMUP_MS;
  }

  /** Wire bytes/ms the links took when they last held a level back (within RATE_MS; the most
   * of those), or 0 when no such window is that recent. */
  private linksTake(now: number): number {
    let most = 0;
    for (let r = 0; r < this.ladder.length; r++) if (now - this.linkAt[r]! < RATE_MS) most = Math.max(most, this.linkWire[r]!);
    return most;
  }

  /** A step up: the level's first window decides whether it fits. */
  private stepUp(now: number, to: number): void {
    this.step(now, to, false);
    this.trialUntil = now + this.windowMs * 1.5;
  }

  private step(now: number, to: number, starved: boolean): void {
    if (starved) {
      // The level we leave did not fit: not again for a while, and longer each time.
      const left = this.rung;
      this.holdUntil[left] = now + this.holdMs[left]!;
      this.holdMs[left] = Math.min(HOLD_MAX_MS, this.holdMs[left]! * 2);
    }
    this.rung = to;
    this.upVotes = 0;
    this.downVotes = 0;
    this.enteredAt = now;
    this.changes++;
  }
}
