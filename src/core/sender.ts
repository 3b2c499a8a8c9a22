// The sending end of the protocol, with no I/O and no clock of its own: the shell feeds it
// time, acknowledgements and how much of the wire stream is ready; it answers with which
// frames to send on which link. Loss recovery follows RFC 9002: packet numbers per link,
// packet and time thresholds, probe timeouts, a NewReno window per link. Its verbs: on*() for
// what arrived, tick() and nextTimeout() for time, helloDue()/pollPing()/pollProbe() for what to
// send, each followed by onHelloSent()/onPingSent()/onProbeSent() once the shell queued the
// frame, and pollData() for DATA (asked only when the shell has room for the frame).

import { RangeSet } from "./range-set";
import { PathMtu, type MtuChange } from "./path-mtu";
import { expandPn, type Timing } from "./timing";
import { EXIT_NO_PEER, EXIT_TRANSFER } from "../errors";
import type { Failure } from "./failure";
import { dataPayloadMax } from "../wire";
import { hex } from "../record";

export const enum LinkState {
  Probing = 0,
  Up = 1,
  Down = 2,
}

export const enum Phase {
  Discover = 0,
  Transfer = 1,
  /** Everything acknowledged; waiting for the receiver's DONE. */
  Finishing = 2,
  Done = 3,
  Failed = 4,
}

const enum Sent {
  Free = 0,
  InFlight = 1,
  Acked = 2,
  Lost = 3,
}

const PACKET_THRESHOLD = 3;
const TIME_THRESHOLD = 9 / 8;
const GRANULARITY_MS = 1;
/** Before the first sample; generous, since a probe timeout only sends a PING at first. */
const INITIAL_RTT_MS = 20;
/** Packet-number history per link; bounds the frames one link may have in flight. */
const SENT_CAPACITY = 1 << 15;
const RETX_CAPACITY = 1 << 16;
/** Bytes at the contiguous end resent when it is stuck (see tick). */
const STALL_RESEND = 64 << 10;

export interface SenderConfig {
  linkCount: number;
  /** Own MTU per link; the usable size is the smaller of both ends'. */
  mtus: number[];
  /** -a weights; null for pull scheduling (each link takes what it has room for). */
  weights: number[] | null;
  ringSize: number;
  maxCwnd: number;
  timing: Timing;
  now: number;
}

/** Links are direct cables: start with a few MiB in flight rather than ramp up from nothing. */
function initialWindow(payloadMax: number): number {
  return Math.max(256 * payloadMax, 4 << 20);
}

export class SenderLink {
  state = LinkState.Probing;
  /** Payload of a full-size DATA frame at the link's MTU: the unit of its window. */
  payloadMax: number;
  /** Payload DATA frames are cut to now: that of the size proven to get through (0: none yet). */
  frameMax = 0;
  readonly path = new PathMtu();
  peerMtu = 0;
  pnNext = 0;
  oldestPn = 0;
  largestAcked = -1;
  bytesInFlight = 0;
  packetsInFlight = 0;
  cwnd: number;
  ssthresh = Infinity;
  recoveryStart = -Infinity;
  srtt = INITIAL_RTT_MS;
  /** The most recent RTT sample, as measured (no ack delay taken off). */
  latestRtt = INITIAL_RTT_MS;
  rttvar = INITIAL_RTT_MS / 2;
  minRtt = Infinity;
  hasRtt = false;
  ptoCount = 0;
  lastHeard = -Infinity;
  lastSent = -Infinity;
  /** When something on this link was last newly acknowledged, or a probe timeout last fired. */
  lastProgress = -Infinity;
  nextHello = 0;
  pingDue = false;
  /** New stream bytes given to this link, for weighted scheduling. */
  assigned = 0;
  // Statistics
  framesSent = 0;
  bytesSent = 0;
  framesRetransmitted = 0;
  bytesRetransmitted = 0;
  framesLost = 0;
  acksReceived = 0;
  timesDown = 0;

  readonly sentOffset = new Float64Array(SENT_CAPACITY);
  readonly sentLen = new Int32Array(SENT_CAPACITY);
  readonly sentTime = new Float64Array(SENT_CAPACITY);
  readonly sentState = new Uint8Array(SENT_CAPACITY);
  /** For a path probe, the size (MTU) it tests; 0 for every other frame. */
  readonly sentProbe = new Uint16Array(SENT_CAPACITY);

  constructor(
    readonly index: number,
    readonly mtu: number,
    readonly weight: number,
  ) {
    this.payloadMax = dataPayloadMax(mtu);
    this.cwnd = initialWindow(this.payloadMax);
  }

  pto(): number {
    return this.srtt + Math.max(4 * this.rttvar, GRANULARITY_MS);
  }
}

