// The links of one run: one packet socket per device, and the frames both ends build on
// them. Frames are written straight into the socket's preallocated header slots.

import { lookupDevice, type Device } from "./device";
import { PacketSocket } from "./packet-socket";
import { Poller, POLLOUT, addressOf } from "../../ffi/libc";
import {
  COMMON_END, DATA_HEADER, DONE_LEN, ETH_HEADER, FrameCrc, FrameType, HELLO_LEN, MAX_ABORT_TEXT, MIN_FRAME,
  OFF_ABORT_CODE, OFF_ABORT_TEXT, OFF_ABORT_TEXT_LEN, OFF_CRC, OFF_DATA_OFFSET, OFF_DONE_CRC, OFF_DONE_TOTAL,
  OFF_HELLO_FEATURES, OFF_HELLO_INSTANCE, OFF_HELLO_LINKS, OFF_HELLO_MTU, OFF_HELLO_NAME, OFF_HELLO_WINDOW,
  OFF_LEN, OFF_TYPE, readU64, sealFrame, verifyFrame, verifySplitFrame, writeHeader, writeU64,
} from "../wire";
import { usageError } from "../errors";

export const BROADCAST = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
/** Smallest MTU that leaves room for a useful DATA payload. */
export const MIN_MTU = 576;
const BATCH = 64;
/** Padding of path probes: zeros, sent by the kernel straight from here. Big enough for any MTU. */
const PROBE_PADDING = new Uint8Array(1 << 16);
let probePaddingPtr = 0;

export class Link {
  readonly txCrc: FrameCrc;
  readonly rxCrc: FrameCrc;
  /** Per header slot, the view of a DATA header's checksummed bytes: no view made per frame. */
  private readonly dataHeaderViews: Uint8Array[] = [];
  private readonly rxHeaderViews: Uint8Array[] = [];
  /** The peer's MAC once known; broadcast until then. */
  peer = new Uint8Array(BROADCAST);
  peerKnown = false;
  // Statistics of what the codec refused on this link.
  badFrames = 0;
  foreignFrames = 0;
  private kernelDrops = 0;

  constructor(
    readonly index: number,
    readonly device: Device,
    readonly socket: PacketSocket,
  ) {
    this.txCrc = new FrameCrc(socket.txHeaders);
    this.rxCrc = new FrameCrc(socket.rx, true);
    for (let i = 0; i < socket.batch; i++) {
      const base = socket.txHeaderOffset(i);
      this.dataHeaderViews.push(socket.txHeaders.subarray(base + OFF_LEN, base + DATA_HEADER));
      const rxBase = socket.rxOffset(i);
      this.rxHeaderViews.push(socket.rx.subarray(rxBase + OFF_LEN, rxBase + DATA_HEADER));
    }
  }

  /**
   * One batch received straight into the reassembly ring: frame i's payload lands at
   * ring[ringPos + i * stride], which is where it belongs if it is the DATA frame for stream
   * offset expect + i * stride, as the frames of one link in order are. If every frame is,
   * onFrame(base, len, true) gets each that passes the checks, its payload already in place.
   * Otherwise the payloads are moved back behind their headers and the batch is handled as
   * receive() would (inPlace false); what landed in the ring is left there, so the caller must
   * give memory no one reads. Returns the frames received.
   */
  receiveSplit(ring: Uint8Array, ringPtr: number, ringPos: number, stride: number, expect: number,
    onFrame: (base: number, len: number, inPlace: boolean) => void): number {
    this.splitPlaced = false;
    const sock = this.socket;
    const n = sock.recvSplit(DATA_HEADER, ringPtr + ringPos, stride);
    const v = sock.rxView;
    let placed = true;
    for (let i = 0; i < n && placed; i++) {
      const base = sock.rxOffset(i);
      placed = sock.rxLength(i) > DATA_HEADER && v.getUint8(base + OFF_TYPE) === FrameType.Data &&
        readU64(v, base + OFF_DATA_OFFSET) === expect + i * stride;
    }
    if (!placed) {
      // All of them first: storing one frame may overwrite where the next one landed.
      for (let i = 0; i < n; i++) {
        const tail = Math.min(sock.rxLength(i), sock.maxFrame) - DATA_HEADER;
        if (tail > 0) sock.rx.set(ring.subarray(ringPos + i * stride, ringPos + i * stride + tail), sock.rxOffset(i) + DATA_HEADER);
      }
    }
    for (let i = 0; i < n; i++) {
      const base = sock.rxOffset(i);
      const received = sock.rxLength(i);
      const len = placed
        ? verifySplitFrame(v, base, received, this.rxHeaderViews[i]!, ring, ringPos + i * stride)
        : verifyFrame(v, this.rxCrc, base, received);
      if (len === 0) this.badFrames++;
      else onFrame(base, len, placed);
    }
    this.splitPlaced = placed && n > 0;
    return n;
  }

