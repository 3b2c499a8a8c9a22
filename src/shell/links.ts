// The links of one run: one packet socket per device, and the frames both ends build on
// them. Frames are written straight into the socket's preallocated header slots.

import { lookupDevice, type Device } from "./device";
import { PacketSocket } from "./packet-socket";
import { Poller, POLLERR, POLLOUT, addressOf } from "../../ffi/libc";
import {
  type AckContent, COMMON_END, DATA_HEADER, ETH_HEADER, FrameCrc, FrameType, MIN_FRAME, MIN_MTU,
  PayloadCrc, buildAbort, buildAck, buildDone, buildHello, buildHelloAck, dataHeaderChecked, dataPayloadStart, OFF_LEN,
  probePadding, sealFrame, sealProbe, verifyFrame, writeDataFields, writeFrameCrc, writeHeader,
} from "../wire";
import { usageError } from "../errors";

export const BROADCAST = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
const BATCH = 64;
/** Padding of path probes: zeros, sent by the kernel straight from here. Big enough for any MTU. */
const PROBE_PADDING = new Uint8Array(1 << 16);
let probePaddingPtr = 0;

export class Link {
  readonly txCrc: FrameCrc;
  readonly rxCrc: FrameCrc;
  /** Per header slot, the view of a DATA header's checksummed bytes: no view made per frame. */
  private readonly dataHeaderViews: Uint8Array[] = [];
  /** The same per receive ring slot, made when a slot first holds a DATA frame. */
  private readonly rxHeaderViews: (Uint8Array | undefined)[];
  /** The payload CRC of the DATA frame onFrame was last given. */
  readonly payloadCrc = new PayloadCrc();
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
    for (let i = 0; i < socket.batch; i++) this.dataHeaderViews.push(dataHeaderChecked(socket.txHeaders, socket.txHeaderOffset(i)));
    this.rxHeaderViews = new Array(socket.rxSlots).fill(undefined);
  }

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
        const len = verifyFrame(sock.rxView, this.rxCrc, base, sock.rxLength(i), this.rxHeaderView(sock.rxSlot(i), base), this.payloadCrc);
        if (len === 0) this.badFrames++;
        else onFrame(base, len);
      }
      afterBatch?.();
      if (n < sock.batch) break;
    }
    sock.rxRelease();
    return total;
  }

  /** The checksummed DATA header bytes of the frame at base in ring slot `slot`. A slot's frame
   * starts at the same offset every time (unless the MAC header's length differs). */
  private rxHeaderView(slot: number, base: number): Uint8Array {
    const view = this.rxHeaderViews[slot];
    if (view !== undefined && view.byteOffset === base + OFF_LEN) return view;
    const made = dataHeaderChecked(this.socket.rx, base);
    this.rxHeaderViews[slot] = made;
    return made;
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
    this.commit(base, buildHello(this.socket.txView, base, linkCount, this.device.mtu, features, this.device.name));
    return true;
  }

  /** `features`: the codecs this receiver decodes (FEATURE_* bits). */
  sendHelloAck(session: number, senderLink: number, instance: number, window: number, features: number): boolean {
    const base = this.begin(FrameType.HelloAck, session, senderLink, 0);
    if (base < 0) return false;
    this.commit(base, buildHelloAck(this.socket.txView, base, this.device.mtu, features, instance, window, this.device.name));
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
    const padding = probePadding(mtu);
    const head = sealProbe(this.socket.txView, base, mtu, PROBE_PADDING.subarray(0, padding));
    if (probePaddingPtr === 0) probePaddingPtr = addressOf(PROBE_PADDING);
    this.socket.txCommit(head, probePaddingPtr, padding);
    return true;
  }

  sendDone(session: number, link: number, total: number, crc: number): boolean {
    const base = this.begin(FrameType.Done, session, link, 0);
    if (base < 0) return false;
    this.commit(base, buildDone(this.socket.txView, base, total, crc));
    return true;
  }

  sendAbort(session: number, link: number, code: number, text: string): boolean {
    const base = this.begin(FrameType.Abort, session, link, 0);
    if (base < 0) return false;
    this.commit(base, buildAbort(this.socket.txView, base, code, text));
    return true;
  }

  /** An ACK; false when the batch is full (nothing written). */
  sendAck(session: number, link: number, pn: number, ack: AckContent): boolean {
    const base = this.begin(FrameType.Ack, session, link, pn);
    if (base < 0) return false;
    this.commit(base, buildAck(this.socket.txView, base, ack));
    return true;
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
    const headerEnd = dataPayloadStart(base);
    if (DATA_HEADER + len < MIN_FRAME) {
      // Too short for Ethernet: copy the payload next to the header and pad there.
      writeDataFields(v, base, offset);
      this.socket.txHeaders.set(ring.subarray(ringOffset, ringOffset + len), headerEnd);
      this.commit(base, headerEnd + len);
      return true;
    }
    writeDataFields(v, base, offset, len);
    writeFrameCrc(v, base, ringCrc.of(ringOffset, ringOffset + len, Bun.hash.crc32(this.dataHeaderViews[slot]!) | 0));
    this.socket.txCommit(DATA_HEADER, ringPtr + ringOffset, len, offset);
    return true;
  }
}

/** Looks up and opens every device; refuses ones that are missing, down or unfit. */
export function openLinks(names: string[], opts: { rxRing: number; rcvBuf: number; sndBuf: number }): Link[] {
  const devices = names.map((n) => lookupDevice(n));
  for (const d of devices) {
    if (d.mtu < MIN_MTU) throw usageError(`device ${d.name}: MTU ${d.mtu} is too small (at least ${MIN_MTU})`);
  }
  const links: Link[] = [];
  try {
    devices.forEach((d, i) => {
      const socket = PacketSocket.open(d, { batch: BATCH, maxFrame: d.mtu + ETH_HEADER, rxRing: opts.rxRing, rcvBuf: opts.rcvBuf, sndBuf: opts.sndBuf });
      links.push(new Link(i, d, socket));
    });
  } catch (e) {
    for (const l of links) l.socket.close();
    throw e;
  }
  return links;
}

/** After a poll() over the links' sockets in slots 0.., clears each socket error it reported
 * (POLLERR): with a receive ring nothing else reads it, and poll() would report it forever. A
 * device that went down is noticed elsewhere (sends fail, the peer falls silent). */
export function takeLinkErrors(links: Link[], poller: Poller): void {
  for (let i = 0; i < links.length; i++) if ((poller.revents(i) & POLLERR) !== 0) links[i]!.socket.takeError();
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
