// The sending side's I/O shell: stdin -> records (raw, or lz4/zstd by the compressor pool) ->
// send ring -> DATA frames on the links, as the protocol core decides. One thread runs the
// loop; it sleeps in poll() on the sockets, stdin and the pool's eventfd.

import { FrameType, FrameCrc, ETH_HEADER, MIN_MTU, AbortFields, AckFields, DoneFields, FrameHeader, HelloFields,
  parseAbort, parseAck, parseDone, parseHeader, parseHelloAck } from "../wire";
import { SenderCore, Phase, LinkState, type SenderLinkStats } from "../core/sender";
import { defaultTiming } from "../core/timing";
import { abortOnAllLinks, openLinks, takeLinkErrors, type Link } from "./links";
import { Poller, POLLIN, POLLOUT, addressOf, createEventFd, drainEventFd, setPipeSize } from "../../ffi/libc";
import { CompressPool } from "../workers/compress-pool";
import { SenderCodecs } from "./codecs";
import { L2Error, fromFfi } from "../errors";
import { InputStage, STDIN } from "./input-stage";
import type { Options } from "../cli";
import { memoryPlan } from "./memory";
import { Reporter } from "./report";
import { Interrupts, sleepMs } from "./interrupts";
import { failureText } from "./failure-text";
import { SendQueueSizer } from "./send-queue";

/** Why a link carried no DATA, in the user's terms; undefined when nothing was wrong with it
 * (a stream so short that the other links carried all of it). */
function unusedReason(c: SenderLinkStats): string | undefined {
  if (c.state === LinkState.Probing) return "no receiver answered on it (does the receiver list the device it is cabled to?)";
  if (c.ceilingMtu > 0 && c.provenMtu === 0) return `no frame of ${MIN_MTU} bytes or more got through to the receiver`;
  if (c.state === LinkState.Down) return "it went down";
  return undefined;
}

/** DATA frames a link may queue before the next link gets its turn. */
const TURN_FRAMES = 8;

export async function runSender(opts: Options, interrupts: Interrupts): Promise<number> {
  const plan = memoryPlan(opts);
  const links = openLinks(opts.devices, { rxRing: plan.rxRing, rcvBuf: plan.rcvBuf, sndBuf: plan.sndBuf });
  const wakeFd = createEventFd();
  let pool: CompressPool | null = null;
  // Loaded here before the pool's Workers load them (concurrent first dlopens can crash Bun).
  const codecs = opts.compressors > 0 ? new SenderCodecs(opts) : null;
  if (codecs) {
    pool = await CompressPool.create({
      workers: opts.compressors, chunkSize: plan.chunkSize, slots: plan.poolSlots, wakeFd,
      lz4: codecs.lz4 !== null, zstd: codecs.zstd !== null, codec: codecs.initial(),
      // auto starts by sending chunks as they are (see CodecPolicy): Workers only once it compresses.
      lazy: opts.compress === "auto",
    });
  }
  try {
    const queues = links.map((l) => new SendQueueSizer(l.socket, l.device.mtu + ETH_HEADER, l.device.txQueueLen,
      { minBytes: 128 << 10, maxBytes: plan.sndBufMax }, plan.sndBuf));
    return await new SenderLoop(opts, links, pool, wakeFd, plan.ringSize, plan.chunkSize, interrupts, queues, codecs).run();
  } finally {
    pool?.close();
    await Promise.all(links.map((l) => l.socket.closeAsync()));
  }
}

class SenderLoop {
  private readonly ring: Uint8Array;
  private readonly ringPtr: number;
  private readonly ringCrc: FrameCrc;
  private readonly core: SenderCore;
  private readonly session: number;
  private readonly poller: Poller;
  private readonly reporter: Reporter;

  private readonly input: InputStage;
  /** The codecs (null: -0). */
  private readonly codecs: SenderCodecs | null;
  /** FEATURE_* bits of the codecs the receiver decodes, from its HELLO_ACK. */
  private receiverCodecs = 0;
  /** Time links sat idle while the compressors worked, and turns spent with data the links had not taken. */
  private linksWaitedMs = 0;
  private linksBusyMs = 0;
  private firstLink = 0;

