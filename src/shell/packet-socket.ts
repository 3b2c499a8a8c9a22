// One AF_PACKET SOCK_RAW socket bound to one device and ethertype 0x88b5, with batched,
// allocation-free receive (recvmmsg) and send (sendmmsg). Frames include the Ethernet header:
// the caller writes destination MAC, source MAC and ethertype into each header slot.

import { close as fsClose } from "node:fs";
import { read, type Pointer } from "bun:ffi";
import {
  AF_PACKET, EAFNOSUPPORT, EACCES, EAGAIN, EINTR, ENETDOWN, ENOBUFS, ENOPROTOOPT, EPERM, IOVEC, MMSGHDR,
  MSGHDR, MSG_DONTWAIT, PACKET_IGNORE_OUTGOING, PACKET_STATISTICS, SOCKADDR_LL, SOCK_CLOEXEC,
  SOCK_RAW, SOL_PACKET, SOL_SOCKET, SO_RCVBUF, SO_RCVBUFFORCE, SO_SNDBUF, SO_SNDBUFFORCE,
  TPACKET_STATS, addressOf, asPtr, describeErrno, errno, libc, type LibcSymbols,
} from "../../ffi/libc";
import { L2Error, systemError } from "../errors";
import { ETHERTYPE } from "../wire";
import type { Device } from "./device";

/** Bytes reserved per outgoing frame header (Ethernet header + protocol header). */
export const TX_HEADER_SLOT = 512;

const PAGE = 4096;
/** How long a frame the device keeps refusing (ENOBUFS) is retried before it is given up. */
const REFUSED_DROP_MS = 20;
// Receive slots start 64 bytes past a page boundary: page-aligned destinations made the kernel's
// copy markedly slower and the receiver dropped frames (platform notes).
const RX_SLOT_SKEW = 64;

export interface PacketSocketOptions {
  /** frames per recvmmsg/sendmmsg call */
  batch: number;
  /** largest frame received, Ethernet header included (MTU + 14) */
  maxFrame: number;
  /** socket buffer sizes in bytes (forced past net.core.*mem_max when CAP_NET_ADMIN allows) */
  rcvBuf: number;
  sndBuf: number;
}

export class PacketSocket {
  readonly fd: number;
  readonly dev: Device;
  readonly batch: number;
  readonly maxFrame: number;

  /** All receive slots; frame i of the last recv() occupies rx[rxOffset(i) ..
   * rxOffset(i) + rxLength(i)), valid until the next recv(). */
  readonly rx: Uint8Array;
  readonly rxView: DataView;
  /** All transmit header slots, TX_HEADER_SLOT bytes each. */
  readonly txHeaders: Uint8Array;
  readonly txView: DataView;

  private readonly l: LibcSymbols;
  private readonly errnoAddr: number;
  private closed = false;

