// The receiving end of the protocol, with no I/O and no clock of its own: the shell feeds it
// time and the frames that passed the codec's checks; it decides which data to keep, when
// to acknowledge on which link, and when the run is over. Its verbs: on*() for what arrived,
// tick() and nextTimeout() for time, pollAck()/pollDone() for what to send, each followed by
// onAckSent()/onDoneSent() once the shell queued the frame.

import { RangeSet } from "./range-set";
import { expandPn, type Timing } from "./timing";
import { MAX_ACK_RANGES, TWO32, type AckContent } from "../wire";
import { EXIT_NO_PEER, EXIT_TRANSFER } from "../errors";
import type { Failure } from "./failure";

export const enum RxPhase {
  Listen = 0,
  Transfer = 1,
  /** Everything written and verified; repeating DONE until the sender confirms. */
  Finishing = 2,
  Done = 3,
  Failed = 4,
}

export const enum Accept {
  /** Out of window, or bookkeeping full: dropped and not acknowledged, so it will be sent again. */
  Drop = 0,
  /** New bytes: the shell copies the payload into the ring. */
  Store = 1,
  /** Already had it: acknowledged, nothing to copy. */
  Duplicate = 2,
}

/** How many ack-eliciting frames may arrive before an ACK goes out at once. */
const ACK_EVERY = 32;
const STREAM_RANGES = 4096;

export interface ReceiverConfig {
  deviceCount: number;
  ringSize: number;
  timing: Timing;
  now: number;
}

/** An ACK due on a device (pollAck): where it goes, its packet number and what it says. Reused. */
export class AckToSend implements AckContent {
  senderLink = 0;
  pn = 0;
  cum = 0;
  limit = 0;
  delayUs = 0;
  rangeCount = 0;
  /** The packet numbers noted on the device, read highest range first. */
  pns: RangeSet | null = null;
  readonly rangeAt = (i: number, high: boolean): number => {
    const r = this.pns!;
    const k = r.count - 1 - i;
    return high ? (r.end(k) - 1) % TWO32 : r.start(k) % TWO32;
  };
}

/** A DONE due on a device (pollDone). Reused. */
export interface DoneToSend {
  senderLink: number;
  total: number;
  crc: number;
}

/** What the shell reports of a device, read-only. */
export interface ReceiverLinkStats {
  /** Whether a sender greeted on it (its link index is pinned). */
  greeted: boolean;
  framesReceived: number;
  bytesReceived: number;
  duplicates: number;
  acksSent: number;
}

class ReceiverLink {
  /** Sender's index for this link, -1 until its HELLO arrives. */
  senderLink = -1;
  peerMac = new Uint8Array(6);
  peerMtu = 0;
  readonly pns = new RangeSet(MAX_ACK_RANGES);
  largestPn = -1;
  largestPnTime = 0;
  pending = 0;
  firstPendingTime = 0;
  ackNow = false;
  lastHeard = -Infinity;
  lastSent = -Infinity;
  lastDone = -Infinity;
  pnNext = 0;
  // Statistics
  framesReceived = 0;
  bytesReceived = 0;
  duplicates = 0;
  dropped = 0;
  acksSent = 0;

  constructor(readonly device: number) {}
}

export class ReceiverCore {
  private readonly links: ReceiverLink[] = [];
  private phaseNow: RxPhase = RxPhase.Listen;
  private failureNow: Failure | null = null;
  private exitCodeNow = 0;

  /** Where the run is; changed only by the core's own verbs. */
  get phase(): RxPhase {
    return this.phaseNow;
  }

  /** Why it failed (typed; the shell words it), once phase is Failed. */
  get failure(): Failure | null {
    return this.failureNow;
  }

  get exitCode(): number {
    return this.exitCodeNow;
  }
  private pinnedSession = 0;
  /** The sender's HELLO offers a codec (it compresses). */

  /** Stream bytes [0, cum) are in the ring. */
  private contiguousEnd = 0;
  /** Stream bytes below this have been written out; ring space below it is free. */
  private consumedEnd = 0;
  private advertised = 0;
  /** After onData returned Store: copy the payload from this stream offset on. */
  storeFrom = 0;
  private readonly above = new RangeSet(STREAM_RANGES);
  private finishedAt = 0;
  private readonly ackTx = new AckToSend();
  private readonly doneTx: DoneToSend = { senderLink: 0, total: 0, crc: 0 };
  private lastHeardAny = -Infinity;
  /** A DATA or PING of this session arrived: from then on silence is a failure, not a mix-up. */
  private dataSeen = false;
  /** When the first HELLO arrived; null while listening. */
  private startedAt: number | null = null;

