// One AF_PACKET SOCK_RAW socket bound to one device and ethertype 0x88b5. Frames arrive in a
// receive ring the kernel shares with us (PACKET_RX_RING, TPACKET_V2) and are read in place, or
// (a socket that receives little) queue in the socket and are copied out by recvmmsg; they leave
// by sendmmsg. All of it batched and allocation-free. Frames include the Ethernet header: the
// caller writes destination MAC, source MAC and ethertype into each header slot.

import { close as fsClose } from "node:fs";
import { read, toArrayBuffer, type Pointer } from "bun:ffi";
import {
  AF_PACKET, EAFNOSUPPORT, EACCES, EAGAIN, EINTR, ENETDOWN, ENOBUFS, ENOPROTOOPT, EPERM, IOVEC, MAP_SHARED, MMSGHDR,
  MSGHDR, MSG_DONTWAIT, PACKET_IGNORE_OUTGOING, PACKET_RX_RING, PACKET_STATISTICS, PACKET_VERSION, PROT_READ,
  PROT_WRITE, SOCKADDR_LL, SOCK_CLOEXEC, SOCK_RAW, SOL_PACKET, SOL_SOCKET, SO_ERROR, SO_RCVBUF, SO_RCVBUFFORCE,
  SO_SNDBUF, SO_SNDBUFFORCE,
  TPACKET2_HDR, TPACKET2_MAC_MAX, TPACKET_REQ, TPACKET_STATS, TPACKET_V2, TP_STATUS_KERNEL, TP_STATUS_USER,
  addressOf, asPtr, describeErrno, errno, libc, type LibcSymbols,
} from "../../ffi/libc";
import { L2Error, systemError } from "../errors";
import { ETHERTYPE } from "../wire";
import type { Device } from "./device";

/** Bytes reserved per outgoing frame header (Ethernet header + protocol header). */
export const TX_HEADER_SLOT = 512;

const PAGE = 4096;
/** How long a frame the device keeps refusing (ENOBUFS) is retried before it is given up. */
const REFUSED_DROP_MS = 20;
/** Receive ring blocks hold at least this many frames: a block is one allocation of 2^k pages,
 * so with several frames to a block little of it is left over. */
const RX_FRAMES_PER_BLOCK_MIN = 8;
// Without a ring, receive slots start 64 bytes past a page boundary: page-aligned destinations
// made the kernel's copy markedly slower and the receiver dropped frames (platform notes).
const RX_SLOT_SKEW = 64;

export interface PacketSocketOptions {
  /** frames per sendmmsg call, and at most per recv() */
  batch: number;
  /** largest frame received, Ethernet header included (MTU + 14) */
  maxFrame: number;
  /**
   * Bytes of the receive ring, read in place: what arrives while this side is busy elsewhere
   * must fit. 0 for none: frames then queue in the socket (rcvBuf bytes, forced past
   * net.core.rmem_max when CAP_NET_ADMIN allows) and recv() copies them out with recvmmsg. A
   * ring costs a grace period (~10 ms) to set up and one more to close: worth it for a stream
   * of DATA, not for a trickle of ACKs.
   */
  rxRing: number;
  rcvBuf?: number;
  /** send buffer in bytes (forced past net.core.wmem_max when CAP_NET_ADMIN allows) */
  sndBuf: number;
}

interface RxRing {
  ptr: number;
  bytes: number;
  blockSize: number;
  framesPerBlock: number;
  frameSize: number;
  frameNr: number;
}

export class PacketSocket {
  readonly fd: number;
  readonly dev: Device;
  readonly batch: number;
  readonly maxFrame: number;

  /** The receive ring (or the slots recvmmsg fills); frame i of the last recv() occupies
   * rx[rxOffset(i) .. rxOffset(i) + rxLength(i)), valid until the next recv() or rxRelease(). */
  readonly rx: Uint8Array;
  readonly rxView: DataView;
  /** Frame slots in rx: the ring's, or `batch` without one. */
  readonly rxSlots: number;
  /** All transmit header slots, TX_HEADER_SLOT bytes each. */
  readonly txHeaders: Uint8Array;
  readonly txView: DataView;