  // receive side
  private readonly rxBase: number; // offset of slot 0 in rx
  private readonly rxStride: number;
  private readonly rxMsgs: Uint8Array; // mmsghdr[batch] then iovec[batch]
  private readonly rxMsgsU32: Uint32Array;
  private readonly rxMsgsPtr: number;
  // receive with each frame split: its first bytes into the slot, the rest to a given address
  private readonly rxSplitMsgs: Uint8Array; // mmsghdr[batch] then iovec[2 * batch]
  private readonly rxSplitU32: Uint32Array;
  private readonly rxSplitPtr: number;
  private rxLenU32: Uint32Array;

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
      // FORCE needs CAP_NET_ADMIN; without it fall back to the limits of net.core.*mem_max.
      if (opts.rcvBuf > 0 && !this.setInt(SOL_SOCKET, SO_RCVBUFFORCE, opts.rcvBuf)) {
        this.setInt(SOL_SOCKET, SO_RCVBUF, opts.rcvBuf);
      }
      if (opts.sndBuf > 0 && !this.setInt(SOL_SOCKET, SO_SNDBUFFORCE, opts.sndBuf)) {
        this.setInt(SOL_SOCKET, SO_SNDBUF, opts.sndBuf);
      }
      this.sndBufActual = this.getInt(SOL_SOCKET, SO_SNDBUF);

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
      throw err;
    }
    // The PACKET_STATISTICS counters are reset by reading them: start from zero.
    this.readStats();

    // ---- receive buffers
    this.rxStride = Math.ceil((maxFrame + RX_SLOT_SKEW) / PAGE) * PAGE;
    const rxBuf = new ArrayBuffer(this.rxStride * batch + PAGE);
    this.rx = new Uint8Array(rxBuf);
    this.rxView = new DataView(rxBuf);
    const rxPtr = addressOf(this.rx);
    this.rxBase = (((RX_SLOT_SKEW - (rxPtr % PAGE)) % PAGE) + PAGE) % PAGE;

    this.rxMsgs = new Uint8Array(Math.max(1024, batch * (MMSGHDR.size + IOVEC.size)));
    this.rxMsgsU32 = new Uint32Array(this.rxMsgs.buffer);
    this.rxMsgsPtr = addressOf(this.rxMsgs);
    const rxIovOff = batch * MMSGHDR.size;
    for (let i = 0; i < batch; i++) {
      const m = i * MMSGHDR.size;
      const v = rxIovOff + i * IOVEC.size;
      this.put64(this.rxMsgsU32, m + MSGHDR.iov, this.rxMsgsPtr + v);
      this.put64(this.rxMsgsU32, m + MSGHDR.iovlen, 1);
      this.put64(this.rxMsgsU32, v + IOVEC.base, rxPtr + this.rxBase + i * this.rxStride);
      this.put64(this.rxMsgsU32, v + IOVEC.len, maxFrame);
    }

    this.rxSplitMsgs = new Uint8Array(Math.max(1024, batch * (MMSGHDR.size + 2 * IOVEC.size)));
    this.rxSplitU32 = new Uint32Array(this.rxSplitMsgs.buffer);
    this.rxSplitPtr = addressOf(this.rxSplitMsgs);
    for (let i = 0; i < batch; i++) {
      const m = i * MMSGHDR.size;
      const v = batch * MMSGHDR.size + i * 2 * IOVEC.size;
      this.put64(this.rxSplitU32, m + MSGHDR.iov, this.rxSplitPtr + v);
      this.put64(this.rxSplitU32, m + MSGHDR.iovlen, 2);
      this.put64(this.rxSplitU32, v + IOVEC.base, rxPtr + this.rxBase + i * this.rxStride);
    }
    this.rxLenU32 = this.rxMsgsU32;

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

  /** Receives up to `batch` frames without blocking; returns how many (0 if none).
   * A hard error also returns 0 (the shells learn of it from poll's POLLERR). The
   * kernel reports ENETDOWN once per outage (to the first recv or send after the device went
   * down; poll shows POLLERR), possibly after the link is already back: confirm with
   * lookupDevice(name, { allowDown: true }).up. The socket stays bound and receives again
   * once the device is up. */
  recv(): number {
    this.rxLenU32 = this.rxMsgsU32;
    return this.receiveInto(this.rxMsgsPtr);
  }

  /**
   * Like recv(), but frame i is split: its first headLen bytes go to its slot and the next
   * `stride` bytes to dest + i * stride (memory the caller owns); a frame longer than
   * headLen + stride arrives cut. rxLength(i) is the length received, head and tail together.
   */
  recvSplit(headLen: number, dest: number, stride: number): number {
    const u = this.rxSplitU32;
    const iovs = this.batch * MMSGHDR.size;
    for (let i = 0; i < this.batch; i++) {
      const v = iovs + i * 2 * IOVEC.size;
      this.put64(u, v + IOVEC.len, headLen);
      this.put64(u, v + IOVEC.size + IOVEC.base, dest + i * stride);
      this.put64(u, v + IOVEC.size + IOVEC.len, stride);
    }
    this.rxLenU32 = u;
    return this.receiveInto(this.rxSplitPtr);
  }

  private receiveInto(msgs: number): number {
    const n = this.l.recvmmsg(this.fd, msgs as Pointer, this.batch, MSG_DONTWAIT, null);
    return n >= 0 ? n : 0;
  }

  /** Offset in rx of frame i of the last recv() (it starts with the destination MAC). */
  rxOffset(i: number): number {
    return this.rxBase + i * this.rxStride;
  }

  /** Bytes of frame i of the last recv(); frames longer than maxFrame arrive cut to maxFrame. */
  rxLength(i: number): number {
    return this.rxLenU32[(i * MMSGHDR.size + MMSGHDR.len) >>> 2]!;
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
    this.l.close(this.fd);
  }

  /** close() off this thread: closing a packet socket waits out an RCU grace period (~10-20 ms). */
  closeAsync(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.pending = 0;
    const { promise, resolve } = Promise.withResolvers<void>();
    fsClose(this.fd, () => resolve());
    return promise;
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

  private deviceError(what: string, e: number): L2Error {
    return new L2Error(`device ${this.dev.name}: ${what}: ${describeErrno(e)}`);
  }
}
