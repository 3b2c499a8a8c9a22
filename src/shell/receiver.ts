// The receiving side's I/O shell: DATA frames from the links -> reassembly ring (shared with
// the output worker, which verifies, decompresses and writes stdout) -> acknowledgements,
// as the protocol core decides. One thread runs the loop; it sleeps in poll() on the sockets
// and the output worker's eventfd.

import { FrameType, FEATURE_LZ4, FEATURE_ZSTD, AbortFields, DataFields, FrameHeader, HelloFields,
  dataPayloadStart, parseAbort, parseData, parseHeader, parseHello } from "../wire";
import { ReceiverCore, RxPhase, Accept } from "../core/receiver";
import { defaultTiming } from "../core/timing";
import { abortOnAllLinks, openLinks, takeLinkErrors, type Link } from "./links";
import { Poller, POLLIN, POLLOUT, adviseHugePages, createEventFd, drainEventFd } from "../../ffi/libc";
import { OutputPipeline } from "../workers/output-pipeline";
import { receiverDecodes } from "./codecs";
import { L2Error, EXIT_TRANSFER, EXIT_SYSTEM } from "../errors";
import type { Options } from "../cli";
import { memoryPlan } from "./memory";
import { Reporter } from "./report";
import { Interrupts, sleepMs } from "./interrupts";
import { failureText } from "./failure-text";
import { Delivery } from "../core/delivery";
import { CrcLogWriter, createCrcLog } from "../workers/crc-log";

const STDOUT = 1;
/** Below this many frames per turn the loop naps COALESCE_MS before the next receive. */
const COALESCE_FRAMES = 32;
const COALESCE_MS = 1.5;
/** A busy receiver answers another sender's HELLOs at most this often per device. */
const BUSY_EVERY_MS = 500;

export async function runReceiver(opts: Options, interrupts: Interrupts): Promise<number> {
  const plan = memoryPlan(opts);
  const links = openLinks(opts.devices, { rxRing: plan.rxRing, rcvBuf: plan.rcvBuf, sndBuf: 1 << 20 });
  const wakeFd = createEventFd();
  const ringBuffer = reserveRing(plan.ringSize, opts.bufferBytes > 0);
  const crcLog = createCrcLog();
  const output = await OutputPipeline.create({
    ring: ringBuffer, ringSize: plan.ringSize, outFd: STDOUT, wakeFd, maxChunk: 1 << 20,
    blockSize: opts.blockBytes, strictBlocks: opts.strictBlocks, workers: plan.outputWorkers, crcLog,
  });
  try {
    return await new ReceiverLoop(opts, links, output, ringBuffer, plan.ringSize, wakeFd, interrupts, new CrcLogWriter(crcLog)).run();
  } finally {
    const closing = Promise.all(links.map((l) => l.socket.closeAsync()));
    output.close();
    await closing;
  }
}

const HUGE_RING_MAX = 256 << 20;

/** The reassembly ring; with -b it is touched page by page now, so a buffer that cannot be had fails at start. */
function reserveRing(bytes: number, touch: boolean): SharedArrayBuffer {
  let ring: SharedArrayBuffer;
  try {
    ring = new SharedArrayBuffer(bytes);
  } catch (e) {
    throw new L2Error(`cannot reserve ${bytes} bytes of memory for the receive buffer: ${(e as Error).message}`, EXIT_SYSTEM);
  }
  // Not for a tape buffer of GiBs: on a busy host, finding that many huge pages can mean
  // compacting memory for a long while before the first byte is received.
  if (bytes <= HUGE_RING_MAX) adviseHugePages(ring);
  if (touch) {
    const u8 = new Uint8Array(ring);
    for (let i = 0; i < bytes; i += 4096) u8[i] = 0;
  }
  return ring;
}

class ReceiverLoop {
  private readonly ring: Uint8Array;
  private readonly core: ReceiverCore;
  private readonly poller: Poller;
  private readonly instance: number;
  private readonly reporter: Reporter;
  /** Codecs this host decodes, told to the sender in HELLO_ACK (probed once: output Workers are up). */
  private readonly decodes = receiverDecodes();
  private outputSignalled = true;
  private framesThisTurn = 0;
  private readonly nap = new Int32Array(new SharedArrayBuffer(4));
  private lastStatus = 0;
  /** When each device last told a foreign sender that this receiver is busy. */
  private readonly busySaidAt: Float64Array;
  private readonly delivery: Delivery;

  constructor(
    private readonly opts: Options,
    private readonly links: Link[],
    private readonly output: OutputPipeline,
    ringBuffer: SharedArrayBuffer,
    private readonly ringSize: number,
    private readonly wakeFd: number,
    private readonly interrupts: Interrupts,
    private readonly crcLog: CrcLogWriter,
  ) {
    this.ring = new Uint8Array(ringBuffer);
    this.busySaidAt = new Float64Array(links.length).fill(-Infinity);
    this.delivery = new Delivery({
      ring: this.ring, ringSize, bufferBytes: opts.bufferBytes, startAtPct: opts.startAtPct, resumeAtPct: opts.resumeAtPct,
    });
    const now = performance.now();
    const timing = defaultTiming(opts.timeoutMs, opts.waitMs);
    this.core = new ReceiverCore({ deviceCount: links.length, ringSize, timing, now });
    this.poller = new Poller(links.length + 1);
    this.instance = crypto.getRandomValues(new Uint32Array(1))[0] >>> 0;
    this.reporter = new Reporter(opts, "receive", now);
  }