  constructor(
    opts: Options,
    private readonly links: Link[],
    private readonly pool: CompressPool | null,
    private readonly wakeFd: number,
    private readonly ringSize: number,
    chunkSize: number,
    private readonly interrupts: Interrupts,
    private readonly queues: SendQueueSizer[],
    codecs: SenderCodecs | null,
  ) {
    // Small pages: sending out of a ring on transparent huge pages made 3 links at MTU 1500
    // (200/400/400 Mbit) 25-30 % slower here (550-650 instead of 800-820 Mbit/s).
    this.ring = new Uint8Array(new ArrayBuffer(ringSize));
    this.ringPtr = addressOf(this.ring);
    this.ringCrc = new FrameCrc(this.ring);
    this.codecs = codecs;
    const now = performance.now();
    const timing = defaultTiming(opts.timeoutMs, opts.waitMs);
    this.core = new SenderCore({
      linkCount: links.length,
      mtus: links.map((l) => l.device.mtu),
      weights: opts.weights,
      ringSize,
      maxCwnd: Math.min(32 << 20, ringSize / 2),
      timing,
      now,
    });
    this.session = (crypto.getRandomValues(new Uint32Array(1))[0] | 1) >>> 0;
    this.poller = new Poller(links.length + 2);
    setPipeSize(STDIN, 1 << 20);
    this.reporter = new Reporter(opts, "send", now);
    this.input = new InputStage({
      ring: this.ring, ringPtr: this.ringPtr, ringSize, chunkSize, pool, codecs,
      core: this.core, reusableBelow: () => this.reusableBelow(),
    });
  }

  async run(): Promise<number> {
    const core = this.core;
    for (;;) {
      let now = performance.now();
      const turnStart = now; // for linksBusyMs
      this.receive(now);
      if (core.phase === Phase.Transfer || core.phase === Phase.Finishing) {
        try {
          this.input.read(now, this.receiverCodecs);
        } catch (e) {
          // stdin failed (a reset connection, a directory): the receiver is told why, not left to time out.
          const f = fromFfi(e); // a failed poll() on stdin too
          if (f instanceof L2Error) return this.abort(f.message, f.exitCode);
          throw e;
        }
      }
      core.tick(now);
      this.transmit(now);
      for (const q of this.queues) q.update(now);

      if (core.phase === Phase.Done) {
        this.transmit(now);
        this.reporter.finish(this.statistics(now), true);
        return 0;
      }
      if (core.phase === Phase.Failed) {
        const failure = core.failure ? failureText(core.failure, "send", (i) => this.links[i]!.name) : "failed";
        return this.abort(failure, core.exitCode);
      }

      if (this.interrupts.due(now)) {
        const sig = await this.interrupts.breathe();
        if (sig) return this.abort(`interrupted by ${sig}`, this.interrupts.exitCode());
        this.reporter.progress(now, () => this.statistics(now));
      }
      now = performance.now();
      // Links with room and the peer's window open, but nothing to send while the compressors
      // still work on chunks already read: that time is the compressors' to answer for.
      // (A short tail held for more input is nothing to send.)
      const accounted = this.pool !== null && core.phase === Phase.Transfer;
      const unsent = accounted ? core.appendedUpTo - core.sentUpTo - core.heldTail : 0;
      const starved = accounted && this.input.waitsOnCompressors() && unsent <= 0 && core.appendedUpTo < core.limit;
      // Data in the ring the links have not taken yet: the whole turn is the links' (or the
      // receiver's) to answer for, reading stdin into a filling ring included.
      // Input held back by the codec policy's read-ahead bound counts too: the links hold that
      // much unacknowledged.
      const backlog = accounted && !starved && (unsent > 0 || this.input.heldByReadAhead());
      this.sleep(now);
      if (starved) this.linksWaitedMs += performance.now() - now;
      if (backlog) this.linksBusyMs += performance.now() - turnStart;
      if (this.codecs?.settled) {
        this.codecs.tick(now, this.pool!, {
          starvedMs: this.linksWaitedMs, backlogMs: this.linksBusyMs, producedBytes: this.input.produced, drainedBytes: core.sentUpTo,
          sendMs: this.sendMs(),
        }, this.input.stdinBytes);
      }
    }
  }