  private readonly l: LibcSymbols;
  private readonly errnoAddr: number;
  private closed = false;

  // receive side: the ring's mapping (or the slots recvmmsg fills), each slot's offset in it,
  // the slot tp_status words as int32s
  private readonly rxInRing: boolean;
  private readonly rxMsgsU32: Uint32Array;
  private readonly rxMsgsPtr: number;
  private readonly rxRingPtr: number;
  private readonly rxRingBytes: number;
  private readonly rxSlotOffset: Int32Array;
  private readonly rxStatus: Int32Array;
  /** The first slot not yet handed back to the kernel, and how many from there the caller holds. */
  private rxCursor = 0;
  private rxHeld = 0;
  private readonly rxFrameOffset: Int32Array;
  private readonly rxFrameLength: Int32Array;

  // send side
  private readonly txMsgs: Uint8Array; // mmsghdr[batch] then iovec[2 * batch]
  private readonly txMsgsU32: Uint32Array;
  private readonly txMsgsPtr: number;
  private readonly txHeadersPtr: number;
  // Shadows of what each pending slot points at, so unsent frames can be moved to the front.
  private readonly txHeaderLen: Int32Array;
  private readonly txPayloadPtr: Float64Array;
  private readonly txPayloadLen: Int32Array;
  /** Per pending slot, a number of the caller's (the stream offset of a DATA frame's payload). */
  private readonly txTag: Float64Array;
  private pending = 0;
  /** Frames and bytes the kernel has taken, and how often its queue was full (ENOBUFS). */
  framesSent = 0;
  bytesSent = 0;
  queueFull = 0;
  /** Milliseconds spent in sendmmsg: what the links cost this thread (htb taxes each frame). */
  sendMs = 0;
  /** Frames the device refused (ENOBUFS) for longer than REFUSED_DROP_MS: given up, not sent. */
  framesDropped = 0;
  /** Since when the first pending frame has been refused; -1 while it is not. */
  private refusedSince = -1;

  // sockaddr_ll / tpacket_stats at 0, their socklen_t at 16, setsockopt values at 32
  private readonly scratch: Uint8Array;
  private readonly scratchView: DataView;
  private readonly scratchPtr: number;
  /** Send buffer size the kernel reports after setup (it doubles the requested value). */
  sndBufActual: number;

  static open(dev: Device, opts: PacketSocketOptions): PacketSocket {
    return new PacketSocket(dev, opts);
  }

  private constructor(dev: Device, opts: PacketSocketOptions) {
    const { batch, maxFrame } = opts;
    if (!Number.isInteger(batch) || batch < 1 || batch > 1024) {
      throw new L2Error(`device ${dev.name}: batch ${batch} out of range 1..1024`);
    }
    if (!Number.isInteger(maxFrame) || maxFrame < 60 || maxFrame > 65536) {
      throw new L2Error(`device ${dev.name}: maxFrame ${maxFrame} out of range 60..65536`);
    }
    this.dev = dev;
    this.batch = batch;
    this.maxFrame = maxFrame;
    this.l = libc();
    this.errnoAddr = this.l.__errno_location() as number;
    const l = this.l;

    // All buffers are allocated here once and >= 1 KiB, so the pointers taken below stay valid
    // for the life of the socket (small typed arrays can move; see the notes).
    this.scratch = new Uint8Array(1024);
    this.scratchView = new DataView(this.scratch.buffer);
    this.scratchPtr = addressOf(this.scratch);

    // Protocol 0 at creation: no frames are queued before bind() restricts device and ethertype.
    const fd = l.socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      const e = errno();
      if (e === EPERM || e === EACCES) {
        throw systemError(
          `no permission for raw sockets (CAP_NET_RAW): run as root, or grant it once: setcap cap_net_raw+ep ${process.execPath}`,
        );
      }
      if (e === EAFNOSUPPORT) throw systemError("raw packet sockets (AF_PACKET) are not supported by this kernel");
      throw systemError(`device ${dev.name}: cannot open a packet socket: ${describeErrno(e)}`);
    }
    this.fd = fd;

