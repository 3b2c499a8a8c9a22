// A simulated network that drives the pure protocol cores: links with their own rate, delay,
// loss, duplication and reordering, links that die and come back, a reader of any speed.
// Every byte the receiver releases is checked against what the sender put in.

import { SenderCore, Phase, type SenderEvent } from "../../src/core/sender";
import { ReceiverCore, RxPhase, Accept } from "../../src/core/receiver";
import { defaultTiming, type Timing } from "../../src/core/timing";
import { TWO32 } from "../../src/wire";
import { crc32 } from "../../src/record";
import { failureText } from "../../src/shell/failure-text";

export interface SimLink {
  /** Bytes per millisecond (1 Gbit/s = 125_000). */
  rate: number;
  delayMs: number;
  mtu: number;
  loss?: number;
  ackLoss?: number;
  dup?: number;
  /** Probability a frame is held back by reorderMs. */
  reorder?: number;
  reorderMs?: number;
  /** Dead (both directions) during [from, to). */
  dead?: Array<[number, number]>;
  /** Largest frame (as an MTU: bytes after the Ethernet header) the path carries from a time
   * on, in time order; frames above it vanish, like behind a switch with smaller ports. */
  pathMtu?: Array<[number, number]>;
}

export interface SimOptions {
  seed: number;
  links: SimLink[];
  streamBytes: number;
  ringSize: number;
  /** Reader speed in bytes per ms; Infinity for a reader that keeps up. */
  readerRate?: number;
  weights?: number[] | null;
  timing?: Partial<Timing>;
  maxMs?: number;
  /** Sender stops producing (killed) at this time. */
  senderDiesAt?: number;
  receiverDiesAt?: number;
  /** Receiver device for sender link i (default identity). */
  devicePermutation?: number[];
  /** Damage the byte at this stream offset in the receiver's ring once it is stored (past every
   * frame check): only the stream CRC in DONE can tell. */
  damageAt?: number;
}

export interface SimResult {
  senderPhase: Phase;
  receiverPhase: RxPhase;
  senderFailure: string | null;
  receiverFailure: string | null;
  endMs: number;
  /** When the sender was done or failed (-1: never). */
  senderEndMs: number;
  /** Time the receiver had released all bytes. */
  deliveredMs: number;
  consumed: number;
  corruptBytes: number;
  framesSent: number[];
  bytesSent: number[];
  retransmitted: number;
  duplicatesSeen: number;
  /** What the sender had to tell the user, with the time it did. */
  events: Array<SenderEvent & { at: number }>;
  /** Per link, the frame payload sizes it sent DATA with, in order of first use. */
  payloadSizes: number[][];
}

