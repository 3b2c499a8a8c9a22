// The frame codec: layout of every l2pipe frame, built and parsed in place on a DataView.
// docs/PROTOCOL.md is the prose version of this file; keep them in step.

export const ETHERTYPE = 0x88b5;
export const MAGIC = 0x4c32; // "L2"
export const VERSION = 1;

export const ETH_HEADER = 14;
/** Shortest Ethernet frame without FCS; shorter frames get padded by real NICs. */
export const MIN_FRAME = 60;

// Common header, offsets from the start of the frame (destination MAC).
export const OFF_CRC = 14; // u32 CRC-32 of bytes [OFF_LEN, 14 + len)
export const OFF_LEN = 18; // u16 meaningful bytes from offset 14 (padding excluded)
export const OFF_MAGIC = 20; // u16
export const OFF_VERSION = 22; // u8
export const OFF_TYPE = 23; // u8
export const OFF_SESSION = 24; // u32
export const OFF_LINK = 28; // u8 the sender's index of the link
export const OFF_FLAGS = 29; // u8
export const OFF_PN = 32; // u32 packet number, per link and direction
export const COMMON_END = 36;

export const enum FrameType {
  Hello = 1,
  HelloAck = 2,
  Data = 3,
  Ack = 4,
  Ping = 5,
  Done = 6,
  DoneAck = 7,
  Abort = 8,
  Reject = 9,
  /** A receiver busy with another sender's stream answers this sender's HELLO. */
  Busy = 10,
}

// DATA: a slice of the wire stream.
export const OFF_DATA_OFFSET = 36; // u32 hi, u32 lo
export const DATA_HEADER = 44;
/** Payload bytes a DATA frame can carry on a link of this MTU. */
export function dataPayloadMax(mtu: number): number {
  return mtu + ETH_HEADER - DATA_HEADER;
}

// ACK: cumulative and flow-control offsets for the stream, packet-number ranges for this link.
export const OFF_ACK_CUM = 36; // u32 hi, u32 lo: stream bytes received contiguously
export const OFF_ACK_LIMIT = 44; // u32 hi, u32 lo: the sender may send stream bytes below this
export const OFF_ACK_DELAY = 52; // u32 microseconds between receiving the largest pn and sending
export const OFF_ACK_RANGES_N = 56; // u16
export const OFF_ACK_RANGES = 60; // n x (u32 high, u32 low), descending, inclusive
export const MAX_ACK_RANGES = 32;

// HELLO (sender, broadcast) and HELLO_ACK (receiver, unicast).
export const OFF_HELLO_LINKS = 36; // u8 links the sender uses
export const OFF_HELLO_MTU = 38; // u16 MTU of the sending device
export const OFF_HELLO_FEATURES = 40; // u32 FEATURE_* bits: HELLO, codecs the sender may send; HELLO_ACK, codecs the receiver decodes
export const OFF_HELLO_INSTANCE = 44; // u32 random id of the answering receiver (HELLO_ACK)
export const OFF_HELLO_WINDOW = 48; // u32 receiver buffer bytes (HELLO_ACK)
export const OFF_HELLO_NAME = 52; // 16 bytes, device name, NUL padded
export const HELLO_LEN = 68;
export const FEATURE_LZ4 = 1;
export const FEATURE_ZSTD = 2;

// DONE: what the receiver wrote, for the sender to compare.
export const OFF_DONE_TOTAL = 36; // u32 hi, u32 lo
export const OFF_DONE_CRC = 44; // u32
export const DONE_LEN = 48;

// ABORT: a reason code and a short text for the peer's error message.
export const OFF_ABORT_CODE = 36; // u8
export const OFF_ABORT_TEXT_LEN = 37; // u8
export const OFF_ABORT_TEXT = 38;
export const MAX_ABORT_TEXT = 200;

export const TWO32 = 0x1_0000_0000;

export function readU64(v: DataView, off: number): number {
  return v.getUint32(off) * TWO32 + v.getUint32(off + 4);
}

export function writeU64(v: DataView, off: number, value: number): void {
  v.setUint32(off, Math.floor(value / TWO32));
  v.setUint32(off + 4, value >>> 0);
}