/** What the shell reports of a link, read-only. */
export interface SenderLinkStats {
  state: LinkState;
  /** The size DATA frames are cut to, proven end to end (0: none yet). */
  provenMtu: number;
  /** The smaller of both ends' MTUs once the receiver answered (0 before). */
  ceilingMtu: number;
  peerMtu: number;
  framesSent: number;
  bytesSent: number;
  framesRetransmitted: number;
  bytesRetransmitted: number;
  framesLost: number;
  acksReceived: number;
  timesDown: number;
  /** Smoothed RTT, null before the first sample. */
  srttMs: number | null;
}

/** What pollProbe decided: a PING padded to `mtu` bytes after the Ethernet header. */
export interface ProbeFrame {
  pn: number;
  mtu: number;
}

/** Something the user should hear about, as the shell will word it. */
export type SenderEvent = { kind: "path-mtu"; link: number; change: MtuChange };

/** What pollData decided: one DATA frame to send. Reused, never reallocated. */
export interface DataFrame {
  pn: number;
  offset: number;
  len: number;
  retransmit: boolean;
}

export class SenderCore {
  private readonly links: SenderLink[] = [];
  private phaseNow: Phase = Phase.Discover;
  private failureNow: Failure | null = null;
  private exitCodeNow = 0;

  /** Where the run is; changed only by the core's own verbs. */
  get phase(): Phase {
    return this.phaseNow;
  }

  /** Why it failed (typed; the shell words it), once phase is Failed. */
  get failure(): Failure | null {
    return this.failureNow;
  }

  get exitCode(): number {
    return this.exitCodeNow;
  }

  /** End of the wire-stream bytes the shell has placed in the ring. */
  private appended = 0;
  /** Stream bytes below this were given to a link at least once. */
  private nextNew = 0;
  /** Stream bytes below this the receiver acknowledged. */
  private cumAcked = 0;
  private peerLimit = 0;
  private endQueued = false;
  /** The shell reads more input at once (see inputFlows): a short tail of new data waits for it. */
  private inputFlowing = false;
  private endOffset = Infinity;
  private streamTotal = 0;
  private streamCrc = 0;
  /** DONE_ACKs still to send once DONE came. */
  private doneAcksDue = 0;

  private readonly retx = new RangeSet(RETX_CAPACITY);
  /** When cumAcked last moved, was last level with nextNew, or the stall in tick() was acted on. */
  private cumMovedAt = -Infinity;
  private readonly started: number;
  private firstAnswer = -Infinity;
  private transferStart: number | null = null;
  private receiverInstance = -1;

  /** Links on which a receiver said it is busy with another sender's stream. */
  private busyOn = new Set<number>();

  /** A receiver on this link is busy with another transfer (BUSY): said if none answers in time. */
  onBusy(link: number): void {
    if (this.receiverInstance === -1) this.busyOn.add(link);
  }

  /** The instance id of the receiver this run talks to, or -1 before one answered. */
  get peerInstance(): number {
    return this.receiverInstance;
  }
  readonly tx: DataFrame = { pn: 0, offset: 0, len: 0, retransmit: false };
  readonly probeTx: ProbeFrame = { pn: 0, mtu: 0 };
  /** When the receiver was last heard on any link. */
  private lastHeardAny = -Infinity;
  private readonly events: SenderEvent[] = [];
  /** When the stream last made progress: acknowledged further, or nothing was owed. */
  private progressAt = -Infinity;
  /** When a PING or path probe was last newly acknowledged. */
  private pingAckedAt = -Infinity;

  /** The next event for the user, if any. */
  pollEvent(): SenderEvent | undefined {
    return this.events.shift();
  }

  constructor(private readonly cfg: SenderConfig) {
    for (let i = 0; i < cfg.linkCount; i++) {
      const weight = cfg.weights ? (cfg.weights[i] ?? 1) : 1;
      this.links.push(new SenderLink(i, cfg.mtus[i], weight));
    }
    this.started = cfg.now;
  }

  // ---- inputs --------------------------------------------------------------------------

  /** A receiver answered on a link. Returns false when it is not the receiver this run talks to. */
  onHelloAck(link: number, now: number, peerMtu: number, instance: number, window: number): boolean {
    if (this.phase >= Phase.Done) return false;
    if (this.receiverInstance === -1) this.receiverInstance = instance;
    else if (instance !== this.receiverInstance) return false;
    const l = this.links[link];
    this.heard(l, now);
    if (l.state === LinkState.Probing) {
      l.peerMtu = peerMtu;
      const ceiling = Math.min(l.mtu, peerMtu);
      l.payloadMax = dataPayloadMax(ceiling);
      l.cwnd = initialWindow(l.payloadMax);
      // No DATA until a size is acknowledged end to end (see path-mtu.ts).
      l.path.start(ceiling, now);
      this.syncFrameMax(l);
      l.state = LinkState.Up;
      if (this.firstAnswer === -Infinity) this.firstAnswer = now;
      // A link joining late starts level with the others so weights stay fair.
      l.assigned = this.minAssignedShare() * l.weight;
    }
    if (this.peerLimit === 0) this.peerLimit = window;
    return true;
  }