    let ring: RxRing | null = null;
    try {
      // Outgoing frames reach only ETH_P_ALL taps, so binding to 0x88b5 already hides our own;
      // the option keeps that true should the binding ever widen.
      if (!this.setInt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)) {
        const e = errno();
        throw systemError(
          e === ENOPROTOOPT
            ? `device ${dev.name}: kernel lacks PACKET_IGNORE_OUTGOING (Linux 4.20 or later needed)`
            : `device ${dev.name}: cannot set PACKET_IGNORE_OUTGOING: ${describeErrno(e)}`,
        );
      }
      // FORCE needs CAP_NET_ADMIN; without it fall back to the limits of net.core.wmem_max.
      if (opts.sndBuf > 0 && !this.setInt(SOL_SOCKET, SO_SNDBUFFORCE, opts.sndBuf)) {
        this.setInt(SOL_SOCKET, SO_SNDBUF, opts.sndBuf);
      }
      this.sndBufActual = this.getInt(SOL_SOCKET, SO_SNDBUF);
      // The ring is in place before bind(), so no frame ever waits in the socket queue instead.
      if (opts.rxRing > 0) ring = this.setUpRxRing(opts.rxRing);
      else if ((opts.rcvBuf ?? 0) > 0 && !this.setInt(SOL_SOCKET, SO_RCVBUFFORCE, opts.rcvBuf!)) {
        this.setInt(SOL_SOCKET, SO_RCVBUF, opts.rcvBuf!);
      }

