// Sizes each link's kernel send queue (SO_SNDBUF) to its measured drain rate.
//
// The sender loop refills a socket when poll says it has room, which is when half its buffer
// has drained: a buffer worth a few milliseconds of the link idles the link whenever the loop
// wakes late (two cores shared with the receiver, the compressors and the reader). A fixed large
// buffer would fix fast links but hold seconds of data on a slow one, where a dead link's queue
// must be resent and the round-trip time the loss detection relies on grows with it. So the
// buffer holds about QUEUE_MS of what the link has been seen to carry.

import type { PacketSocket } from "./packet-socket";

/** Time of traffic the kernel queue should hold. */
export const QUEUE_MS = 25;
/** How often the drain rate is sampled; the fastest of the last RATE_SAMPLES counts. */
const SAMPLE_MS = 50;
const RATE_SAMPLES = 4;
/** Resize only when the wanted size differs by more than this factor (each resize is a syscall). */
const HYSTERESIS = 1.25;

/** Kernel memory one queued frame takes (struct sk_buff plus its data pages or page fragment). */
export function frameTruesize(frameBytes: number): number {
  const data = frameBytes > 4096 ? Math.ceil(frameBytes / 4096) * 4096 : frameBytes;
  return data + 800;
}

export interface SendQueueLimits {
  /** Smallest and largest SO_SNDBUF to ask for (the kernel grants twice the asked value). */
  minBytes: number;
  maxBytes: number;
}

export class SendQueueSizer {
  private lastSample = -Infinity;
  private lastBytes = 0;
  private readonly rates = new Float64Array(RATE_SAMPLES);
  private next = 0;
  private seenQueueFull = 0;
  private ceiling: number;
  private asked: number;

  constructor(
    private readonly socket: PacketSocket,
    private readonly frameBytes: number,
    txQueueLen: number,
    private readonly limits: SendQueueLimits,
    initialBytes: number,
  ) {
    // A default queueing discipline drops (ENOBUFS) beyond txqueuelen frames: stay below it.
    const byQueue = txQueueLen > 0 ? (0.8 * txQueueLen * frameTruesize(frameBytes)) / 2 : limits.maxBytes;
    this.ceiling = Math.max(limits.minBytes, Math.min(limits.maxBytes, byQueue));
    this.asked = Math.min(initialBytes, this.ceiling);
    socket.setSendBuffer(this.asked);
  }

  /** Asked-for SO_SNDBUF now. */
  get bytes(): number {
    return this.asked;
  }

  update(now: number): void {
    const dt = now - this.lastSample;
    if (dt < SAMPLE_MS) return;
    const sock = this.socket;
    if (Number.isFinite(this.lastSample)) {
      this.rates[this.next] = ((sock.bytesSent - this.lastBytes) * 1000) / dt;
      this.next = (this.next + 1) % RATE_SAMPLES;
    }
    this.lastSample = now;
    this.lastBytes = sock.bytesSent;
    if (sock.queueFull !== this.seenQueueFull) {
      // The device's queue is shorter than its txqueuelen said (another qdisc): back off.
      this.seenQueueFull = sock.queueFull;
      this.ceiling = Math.max(this.limits.minBytes, this.asked * 0.75);
    }
    let rate = 0;
    for (let i = 0; i < RATE_SAMPLES; i++) rate = Math.max(rate, this.rates[i]!);
    if (rate === 0) return;
    const frames = (rate * QUEUE_MS) / 1000 / this.frameBytes;
    const want = Math.max(this.limits.minBytes, Math.min(this.ceiling, Math.round((frames * frameTruesize(this.frameBytes)) / 2)));
    if (want > this.asked * HYSTERESIS || want * HYSTERESIS < this.asked) {
      this.asked = want;
      sock.setSendBuffer(want);
    }
  }
}