/** Writes Ethernet and common header fields; returns the offset where type-specific fields start. */
export function writeHeader(
  v: DataView,
  base: number,
  dst: Uint8Array,
  src: Uint8Array,
  type: FrameType,
  session: number,
  link: number,
  pn: number,
): number {
  for (let i = 0; i < 6; i++) {
    v.setUint8(base + i, dst[i]);
    v.setUint8(base + 6 + i, src[i]);
  }
  v.setUint16(base + 12, ETHERTYPE);
  v.setUint16(base + OFF_MAGIC, MAGIC);
  v.setUint8(base + OFF_VERSION, VERSION);
  v.setUint8(base + OFF_TYPE, type);
  v.setUint32(base + OFF_SESSION, session);
  v.setUint8(base + OFF_LINK, link);
  v.setUint8(base + OFF_FLAGS, 0);
  v.setUint16(base + 30, 0);
  v.setUint32(base + OFF_PN, pn);
  return base + COMMON_END;
}

const CRC_VIEW_CACHE_MIN = 4096;

/**
 * CRC-32 of a frame region. Bun.hash.crc32 takes no offset, so it needs a view;
 * views of whole receive slots are cached so full-size frames allocate nothing.
 */
export class FrameCrc {
  private readonly cache = new Map<number, Uint8Array>();
  /** cacheViews: for buffers whose frames start at a few fixed offsets (receive slots). */
  constructor(
    private readonly bytes: Uint8Array,
    private readonly cacheViews = false,
  ) {}

  of(start: number, end: number, seed = 0): number {
    if (this.cacheViews && end - start >= CRC_VIEW_CACHE_MIN) {
      const key = start * 65536 + (end - start);
      let view = this.cache.get(key);
      if (view === undefined) {
        if (this.cache.size > 4096) this.cache.clear();
        view = this.bytes.subarray(start, end);
        this.cache.set(key, view);
      }
      return Bun.hash.crc32(view, seed) >>> 0;
    }
    return Bun.hash.crc32(this.bytes.subarray(start, end), seed) >>> 0;
  }
}

/** Seals a frame whose bytes are all in one buffer: sets its length field, pads and checksums. Returns the frame length to send. */
export function sealFrame(v: DataView, crc: FrameCrc, base: number, end: number): number {
  v.setUint16(base + OFF_LEN, end - base - ETH_HEADER);
  v.setUint32(base + OFF_CRC, crc.of(base + OFF_LEN, end));
  let len = end - base;
  while (len < MIN_FRAME) v.setUint8(base + len++, 0);
  return len;
}

/** A received frame's meaningful length if its ethertype, magic, version and length field are
 * right (CRC not checked), else 0. */
function claimedLength(v: DataView, base: number, received: number): number {
  if (received < COMMON_END) return 0;
  if (v.getUint16(base + 12) !== ETHERTYPE) return 0;
  if (v.getUint16(base + OFF_MAGIC) !== MAGIC || v.getUint8(base + OFF_VERSION) !== VERSION) return 0;
  const len = v.getUint16(base + OFF_LEN) + ETH_HEADER;
  return len < COMMON_END || len > received ? 0 : len;
}

/**
 * Checks a received frame: ethertype, magic, version, length, CRC. Returns the meaningful
 * length (from the frame start) or 0 when the frame must be dropped.
 */
export function verifyFrame(v: DataView, crc: FrameCrc, base: number, received: number): number {
  const len = claimedLength(v, base, received);
  if (len === 0 || crc.of(base + OFF_LEN, base + len) !== v.getUint32(base + OFF_CRC)) return 0;
  return len;
}

/**
 * verifyFrame for a DATA frame received split: its first DATA_HEADER bytes at base (headView is
 * their checksummed part, [OFF_LEN, DATA_HEADER)), its payload at payload[payloadPos..].
 */
export function verifySplitFrame(v: DataView, base: number, received: number, headView: Uint8Array, payload: Uint8Array, payloadPos: number): number {
  const len = claimedLength(v, base, received);
  if (len <= DATA_HEADER) return 0;
  const crc = Bun.hash.crc32(payload.subarray(payloadPos, payloadPos + len - DATA_HEADER), Bun.hash.crc32(headView)) >>> 0;
  return crc === v.getUint32(base + OFF_CRC) ? len : 0;
}