      const sv = this.scratchView;
      this.scratch.fill(0, 0, SOCKADDR_LL.size);
      sv.setUint16(SOCKADDR_LL.family, AF_PACKET, true);
      sv.setUint16(SOCKADDR_LL.protocol, ETHERTYPE, false); // htons
      sv.setInt32(SOCKADDR_LL.ifindex, dev.ifindex, true);
      if (l.bind(fd, asPtr(this.scratchPtr), SOCKADDR_LL.size) !== 0) {
        throw this.deviceError("cannot bind", errno());
      }
    } catch (err) {
      l.close(fd);
      if (ring !== null) l.munmap(asPtr(ring.ptr), ring.bytes);
      throw err;
    }
    // The PACKET_STATISTICS counters are reset by reading them: start from zero.
    this.readStats();

    // ---- receive ring, or slots for recvmmsg
    this.rxInRing = ring !== null;
    const msgs = new Uint8Array(Math.max(1024, batch * (MMSGHDR.size + IOVEC.size)));
    this.rxMsgsU32 = new Uint32Array(msgs.buffer);
    this.rxMsgsPtr = addressOf(msgs);
    if (ring !== null) {
      this.rxRingPtr = ring.ptr;
      this.rxRingBytes = ring.bytes;
      this.rx = new Uint8Array(toArrayBuffer(asPtr(ring.ptr), 0, ring.bytes));
      this.rxSlots = ring.frameNr;
      this.rxSlotOffset = new Int32Array(ring.frameNr);
      for (let k = 0; k < ring.frameNr; k++) {
        this.rxSlotOffset[k] = Math.floor(k / ring.framesPerBlock) * ring.blockSize + (k % ring.framesPerBlock) * ring.frameSize;
      }
    } else {
      this.rxRingPtr = 0;
      this.rxRingBytes = 0;
      const stride = Math.ceil((maxFrame + RX_SLOT_SKEW) / PAGE) * PAGE;
      this.rx = new Uint8Array(stride * batch + PAGE);
      const rxPtr = addressOf(this.rx);
      const first = (((RX_SLOT_SKEW - (rxPtr % PAGE)) % PAGE) + PAGE) % PAGE;
      this.rxSlots = batch;
      this.rxSlotOffset = new Int32Array(batch);
      for (let i = 0; i < batch; i++) {
        this.rxSlotOffset[i] = first + i * stride;
        const m = i * MMSGHDR.size;
        const v = batch * MMSGHDR.size + i * IOVEC.size;
        this.put64(this.rxMsgsU32, m + MSGHDR.iov, this.rxMsgsPtr + v);
        this.put64(this.rxMsgsU32, m + MSGHDR.iovlen, 1);
        this.put64(this.rxMsgsU32, v + IOVEC.base, rxPtr + this.rxSlotOffset[i]!);
        this.put64(this.rxMsgsU32, v + IOVEC.len, maxFrame);
      }
    }
    this.rxView = new DataView(this.rx.buffer);
    this.rxStatus = new Int32Array(this.rx.buffer, 0, this.rx.byteLength >>> 2);
    this.rxFrameOffset = new Int32Array(batch);
    this.rxFrameLength = new Int32Array(batch);

    // ---- send buffers
    this.txHeaders = new Uint8Array(Math.max(1024, batch * TX_HEADER_SLOT));
    this.txView = new DataView(this.txHeaders.buffer);
    this.txHeadersPtr = addressOf(this.txHeaders);
    this.txMsgs = new Uint8Array(Math.max(1024, batch * (MMSGHDR.size + 2 * IOVEC.size)));
    this.txMsgsU32 = new Uint32Array(this.txMsgs.buffer);
    this.txMsgsPtr = addressOf(this.txMsgs);
    const txIovOff = batch * MMSGHDR.size;
    for (let i = 0; i < batch; i++) {
      const m = i * MMSGHDR.size;
      const v = txIovOff + i * 2 * IOVEC.size;
      this.put64(this.txMsgsU32, m + MSGHDR.iov, this.txMsgsPtr + v);
      this.put64(this.txMsgsU32, m + MSGHDR.iovlen, 1);
      this.put64(this.txMsgsU32, v + IOVEC.base, this.txHeadersPtr + i * TX_HEADER_SLOT);
    }
    this.txHeaderLen = new Int32Array(Math.max(256, batch));
    this.txPayloadPtr = new Float64Array(Math.max(128, batch));
    this.txPayloadLen = new Int32Array(Math.max(256, batch));
    this.txTag = new Float64Array(Math.max(128, batch));
  }

  // ------------------------------------------------------------------ receive

  /**
   * The frames the kernel has put in the ring since the last call, up to `batch`, in the order
   * they arrived (0 if none); the frames of the previous call go back to the kernel first. No
   * system call: the kernel marks each filled slot, and poll() on the socket wakes on the next.
   * (Without a ring: one recvmmsg into the slots.) A hard error (the device went down) shows as
   * POLLERR; takeError() reads and clears it.
   */
  recv(): number {
    if (this.closed) return 0;
    if (!this.rxInRing) return this.recvFromQueue();
    this.rxRelease();
    const status = this.rxStatus;
    const v = this.rxView;
    const slots = this.rxSlots;
    let k = this.rxCursor;
    let n = 0;
    while (n < this.batch) {
      const slot = this.rxSlotOffset[k]!;
      // Atomics: the status is read before the frame, and (in rxRelease) the frame before the
      // status is handed back, whatever the compiler would reorder.
      if ((Atomics.load(status, slot >>> 2) & TP_STATUS_USER) === 0) break;
      const len = v.getUint32(slot + TPACKET2_HDR.snaplen, true);
      this.rxFrameOffset[n] = slot + v.getUint16(slot + TPACKET2_HDR.mac, true);
      this.rxFrameLength[n] = len < this.maxFrame ? len : this.maxFrame;
      n++;
      k = k + 1 === slots ? 0 : k + 1;
    }
    this.rxHeld = n;
    return n;
  }

  private recvFromQueue(): number {
    const n = this.l.recvmmsg(this.fd, this.rxMsgsPtr as Pointer, this.batch, MSG_DONTWAIT, null);
    for (let i = 0; i < n; i++) {
      const len = this.rxMsgsU32[(i * MMSGHDR.size + MMSGHDR.len) >>> 2]!;
      this.rxFrameOffset[i] = this.rxSlotOffset[i]!;
      this.rxFrameLength[i] = len < this.maxFrame ? len : this.maxFrame;
    }
    return n > 0 ? n : 0;
  }

  /** Hands the frames of the last recv() back to the kernel (done by the next recv() anyway).
   * A caller that stops receiving for now calls it: held slots keep poll() reporting POLLIN. */
  rxRelease(): void {
    if (this.closed) return;
    const status = this.rxStatus;
    const slots = this.rxSlots;
    let k = this.rxCursor;
    for (let i = 0; i < this.rxHeld; i++) {
      Atomics.store(status, this.rxSlotOffset[k]! >>> 2, TP_STATUS_KERNEL);
      k = k + 1 === slots ? 0 : k + 1;
    }
    this.rxCursor = k;
    this.rxHeld = 0;
  }

  /** Offset in rx of frame i of the last recv() (it starts with the destination MAC). */
  rxOffset(i: number): number {
    return this.rxFrameOffset[i]!;
  }

  /** Bytes of frame i of the last recv(); frames longer than maxFrame arrive cut to maxFrame. */
  rxLength(i: number): number {
    return this.rxFrameLength[i]!;
  }

  /** The ring slot (0 .. rxSlots - 1) of frame i of the last recv(). */
  rxSlot(i: number): number {
    const k = this.rxCursor + i;
    return k < this.rxSlots ? k : k - this.rxSlots;
  }

  /** Reads and clears the socket's pending error (0 for none). The kernel sets ENETDOWN when the
   * device goes down; poll() reports POLLERR until it is read, even after the device is back. */
  takeError(): number {
    return this.getInt(SOL_SOCKET, SO_ERROR);
  }

  // ------------------------------------------------------------------ send

  /** Index of the next free header slot, or -1 when `batch` frames are pending (flush first). */
  txSlot(): number {
    return this.pending < this.batch ? this.pending : -1;
  }

  txHeaderOffset(i: number): number {
    return i * TX_HEADER_SLOT;
  }

  /** Queues the frame in the slot given by the last txSlot(): headerLen bytes of its header slot
   * followed by payloadLen bytes at payloadPtr (0/0 for none). The payload memory must stay
   * alive and unchanged until flush() has sent this frame. */
  txCommit(headerLen: number, payloadPtr: number, payloadLen: number, tag = Infinity): void {
    const i = this.pending;
    if (i >= this.batch) throw new L2Error(`device ${this.dev.name}: txCommit with all ${this.batch} slots pending`);
    if (headerLen < 0 || headerLen > TX_HEADER_SLOT) {
      throw new L2Error(`device ${this.dev.name}: header length ${headerLen} out of range 0..${TX_HEADER_SLOT}`);
    }
    this.txHeaderLen[i] = headerLen;
    this.txPayloadPtr[i] = payloadPtr;
    this.txPayloadLen[i] = payloadLen;
    this.txTag[i] = tag;
    this.writeTxIov(i);
    this.pending = i + 1;
  }

  txPending(): number {
    return this.pending;
  }

  /** The smallest tag of the frames not yet sent (Infinity for none). */
  txLowestTag(): number {
    let low = Infinity;
    for (let i = 0; i < this.pending; i++) if (this.txTag[i]! < low) low = this.txTag[i]!;
    return low;
  }

  /** Forgets every pending frame (when the run is over and only a last word still matters). */
  txClear(): void {
    this.pending = 0;
  }

  /** Sends the pending frames in order with one sendmmsg(MSG_DONTWAIT); returns how many went.
   * The unsent rest stays pending (moved to slots 0..) for the next flush. A full socket buffer
   * or queue (EAGAIN/ENOBUFS) sends 0; a frame the device refuses for REFUSED_DROP_MS counts
   * as gone (1); a down or vanished device throws an L2Error. */
  flush(): number {
    const total = this.pending;
    if (total === 0) return 0;
    const started = performance.now();
    let n = this.l.sendmmsg(this.fd, this.txMsgsPtr as Pointer, total, MSG_DONTWAIT);
    this.sendMs += performance.now() - started;
    if (n > 0) this.refusedSince = -1;
    if (n < 0) {
      let e = read.i32(this.errnoAddr as Pointer, 0);
      if (e === ENETDOWN) {
        // The socket error set when the link went down is reported once, by whichever call
        // comes first, even after the link is back: retry once, a real outage fails again.
        n = this.l.sendmmsg(this.fd, this.txMsgsPtr as Pointer, total, MSG_DONTWAIT);
        if (n < 0) e = read.i32(this.errnoAddr as Pointer, 0);
      }
      if (n < 0) {
        if (e === ENOBUFS) {
          // The device or its queue dropped the first frame. A full queue drains within
          // milliseconds, so it is sent again; a frame still refused after REFUSED_DROP_MS is
          // one the device never takes (a veth whose peer's MTU is smaller): it is given up,
          // or it would block every frame behind it. Loss recovery resends what mattered.
          const t = performance.now();
          if (this.refusedSince < 0) {
            this.refusedSince = t;
            this.queueFull++;
          }
          if (t - this.refusedSince < REFUSED_DROP_MS) return 0;
          // Not a full queue after all: the queue sizer must not shrink for it.
          this.queueFull--;
          this.refusedSince = -1;
          this.framesDropped++;
          this.release(1);
          return 1;
        }
        if (e === EAGAIN || e === EINTR) return 0;
        throw this.deviceError("send failed", e);
      }
    }
    this.framesSent += n;
    for (let i = 0; i < n; i++) this.bytesSent += this.txHeaderLen[i]! + this.txPayloadLen[i]!;
    this.release(n);
    return n;
  }

  /** Forgets the first n pending frames (gone to the kernel, or given up). */
  private release(n: number): void {
    const total = this.pending;
    if (n === total) {
      this.pending = 0;
      return;
    }
    // Partial send: move the rest to the front so slot order stays frame order.
    const rest = total - n;
    this.txHeaders.copyWithin(0, n * TX_HEADER_SLOT, total * TX_HEADER_SLOT);
    this.txHeaderLen.copyWithin(0, n, total);
    this.txPayloadPtr.copyWithin(0, n, total);
    this.txPayloadLen.copyWithin(0, n, total);
    this.txTag.copyWithin(0, n, total);
    for (let i = 0; i < rest; i++) this.writeTxIov(i);
    this.pending = rest;
  }

  /** Asks for a send buffer of `bytes` (the kernel doubles it); returns what it granted. */
  setSendBuffer(bytes: number): number {
    if (!this.setInt(SOL_SOCKET, SO_SNDBUFFORCE, bytes)) this.setInt(SOL_SOCKET, SO_SNDBUF, bytes);
    this.sndBufActual = this.getInt(SOL_SOCKET, SO_SNDBUF);
    return this.sndBufActual;
  }

  /** Frames the kernel dropped on receive (socket buffer full) since the previous call. */
  kernelDrops(): number {
    if (!this.readStats()) return 0;
    return this.scratchView.getUint32(TPACKET_STATS.drops, true);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pending = 0;
    this.unmapRing();
    this.l.close(this.fd);
  }

  /** close() off this thread: closing a packet socket waits out an RCU grace period (~10-20 ms). */
  closeAsync(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.pending = 0;
    this.unmapRing();
    const { promise, resolve } = Promise.withResolvers<void>();
    fsClose(this.fd, () => resolve());
    return promise;
  }

  // First, while the fd still holds the socket: the mapping holds it too, and the last of the
  // two to go releases it, which waits out the grace period (the fd's close does, off-thread).
  // The ring's views stay, over memory no longer mapped: nothing reads them after close.
  private unmapRing(): void {
    this.rxHeld = 0;
    if (this.rxInRing) this.l.munmap(asPtr(this.rxRingPtr), this.rxRingBytes);
  }

  // ------------------------------------------------------------------ internals

  private writeTxIov(i: number): void {
    const u = this.txMsgsU32;
    const m = i * MMSGHDR.size;
    const v = this.batch * MMSGHDR.size + i * 2 * IOVEC.size;
    const plen = this.txPayloadLen[i]!;
    this.put64(u, v + IOVEC.len, this.txHeaderLen[i]!);
    if (plen > 0) {
      this.put64(u, v + IOVEC.size + IOVEC.base, this.txPayloadPtr[i]!);
      this.put64(u, v + IOVEC.size + IOVEC.len, plen);
      u[(m + MSGHDR.iovlen) >>> 2] = 2;
    } else {
      u[(m + MSGHDR.iovlen) >>> 2] = 1;
    }
  }

  /** Stores a non-negative integer < 2^53 as a little-endian u64 without BigInt. */
  private put64(u: Uint32Array, byteOff: number, value: number): void {
    const w = byteOff >>> 2;
    u[w] = value >>> 0;
    u[w + 1] = (value / 4294967296) >>> 0;
  }

  /**
   * Gives the socket a TPACKET_V2 receive ring of about `bytes` and maps it. Slots are as large
   * as the largest frame needs after the kernel's header; a block holds at least
   * RX_FRAMES_PER_BLOCK_MIN of them.
   */
  private setUpRxRing(bytes: number): RxRing {
    const frameSize = Math.ceil((TPACKET2_MAC_MAX + this.maxFrame) / 16) * 16;
    let blockSize = PAGE;
    while (blockSize < RX_FRAMES_PER_BLOCK_MIN * frameSize) blockSize *= 2;
    const framesPerBlock = Math.floor(blockSize / frameSize);
    // At least a batch of slots: recv() never takes more than the ring holds.
    const blockNr = Math.max(Math.ceil(this.batch / framesPerBlock), Math.ceil(bytes / blockSize));
    const frameNr = framesPerBlock * blockNr;
    // The host's refusals (no memory for the ring, an old kernel) exit as such (EXIT_SYSTEM).
    if (!this.setInt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)) throw this.deviceError("cannot set TPACKET_V2", errno(), true);
    const sv = this.scratchView;
    sv.setUint32(64 + TPACKET_REQ.blockSize, blockSize, true);
    sv.setUint32(64 + TPACKET_REQ.blockNr, blockNr, true);
    sv.setUint32(64 + TPACKET_REQ.frameSize, frameSize, true);
    sv.setUint32(64 + TPACKET_REQ.frameNr, frameNr, true);
    if (this.l.setsockopt(this.fd, SOL_PACKET, PACKET_RX_RING, asPtr(this.scratchPtr + 64), TPACKET_REQ.size) !== 0) {
      throw this.deviceError(`cannot set up a receive ring of ${blockNr * blockSize} bytes`, errno(), true);
    }
    const total = blockNr * blockSize;
    const p = this.l.mmap(null, total, PROT_READ | PROT_WRITE, MAP_SHARED, this.fd, 0);
    if (typeof p !== "number") throw this.deviceError(`cannot map its receive ring of ${total} bytes`, errno(), true);
    return { ptr: p, bytes: total, blockSize, framesPerBlock, frameSize, frameNr };
  }

  private readStats(): boolean {
    const sv = this.scratchView;
    sv.setUint32(16, TPACKET_STATS.size, true);
    return (
      this.l.getsockopt(this.fd, SOL_PACKET, PACKET_STATISTICS, asPtr(this.scratchPtr), asPtr(this.scratchPtr + 16)) === 0
    );
  }

  private setInt(level: number, name: number, value: number): boolean {
    this.scratchView.setInt32(32, value, true);
    return this.l.setsockopt(this.fd, level, name, asPtr(this.scratchPtr + 32), 4) === 0;
  }

  private getInt(level: number, name: number): number {
    this.scratchView.setUint32(40, 4, true);
    if (this.l.getsockopt(this.fd, level, name, asPtr(this.scratchPtr + 32), asPtr(this.scratchPtr + 40)) !== 0) return -1;
    return this.scratchView.getInt32(32, true);
  }

  private deviceError(what: string, e: number, hostRefused = false): L2Error {
    const message = `device ${this.dev.name}: ${what}: ${describeErrno(e)}`;
    return hostRefused ? systemError(message) : new L2Error(message);
  }
}