  /** Whether the last receiveSplit() found its batch in order (payloads in place). */
  splitPlaced = false;

  get name(): string {
    return this.device.name;
  }

  /**
   * Drains this link's socket in batches, handing each frame that passes the codec's checks
   * (length, magic, CRC) to onFrame with its meaningful length; counts the others as bad.
   * afterBatch runs after each batch. Returns the frames received.
   */
  receive(maxBatches: number, onFrame: (base: number, len: number) => void, afterBatch?: () => void): number {
    const sock = this.socket;
    let total = 0;
    for (let batch = 0; batch < maxBatches; batch++) {
      const n = sock.recv();
      if (n === 0) break;
      total += n;
      for (let i = 0; i < n; i++) {
        const base = sock.rxOffset(i);
        const len = verifyFrame(sock.rxView, this.rxCrc, base, sock.rxLength(i));
        if (len === 0) this.badFrames++;
        else onFrame(base, len);
      }
      afterBatch?.();
      if (n < sock.batch) break;
    }
    return total;
  }

  /** Frames the kernel dropped on receive so far (its counter resets on each read, so they are summed here). */
  countKernelDrops(): number {
    this.kernelDrops += this.socket.kernelDrops();
    return this.kernelDrops;
  }

  setPeer(mac: Uint8Array, offset: number): void {
    for (let i = 0; i < 6; i++) this.peer[i] = mac[offset + i];
    this.peerKnown = true;
  }

  samePeer(bytes: Uint8Array, offset: number): boolean {
    const p = this.peer;
    for (let i = 0; i < 6; i++) if (p[i] !== bytes[offset + i]) return false;
    return true;
  }

  /** Starts a control frame in the next header slot; returns its base offset or -1 when the batch is full. */
  private begin(type: FrameType, session: number, link: number, pn: number, dst: Uint8Array = this.peer): number {
    const slot = this.socket.txSlot();
    if (slot < 0) return -1;
    const base = this.socket.txHeaderOffset(slot);
    writeHeader(this.socket.txView, base, dst, this.device.mac, type, session, link, pn);
    return base;
  }

  private commit(base: number, end: number): void {
    const len = sealFrame(this.socket.txView, this.txCrc, base, end);
    this.socket.txCommit(len, 0, 0);
  }

  sendHello(session: number, linkCount: number, features: number): boolean {
    const base = this.begin(FrameType.Hello, session, this.index, 0, BROADCAST);
    if (base < 0) return false;
    const v = this.socket.txView;
    v.setUint8(base + OFF_HELLO_LINKS, linkCount);
    v.setUint16(base + OFF_HELLO_MTU, this.device.mtu);
    v.setUint32(base + OFF_HELLO_FEATURES, features);
    v.setUint32(base + OFF_HELLO_INSTANCE, 0);
    v.setUint32(base + OFF_HELLO_WINDOW, 0);
    this.writeName(base);
    this.commit(base, base + HELLO_LEN);
    return true;
  }

  /** `features`: the codecs this receiver decodes (FEATURE_* bits). */
  sendHelloAck(session: number, senderLink: number, instance: number, window: number, features: number): boolean {
    const base = this.begin(FrameType.HelloAck, session, senderLink, 0);
    if (base < 0) return false;
    const v = this.socket.txView;
    v.setUint8(base + OFF_HELLO_LINKS, 0);
    v.setUint16(base + OFF_HELLO_MTU, this.device.mtu);
    v.setUint32(base + OFF_HELLO_FEATURES, features);
    v.setUint32(base + OFF_HELLO_INSTANCE, instance);
    v.setUint32(base + OFF_HELLO_WINDOW, Math.min(window, 0xffffffff));
    this.writeName(base);
    this.commit(base, base + HELLO_LEN);
    return true;
  }

  sendSimple(type: FrameType, session: number, link: number, pn: number, dst?: Uint8Array): boolean {
    const base = this.begin(type, session, link, pn, dst);
    if (base < 0) return false;
    this.commit(base, base + COMMON_END);
    return true;
  }

  /** A PING padded to `mtu` bytes after the Ethernet header: does the path carry frames this big? */
  sendProbe(session: number, link: number, pn: number, mtu: number): boolean {
    const base = this.begin(FrameType.Ping, session, link, pn);
    if (base < 0) return false;
    const v = this.socket.txView;
    const padding = mtu + ETH_HEADER - COMMON_END;
    v.setUint16(base + OFF_LEN, mtu);
    const headCrc = Bun.hash.crc32(this.socket.txHeaders.subarray(base + OFF_LEN, base + COMMON_END));
    v.setUint32(base + OFF_CRC, Bun.hash.crc32(PROBE_PADDING.subarray(0, padding), headCrc) >>> 0);
    if (probePaddingPtr === 0) probePaddingPtr = addressOf(PROBE_PADDING);
    this.socket.txCommit(COMMON_END, probePaddingPtr, padding);
    return true;
  }