  constructor(private readonly cfg: ReceiverConfig) {
    for (let i = 0; i < cfg.deviceCount; i++) this.links.push(new ReceiverLink(i));
  }

  /** The session this run is pinned to (0 while listening). */
  get session(): number {
    return this.pinnedSession;
  }

  /** Stream bytes [0, cum) are in the ring. */
  get cum(): number {
    return this.contiguousEnd;
  }

  /** Stream bytes below this have been written out; ring space below it is free. */
  get consumed(): number {
    return this.consumedEnd;
  }

  /** When the first HELLO arrived; null while listening. */
  get transferStart(): number | null {
    return this.startedAt;
  }

  limit(): number {
    return this.consumedEnd + this.cfg.ringSize;
  }

  /** Stream bytes at and above this offset are not in the ring: their ring space holds nothing
   * anyone reads, so frames may be received straight into it. */
  freshFrom(): number {
    const n = this.above.count;
    return n > 0 ? Math.max(this.contiguousEnd, this.above.end(n - 1)) : this.contiguousEnd;
  }

  // ---- inputs --------------------------------------------------------------------------

  /**
   * A HELLO on a device. The first one chooses the session; later ones join further links of
   * it. Returns true when a HELLO_ACK should answer it.
   */
  onHello(
    device: number,
    now: number,
    session: number,
    senderLink: number,
    peerMtu: number,
    src: Uint8Array,
    srcOffset: number,
  ): boolean {
    if (this.phase >= RxPhase.Finishing) return false;
    if (this.phase === RxPhase.Listen) {
      this.pinnedSession = session;
      this.phaseNow = RxPhase.Transfer;
      this.startedAt = now;
    } else if (session !== this.pinnedSession) return false;
    const l = this.links[device];
    // A link is pinned to one sender link and one MAC for the whole run.
    for (const o of this.links) if (o !== l && o.senderLink === senderLink) return false;
    if (l.senderLink === -1) {
      l.senderLink = senderLink;
      for (let i = 0; i < 6; i++) l.peerMac[i] = src[srcOffset + i];
      l.peerMtu = peerMtu;
    } else if (l.senderLink !== senderLink || !this.sameMac(l, src, srcOffset)) return false;
    this.heard(l, now);
    return true;
  }

  /** The sender's reply to a HELLO_ACK from another receiver: go back to listening if nothing started. */
  onReject(device: number): void {
    if (this.phase !== RxPhase.Transfer || this.dataSeen) return;
    this.links[device].senderLink = -1;
    if (this.links.every((o) => o.senderLink === -1)) this.relisten();
  }

  private relisten(): void {
    for (const l of this.links) {
      l.senderLink = -1;
      l.pns.clear();
      l.largestPn = -1;
      l.pending = 0;
      l.ackNow = false;
    }
    this.phaseNow = RxPhase.Listen;
    this.pinnedSession = 0;
    this.startedAt = null;
    this.lastHeardAny = -Infinity;
  }

  /** Checks a frame's session, link and source against what this run is pinned to. */
  authentic(device: number, session: number, senderLink: number, src: Uint8Array, srcOffset: number): boolean {
    if (this.phase === RxPhase.Listen || session !== this.pinnedSession) return false;
    const l = this.links[device];
    return l.senderLink === senderLink && this.sameMac(l, src, srcOffset);
  }

  /** Any authentic frame on a device. */
  onHeard(device: number, now: number): void {
    this.heard(this.links[device], now);
  }

  private heard(l: ReceiverLink, now: number): void {
    l.lastHeard = now;
    if (now > this.lastHeardAny) this.lastHeardAny = now;
  }

  /** A DATA frame (authentic). Decides whether its payload goes into the ring. */
  onData(device: number, now: number, wirePn: number, offset: number, len: number): Accept {
    const l = this.links[device];
    this.heard(l, now);
    this.dataSeen = true;
    const end = offset + len;
    if (end > this.limit() || len <= 0) {
      l.dropped++;
      return Accept.Drop;
    }
    let result: Accept;
    if (end <= this.contiguousEnd || this.above.contains(offset, end)) {
      result = Accept.Duplicate;
      l.duplicates++;
    } else {
      // Bytes below the contiguous end are in the ring already (or written out and their
      // space reused): only the rest may be copied.
      this.storeFrom = Math.max(offset, this.contiguousEnd);
      if (offset <= this.contiguousEnd) {
        this.contiguousEnd = end;
        this.absorb();
      } else if (!this.above.add(offset, end)) {
        l.dropped++;
        return Accept.Drop;
      }
      result = Accept.Store;
      l.framesReceived++;
      l.bytesReceived += len;
    }
    this.notePacket(l, now, wirePn);
    return result;
  }