  /** Any authentic frame from the receiver on this link. */
  onHeard(link: number, now: number): void {
    const l = this.links[link];
    this.heard(l, now);
    if (l.state === LinkState.Down) {
      l.state = LinkState.Up;
      l.ptoCount = 0;
      l.cwnd = initialWindow(l.payloadMax);
      l.ssthresh = Infinity;
      l.assigned = this.minAssignedShare() * l.weight;
    }
  }

  /**
   * An ACK frame: stream offsets and this link's packet-number ranges, read from `ranges`
   * as pairs (high, low) of 32-bit packet numbers, highest first.
   */
  onAck(
    link: number,
    now: number,
    cum: number,
    limit: number,
    ackDelayMs: number,
    rangeCount: number,
    rangeAt: (i: number, high: boolean) => number,
  ): void {
    const l = this.links[link];
    l.acksReceived++;
    if (cum > this.cumAcked) {
      // Never believe more than was ever sent.
      this.cumAcked = Math.min(cum, this.nextNew);
      this.cumMovedAt = now;
      this.progressAt = now;
      this.retx.trimBelow(this.cumAcked);
    }
    if (limit > this.peerLimit) this.peerLimit = limit;
    if (rangeCount === 0) return;

    let largest = expandPn(rangeAt(0, true), l.pnNext - 1);
    // A number never sent can only come from a forged or mangled (yet checksum-correct) frame
    // the receiver took in. Believe the ranges only up to what was sent, without an RTT
    // sample: ignoring the whole ACK instead would leave the sender blind to every ACK on
    // this link for as long as that number stays the receiver's largest.
    const sane = largest < l.pnNext;
    if (!sane) largest = l.pnNext - 1;
    let top = -1;
    let newlyAcked = 0;
    let largestNewlyAcked = false;
    for (let r = 0; r < rangeCount; r++) {
      const hi = Math.min(expandPn(rangeAt(r, true), largest), l.pnNext - 1);
      const lo = Math.max(expandPn(rangeAt(r, false), largest), l.oldestPn);
      if (lo <= hi && hi > top) top = hi;
      for (let pn = lo; pn <= hi; pn++) {
        const slot = pn & (SENT_CAPACITY - 1);
        const state = l.sentState[slot];
        if (state === Sent.InFlight) {
          const len = l.sentLen[slot];
          l.bytesInFlight -= len;
          l.packetsInFlight--;
          newlyAcked += len;
          if (sane && pn === largest) largestNewlyAcked = true;
          l.sentState[slot] = Sent.Acked;
          if (len === 0) this.pingAckedAt = now;
          if (l.sentProbe[slot] !== 0) {
            if (l.path.onProbeAcked(l.sentProbe[slot], now)) this.syncFrameMax(l);
          } else if (len > 0 && l.path.isBig(len)) l.path.onBigDataAcked(now);
        } else if (state === Sent.Lost) {
          l.sentState[slot] = Sent.Acked;
        }
      }
    }
    if (largestNewlyAcked) {
      const sample = now - l.sentTime[largest & (SENT_CAPACITY - 1)];
      this.updateRtt(l, sample, ackDelayMs);
    }
    const acked = sane ? largest : top;
    if (acked > l.largestAcked) l.largestAcked = acked;
    if (newlyAcked > 0 || largestNewlyAcked) {
      l.ptoCount = 0;
      l.lastProgress = now;
      this.growWindow(l, newlyAcked);
    }
    this.detectLosses(l, now);
    this.advanceOldest(l);
  }

  /** DONE from the receiver: what it wrote. */
  onDone(total: number, crc: number): void {
    if (this.phase === Phase.Done || this.phase === Phase.Failed) return;
    // The receiver sends DONE only after it verified the END record, so it may overtake the
    // last acknowledgements; before END is even queued it can only be stale.
    if (!this.endQueued) return;
    if (total !== this.streamTotal || crc !== this.streamCrc) {
      this.fail(
        `receiver wrote ${total} bytes with CRC-32 ${hex(crc)}, but ${this.streamTotal} bytes with CRC-32 ${hex(this.streamCrc)} were sent`,
        EXIT_TRANSFER,
      );
      return;
    }
    this.phaseNow = Phase.Done;
    this.doneAcksDue = 2;
  }

  onAbort(reason: string): void {
    if (this.phase === Phase.Done || this.phase === Phase.Failed) return;
    this.fail({ kind: "aborted", reason }, EXIT_TRANSFER);
  }