  sendDone(session: number, link: number, total: number, crc: number): boolean {
    const base = this.begin(FrameType.Done, session, link, 0);
    if (base < 0) return false;
    writeU64(this.socket.txView, base + OFF_DONE_TOTAL, total);
    this.socket.txView.setUint32(base + OFF_DONE_CRC, crc >>> 0);
    this.commit(base, base + DONE_LEN);
    return true;
  }

  sendAbort(session: number, link: number, code: number, text: string): boolean {
    const base = this.begin(FrameType.Abort, session, link, 0);
    if (base < 0) return false;
    const bytes = new TextEncoder().encode(text).subarray(0, MAX_ABORT_TEXT);
    this.socket.txView.setUint8(base + OFF_ABORT_CODE, code);
    this.socket.txView.setUint8(base + OFF_ABORT_TEXT_LEN, bytes.length);
    this.socket.txHeaders.set(bytes, base + OFF_ABORT_TEXT);
    this.commit(base, base + OFF_ABORT_TEXT + bytes.length);
    return true;
  }

  /** Starts an ACK; the caller fills the type-specific fields, then calls commitAck. */
  beginAck(session: number, link: number, pn: number): number {
    return this.begin(FrameType.Ack, session, link, pn);
  }

  commitAck(base: number, end: number): void {
    this.commit(base, end);
  }

  /**
   * A DATA frame whose payload stays where it is (ring memory at payloadPtr, readable as
   * ring[ringOffset..]) and is sent by the kernel straight from there.
   */
  sendData(session: number, link: number, pn: number, offset: number, ring: Uint8Array, ringCrc: FrameCrc, ringOffset: number, ringPtr: number, len: number): boolean {
    const slot = this.socket.txSlot();
    const base = this.begin(FrameType.Data, session, link, pn);
    if (base < 0) return false;
    const v = this.socket.txView;
    writeU64(v, base + OFF_DATA_OFFSET, offset);
    const headerEnd = base + DATA_HEADER;
    if (DATA_HEADER + len < MIN_FRAME) {
      // Too short for Ethernet: copy the payload next to the header and pad there.
      this.socket.txHeaders.set(ring.subarray(ringOffset, ringOffset + len), headerEnd);
      this.commit(base, headerEnd + len);
      return true;
    }
    v.setUint16(base + OFF_LEN, DATA_HEADER - ETH_HEADER + len);
    const crc = ringCrc.of(ringOffset, ringOffset + len, Bun.hash.crc32(this.dataHeaderViews[slot]!) >>> 0);
    v.setUint32(base + OFF_CRC, crc);
    this.socket.txCommit(DATA_HEADER, ringPtr + ringOffset, len, offset);
    return true;
  }

  private writeName(base: number): void {
    const name = new TextEncoder().encode(this.device.name).subarray(0, 15);
    const h = this.socket.txHeaders;
    h.fill(0, base + OFF_HELLO_NAME, base + OFF_HELLO_NAME + 16);
    h.set(name, base + OFF_HELLO_NAME);
  }
}

/** Looks up and opens every device; refuses ones that are missing, down or unfit. */
export function openLinks(names: string[], opts: { rcvBuf: number; sndBuf: number }): Link[] {
  const devices = names.map((n) => lookupDevice(n));
  for (const d of devices) {
    if (d.mtu < MIN_MTU) throw usageError(`device ${d.name}: MTU ${d.mtu} is too small (at least ${MIN_MTU})`);
  }
  const links: Link[] = [];
  try {
    devices.forEach((d, i) => {
      const socket = PacketSocket.open(d, { batch: BATCH, maxFrame: d.mtu + ETH_HEADER, rcvBuf: opts.rcvBuf, sndBuf: opts.sndBuf });
      links.push(new Link(i, d, socket));
    });
  } catch (e) {
    for (const l of links) l.socket.close();
    throw e;
  }
  return links;
}

/**
 * Tells the peer on every link why this side stops. Queued data is dropped so the ABORT is not
 * stuck behind it, and each copy waits briefly for socket room: the peer should hear it at once
 * rather than find out by its timeout.
 */
export function abortOnAllLinks(links: Link[], session: number, senderLinkOf: (l: Link) => number, code: number, reason: string): void {
  const poller = new Poller(1);
  for (let round = 0; round < 3; round++) {
    for (const l of links) {
      const senderLink = senderLinkOf(l);
      if (senderLink < 0) continue;
      l.socket.txClear();
      l.sendAbort(session, senderLink, code, reason);
      for (let tries = 0; tries < 5 && l.socket.txPending() > 0; tries++) {
        try {
          if (l.socket.flush() > 0) break;
        } catch {
          break; // the device is gone: nothing to tell on it
        }
        poller.set(0, l.socket.fd, POLLOUT);
        poller.count = 1;
        poller.wait(10);
      }
    }
  }
}