  /** Time this thread spent handing frames to the kernel, over all links. */
  private sendMs(): number {
    let ms = 0;
    for (const l of this.links) ms += l.socket.sendMs;
    return ms;
  }

  /**
   * The session id on every frame but HELLO and HELLO_ACK once a receiver answered: the session
   * mixed with that receiver's instance id, so that a second receiver behind the same MAC (two
   * on one host) takes none of this run's frames for its own, nor this run its frames.
   */
  private pairSession(): number {
    const instance = this.core.peerInstance;
    return instance === -1 ? this.session : (this.session ^ instance) >>> 0;
  }

  private abort(reason: string, code: number): number {
    abortOnAllLinks(this.links, this.pairSession(), (l) => (l.peerKnown ? l.index : -1), code, reason);
    this.reporter.finish(this.statistics(performance.now()), false, reason);
    throw new L2Error(reason, code);
  }

  // ---- receive -------------------------------------------------------------------------

  private receive(now: number): void {
    for (const l of this.links) l.receive(64, (base, len) => this.onFrame(l, base, len, now));
  }

  // Typed views of received frames, reused for every frame.
  private readonly rxHeader = new FrameHeader();
  private readonly rxHello = new HelloFields();
  private readonly rxAck = new AckFields();
  private readonly rxDone = new DoneFields();
  private readonly rxAbort = new AbortFields();

  private onFrame(l: Link, base: number, len: number, now: number): void {
    const sock = l.socket;
    const v = sock.rxView;
    const h = this.rxHeader;
    if (!parseHeader(v, base, len, h)) {
      l.badFrames++;
      return;
    }
    const type = h.type;
    // HELLO_ACK carries the session; every other frame the pair's (see pairSession).
    const session = type === FrameType.HelloAck || type === FrameType.Busy ? this.session : this.pairSession();
    if (h.session !== session || h.link !== l.index) {
      l.foreignFrames++;
      return;
    }
    const core = this.core;
    if (type === FrameType.HelloAck) {
      const hello = this.rxHello;
      if (!parseHelloAck(v, base, len, hello)) {
        l.badFrames++;
        return;
      }
      const accepted = core.onHelloAck(l.index, now, hello.mtu, hello.instance, hello.window);
      if (!accepted) {
        // Another receiver answered our broadcast: tell it to go back to listening.
        const other = sock.rx.subarray(h.srcOffset, h.srcOffset + 6);
        // Addressed to that receiver's instance: another one behind the same MAC must not hear it.
        const rejected = (this.session ^ hello.instance) >>> 0;
        if (!l.sendSimple(FrameType.Reject, rejected, l.index, 0, other)) {
          // All slots hold data for a full socket: make room, the REJECT must not be lost.
          this.flushLink(l);
          if (!l.sendSimple(FrameType.Reject, rejected, l.index, 0, other)) {
            l.socket.txClear();
            l.sendSimple(FrameType.Reject, rejected, l.index, 0, other);
          }
        }
        l.foreignFrames++;
      } else {
        this.receiverCodecs = hello.features;
        if (!l.peerKnown) l.setPeer(sock.rx, h.srcOffset);
      }
      return;
    }
    if (type === FrameType.Busy) {
      core.onBusy(l.index);
      return;
    }
    // An ABORT may come on a link before its HELLO_ACK (the receiver answered on another link
    // first): the pair id, random per run and receiver, is what makes it ours.
    const fromPeer = l.peerKnown ? l.samePeer(sock.rx, h.srcOffset) : type === FrameType.Abort;
    if (!fromPeer) {
      l.foreignFrames++;
      return;
    }
    // A malformed frame is counted and trusted in nothing, not even as a sign of life.
    switch (type) {
      case FrameType.Ack: {
        const ack = this.rxAck;
        if (!parseAck(v, base, len, ack)) break;
        core.onHeard(l.index, now);
        core.onAck(l.index, now, ack.cum, ack.limit, ack.delayUs / 1000, ack.rangeCount, ack.rangeAt);
        return;
      }
      case FrameType.Done: {
        const done = this.rxDone;
        if (!parseDone(v, base, len, done)) break;
        core.onHeard(l.index, now);
        core.onDone(done.total, done.crc);
        return;
      }
      case FrameType.Abort: {
        const abort = this.rxAbort;
        if (!parseAbort(v, base, len, abort)) break;
        core.onHeard(l.index, now);
        core.onAbort(abort.text);
        return;
      }
      default:
        core.onHeard(l.index, now);
        return;
    }
    l.badFrames++;
  }

