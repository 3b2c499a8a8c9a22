// Network device lookup: index, MAC, MTU and state of one interface in the current namespace.

import {
  AF_INET, AF_UNIX, ARPHRD_ETHER, IFF_RUNNING, IFF_UP, IFNAMSIZ, IFREQ, SIOCGIFFLAGS,
  SIOCGIFHWADDR, SIOCGIFMTU, SIOCGIFTXQLEN, SOCK_CLOEXEC, SOCK_DGRAM, addressOf, asPtr, describeErrno, errno,
  libc, ENODEV, ENXIO,
} from "../../ffi/libc";
import { systemError, usageError } from "../errors";

export interface Device {
  name: string;
  ifindex: number;
  /** 6 bytes */
  mac: Uint8Array;
  mtu: number;
  /** Frames its default queueing discipline holds before it drops (txqueuelen). */
  txQueueLen: number;
  /** administratively up (IFF_UP) and with carrier (IFF_RUNNING) */
  up: boolean;
}

export interface LookupOptions {
  /** Return a device that is down or has no carrier (up: false) instead of throwing. */
  allowDown?: boolean;
}

/** Looks a device up; throws a usage L2Error naming the device if it is missing, not Ethernet,
 * or (unless allowDown) down or without carrier. */
export function lookupDevice(name: string, opts: LookupOptions = {}): Device {
  const nameBytes = new TextEncoder().encode(name);
  if (nameBytes.length === 0) throw usageError("device name is empty");
  if (nameBytes.length > IFNAMSIZ - 1) {
    throw usageError(`device ${name}: name longer than ${IFNAMSIZ - 1} bytes (Linux limit)`);
  }
  if (nameBytes.includes(0) || nameBytes.includes(0x2f) || /\s/.test(name)) {
    throw usageError(`device ${JSON.stringify(name)}: invalid device name`);
  }

  const l = libc();
  // One buffer (>= 1 KiB, so its pointer is stable) holds the ifreq, whose name is also the
  // NUL-terminated string for if_nametoindex.
  const buf = new Uint8Array(1024);
  const view = new DataView(buf.buffer);
  const p = addressOf(buf);
  buf.set(nameBytes, IFREQ.name);

  const ifindex = l.if_nametoindex(asPtr(p));
  if (ifindex === 0) {
    const e = errno();
    if (e === ENODEV || e === ENXIO || e === 0) throw usageError(`device ${name}: no such device`);
    throw systemError(`device ${name}: lookup failed: ${describeErrno(e)}`);
  }

  // SIOCGIF* work on any socket; AF_INET needs no privilege, AF_UNIX covers IPv4-less kernels.
  let fd = l.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fd = l.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw systemError(`device ${name}: cannot open a socket for ioctl: ${describeErrno(errno())}`);
  try {
    const ioctl = (req: number, what: string): void => {
      buf.fill(0, IFREQ.union, IFREQ.size);
      if (l.ioctl(fd, req, asPtr(p)) < 0) {
        const e = errno();
        if (e === ENODEV || e === ENXIO) throw usageError(`device ${name}: no such device`);
        throw systemError(`device ${name}: cannot read its ${what}: ${describeErrno(e)}`);
      }
    };

    ioctl(SIOCGIFHWADDR, "hardware address");
    const hatype = view.getUint16(IFREQ.hwFamily, true);
    if (hatype !== ARPHRD_ETHER) {
      throw usageError(`device ${name} is not an Ethernet device (hardware type ${hatype})`);
    }
    const mac = buf.slice(IFREQ.hwData, IFREQ.hwData + 6);

    ioctl(SIOCGIFMTU, "MTU");
    const mtu = view.getInt32(IFREQ.mtu, true);

    ioctl(SIOCGIFTXQLEN, "queue length");
    const txQueueLen = view.getInt32(IFREQ.qlen, true);

    ioctl(SIOCGIFFLAGS, "flags");
    const flags = view.getUint16(IFREQ.flags, true);
    const adminUp = (flags & IFF_UP) !== 0;
    const carrier = (flags & IFF_RUNNING) !== 0;

    if (!opts.allowDown) {
      if (!adminUp) throw usageError(`device ${name} is down (ip link set ${name} up)`);
      if (!carrier) throw usageError(`device ${name} has no carrier (cable unplugged or peer down)`);
    }
    return { name, ifindex, mac, mtu, txQueueLen, up: adminUp && carrier };
  } finally {
    l.close(fd);
  }
}
