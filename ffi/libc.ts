// The one libc binding of l2pipe: symbols, constants and struct layouts (x86_64/aarch64, LP64).
//
// Conventions (see the platform notes): pointers are passed as raw numbers, never TypedArrays, on
// hot calls; size_t/ssize_t results are declared i32 because every value we use fits and an
// i64 return allocates a BigInt. The dlopen is lazy so that each Worker, which gets its own
// module instance, opens libc on first use from its own thread.

import { dlopen, ptr, read, type Pointer } from "bun:ffi";
import { SystemError } from "./system-error";

// ---------------------------------------------------------------- constants

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_PACKET = 17;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;

export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
export const SO_ERROR = 4;

export const SOL_PACKET = 263;
export const PACKET_STATISTICS = 6;
export const PACKET_IGNORE_OUTGOING = 23;
export const PACKET_RX_RING = 5;
export const PACKET_VERSION = 10;
export const TPACKET_V2 = 1;
/** tpacket2_hdr.tp_status bits: the slot holds a frame for user space (else the kernel owns it). */
export const TP_STATUS_KERNEL = 0;
export const TP_STATUS_USER = 1;

export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;

export const MSG_DONTWAIT = 0x40;

export const SIOCGIFFLAGS = 0x8913;
export const SIOCGIFMTU = 0x8921;
export const SIOCGIFTXQLEN = 0x8942;
export const SIOCGIFHWADDR = 0x8927;
export const IFF_UP = 0x1;
export const IFF_RUNNING = 0x40;
export const ARPHRD_ETHER = 1;
export const IFNAMSIZ = 16;

export const POLLIN = 0x001;
export const POLLOUT = 0x004;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;

export const F_GETFD = 1;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const F_SETPIPE_SZ = 1031;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const CLONE_NEWNET = 0x40000000;

// errno values (Linux, generic)
export const EPERM = 1;
export const ENOENT = 2;
export const EINTR = 4;
export const EIO = 5;
export const ENXIO = 6;
export const EBADF = 9;
export const EAGAIN = 11;
export const ENOMEM = 12;
export const EACCES = 13;
export const EFAULT = 14;
export const EBUSY = 16;
export const ENODEV = 19;
export const EINVAL = 22;
export const EPIPE = 32;
export const EMSGSIZE = 90;
export const ENOPROTOOPT = 92;
export const EAFNOSUPPORT = 97;
export const ENETDOWN = 100;
export const ENOBUFS = 105;

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 6: "ENXIO", 7: "E2BIG", 8: "ENOEXEC",
  9: "EBADF", 10: "ECHILD", 11: "EAGAIN", 12: "ENOMEM", 13: "EACCES", 14: "EFAULT", 16: "EBUSY",
  17: "EEXIST", 18: "EXDEV", 19: "ENODEV", 20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 23: "ENFILE",
  24: "EMFILE", 25: "ENOTTY", 26: "ETXTBSY", 27: "EFBIG", 28: "ENOSPC", 29: "ESPIPE", 30: "EROFS",
  32: "EPIPE", 34: "ERANGE", 38: "ENOSYS", 61: "ENODATA", 75: "EOVERFLOW", 88: "ENOTSOCK",
  90: "EMSGSIZE", 91: "EPROTOTYPE", 92: "ENOPROTOOPT", 93: "EPROTONOSUPPORT",
  94: "ESOCKTNOSUPPORT", 95: "EOPNOTSUPP", 97: "EAFNOSUPPORT", 98: "EADDRINUSE",
  99: "EADDRNOTAVAIL", 100: "ENETDOWN", 101: "ENETUNREACH", 102: "ENETRESET", 103: "ECONNABORTED",
  104: "ECONNRESET", 105: "ENOBUFS", 107: "ENOTCONN", 110: "ETIMEDOUT", 111: "ECONNREFUSED",
  112: "EHOSTDOWN", 113: "EHOSTUNREACH",
};

// ---------------------------------------------------------------- struct layouts (bytes)

