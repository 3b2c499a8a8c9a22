// Which frame size one link's path really carries, in the spirit of RFC 8899 (DPLPMTUD): a
// link carries DATA only at a size that was acknowledged end to end. After the handshake the
// sender probes every candidate size at once (PINGs padded to that size); the largest one
// acknowledged is used at once, and sizes above it count as failed after PROBE_TRIES losses.
// Mid-transfer, full-size DATA frames that keep getting lost while small frames are still
// acknowledged (a black hole: a switch or the receiver's MTU lowered) start a new search; a
// size below the link's MTU is tried upward again later. Pure logic: no I/O, no clock.

import { dataPayloadMax } from "../wire";

/** Sizes tried below the link's own MTU (the smaller of both ends'), as MTUs (frame minus the
 * 14-byte Ethernet header). 576 is the smallest MTU l2pipe accepts on a device. */
export const MTU_STEPS: readonly number[] = [9000, 8000, 4000, 1500, 576];
/** Probes of one size lost in a row before that size counts as not carried. */
export const PROBE_TRIES = 3;
/** Consecutive losses of frames only the current size carries before the path is suspected. */
export const BLACK_HOLE_LOSSES = 6;
/** How long, at least, no such frame may have been acknowledged before the path is suspected. */
export const BLACK_HOLE_MIN_MS = 200;
/** A size below the link's MTU is tried upward again after this long. */
export const RAISE_AFTER_MS = 30_000;

/** What a finished search found, for the shell to tell the user. */
export interface MtuChange {
  /** The size the link used before (its MTU at start-up). */
  from: number;
  /** The size it uses now; 0 when no size got through. */
  to: number;
  /** The link's own MTU, the smaller of both ends'. */
  ceiling: number;
  /** True when the size had worked and stopped working mid-transfer. */
  midTransfer: boolean;
}

const enum Size {
  Untried = 0,
  InFlight = 1,
  Lost = 2,
  Acked = 3,
}

export class PathMtu {
  /** Largest size acknowledged end to end and in use; 0 while none is. */
  proven = 0;
  ceiling = 0;
  /** Searching: probes are due or in flight for sizes above `proven`. */
  searching = false;
  private sizes: number[] = [];
  private state: Size[] = [];
  private tries: number[] = [];
  /** What the user was last told the link uses (the ceiling until something else was said). */
  private told = 0;
  private startedWith = 0;
  private midTransfer = false;
  private raiseAt = Infinity;
  /** Frames too big for this size (an MTU) need the current one. */
  private bigAbove = 0;
  private bigLost = 0;
  private bigAckedAt = 0;

  /** The handshake told both ends' MTUs: search from the smaller one down. */
  start(ceiling: number, now: number): void {
    this.ceiling = ceiling;
    this.sizes = [ceiling, ...MTU_STEPS.filter((s) => s < ceiling)];
    this.told = ceiling;
    this.proven = 0;
    this.search(now, false);
  }

  /** Size to probe now (the largest still due); 0 for none. Changes nothing: see onProbeSent. */
  probeDue(): number {
    const i = this.dueIndex();
    return i < 0 ? 0 : this.sizes[i]!;
  }

  /** The probe probeDue named went out: it is in flight. */
  onProbeSent(size: number): void {
    const i = this.dueIndex();
    if (i < 0 || this.sizes[i] !== size) return;
    this.state[i] = Size.InFlight;
    this.tries[i]!++;
  }

  private dueIndex(): number {
    if (!this.searching) return -1;
    for (let i = 0; i < this.sizes.length; i++) {
      if (this.sizes[i]! <= this.proven) break;
      const st = this.state[i]!;
      if ((st === Size.Untried || st === Size.Lost) && this.tries[i]! < PROBE_TRIES) return i;
    }
    return -1;
  }