  /** The shell placed wire-stream bytes up to `end` in the ring. */
  streamAppended(end: number): void {
    this.appended = end;
  }

  /**
   * Whether more input follows without waiting (the last read found data, and there is room for
   * another): until it does not, new data short of a full frame at the end of what was appended
   * waits for the rest. Full frames mean fewer of them, and on one link batches the receiver
   * can place straight where they belong; what stops the flow (a read that finds nothing, EOF,
   * no room to read into) lets the tail go.
   */
  inputFlows(flowing: boolean): void {
    this.inputFlowing = flowing;
  }

  /** The END record is in the ring; the stream ends at `end`. */
  streamEnded(end: number, total: number, crc: number): void {
    this.appended = end;
    this.endQueued = true;
    this.inputFlowing = false;
    this.endOffset = end;
    this.streamTotal = total;
    this.streamCrc = crc;
  }

  /** Ring bytes below this offset are acknowledged and may be overwritten. */
  ringFreeUpTo(): number {
    return this.cumAcked;
  }

  /** The run fails: with a Failure the core found, or the shell's own message. */
  fail(failure: Failure | string, exitCode: number): void {
    if (this.phase === Phase.Failed) return;
    this.phaseNow = Phase.Failed;
    this.failureNow = typeof failure === "string" ? { kind: "message", text: failure } : failure;
    this.exitCodeNow = exitCode;
  }

  // ---- time ----------------------------------------------------------------------------

  /** Runs every timer that is due. Cheap enough to call on every loop turn. */
  tick(now: number): void {
    if (this.phase === Phase.Failed || this.phase === Phase.Done) return;
    let lastHeardAny = -Infinity;
    let anyUp = false;
    for (const l of this.links) {
      if (l.lastHeard > lastHeardAny) lastHeardAny = l.lastHeard;
      if (l.state === LinkState.Up) {
        if (now - l.lastHeard > this.cfg.timing.linkDownMs) this.takeDown(l);
        else {
          anyUp = true;
          this.onLossTimer(l, now);
          this.tickPath(l, now);
          if (now - l.lastSent >= this.cfg.timing.keepaliveMs) l.pingDue = true;
        }
      } else if (l.state === LinkState.Down) {
        if (now - l.lastSent >= this.cfg.timing.keepaliveMs) l.pingDue = true;
      }
    }

    if (this.phase === Phase.Discover) {
      const waitMs = this.cfg.timing.waitMs;
      if (this.firstAnswer === -Infinity) {
        if (waitMs > 0 && now - this.started >= waitMs) {
          const links = this.links.map((l) => l.index);
          this.fail({ kind: "no-peer", links, waitedMs: waitMs, busyLinks: [...this.busyOn] }, EXIT_NO_PEER);
        }
        return;
      }
      const allUp = this.links.every((l) => l.state === LinkState.Up);
      if (allUp || now - this.firstAnswer >= this.cfg.timing.gatherMs) {
        this.phaseNow = Phase.Transfer;
        this.transferStart = now;
        this.cumMovedAt = now;
        this.progressAt = now;
      }
      return;
    }

    // At the same moment as the watchdog's, this one wins: silence is the simpler explanation.
    if (now - lastHeardAny >= this.cfg.timing.peerTimeoutMs) {
      const links = this.links.filter((l) => l.state !== LinkState.Probing).map((l) => l.index);
      this.fail({ kind: "peer-lost", links, ms: this.cfg.timing.peerTimeoutMs }, EXIT_TRANSFER);
      return;
    }
    if (this.watchdog(now)) return;
    if (!anyUp) return;
    if (this.cumAcked >= this.nextNew) this.cumMovedAt = now;
    else if (now - this.cumMovedAt >= this.cfg.timing.linkDownMs) {
      // The receiver's contiguous end has not moved for a long while: normally the bytes there
      // are in flight or queued for resending, but a forged (or mangled yet checksum-correct)
      // ACK can make them count as delivered, and then nothing would ever resend them while
      // both ends keep hearing each other: stuck for good. Resend what lies there now and then.
      this.cumMovedAt = now;
      this.retx.add(this.cumAcked, Math.min(this.nextNew, this.cumAcked + STALL_RESEND));
    }
    if (this.phase === Phase.Transfer && this.endQueued && this.cumAcked >= this.endOffset) this.phaseNow = Phase.Finishing;
  }