/** struct sockaddr_ll: family u16, protocol be16, ifindex i32, hatype u16, pkttype u8, halen u8, addr[8] */
export const SOCKADDR_LL = { size: 20, family: 0, protocol: 2, ifindex: 4, hatype: 8, pkttype: 10, halen: 11, addr: 12 } as const;
/** struct iovec: base ptr, len size_t */
export const IOVEC = { size: 16, base: 0, len: 8 } as const;
/** struct msghdr */
export const MSGHDR = { size: 56, name: 0, namelen: 8, iov: 16, iovlen: 24, control: 32, controllen: 40, flags: 48 } as const;
/** struct mmsghdr: msghdr then msg_len u32, padded to 64 */
export const MMSGHDR = { size: 64, hdr: 0, len: 56 } as const;
/** struct pollfd: fd i32, events i16, revents i16 */
export const POLLFD = { size: 8, fd: 0, events: 4, revents: 6 } as const;
/** struct ifreq: name[16] then a 24-byte union (ifr_hwaddr sockaddr, ifr_mtu i32, ifr_flags i16) */
export const IFREQ = { size: 40, name: 0, union: 16, hwFamily: 16, hwData: 18, mtu: 16, flags: 16, qlen: 16 } as const;
/** struct tpacket_stats: tp_packets u32, tp_drops u32 (reading it resets both in the kernel) */
export const TPACKET_STATS = { size: 8, packets: 0, drops: 4 } as const;
/** struct tpacket_req: block size, block count, frame size, frame count (u32 each) */
export const TPACKET_REQ = { size: 16, blockSize: 0, blockNr: 4, frameSize: 8, frameNr: 12 } as const;
/** struct tpacket2_hdr: status, len (on the wire), snaplen (in the slot) u32; mac offset u16 (from the slot start) */
export const TPACKET2_HDR = { status: 0, len: 4, snaplen: 8, mac: 12 } as const;
/** Where tpacket_rcv puts a frame's Ethernet header in a TPACKET_V2 slot, at the most:
 * TPACKET_ALIGN(TPACKET2_HDRLEN + 16) - ETH_HLEN = 80 - 14 (less for a longer MAC header). */
export const TPACKET2_MAC_MAX = 66;

// ---------------------------------------------------------------- the library

function load() {
  return dlopen("libc.so.6", {
    socket: { args: ["i32", "i32", "i32"], returns: "i32" },
    bind: { args: ["i32", "ptr", "u32"], returns: "i32" },
    setsockopt: { args: ["i32", "i32", "i32", "ptr", "u32"], returns: "i32" },
    getsockopt: { args: ["i32", "i32", "i32", "ptr", "ptr"], returns: "i32" },
    ioctl: { args: ["i32", "u64", "ptr"], returns: "i32" },
    if_nametoindex: { args: ["ptr"], returns: "u32" },
    sendmmsg: { args: ["i32", "ptr", "u32", "i32"], returns: "i32" },
    recvmmsg: { args: ["i32", "ptr", "u32", "i32", "ptr"], returns: "i32" },
    poll: { args: ["ptr", "u64", "i32"], returns: "i32" },
    read: { args: ["i32", "ptr", "u64"], returns: "i32" },
    write: { args: ["i32", "ptr", "u64"], returns: "i32" },
    close: { args: ["i32"], returns: "i32" },
    fcntl: { args: ["i32", "i32", "i32"], returns: "i32" },
    eventfd: { args: ["u32", "i32"], returns: "i32" },
    pipe2: { args: ["ptr", "i32"], returns: "i32" },
    setns: { args: ["i32", "i32"], returns: "i32" },
    madvise: { args: ["ptr", "u64", "i32"], returns: "i32" },
    // A failed mmap returns MAP_FAILED, which bun:ffi hands back as a bigint (2^64 - 1).
    mmap: { args: ["ptr", "u64", "i32", "i32", "i32", "u64"], returns: "ptr" },
    munmap: { args: ["ptr", "u64"], returns: "i32" },
    execve: { args: ["ptr", "ptr", "ptr"], returns: "i32" },
    __errno_location: { args: [], returns: "ptr" },
    strerror: { args: ["i32"], returns: "cstring" },
  });
}