  async run(): Promise<number> {
    const core = this.core;
    for (;;) {
      const now = performance.now();
      this.receive(now);
      const consumed = this.output.consumed();
      this.crcLog.publish();
      this.output.publish(this.delivery.update(now, core.cum, consumed));
      core.setConsumed(consumed);
      // The output worker signals the eventfd when it finishes, fails or goes idle; between
      // those a look now and then is enough.
      if (this.outputSignalled || now - this.lastStatus > 20) {
        this.outputSignalled = false;
        this.lastStatus = now;
        const status = this.output.status();
        if (status.error) core.fail(status.error, EXIT_TRANSFER);
        else if (status.finished) core.finished(now, status.written, status.streamCrc);
      }
      core.tick(now);
      this.transmit(now);

      if (core.phase === RxPhase.Done) {
        this.reporter.finish(this.statistics(now), true);
        return 0;
      }
      if (core.phase === RxPhase.Failed) {
        const failure = core.failure ? failureText(core.failure, "receive", (i) => this.links[i]!.name) : "failed";
        return this.abort(failure, core.exitCode);
      }

      if (this.interrupts.due(now)) {
        const sig = await this.interrupts.breathe();
        if (sig) return this.abort(`interrupted by ${sig}`, this.interrupts.exitCode());
        this.reporter.progress(now, () => this.statistics(now));
      }
      this.sleep(performance.now());
    }
  }

  /** The session id on our frames but HELLO_ACK: the sender's session mixed with our instance id
   * (see the sender's pairSession). */
  private pairSession(): number {
    return (this.core.session ^ this.instance) >>> 0;
  }

  private abort(reason: string, code: number): number {
    const core = this.core;
    abortOnAllLinks(this.links, this.pairSession(), (l) => core.senderLinkOf(l.index), code, reason);
    // What was verified may still be on its way out: let it finish, so the count below is exact.
    this.output.stop(500);
    this.reporter.finish(this.statistics(performance.now()), false, reason);
    throw new L2Error(reason, code);
  }

  // ---- receive -------------------------------------------------------------------------

  private receive(now: number): void {
    // Acks go out as soon as they are due, after each batch, not after the socket is drained.
    const afterBatch = () => this.transmitAcks(now);
    this.framesThisTurn = 0;
    for (const l of this.links) {
      this.framesThisTurn += l.receive(16, (base, len) => this.onFrame(l, base, len, now), afterBatch);
    }
  }

  // Typed views of received frames, reused for every frame.
  private readonly rxHeader = new FrameHeader();
  private readonly rxHello = new HelloFields();
  private readonly rxData = new DataFields();
  private readonly rxAbort = new AbortFields();

  private onFrame(l: Link, base: number, len: number, now: number): void {
    const sock = l.socket;
    const v = sock.rxView;
    const core = this.core;
    const h = this.rxHeader;
    if (!parseHeader(v, base, len, h)) {
      l.badFrames++;
      return;
    }
    const { type, session, link: senderLink, srcOffset } = h;
    const d = l.index;
    if (type === FrameType.Hello) {
      const hello = this.rxHello;
      if (!parseHello(v, base, len, hello)) {
        l.badFrames++;
        return;
      }
      const features = hello.features;
      const ok = core.onHello(d, now, session, senderLink, hello.mtu, sock.rx, srcOffset);
      if (ok) {
        l.setPeer(sock.rx, srcOffset);
        // A stream without compressed chunks has nothing to decode in parallel: one output Worker.
        this.output.useWorkers((features & (FEATURE_LZ4 | FEATURE_ZSTD)) !== 0 ? Infinity : 1);
        // With the codecs we decode: the sender keeps to them, or fails naming the one we lack.
        l.sendHelloAck(session, senderLink, this.instance, this.ringSize, this.decodes);
        this.flushLink(l);
      } else {
        l.foreignFrames++;
        // Another sender looks for a receiver: tell it this one is taken (now and then, not
        // for every HELLO), so that it can say so instead of "no receiver answered".
        if (session !== core.session && core.phase !== RxPhase.Listen && now - this.busySaidAt[d]! >= BUSY_EVERY_MS) {
          this.busySaidAt[d] = now;
          if (l.sendSimple(FrameType.Busy, session, senderLink, 0, sock.rx.subarray(srcOffset, srcOffset + 6))) this.flushLink(l);
        }
      }
      return;
    }
    if (type === FrameType.Reject) {
      if (session === this.pairSession() && l.samePeer(sock.rx, srcOffset)) core.onReject(d);
      return;
    }
    // Frames after the handshake carry the pair's session: the sender's mixed with our instance.
    if (!core.authentic(d, (session ^ this.instance) >>> 0, senderLink, sock.rx, srcOffset)) {
      l.foreignFrames++;
      return;
    }
    const wirePn = h.pn;
    switch (type) {
      case FrameType.Data: {
        if (!parseData(v, base, len, this.rxData)) {
          l.badFrames++;
          return;
        }
        const offset = this.rxData.offset;
        const payload = this.rxData.payloadLen;
        const verdict = core.onData(d, now, wirePn, offset, payload);
        if (verdict === Accept.Store) {
          this.store(sock.rx, dataPayloadStart(base) + (core.storeFrom - offset), core.storeFrom, offset + payload);
          if (core.storeFrom === offset) this.crcLog.note(offset, payload, l.payloadCrc.value);
        }
        break;
      }
      case FrameType.Ping:
        core.onPing(d, now, wirePn);
        break;
      case FrameType.DoneAck:
        core.onHeard(d, now);
        core.onDoneAck();
        break;
      case FrameType.Abort:
        if (!parseAbort(v, base, len, this.rxAbort)) {
          l.badFrames++;
          return;
        }
        core.onAbort(this.rxAbort.text);
        break;
      default:
        core.onHeard(d, now);
    }
  }