  /** A PING (authentic): acknowledged like data. */
  onPing(device: number, now: number, wirePn: number): void {
    const l = this.links[device];
    this.dataSeen = true;
    this.heard(l, now);
    this.notePacket(l, now, wirePn);
    l.ackNow = true;
  }

  /** The output stage wrote and released stream bytes below `offset`. */
  setConsumed(offset: number): void {
    if (offset > this.consumedEnd) this.consumedEnd = offset;
  }

  /** The output stage verified the END record and wrote everything. */
  finished(now: number, total: number, crc: number): void {
    if (this.phase !== RxPhase.Transfer) return;
    this.phaseNow = RxPhase.Finishing;
    this.finishedAt = now;
    this.doneTx.total = total;
    this.doneTx.crc = crc;
  }

  onDoneAck(): void {
    if (this.phase === RxPhase.Finishing) this.phaseNow = RxPhase.Done;
  }

  onAbort(reason: string): void {
    if (this.phase === RxPhase.Done || this.phase === RxPhase.Failed) return;
    // A sender that aborts after we verified everything cannot take the data back.
    if (this.phase === RxPhase.Finishing) {
      this.phaseNow = RxPhase.Done;
      return;
    }
    this.fail({ kind: "aborted", reason }, EXIT_TRANSFER);
  }

  /** The run fails: with a Failure the core found, or the shell's own message. */
  fail(failure: Failure | string, exitCode: number): void {
    if (this.phase === RxPhase.Failed || this.phase === RxPhase.Done) return;
    this.phaseNow = RxPhase.Failed;
    this.failureNow = typeof failure === "string" ? { kind: "message", text: failure } : failure;
    this.exitCodeNow = exitCode;
  }

  // ---- time ----------------------------------------------------------------------------

  tick(now: number): void {
    if (this.phase === RxPhase.Listen) {
      const waitMs = this.cfg.timing.waitMs;
      if (waitMs > 0 && now - this.cfg.now > waitMs) {
        const links = this.links.map((l) => l.device);
        this.fail({ kind: "no-peer", links, waitedMs: waitMs, busyLinks: [] }, EXIT_NO_PEER);
      }
      return;
    }
    if (this.phase === RxPhase.Finishing) {
      if (now - this.finishedAt > this.cfg.timing.lingerMs) this.phaseNow = RxPhase.Done;
      return;
    }
    if (this.phase !== RxPhase.Transfer) return;
    if (now - this.lastHeardAny > this.cfg.timing.peerTimeoutMs) {
      if (!this.dataSeen) {
        // Greeted but never sent to: that sender took another receiver (and its REJECT was
        // lost) or died before starting. Nothing was written, so listen again.
        this.relisten();
        return;
      }
      const links = this.links.filter((l) => l.senderLink >= 0).map((l) => l.device);
      this.fail({ kind: "peer-lost", links, ms: this.cfg.timing.peerTimeoutMs }, EXIT_TRANSFER);
    }
  }

  /**
   * Absolute time of the next timer: the -w wait while listening, the linger and the DONE
   * repeats while finishing, the peer timeout, delayed ACKs and keepalives. Before it, tick()
   * changes nothing and pollAck()/pollDone() answer as they do now, unless a frame arrives.
   */
  nextTimeout(now: number): number {
    const timing = this.cfg.timing;
    if (this.phase === RxPhase.Done || this.phase === RxPhase.Failed) return Infinity;
    if (this.phase === RxPhase.Listen) return timing.waitMs > 0 ? Math.max(now, this.cfg.now + timing.waitMs + 1) : Infinity;
    let t = Infinity;
    if (this.phase === RxPhase.Finishing) t = this.finishedAt + timing.lingerMs + 1;
    else t = this.lastHeardAny + timing.peerTimeoutMs + 1;
    for (const l of this.links) {
      if (l.senderLink < 0) continue;
      if (l.pending > 0) t = Math.min(t, l.firstPendingTime + timing.maxAckDelayMs);
      t = Math.min(t, l.lastSent + timing.keepaliveMs);
      if (this.phase === RxPhase.Finishing) t = Math.min(t, l.lastDone + timing.keepaliveMs / 2);
    }
    return Math.max(t, now);
  }

  // ---- outputs -------------------------------------------------------------------------