  // ---- input ---------------------------------------------------------------------------

  /**
   * Ring bytes below this stream offset may be overwritten: acknowledged, and not the payload
   * of a frame still waiting in a socket's batch. (The kernel copies a payload only when the
   * frame is sent; a frame whose bytes were acknowledged through another link meanwhile would
   * otherwise go out with new bytes under its old CRC.)
   */
  private reusableBelow(): number {
    let below = this.core.ringFreeUpTo();
    for (const l of this.links) if (l.socket.txPending() > 0) below = Math.min(below, l.socket.txLowestTag());
    return below;
  }

  // ---- transmit ------------------------------------------------------------------------

  private transmit(now: number): void {
    const core = this.core;
    const features = this.codecs?.features ?? 0;
    // DONE_ACK, a round on every link, twice (once per transmit of the last turn): best effort.
    const doneAck = core.doneAckDue();
    if (doneAck) core.onDoneAcksSent();
    for (const l of this.links) {
      const i = l.index;
      if (core.helloDue(i, now) && l.sendHello(this.session, this.links.length, features)) core.onHelloSent(i, now);
      if (doneAck) {
        if (l.peerKnown) l.sendSimple(FrameType.DoneAck, this.pairSession(), i, 0);
      } else {
        const pn = core.pollPing(i);
        if (pn >= 0 && l.sendSimple(FrameType.Ping, this.pairSession(), i, pn >>> 0)) core.onPingSent(i, now);
      }
      while (core.pollProbe(i)) {
        if (l.socket.txSlot() < 0) this.flushLink(l);
        // No slot even so: the probe stays due, for the next turn.
        if (!l.sendProbe(this.pairSession(), i, core.probeTx.pn >>> 0, core.probeTx.mtu)) break;
        core.onProbeSent(i, now);
      }
    }
    this.tellEvents();
    // Links take turns a few frames at a time, so each gets data as fast as it drains
    // rather than the first in the list filling its queue with everything.
    const n = this.links.length;
    this.firstLink = (this.firstLink + 1) % n;
    for (let round = 0; round < 256; round++) {
      let progress = false;
      for (let k = 0; k < n; k++) {
        const l = this.links[(this.firstLink + k) % n];
        if (this.fillLink(l, now, TURN_FRAMES) > 0) progress = true;
      }
      if (!progress) break;
    }
    for (const l of this.links) this.flushLink(l);
  }

  /** Queues up to max DATA frames on a link, flushing its batch when full; returns frames queued. */
  private fillLink(l: Link, now: number, max: number): number {
    const core = this.core;
    let queued = 0;
    while (queued < max) {
      if (l.socket.txSlot() < 0 && this.flushLink(l) === 0) break;
      if (!core.pollData(l.index, now)) break;
      const tx = core.tx;
      l.sendData(this.pairSession(), l.index, tx.pn >>> 0, tx.offset, this.ring, this.ringCrc, tx.offset % this.ringSize, this.ringPtr, tx.len);
      queued++;
    }
    return queued;
  }