  /**
   * Absolute time when tick() next has work or a HELLO or PING falls due; the shell sleeps until
   * then at most. It covers every timer: HELLO repeats, the -w wait and the gathering of links,
   * keepalives (up and down links), loss and probe timeouts, a link's silence, the path-MTU
   * timers, the peer timeout, the progress watchdog and the stall resend. Frames arriving change
   * it: the shell asks again after each turn.
   */
  nextTimeout(now: number): number {
    if (this.phase === Phase.Failed || this.phase === Phase.Done) return Infinity;
    const timing = this.cfg.timing;
    let t = Infinity;
    for (const l of this.links) {
      if (l.state === LinkState.Probing) {
        t = Math.min(t, l.nextHello);
        continue;
      }
      if (this.pollPing(l.index) >= 0) return now;
      t = Math.min(t, l.lastSent + timing.keepaliveMs);
      if (l.state !== LinkState.Up) continue;
      // The link is taken down once silent for longer than this.
      t = Math.min(t, l.lastHeard + timing.linkDownMs + 1);
      if (l.packetsInFlight > 0) t = Math.min(t, this.lossDeadline(l));
      const heardRecently = now - l.lastHeard <= 2 * timing.keepaliveMs;
      t = Math.min(t, l.path.nextTimeout(now, heardRecently, 3 * l.pto()));
    }
    if (this.phase === Phase.Discover) {
      if (this.firstAnswer === -Infinity) {
        if (timing.waitMs > 0) t = Math.min(t, this.started + timing.waitMs);
      } else {
        t = Math.min(t, this.links.every((l) => l.state === LinkState.Up) ? now : this.firstAnswer + timing.gatherMs);
      }
      return Math.max(t, now);
    }
    t = Math.min(t, this.lastHeardAny + timing.peerTimeoutMs);
    if (this.phase === Phase.Transfer) {
      if (this.owesData() && this.answeredSinceProgress()) t = Math.min(t, this.progressAt + timing.peerTimeoutMs);
      // The stall resend (tick acts on it only while some link is up).
      const anyUp = this.links.some((l) => l.state === LinkState.Up);
      if (anyUp && this.cumAcked < this.nextNew) t = Math.min(t, this.cumMovedAt + timing.linkDownMs);
    }
    return Math.max(t, now);
  }

  // ---- outputs -------------------------------------------------------------------------

  /** HELLO due on this link now? A question only: onHelloSent once it is queued. */
  helloDue(link: number, now: number): boolean {
    const l = this.links[link];
    if (l.state !== LinkState.Probing || this.phase >= Phase.Done) return false;
    return now >= l.nextHello;
  }

  onHelloSent(link: number, now: number): void {
    const l = this.links[link];
    // Fast at first, then calmer for links that never answer.
    const slow = this.phase !== Phase.Discover || now - this.started > 3000;
    l.nextHello = now + (slow ? 5 : 1) * this.cfg.timing.helloIntervalMs;
    l.lastSent = now;
  }

  /**
   * The packet number of the PING due on this link, or -1 for none. A question only: the PING
   * takes its number and is acknowledged like data once onPingSent says it was queued.
   */
  pollPing(link: number): number {
    const l = this.links[link];
    if (!l.pingDue || this.phase === Phase.Discover || this.phase >= Phase.Done) return -1;
    if (l.pnNext - l.oldestPn >= SENT_CAPACITY) return -1;
    return l.pnNext;
  }

  onPingSent(link: number, now: number): void {
    const l = this.links[link];
    l.pingDue = false;
    this.recordSent(l, now, 0, 0);
  }

  /**
   * Path probe due on this link now, in this.probeTx (its packet number and size); false for
   * none. A question only: onProbeSent once it is queued.
   */
  pollProbe(link: number): boolean {
    const l = this.links[link];
    if (l.state !== LinkState.Up || this.phase >= Phase.Done) return false;
    if (l.pnNext - l.oldestPn >= SENT_CAPACITY) return false;
    const mtu = l.path.probeDue();
    if (mtu === 0) return false;
    this.probeTx.mtu = mtu;
    this.probeTx.pn = l.pnNext;
    return true;
  }

  onProbeSent(link: number, now: number): void {
    const l = this.links[link];
    l.path.onProbeSent(this.probeTx.mtu);
    this.recordSent(l, now, 0, 0, this.probeTx.mtu);
  }

  /** DONE_ACKs are due (the receiver's DONE matched): one per link per turn, twice. */
  doneAckDue(): boolean {
    return this.phase === Phase.Done && this.doneAcksDue > 0;
  }

  /** A round of DONE_ACKs went out. */
  onDoneAcksSent(): void {
    if (this.doneAcksDue > 0) this.doneAcksDue--;
  }