  /** Should an ACK go out on this device now? (A question only: it changes nothing.) */
  ackDue(device: number, now: number): boolean {
    const l = this.links[device];
    if (l.senderLink < 0 || (this.phase !== RxPhase.Transfer && this.phase !== RxPhase.Finishing)) return false;
    if (l.ackNow || l.pending >= ACK_EVERY) return true;
    if (l.pending > 0 && now - l.firstPendingTime >= this.cfg.timing.maxAckDelayMs) return true;
    if (now - l.lastSent >= this.cfg.timing.keepaliveMs) return true;
    // A window that opened a lot is worth telling at once: the sender may be waiting for it.
    return this.limit() - this.advertised >= this.cfg.ringSize / 4;
  }

  /** The ACK due on this device now, or null; nothing changes until onAckSent. */
  pollAck(device: number, now: number): AckToSend | null {
    return this.ackDue(device, now) ? this.ackContent(device, now) : null;
  }

  /** What an ACK on this device would say now, due or not. Changes nothing. */
  ackContent(device: number, now: number): AckToSend {
    const l = this.links[device];
    const a = this.ackTx;
    a.senderLink = l.senderLink;
    a.pn = l.pnNext;
    a.cum = this.contiguousEnd;
    a.limit = this.limit();
    a.delayUs = this.ackDelayUs(device, now);
    a.pns = l.pns;
    a.rangeCount = Math.min(l.pns.count, MAX_ACK_RANGES);
    return a;
  }

  /** The ACK pollAck gave for this device went out: it used its packet number and said its limit. */
  onAckSent(device: number, now: number): void {
    const l = this.links[device];
    l.pnNext++;
    l.pending = 0;
    l.ackNow = false;
    l.lastSent = now;
    l.acksSent++;
    this.advertised = this.limit();
  }

  /** The DONE due on this device now (every half keepalive period while finishing), or null. */
  pollDone(device: number, now: number): DoneToSend | null {
    const l = this.links[device];
    if (this.phase !== RxPhase.Finishing || l.senderLink < 0) return null;
    if (now - l.lastDone < this.cfg.timing.keepaliveMs / 2) return null;
    this.doneTx.senderLink = l.senderLink;
    return this.doneTx;
  }

  onDoneSent(device: number, now: number): void {
    const l = this.links[device];
    l.lastDone = now;
    l.lastSent = now;
  }

  /** The sender's link index pinned to this device, -1 if none greeted on it. */
  senderLinkOf(device: number): number {
    return this.links[device].senderLink;
  }

  linkStats(device: number): ReceiverLinkStats {
    const l = this.links[device];
    return {
      greeted: l.senderLink >= 0,
      framesReceived: l.framesReceived,
      bytesReceived: l.bytesReceived,
      duplicates: l.duplicates,
      acksSent: l.acksSent,
    };
  }

  ackDelayUs(device: number, now: number): number {
    const l = this.links[device];
    return l.largestPn < 0 ? 0 : Math.max(0, Math.round((now - l.largestPnTime) * 1000));
  }

  // ---- internals -----------------------------------------------------------------------

  private absorb(): void {
    // Pull in ranges that the new contiguous end reaches.
    while (this.above.count > 0 && this.above.start(0) <= this.contiguousEnd) {
      if (this.above.end(0) > this.contiguousEnd) this.contiguousEnd = this.above.end(0);
      this.above.dropFirst();
    }
  }

  private notePacket(l: ReceiverLink, now: number, wirePn: number): void {
    const pn = expandPn(wirePn, l.largestPn < 0 ? 0 : l.largestPn);
    if (pn > l.largestPn) {
      // A gap means loss or reordering on this link: tell the sender soon.
      if (l.largestPn >= 0 && pn > l.largestPn + 1) l.ackNow = true;
      l.largestPn = pn;
      l.largestPnTime = now;
    } else {
      l.ackNow = true;
    }
    // Old history falls off the bottom; the sender has long decided about those.
    if (!l.pns.add(pn, pn + 1)) {
      l.pns.dropFirst();
      l.pns.add(pn, pn + 1);
    }
    if (l.pending === 0) l.firstPendingTime = now;
    l.pending++;
  }

  private sameMac(l: ReceiverLink, src: Uint8Array, off: number): boolean {
    const m = l.peerMac;
    return (
      m[0] === src[off] &&
      m[1] === src[off + 1] &&
      m[2] === src[off + 2] &&
      m[3] === src[off + 3] &&
      m[4] === src[off + 4] &&
      m[5] === src[off + 5]
    );
  }
}