  private flushLink(l: Link): number {
    if (l.socket.txPending() === 0) return 0;
    try {
      return l.socket.flush();
    } catch {
      // The device went away or down: its data goes to the other links at once, and the link
      // comes back when the receiver is heard on it again.
      l.socket.txClear();
      this.core.linkFailed(l.index);
      return 0;
    }
  }

  /** What the core found that the user should know, one line each. */
  private tellEvents(): void {
    for (let e = this.core.pollEvent(); e !== undefined; e = this.core.pollEvent()) {
      const dev = this.links[e.link]!.name;
      const { from, to, ceiling, midTransfer } = e.change;
      let text: string;
      if (to === 0) text = `${dev}: no frame size gets through (tried ${ceiling} down to ${MIN_MTU} bytes); the link carries no data`;
      else if (to > from) text = `${dev}: frames up to ${to} bytes arrive again; using ${to}`;
      else if (midTransfer) text = `${dev}: frames above ${to} bytes stopped arriving; using ${to}`;
      else text = `${dev}: frames above ${to} bytes do not arrive (the link's MTU is ${ceiling}); using ${to}`;
      this.reporter.warn(text);
    }
  }

  // ---- sleep ---------------------------------------------------------------------------

  private sleep(now: number): void {
    const core = this.core;
    const p = this.poller;
    let n = 0;
    for (const l of this.links) {
      p.set(n++, l.socket.fd, POLLIN | (l.socket.txPending() > 0 ? POLLOUT : 0));
    }
    const wake = n;
    p.set(n++, this.wakeFd, POLLIN);
    const wantInput = (core.phase === Phase.Transfer || core.phase === Phase.Finishing) && this.input.wantsStdin();
    if (wantInput) p.set(n++, STDIN, POLLIN);
    p.count = n;
    let deadline = core.nextTimeout(now);
    deadline = Math.min(deadline, this.input.deadline(now));
    const timeout = sleepMs(deadline, now);
    // A link whose socket has room and which the core would give data: do not sleep at all.
    // Links whose socket is full wait for POLLOUT instead of being retried in a spin.
    const busy = this.links.some((l) => l.socket.txPending() === 0 && core.canSend(l.index));
    if (p.wait(busy ? 0 : timeout) <= 0) return;
    takeLinkErrors(this.links, p);
    // Read the eventfd only when poll saw it signalled: a read() per turn otherwise.
    if ((p.revents(wake) & POLLIN) !== 0) drainEventFd(this.wakeFd);
  }

  statistics(now: number) {
    const core = this.core;
    return {
      role: "send" as const,
      elapsedMs: core.elapsed(now),
      inputBytes: this.input.stdinBytes,
      wireBytes: this.input.produced,
      ackedWireBytes: core.ackedUpTo,
      compression: this.pool
        ? { ...this.pool.stats(), linksWaitedMs: this.linksWaitedMs, linksBusyMs: this.linksBusyMs, ...this.codecs!.describe() }
        : null,
      links: this.links.map((l) => {
        const c = core.linkStats(l.index);
        return {
          device: l.name,
          state: ["probing", "up", "down"][c.state],
          mtu: c.provenMtu || Math.min(l.device.mtu, c.peerMtu || l.device.mtu),
          framesSent: c.framesSent,
          bytesSent: c.bytesSent,
          framesRetransmitted: c.framesRetransmitted,
          bytesRetransmitted: c.bytesRetransmitted,
          framesLost: c.framesLost,
          acksReceived: c.acksReceived,
          badFrames: l.badFrames,
          foreignFrames: l.foreignFrames,
          kernelDrops: l.countKernelDrops(),
          timesDown: c.timesDown,
          srttMs: c.srttMs,
          sendQueueBytes: l.socket.sndBufActual,
          unused: c.bytesSent > 0 ? undefined : unusedReason(c),
        };
      }),
    };
  }
}