  /** Copies stream bytes [from, to) from the receive ring into the reassembly ring, wrapping at its end. */
  private store(src: Uint8Array, srcOffset: number, from: number, to: number): void {
    const pos = from % this.ringSize;
    const len = to - from;
    const first = Math.min(len, this.ringSize - pos);
    this.ring.set(src.subarray(srcOffset, srcOffset + first), pos);
    if (first < len) this.ring.set(src.subarray(srcOffset + first, srcOffset + len), 0);
  }

  // ---- transmit ------------------------------------------------------------------------

  private transmitAcks(now: number): void {
    const core = this.core;
    for (const l of this.links) {
      const d = l.index;
      const ack = core.pollAck(d, now);
      if (ack === null) continue;
      // Not queued (the batch is full): still due, tried again after the flush.
      if (l.sendAck(this.pairSession(), ack.senderLink, ack.pn, ack)) core.onAckSent(d, now);
      this.flushLink(l);
    }
  }

  private transmit(now: number): void {
    const core = this.core;
    this.transmitAcks(now);
    for (const l of this.links) {
      const done = core.pollDone(l.index, now);
      if (done !== null && l.sendDone(this.pairSession(), done.senderLink, done.total, done.crc)) core.onDoneSent(l.index, now);
      this.flushLink(l);
    }
  }

  private flushLink(l: Link): void {
    if (l.socket.txPending() === 0) return;
    try {
      l.socket.flush();
    } catch {
      // The device is down: what was queued is stale by the time it is back.
      l.socket.txClear();
    }
  }

  private sleep(now: number): void {
    if (this.framesThisTurn > 0 && this.framesThisTurn < COALESCE_FRAMES && this.core.phase === RxPhase.Transfer) {
      // Frames trickle in one by one: wait a moment and take them in a batch, rather than
      // paying a wake-up and a round of system calls for each.
      Atomics.wait(this.nap, 0, 0, COALESCE_MS);
      return;
    }
    const p = this.poller;
    let n = 0;
    for (const l of this.links) p.set(n++, l.socket.fd, POLLIN | (l.socket.txPending() > 0 ? POLLOUT : 0));
    const wake = n;
    p.set(n++, this.wakeFd, POLLIN);
    p.count = n;
    const timeout = sleepMs(this.core.nextTimeout(now), now);
    if (p.wait(timeout) <= 0) return;
    takeLinkErrors(this.links, p);
    // Read the eventfd only when poll saw it signalled: a read() per turn otherwise.
    if ((p.revents(wake) & POLLIN) !== 0 && drainEventFd(this.wakeFd) > 0) this.outputSignalled = true;
  }

  statistics(now: number) {
    const core = this.core;
    const st = this.output.status();
    return {
      role: "receive" as const,
      elapsedMs: now - (core.transferStart ?? this.started),
      inputBytes: st.outBytes,
      wireBytes: core.cum,
      output: { chunks: st.chunks, lz4Chunks: st.lz4Chunks, zstdChunks: st.zstdChunks, stallMs: st.stallMs },
      buffer: this.opts.bufferBytes > 0 ? this.delivery.bufferStats(this.opts.bufferBytes) : null,
      links: this.links.map((l) => {
        const c = core.linkStats(l.index);
        return {
          device: l.name,
          state: c.greeted ? "up" : "unused",
          framesReceived: c.framesReceived,
          bytesReceived: c.bytesReceived,
          duplicates: c.duplicates,
          acksSent: c.acksSent,
          badFrames: l.badFrames,
          foreignFrames: l.foreignFrames,
          kernelDrops: l.countKernelDrops(),
          // A greeted link without data had nothing wrong with it (a short stream).
          unused: !c.greeted ? "no sender greeted on it (does the sender list the device it is cabled to?)" : undefined,
        };
      }),
    };
  }

  private readonly started = performance.now();
}