export type LibcSymbols = ReturnType<typeof load>["symbols"];

let lib: LibcSymbols | null = null;
let errnoAddr = 0;
// Small scratch for eventfd counters, pipe fds and the like: allocated once per thread, large
// enough that its pointer never goes stale.
let scratch: Uint8Array | null = null;
let scratchView: DataView | null = null;
let scratchPtr = 0;

function init(): LibcSymbols {
  const l = load().symbols;
  // errno lives in thread-local storage: its address is fixed for this thread, i.e. this module
  // instance (each Worker has its own).
  errnoAddr = l.__errno_location() as number;
  scratch = new Uint8Array(4096);
  scratchView = new DataView(scratch.buffer);
  scratchPtr = ptr(scratch);
  lib = l;
  return l;
}

/** The raw libc symbols; opens libc on first use in this thread. */
export function libc(): LibcSymbols {
  return lib ?? init();
}

/** Raw pointer number of a long-lived buffer (allocate it once, keep it referenced). */
export function addressOf(buf: ArrayBufferView | ArrayBuffer): number {
  return ptr(buf as Uint8Array) as number;
}

/** Casts a raw pointer number for the bun:ffi signatures; 0 means NULL. */
export function asPtr(p: number): Pointer {
  return p as Pointer;
}

/** errno of the last failed libc call made from this thread. */
export function errno(): number {
  if (lib === null) init();
  return read.i32(errnoAddr as Pointer, 0);
}

export function errnoName(n: number): string {
  return ERRNO_NAMES[n] ?? `errno ${n}`;
}

export function strerror(n: number): string {
  const s = libc().strerror(n);
  return s === null ? `errno ${n}` : String(s);
}

/** "ENETDOWN (Network is down)" — for one-line error messages. */
export function describeErrno(n: number): string {
  return `${errnoName(n)} (${strerror(n)})`;
}

// ---------------------------------------------------------------- memory

const MADV_HUGEPAGE = 14;
const HUGE_PAGE = 2 << 20;

/**
 * Asks for transparent huge pages behind a large buffer not yet touched: one page fault per
 * 2 MiB instead of 512, and far fewer pages to free at exit. Best effort: a kernel with THP off
 * keeps small pages.
 */
export function adviseHugePages(buf: ArrayBufferLike): void {
  const base = ptr(new Uint8Array(buf)) as number;
  const start = Math.ceil(base / HUGE_PAGE) * HUGE_PAGE;
  const end = Math.floor((base + buf.byteLength) / HUGE_PAGE) * HUGE_PAGE;
  if (end > start) libc().madvise(asPtr(start), end - start, MADV_HUGEPAGE);
}

// ---------------------------------------------------------------- fd helpers

/** read(2): bytes read (0 = EOF) or -errno; EINTR is retried, EAGAIN comes back as -EAGAIN. */
export function readFd(fd: number, p: number, len: number): number {
  const l = lib ?? init();
  for (;;) {
    const n = l.read(fd, p as Pointer, len);
    if (n >= 0) return n;
    const e = read.i32(errnoAddr as Pointer, 0);
    if (e !== EINTR) return -e;
  }
}

/** write(2): bytes written or -errno; EINTR is retried, EAGAIN comes back as -EAGAIN, a closed
 * reader as -EPIPE (Bun starts with SIGPIPE ignored). */
export function writeFd(fd: number, p: number, len: number): number {
  const l = lib ?? init();
  for (;;) {
    const n = l.write(fd, p as Pointer, len);
    if (n >= 0) return n;
    const e = read.i32(errnoAddr as Pointer, 0);
    if (e !== EINTR) return -e;
  }
}

export function closeFd(fd: number): number {
  if (fd < 0) return 0;
  return (lib ?? init()).close(fd) === 0 ? 0 : -errno();
}