  /** Next DATA frame for this link, in this.tx; false when the link has nothing to send. */
  pollData(link: number, now: number): boolean {
    if (this.phase !== Phase.Transfer) return false;
    const l = this.links[link];
    if (l.state !== LinkState.Up || l.frameMax === 0) return false;
    if (l.bytesInFlight > 0 && l.bytesInFlight + l.payloadMax > l.cwnd) return false;
    if (l.pnNext - l.oldestPn >= SENT_CAPACITY) return false;

    const tx = this.tx;
    // Lost data first, on whichever link has room.
    while (this.retx.count > 0) {
      const start = Math.max(this.retx.start(0), this.cumAcked);
      const end = this.retx.end(0);
      if (start >= end) {
        this.retx.dropFirst();
        continue;
      }
      const len = this.frameLength(l, start, end);
      if (start + len >= end) this.retx.dropFirst();
      else this.retx.trimBelow(start + len);
      tx.offset = start;
      tx.len = len;
      tx.retransmit = true;
      tx.pn = this.recordSent(l, now, start, len);
      l.framesRetransmitted++;
      l.bytesRetransmitted += len;
      return true;
    }

    const len = this.newDataLength(l);
    if (len === 0) return false;
    if (this.cfg.weights && !this.withinShare(l)) return false;
    tx.offset = this.nextNew;
    tx.len = len;
    tx.retransmit = false;
    tx.pn = this.recordSent(l, now, this.nextNew, len);
    this.nextNew += len;
    l.assigned += len;
    return true;
  }

  /** The local device of this link failed (down, gone): out of service now, data resent elsewhere. */
  linkFailed(link: number): void {
    const l = this.links[link];
    if (l.state === LinkState.Up) this.takeDown(l);
  }

  /** Would pollData give this link a frame now? (Window room and something to send.) */
  canSend(link: number): boolean {
    if (this.phase !== Phase.Transfer) return false;
    const l = this.links[link];
    if (l.state !== LinkState.Up || l.frameMax === 0) return false;
    if (l.bytesInFlight > 0 && l.bytesInFlight + l.payloadMax > l.cwnd) return false;
    if (l.pnNext - l.oldestPn >= SENT_CAPACITY) return false;
    return this.retx.count > 0 || this.newDataLength(l) > 0;
  }

  // ---- read-only views -----------------------------------------------------------------

  /** The END record is in the ring (streamEnded was called). */
  get ended(): boolean {
    return this.endQueued;
  }

  get linkCount(): number {
    return this.links.length;
  }

  /** Stream bytes given to links at least once (the rest of what was appended waits). */
  get sentUpTo(): number {
    return this.nextNew;
  }

  /** Appended bytes no link is given yet because they are a short tail waiting for more input
   * (see inputFlows): none of the links that carry data would take them; 0 when none are held. */
  get heldTail(): number {
    if (!this.inputFlowing || this.nextNew >= Math.min(this.appended, this.peerLimit)) return 0;
    let carrying = false;
    for (const l of this.links) {
      if (l.state !== LinkState.Up || l.frameMax === 0) continue;
      if (this.newDataLength(l) > 0) return 0;
      carrying = true;
    }
    return carrying ? this.appended - this.nextNew : 0;
  }

  /** End of the stream bytes the shell appended. */
  get appendedUpTo(): number {
    return this.appended;
  }

  /** Stream bytes the receiver acknowledged, all below this. */
  get ackedUpTo(): number {
    return this.cumAcked;
  }

  /** The receiver's flow-control limit: stream bytes below it may be sent. */
  get limit(): number {
    return this.peerLimit;
  }

  linkStats(link: number): SenderLinkStats {
    const l = this.links[link];
    return {
      state: l.state,
      provenMtu: l.path.proven,
      ceilingMtu: l.path.ceiling,
      peerMtu: l.peerMtu,
      framesSent: l.framesSent,
      bytesSent: l.bytesSent,
      framesRetransmitted: l.framesRetransmitted,
      bytesRetransmitted: l.bytesRetransmitted,
      framesLost: l.framesLost,
      acksReceived: l.acksReceived,
      timesDown: l.timesDown,
      srttMs: l.hasRtt ? l.srtt : null,
    };
  }

  /** The link's live state, for unit tests of the RTT and loss arithmetic; the shells use linkStats. */
  inspectLink(link: number): SenderLink {
    return this.links[link];
  }

  // ---- internals -----------------------------------------------------------------------

  private heard(l: SenderLink, now: number): void {
    l.lastHeard = now;
    if (now > this.lastHeardAny) this.lastHeardAny = now;
  }

  /** Payload of the link's next frame of new data; 0 for none, or a short tail held (inputFlows). */
  private newDataLength(l: SenderLink): number {
    const limit = Math.min(this.appended, this.peerLimit);
    if (this.nextNew >= limit) return 0;
    const len = this.frameLength(l, this.nextNew, limit);
    if (this.inputFlowing && len < l.frameMax && this.nextNew + len === this.appended) return 0;
    return len;
  }

  private frameLength(l: SenderLink, start: number, end: number): number {
    const ring = this.cfg.ringSize;
    // A frame never spans the ring's end, so its payload is one contiguous slice.
    const toRingEnd = ring - (start % ring);
    return Math.min(end - start, l.frameMax, toRingEnd);
  }