  /**
   * When tick() next has work, as tick's arguments would be then: a search that is over ends at
   * once, a suspected black hole is acted on when it has been quiet long enough, a smaller size
   * is raised at its time. Acknowledgements and losses change this; the caller asks again then.
   */
  nextTimeout(now: number, heardRecently: boolean, holdMs: number): number {
    if (this.searching) return this.searchOver() ? now : Infinity;
    let t = this.raiseAt;
    if (this.proven > 0 && this.bigLost >= BLACK_HOLE_LOSSES && heardRecently) {
      t = Math.min(t, this.bigAckedAt + Math.max(BLACK_HOLE_MIN_MS, holdMs));
    }
    return t;
  }

  /** Returns true when the size in use changed. */
  onProbeAcked(size: number, now: number): boolean {
    const i = this.sizes.indexOf(size);
    if (i >= 0) this.state[i] = Size.Acked;
    if (size <= this.proven || size > this.ceiling) return false;
    this.use(size, now);
    return true;
  }

  onProbeLost(size: number): void {
    const i = this.sizes.indexOf(size);
    if (i >= 0 && this.state[i] === Size.InFlight) this.state[i] = Size.Lost;
  }

  /** Quick test for the caller's hot path: does a DATA frame of this payload need the current size? */
  isBig(payload: number): boolean {
    return payload > dataPayloadMax(this.bigAbove);
  }

  onBigDataAcked(now: number): void {
    this.bigLost = 0;
    this.bigAckedAt = now;
  }

  onBigDataLost(): void {
    if (!this.searching) this.bigLost++;
  }

  /** The link went down: probes in flight are void; a search starts over when it is back. */
  onLinkDown(): void {
    if (!this.searching) return;
    for (let i = 0; i < this.sizes.length; i++) {
      if (this.state[i] !== Size.Acked) {
        this.state[i] = Size.Untried;
        this.tries[i] = 0;
      }
    }
  }

  /**
   * Timers: the end of a search, the black-hole check, the raise timer. `heardRecently`: the
   * receiver was heard on this link lately (so small frames get through and the link is not
   * simply dead). Returns what changed, for the user, when a search ends with news.
   */
  tick(now: number, heardRecently: boolean, holdMs: number): MtuChange | null {
    if (this.searching) return this.searchOver() ? this.conclude(now) : null;
    if (this.proven > 0 && this.bigLost >= BLACK_HOLE_LOSSES && heardRecently &&
        now - this.bigAckedAt >= Math.max(BLACK_HOLE_MIN_MS, holdMs)) {
      // Start from nothing: the size in use is a suspect until acknowledged again.
      this.proven = 0;
      this.search(now, true);
    } else if (now >= this.raiseAt) {
      this.search(now, this.midTransfer);
    }
    return null;
  }

  private search(now: number, midTransfer: boolean): void {
    this.searching = true;
    this.midTransfer = midTransfer;
    this.startedWith = this.told;
    this.state = this.sizes.map((s) => (s <= this.proven ? Size.Acked : Size.Untried));
    this.tries = this.sizes.map(() => 0);
    this.raiseAt = Infinity;
    this.bigLost = 0;
    this.bigAckedAt = now;
  }

  /** Every size above the one in use failed, or the largest is in use. */
  private searchOver(): boolean {
    for (let i = 0; i < this.sizes.length; i++) {
      const size = this.sizes[i]!;
      if (size <= this.proven) return true;
      const st = this.state[i]!;
      if (st === Size.InFlight || st === Size.Untried || (st === Size.Lost && this.tries[i]! < PROBE_TRIES)) return false;
    }
    return true;
  }

  private conclude(now: number): MtuChange | null {
    this.searching = false;
    if (this.proven < this.ceiling) this.raiseAt = now + RAISE_AFTER_MS;
    if (this.proven === this.told) return null;
    const change = { from: this.startedWith, to: this.proven, ceiling: this.ceiling, midTransfer: this.midTransfer && this.proven < this.startedWith };
    this.told = this.proven;
    return change;
  }

  private use(size: number, now: number): void {
    this.proven = size;
    const below = this.sizes.find((s) => s < size);
    this.bigAbove = below ?? 0;
    this.bigLost = 0;
    this.bigAckedAt = now;
  }
}