/** Sets or clears O_NONBLOCK; returns 0 or -errno. */
export function setNonBlocking(fd: number, on: boolean): number {
  const l = libc();
  const fl = l.fcntl(fd, F_GETFL, 0);
  if (fl < 0) return -errno();
  const want = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
  if (want === fl) return 0;
  return l.fcntl(fd, F_SETFL, want) < 0 ? -errno() : 0;
}

/** F_SETPIPE_SZ: the pipe size now in effect, or -errno (-EBADF/-EINVAL when fd is not a pipe,
 * -EPERM above /proc/sys/fs/pipe-max-size without CAP_SYS_RESOURCE). */
export function setPipeSize(fd: number, bytes: number): number {
  const r = libc().fcntl(fd, F_SETPIPE_SZ, bytes);
  return r < 0 ? -errno() : r;
}

/** pipe2(O_CLOEXEC | flags): [readFd, writeFd]; throws on failure (out of fds). */
export function makePipe(flags = 0): [number, number] {
  const l = libc();
  if (l.pipe2(scratchPtr as Pointer, O_CLOEXEC | flags) !== 0) {
    throw new SystemError(`pipe2 failed: ${describeErrno(errno())}`);
  }
  return [scratchView!.getInt32(0, true), scratchView!.getInt32(4, true)];
}

// ---------------------------------------------------------------- eventfd

/** A non-blocking, close-on-exec eventfd, for waking a poll() in another thread. */
export function createEventFd(): number {
  const fd = libc().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) throw new SystemError(`eventfd failed: ${describeErrno(errno())}`);
  return fd;
}

/** Adds 1 to the counter; never blocks (a saturated counter is already signalled). */
export function signalEventFd(fd: number): void {
  const l = lib ?? init();
  // The scratch is per thread, so concurrent signallers in other Workers do not share it.
  scratchView!.setUint32(8, 1, true);
  scratchView!.setUint32(12, 0, true);
  l.write(fd, (scratchPtr + 8) as Pointer, 8);
}

/** Resets the counter; returns its value before the reset (0 if it was not signalled). */
export function drainEventFd(fd: number): number {
  const l = lib ?? init();
  const n = l.read(fd, (scratchPtr + 16) as Pointer, 8);
  if (n !== 8) return 0;
  return scratchView!.getUint32(16, true) + scratchView!.getUint32(20, true) * 4294967296;
}

// ---------------------------------------------------------------- poll

/** poll(2) over one preallocated pollfd array. Entries with fd < 0 are skipped by the kernel. */
export class Poller {
  /** Number of entries passed to poll(); set() raises it, assign to shrink. */
  count = 0;
  private readonly buf: Uint8Array;
  private readonly i32: Int32Array;
  private readonly i16: Int16Array;
  private readonly addr: number;
  private readonly l: LibcSymbols;

  constructor(readonly maxFds: number) {
    // >= 1 KiB so the storage never moves under the pointer taken once here.
    this.buf = new Uint8Array(Math.max(1024, maxFds * POLLFD.size));
    this.i32 = new Int32Array(this.buf.buffer);
    this.i16 = new Int16Array(this.buf.buffer);
    this.addr = ptr(this.buf) as number;
    this.l = libc();
    this.i32.fill(-1);
  }

  set(i: number, fd: number, events: number): void {
    if (i < 0 || i >= this.maxFds) throw new RangeError(`Poller: slot ${i} out of range 0..${this.maxFds - 1}`);
    this.i32[i * 2] = fd;
    this.i16[i * 4 + 2] = events;
    this.i16[i * 4 + 3] = 0;
    if (i >= this.count) this.count = i + 1;
  }

  /** Ready entries (0 on timeout or EINTR); timeoutMs < 0 waits forever. */
  wait(timeoutMs: number): number {
    const n = this.l.poll(this.addr as Pointer, this.count, timeoutMs);
    if (n >= 0) return n;
    const e = errno();
    if (e === EINTR) return 0;
    throw new SystemError(`poll failed: ${describeErrno(e)}`);
  }

  revents(i: number): number {
    return this.i16[i * 4 + 3] & 0xffff;
  }
}