  private withinShare(l: SenderLink): boolean {
    // A link may run ahead of the slowest share by a little, never more: weights hold even when one link could take it all.
    const share = l.assigned / l.weight;
    const min = this.minAssignedShare();
    return share <= min + (256 * 1024) / l.weight;
  }

  private minAssignedShare(): number {
    let min = Infinity;
    for (const o of this.links) if (o.state === LinkState.Up && o.assigned / o.weight < min) min = o.assigned / o.weight;
    return min === Infinity ? 0 : min;
  }

  private recordSent(l: SenderLink, now: number, offset: number, len: number, probeMtu = 0): number {
    const pn = l.pnNext++;
    const slot = pn & (SENT_CAPACITY - 1);
    l.sentProbe[slot] = probeMtu;
    l.sentOffset[slot] = offset;
    l.sentLen[slot] = len;
    l.sentTime[slot] = now;
    l.sentState[slot] = Sent.InFlight;
    l.bytesInFlight += len;
    l.packetsInFlight++;
    l.lastSent = now;
    l.framesSent++;
    l.bytesSent += len;
    return pn;
  }

  private updateRtt(l: SenderLink, sample: number, ackDelayMs: number): void {
    if (sample <= 0) sample = 0.01;
    l.latestRtt = sample;
    if (sample < l.minRtt) l.minRtt = sample;
    let adjusted = sample;
    if (sample - ackDelayMs >= l.minRtt) adjusted = sample - ackDelayMs;
    if (!l.hasRtt) {
      l.srtt = adjusted;
      l.rttvar = adjusted / 2;
      l.hasRtt = true;
    } else {
      l.rttvar = 0.75 * l.rttvar + 0.25 * Math.abs(l.srtt - adjusted);
      l.srtt = 0.875 * l.srtt + 0.125 * adjusted;
    }
  }

  private growWindow(l: SenderLink, acked: number): void {
    if (acked <= 0) return;
    if (l.cwnd < l.ssthresh) l.cwnd += acked;
    else l.cwnd += (l.payloadMax * acked) / l.cwnd;
    if (l.cwnd > this.cfg.maxCwnd) l.cwnd = this.cfg.maxCwnd;
  }

  private lossDelay(l: SenderLink): number {
    return Math.max(TIME_THRESHOLD * Math.max(l.latestRtt, l.srtt), GRANULARITY_MS);
  }

  private detectLosses(l: SenderLink, now: number): void {
    if (l.largestAcked < 0) return;
    const lossDelay = this.lossDelay(l);
    let lostNewest = -Infinity;
    for (let pn = l.oldestPn; pn < l.largestAcked; pn++) {
      const slot = pn & (SENT_CAPACITY - 1);
      if (l.sentState[slot] !== Sent.InFlight) continue;
      if (l.largestAcked - pn >= PACKET_THRESHOLD || l.sentTime[slot] <= now - lossDelay) {
        this.declareLost(l, slot);
        // A lost probe says the size is too big for the path, not that the path is congested.
        if (l.sentProbe[slot] === 0 && l.sentTime[slot] > lostNewest) lostNewest = l.sentTime[slot];
      }
    }
    if (lostNewest > l.recoveryStart) this.congestionEvent(l, now);
  }

  private declareLost(l: SenderLink, slot: number): void {
    l.sentState[slot] = Sent.Lost;
    const len = l.sentLen[slot];
    l.bytesInFlight -= len;
    l.packetsInFlight--;
    if (l.sentProbe[slot] !== 0) {
      l.path.onProbeLost(l.sentProbe[slot]);
      return;
    }
    l.framesLost++;
    if (len > 0 && l.path.isBig(len)) l.path.onBigDataLost();
    const start = l.sentOffset[slot];
    if (len > 0 && start + len > this.cumAcked) {
      if (!this.retx.add(Math.max(start, this.cumAcked), start + len)) {
        this.fail("internal error: retransmission queue overflow", EXIT_TRANSFER);
      }
    }
  }

  private congestionEvent(l: SenderLink, now: number): void {
    l.recoveryStart = now;
    l.ssthresh = Math.max(l.cwnd / 2, 16 * l.payloadMax);
    l.cwnd = l.ssthresh;
  }

  private advanceOldest(l: SenderLink): void {
    while (l.oldestPn < l.pnNext && l.sentState[l.oldestPn & (SENT_CAPACITY - 1)] !== Sent.InFlight) {
      l.sentState[l.oldestPn & (SENT_CAPACITY - 1)] = Sent.Free;
      l.oldestPn++;
    }
  }