interface Frame {
  at: number;
  toReceiver: boolean;
  link: number;
  type: "hello" | "helloAck" | "data" | "ack" | "ping" | "done" | "doneAck";
  pn: number;
  offset: number;
  bytes: Uint8Array | null;
  cum: number;
  limit: number;
  delayUs: number;
  ranges: number[];
  total: number;
  crc: number;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function streamByte(o: number): number {
  return ((o * 2654435761) >>> 13) & 255;
}

export function simulate(opts: SimOptions): SimResult {
  const rnd = mulberry32(opts.seed);
  const timing: Timing = { ...defaultTiming(), ...opts.timing };
  const n = opts.links.length;
  const perm = opts.devicePermutation ?? opts.links.map((_, i) => i);
  const ring = opts.ringSize;
  const sender = new SenderCore({
    linkCount: n,
    mtus: opts.links.map((l) => l.mtu),
    weights: opts.weights ?? null,
    ringSize: ring,
    maxCwnd: 8 << 20,
    timing,
    now: 0,
  });
  const receiver = new ReceiverCore({ deviceCount: n, ringSize: ring, timing: { ...timing, waitMs: 0 }, now: 0 });
  const sendRing = new Uint8Array(ring);
  const recvRing = new Uint8Array(ring);
  const macs = opts.links.map((_, i) => new Uint8Array([2, 0, 0, 0, 0, i]));
  const inTransit: Frame[] = [];
  const busyUntil = new Float64Array(n * 2); // [link*2] toward receiver, [link*2+1] toward sender
  const readerRate = opts.readerRate ?? Infinity;
  const maxMs = opts.maxMs ?? 60_000;
  let corruptBytes = 0;
  let unsorted = false;
  let deliveredMs = -1;
  let appended = 0;
  let now = 0;
  let readerCredit = 0;
  let lastReaderTime = 0;
  let senderAlive = true;
  let damaged = false;
  // The stream CRC-32 as each end computes it: of what the sender produced, of what the reader got.
  let sentCrc = 0;
  let readCrc = 0;
  /** CRC-32 of ring bytes [from, to) (stream offsets), continuing `seed`. */
  const ringCrc = (r: Uint8Array, from: number, to: number, seed: number) => {
    for (let o = from; o < to; ) {
      const end = Math.min(to, o + ring - (o % ring));
      seed = crc32(r.subarray(o % ring, (o % ring) + (end - o)), seed);
      o = end;
    }
    return seed;
  };
  let receiverAlive = true;
  const name = (i: number) => `sim${i}`;
  const events: Array<SenderEvent & { at: number }> = [];
  const payloadSizes: number[][] = opts.links.map(() => []);

  const isDead = (link: number, t: number) => (opts.links[link].dead ?? []).some(([a, b]) => t >= a && t < b);
  const pathMtuAt = (link: number, t: number) => {
    let mtu = Infinity;
    for (const [from, m] of opts.links[link].pathMtu ?? []) if (t >= from) mtu = m;
    return mtu;
  };

  function transmit(f: Omit<Frame, "at">, size: number): void {
    const spec = opts.links[f.link];
    const dir = f.link * 2 + (f.toReceiver ? 0 : 1);
    const start = Math.max(now, busyUntil[dir]);
    const done = start + size / spec.rate;
    busyUntil[dir] = done;
    if (isDead(f.link, now) || size - 14 > pathMtuAt(f.link, now)) return;
    const loss = f.toReceiver ? (spec.loss ?? 0) : (spec.ackLoss ?? spec.loss ?? 0);
    if (rnd() < loss) return;
    let at = done + spec.delayMs;
    if (spec.reorder && rnd() < spec.reorder) at += spec.reorderMs ?? 1;
    inTransit.push({ ...f, at });
    if (spec.dup && rnd() < spec.dup) inTransit.push({ ...f, at: at + 0.01 });
    unsorted = true;
  }

  function linkHasRoom(link: number): boolean {
    // Like a socket buffer: a little queued ahead of the wire, then back-pressure.
    return busyUntil[link * 2] - now < 0.5;
  }

  function blank(link: number, toReceiver: boolean, type: Frame["type"]): Omit<Frame, "at"> {
    return { toReceiver, link, type, pn: 0, offset: 0, bytes: null, cum: 0, limit: 0, delayUs: 0, ranges: [], total: 0, crc: 0 };
  }

  function deliver(f: Frame): void {
    if (isDead(f.link, f.at)) return;
    if (f.toReceiver) {
      if (!receiverAlive) return;
      const dev = perm[f.link];
      const src = macs[f.link];
      if (f.type === "hello") {
        if (receiver.onHello(dev, f.at, 77, f.link, opts.links[f.link].mtu, src, 0)) {
          const r = blank(f.link, false, "helloAck");
          r.limit = ring;
          transmit(r, 64);
        }
        return;
      }
      if (!receiver.authentic(dev, 77, f.link, src, 0)) return;
      if (f.type === "data") {
        const len = f.bytes!.length;
        const verdict = receiver.onData(dev, f.at, f.pn % TWO32, f.offset, len);
        if (verdict === Accept.Store) {
          for (let o = receiver.storeFrom; o < f.offset + len; o++) recvRing[o % ring] = f.bytes![o - f.offset];
          const at = opts.damageAt;
          if (at !== undefined && !damaged && at >= receiver.storeFrom && at < f.offset + len) {
            recvRing[at % ring] ^= 0x20;
            damaged = true;
          }
        }
      } else if (f.type === "ping") receiver.onPing(dev, f.at, f.pn % TWO32);
      else if (f.type === "doneAck") receiver.onDoneAck();
      else receiver.onHeard(dev, f.at);
      return;
    }
    if (!senderAlive) return;
    if (f.type === "helloAck") {
      sender.onHelloAck(f.link, f.at, opts.links[f.link].mtu, 1, f.limit);
      return;
    }
    sender.onHeard(f.link, f.at);
    if (f.type === "ack") {
      sender.onAck(f.link, f.at, f.cum, f.limit, f.delayUs / 1000, f.ranges.length / 2, (i, high) =>
        high ? f.ranges[i * 2] : f.ranges[i * 2 + 1],
      );
    } else if (f.type === "done") sender.onDone(f.total, f.crc);
  }

  const finished = (p: Phase | RxPhase) => p === 3 || p === 4;
  let endMs = 0;
  let senderEndMs = -1;
  while (now < maxMs) {
    // Deliver what has arrived, in arrival order.
    if (unsorted) inTransit.sort((a, b) => a.at - b.at);
    unsorted = false;
    let k = 0;
    while (k < inTransit.length && inTransit[k].at <= now) deliver(inTransit[k++]);
    if (k > 0) inTransit.splice(0, k);

    if (opts.senderDiesAt !== undefined && now >= opts.senderDiesAt) senderAlive = false;
    if (opts.receiverDiesAt !== undefined && now >= opts.receiverDiesAt) receiverAlive = false;

    if (senderAlive) {
      sender.tick(now);
      for (let e = sender.pollEvent(); e; e = sender.pollEvent()) events.push({ ...e, at: now });
      // Produce the stream into the ring as space frees up.
      const room = sender.ringFreeUpTo() + ring;
      const target = Math.min(opts.streamBytes, room);
      if (appended < target) {
        for (let o = appended; o < target; o++) sendRing[o % ring] = streamByte(o);
        sentCrc = ringCrc(sendRing, appended, target, sentCrc);
        appended = target;
        if (appended === opts.streamBytes) sender.streamEnded(appended, appended, sentCrc);
        else sender.streamAppended(appended);
      } else if (opts.streamBytes === 0 && !sender.ended) sender.streamEnded(0, 0, 0);
      // More input follows until the stream ends, even while the ring is full (the real shell
      // says so only after a read that found data): a held tail must never stall the stream.
      if (!sender.ended) sender.inputFlows(true);
      const doneAck = sender.doneAckDue();
      if (doneAck) sender.onDoneAcksSent();
      for (let i = 0; i < n; i++) {
        if (sender.helloDue(i, now)) {
          transmit(blank(i, true, "hello"), 64);
          sender.onHelloSent(i, now);
        }
        if (doneAck) transmit(blank(i, true, "doneAck"), 64);
        const pingPn = sender.pollPing(i);
        if (pingPn >= 0) {
          const f = blank(i, true, "ping");
          f.pn = pingPn;
          transmit(f, 64);
          sender.onPingSent(i, now);
        }
        while (sender.pollProbe(i)) {
          const f = blank(i, true, "ping");
          f.pn = sender.probeTx.pn;
          transmit(f, sender.probeTx.mtu + 14);
          sender.onProbeSent(i, now);
        }
        while (linkHasRoom(i) && sender.pollData(i, now)) {
          const tx = sender.tx;
          const sizes = payloadSizes[i]!;
          if (tx.len === sender.inspectLink(i).frameMax && sizes[sizes.length - 1] !== tx.len) sizes.push(tx.len);
          const f = blank(i, true, "data");
          f.pn = tx.pn;
          f.offset = tx.offset;
          const bytes = new Uint8Array(tx.len);
          for (let j = 0; j < tx.len; j++) bytes[j] = sendRing[(tx.offset + j) % ring];
          f.bytes = bytes;
          transmit(f, tx.len + 44);
        }
      }
    }

    if (receiverAlive) {
      receiver.tick(now);
      // The reader drains released bytes at its own pace.
      readerCredit =
        readerRate === Infinity ? Infinity : Math.min(readerCredit + (now - lastReaderTime) * readerRate, 64 << 20);
      lastReaderTime = now;
      const canRead = Math.floor(Math.min(receiver.cum - receiver.consumed, readerCredit));
      if (canRead > 0) {
        for (let o = receiver.consumed; o < receiver.consumed + canRead; o++) {
          if (recvRing[o % ring] !== streamByte(o)) corruptBytes++;
        }
        readCrc = ringCrc(recvRing, receiver.consumed, receiver.consumed + canRead, readCrc);
        readerCredit -= canRead;
        receiver.setConsumed(receiver.consumed + canRead);
      }
      if (receiver.consumed === opts.streamBytes && receiver.phase === RxPhase.Transfer && sender.ended) {
        // The END record is modelled by the sender having ended: the receiver knows the total.
        receiver.finished(now, opts.streamBytes, readCrc);
        deliveredMs = now;
      }
      for (let d = 0; d < n; d++) {
        const link = perm.indexOf(d);
        const ack = receiver.pollAck(d, now);
        if (ack !== null) {
          const f = blank(link, false, "ack");
          f.cum = ack.cum;
          f.limit = ack.limit;
          f.delayUs = ack.delayUs;
          const ranges: number[] = [];
          for (let k = 0; k < ack.rangeCount; k++) ranges.push(ack.rangeAt(k, true), ack.rangeAt(k, false));
          f.ranges = ranges;
          transmit(f, 64 + ranges.length * 4);
          receiver.onAckSent(d, now);
        }
        const done = receiver.pollDone(d, now);
        if (done !== null) {
          const f = blank(link, false, "done");
          f.total = done.total;
          f.crc = done.crc;
          transmit(f, 64);
          receiver.onDoneSent(d, now);
        }
      }
    }

    const senderOver = !senderAlive || finished(sender.phase);
    if (finished(sender.phase) && senderEndMs < 0) senderEndMs = now;
    const receiverOver = !receiverAlive || finished(receiver.phase);
    if (senderOver && receiverOver) {
      endMs = now;
      break;
    }
    // Next step: the earliest of arrivals, timers and wire availability, but at least a small step.
    let next = now + 1;
    if (inTransit.length > 0) {
      if (unsorted) inTransit.sort((a, b) => a.at - b.at);
      unsorted = false;
      next = Math.min(next, inTransit[0].at);
    }
    if (senderAlive && !senderOver) next = Math.min(next, sender.nextTimeout(now));
    if (receiverAlive && !receiverOver) next = Math.min(next, receiver.nextTimeout(now));
    for (let i = 0; i < n * 2; i++) if (busyUntil[i] > now) next = Math.min(next, busyUntil[i]);
    if (readerRate !== Infinity && receiver.cum > receiver.consumed) next = Math.min(next, now + 0.5);
    now = Math.max(next, now + 0.005);
    endMs = now;
  }

  const senderLinks = opts.links.map((_, i) => sender.linkStats(i));
  const retransmitted = senderLinks.reduce((s, l) => s + l.framesRetransmitted, 0);
  return {
    senderPhase: sender.phase,
    receiverPhase: receiver.phase,
    senderFailure: sender.failure && failureText(sender.failure, "send", name),
    events,
    receiverFailure: receiver.failure && failureText(receiver.failure, "receive", name),
    endMs,
    senderEndMs,
    deliveredMs,
    consumed: receiver.consumed,
    corruptBytes,
    framesSent: senderLinks.map((l) => l.framesSent),
    bytesSent: senderLinks.map((l) => l.bytesSent),
    retransmitted,
    duplicatesSeen: opts.links.reduce((s, _, d) => s + receiver.linkStats(d).duplicates, 0),
    payloadSizes,
  };
}