  /** When the oldest packet in flight on this link is due to be declared lost. */
  private lossDeadline(l: SenderLink): number {
    const oldest = l.sentTime[l.oldestPn & (SENT_CAPACITY - 1)];
    const timeLoss = oldest + this.lossDelay(l);
    const pto = this.ptoDeadline(l);
    return l.largestAcked >= l.oldestPn ? Math.min(timeLoss, pto) : pto;
  }

  /**
   * Probe timeout, counted from the oldest frame still in flight (or the last progress, if
   * later): a link that keeps accepting new frames but acknowledges nothing must not postpone
   * it, or a dead link would swallow a whole window before anyone noticed.
   */
  private ptoDeadline(l: SenderLink): number {
    const oldest = l.sentTime[l.oldestPn & (SENT_CAPACITY - 1)];
    return Math.max(oldest, l.lastProgress) + l.pto() * 2 ** Math.min(l.ptoCount, 6);
  }

  private onLossTimer(l: SenderLink, now: number): void {
    if (l.packetsInFlight === 0) return;
    this.advanceOldest(l);
    if (l.largestAcked >= l.oldestPn) this.detectLosses(l, now);
    if (l.packetsInFlight === 0) return;
    const ptoDeadline = this.ptoDeadline(l);
    if (now < ptoDeadline) return;
    // Probe timeout: nothing acknowledged for too long. First a PING asks for an ACK (a slow
    // first round trip or lost ACKs are no reason to resend a window). If probes go
    // unanswered too, whatever was sent before the last round trip is presumed lost and goes
    // back to the queue for any link to carry.
    if (l.ptoCount >= 2) {
      const cutoff = now - l.pto();
      for (let pn = l.oldestPn; pn < l.pnNext; pn++) {
        const slot = pn & (SENT_CAPACITY - 1);
        if (l.sentState[slot] === Sent.InFlight && l.sentTime[slot] <= cutoff) this.declareLost(l, slot);
      }
      l.cwnd = Math.max(l.cwnd / 2, 16 * l.payloadMax);
    }
    l.ptoCount++;
    l.lastProgress = now;
    l.pingDue = true;
    this.advanceOldest(l);
  }

  private takeDown(l: SenderLink): void {
    l.state = LinkState.Down;
    l.timesDown++;
    l.path.onLinkDown();
    for (let pn = l.oldestPn; pn < l.pnNext; pn++) {
      const slot = pn & (SENT_CAPACITY - 1);
      if (l.sentState[slot] === Sent.InFlight) this.declareLost(l, slot);
    }
    this.advanceOldest(l);
  }

  private syncFrameMax(l: SenderLink): void {
    l.frameMax = l.path.proven > 0 ? dataPayloadMax(l.path.proven) : 0;
  }

  private tickPath(l: SenderLink, now: number): void {
    const heardRecently = now - l.lastHeard <= 2 * this.cfg.timing.keepaliveMs;
    const before = l.path.proven;
    const change = l.path.tick(now, heardRecently, 3 * l.pto());
    if (l.path.proven !== before) this.syncFrameMax(l);
    if (change) this.events.push({ kind: "path-mtu", link: l.index, change });
  }

  /**
   * The stream owes the receiver data it has room for, yet nothing new was acknowledged for
   * the timeout, although the receiver was heard since (else the peer timeout fires first): the
   * path drops what carries the data. Fail rather than resend forever.
   */
  private watchdog(now: number): boolean {
    if (this.phase !== Phase.Transfer) return false;
    if (!this.owesData()) {
      this.progressAt = now;
      return false;
    }
    if (!this.answeredSinceProgress() || now - this.progressAt < this.cfg.timing.peerTimeoutMs) return false;
    const used = this.links.filter((l) => l.state === LinkState.Up);
    const links = used.map((l) => l.index);
    const sizes = used.map((l) => (l.frameMax > 0 ? l.path.proven : 0));
    this.fail({ kind: "no-progress", links, sizes, ms: this.cfg.timing.peerTimeoutMs }, EXIT_TRANSFER);
    return true;
  }

  /**
   * Did the receiver acknowledge a PING or path probe after the stream last made progress? Then
   * it answers, and the path drops what carries the data. A receiver that went silent when the
   * progress stopped (its last frames a moment later) is lost instead: its peer timeout, due a
   * moment after the watchdog's, says so.
   */
  /** Stream bytes the receiver has room for that it has not acknowledged yet (a slow reader or
   * a slow stdin owes nothing). */
  private owesData(): boolean {
    return Math.min(this.appended, this.peerLimit) > this.cumAcked;
  }

  private answeredSinceProgress(): boolean {
    return this.pingAckedAt > this.progressAt;
  }

  /** Time since the transfer began (since start-up while still looking for the receiver). */
  elapsed(now: number): number {
    return now - (this.transferStart ?? this.started);
  }
}
