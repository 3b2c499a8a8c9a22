// The frame codec: layout of every l2pipe frame, built and parsed in place on a DataView.
// Only this file knows where a field sits: one parse function per frame type checks the type's
// minimum length and the ranges of its fields against the frame's verified meaningful length
// before it reads anything, and one builder per type writes the fields. docs/PROTOCOL.md is the
// prose version of this file; keep them in step.

import { crc32CombineFast } from "./crc32";

export const ETHERTYPE = 0x88b5;
export const MAGIC = 0x4c32; // "L2"
export const VERSION = 1;

export const ETH_HEADER = 14;
/** Smallest MTU that leaves room for a useful DATA payload; a HELLO or HELLO_ACK saying less is refused. */
export const MIN_MTU = 576;
/** Largest MTU a frame length can describe (its length field is 16 bits, counted from offset 14). */
export const MAX_MTU = 65535 - ETH_HEADER;
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
  const high = v.getUint32(off);
  const low = v.getUint32(off + 4);
  // A small value stays an int32 rather than an integral double: offsets keep one type, and the
  // JIT's code for them is not thrown away when the first one read from a frame comes along.
  return high === 0 ? low : high * TWO32 + low;
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
 *
 * CRCs on the per-frame paths are int32s (`| 0`; the wire gets the same bits by setInt32): as
 * unsigned numbers, half of them are above 2^31 and so doubles, and JavaScriptCore's code that
 * had seen only the others deoptimized on them (~300 exits and two recompiles per side and run,
 * counted with BUN_JSC_printEachOSRExit).
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
      // One view per start, remade when the length changes (full-size frames keep theirs).
      let view = this.cache.get(start);
      if (view === undefined || view.length !== end - start) {
        if (this.cache.size > 4096) this.cache.clear();
        view = this.bytes.subarray(start, end);
        this.cache.set(start, view);
      }
      return Bun.hash.crc32(view, seed) | 0;
    }
    return Bun.hash.crc32(this.bytes.subarray(start, end), seed) | 0;
  }
}

/** Seals a frame whose bytes are all in one buffer: sets its length field, pads and checksums. Returns the frame length to send. */
export function sealFrame(v: DataView, crc: FrameCrc, base: number, end: number): number {
  v.setUint16(base + OFF_LEN, end - base - ETH_HEADER);
  v.setInt32(base + OFF_CRC, crc.of(base + OFF_LEN, end));
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

/** The CRC-32 of the payload alone of the last DATA frame verified (see verifyFrame). */
export class PayloadCrc {
  value = 0;
}

/**
 * Checks a received frame: ethertype, magic, version, length, CRC. Returns the meaningful
 * length (from the frame start) or 0 when the frame must be dropped. Given headView (the
 * frame's bytes [OFF_LEN, DATA_HEADER), a view kept per receive slot) and out, a DATA frame's
 * payload is checksummed on its own and its CRC left in out, for the output to build the
 * chunk's CRC from without reading the bytes again; the frame's CRC is that combined with the
 * header's, so the check is the same.
 */
export function verifyFrame(v: DataView, crc: FrameCrc, base: number, received: number, headView?: Uint8Array, out?: PayloadCrc): number {
  const len = claimedLength(v, base, received);
  if (len === 0) return 0;
  if (out !== undefined && len > DATA_HEADER && v.getUint8(base + OFF_TYPE) === FrameType.Data) {
    return dataCrcMatches(v, base, headView!, crc.of(base + DATA_HEADER, base + len), len, out) ? len : 0;
  }
  return crc.of(base + OFF_LEN, base + len) === v.getInt32(base + OFF_CRC) ? len : 0;
}

/** Does a DATA frame of meaningful length len carry the CRC of its header (headView) followed by
 * a payload whose own CRC is payloadCrc (an int32)? If so, that payload CRC is left in out. */
function dataCrcMatches(v: DataView, base: number, headView: Uint8Array, payloadCrc: number, len: number, out: PayloadCrc): boolean {
  if ((crc32CombineFast(Bun.hash.crc32(headView) | 0, payloadCrc, len - DATA_HEADER) | 0) !== v.getInt32(base + OFF_CRC)) return false;
  out.value = payloadCrc;
  return true;
}

// ---- typed views of received frames --------------------------------------------------------
//
// Each parse function takes a frame that verifyFrame passed, with the
// meaningful length it returned, and fills a result object the caller owns and reuses: the
// hot-path parsers (header, DATA, ACK) allocate nothing. A parser returns false, reading no
// field, when the frame is too short for its type or a field is out of range; the caller counts
// such a frame as bad and trusts nothing in it.

/** The common header of a frame: what every frame type carries. */
export class FrameHeader {
  type = 0;
  session = 0;
  link = 0;
  pn = 0;
  /** Offset of the source MAC (6 bytes) in the buffer. */
  srcOffset = 0;
}

export function parseHeader(v: DataView, base: number, len: number, out: FrameHeader): boolean {
  if (len < COMMON_END) return false;
  out.type = v.getUint8(base + OFF_TYPE);
  out.session = v.getUint32(base + OFF_SESSION);
  out.link = v.getUint8(base + OFF_LINK);
  out.pn = v.getUint32(base + OFF_PN);
  out.srcOffset = base + 6;
  return true;
}

/** HELLO or HELLO_ACK fields. */
export class HelloFields {
  links = 0;
  mtu = 0;
  features = 0;
  instance = 0;
  window = 0;
}

function parseHelloFields(v: DataView, base: number, len: number, out: HelloFields): boolean {
  if (len < HELLO_LEN) return false;
  const mtu = v.getUint16(base + OFF_HELLO_MTU);
  // A smaller MTU would leave DATA no payload at all (or a negative one).
  if (mtu < MIN_MTU || mtu > MAX_MTU) return false;
  out.links = v.getUint8(base + OFF_HELLO_LINKS);
  out.mtu = mtu;
  out.features = v.getUint32(base + OFF_HELLO_FEATURES);
  out.instance = v.getUint32(base + OFF_HELLO_INSTANCE);
  out.window = v.getUint32(base + OFF_HELLO_WINDOW);
  return true;
}

/** HELLO: at least HELLO_LEN bytes, an MTU in [MIN_MTU, MAX_MTU]. */
export function parseHello(v: DataView, base: number, len: number, out: HelloFields): boolean {
  return parseHelloFields(v, base, len, out);
}

/** HELLO_ACK: the layout of HELLO, the same checks. */
export function parseHelloAck(v: DataView, base: number, len: number, out: HelloFields): boolean {
  return parseHelloFields(v, base, len, out);
}

/** The DATA header: where the payload belongs in the stream and how long it is. */
export class DataFields {
  offset = 0;
  payloadLen = 0;
}

/** The part of a DATA header its CRC covers ([OFF_LEN, DATA_HEADER)), as a view made once per
 * header slot: with the payload elsewhere, the frame's CRC is this view's continued over it. */
export function dataHeaderChecked(bytes: Uint8Array, base: number): Uint8Array {
  return bytes.subarray(base + OFF_LEN, base + DATA_HEADER);
}

/** Where a DATA frame's payload starts. */
export function dataPayloadStart(base: number): number {
  return base + DATA_HEADER;
}

/** Writes a DATA frame's offset; with `payloadLen` >= 0 also its length field, for a payload sent
 * from elsewhere (sealFrame does that for one next to its header). */
export function writeDataFields(v: DataView, base: number, offset: number, payloadLen = -1): void {
  writeU64(v, base + OFF_DATA_OFFSET, offset);
  // setInt16 with the same bits: JavaScriptCore's optimized code left setUint16 here through a
  // deoptimization on ~40 % of calls (51,000 per GiB, counted with BUN_JSC_printEachOSRExit).
  if (payloadLen >= 0) v.setInt16(base + OFF_LEN, ((DATA_HEADER - ETH_HEADER + payloadLen) << 16) >> 16);
}

/** Stores a frame's CRC (computed by the caller over header and payload; an int32, see FrameCrc). */
export function writeFrameCrc(v: DataView, base: number, crc: number): void {
  v.setInt32(base + OFF_CRC, crc);
}

export function parseData(v: DataView, base: number, len: number, out: DataFields): boolean {
  if (len < DATA_HEADER) return false;
  out.offset = readU64(v, base + OFF_DATA_OFFSET);
  out.payloadLen = len - DATA_HEADER;
  return true;
}

/**
 * ACK fields; its packet-number ranges are read through rangeAt, straight from the frame
 * buffer (valid until the buffer is reused). A range count beyond what the frame holds, or
 * beyond MAX_ACK_RANGES, is refused rather than clamped: no receiver writes such a frame.
 */
export class AckFields implements AckContent {
  cum = 0;
  limit = 0;
  delayUs = 0;
  rangeCount = 0;
  private view: DataView | null = null;
  private rangesBase = 0;
  /** Range i's high (high true) or low end, a 32-bit packet number; made once, so passing it allocates nothing. */
  readonly rangeAt = (i: number, high: boolean): number => this.view!.getUint32(this.rangesBase + i * 8 + (high ? 0 : 4));

  /** Fills the fields; for parseAck only. */
  set(v: DataView, base: number, count: number): void {
    this.view = v;
    this.rangesBase = base + OFF_ACK_RANGES;
    this.cum = readU64(v, base + OFF_ACK_CUM);
    this.limit = readU64(v, base + OFF_ACK_LIMIT);
    this.delayUs = v.getUint32(base + OFF_ACK_DELAY);
    this.rangeCount = count;
  }
}

export function parseAck(v: DataView, base: number, len: number, out: AckFields): boolean {
  if (len < OFF_ACK_RANGES) return false;
  const n = v.getUint16(base + OFF_ACK_RANGES_N);
  if (n > MAX_ACK_RANGES || OFF_ACK_RANGES + n * 8 > len) return false;
  out.set(v, base, n);
  return true;
}

export class DoneFields {
  total = 0;
  crc = 0;
}

export function parseDone(v: DataView, base: number, len: number, out: DoneFields): boolean {
  if (len < DONE_LEN) return false;
  out.total = readU64(v, base + OFF_DONE_TOTAL);
  out.crc = v.getUint32(base + OFF_DONE_CRC);
  return true;
}

export class AbortFields {
  code = 0;
  text = "";
}

/** ABORT: a text length beyond the frame is refused. (The text is decoded: ABORT is rare.) */
export function parseAbort(v: DataView, base: number, len: number, out: AbortFields): boolean {
  if (len < OFF_ABORT_TEXT) return false;
  const n = v.getUint8(base + OFF_ABORT_TEXT_LEN);
  if (OFF_ABORT_TEXT + n > len) return false;
  out.code = v.getUint8(base + OFF_ABORT_CODE);
  out.text = new TextDecoder().decode(new Uint8Array(v.buffer, v.byteOffset + base + OFF_ABORT_TEXT, n));
  return true;
}

/** PING, DONE_ACK, REJECT, BUSY: the common header and nothing else. */
export function parseHeaderOnly(v: DataView, base: number, len: number, out: FrameHeader): boolean {
  return parseHeader(v, base, len, out);
}

// ---- builders -------------------------------------------------------------------------------
//
// Each writes a type's fields behind a header writeHeader wrote at `base` and returns the end
// of the meaningful bytes, for sealFrame.

const NAME_BYTES = 16;

function writeHelloFields(v: DataView, base: number, links: number, mtu: number, features: number,
  instance: number, window: number, name: string): number {
  v.setUint8(base + OFF_HELLO_LINKS, links);
  v.setUint8(base + OFF_HELLO_LINKS + 1, 0);
  v.setUint16(base + OFF_HELLO_MTU, mtu);
  v.setUint32(base + OFF_HELLO_FEATURES, features);
  v.setUint32(base + OFF_HELLO_INSTANCE, instance);
  v.setUint32(base + OFF_HELLO_WINDOW, Math.min(window, 0xffffffff));
  const bytes = new TextEncoder().encode(name).subarray(0, NAME_BYTES - 1);
  for (let i = 0; i < NAME_BYTES; i++) v.setUint8(base + OFF_HELLO_NAME + i, i < bytes.length ? bytes[i]! : 0);
  return base + HELLO_LEN;
}

/** HELLO: the links the sender uses, its device's MTU and name, the codecs it may send. */
export function buildHello(v: DataView, base: number, links: number, mtu: number, features: number, name: string): number {
  return writeHelloFields(v, base, links, mtu, features, 0, 0, name);
}

/** HELLO_ACK: the receiver's MTU, the codecs it decodes, its instance id, window and device name. */
export function buildHelloAck(v: DataView, base: number, mtu: number, features: number, instance: number, window: number, name: string): number {
  return writeHelloFields(v, base, 0, mtu, features, instance, window, name);
}

/** What an ACK says, however it is held: AckFields reads it from a received frame, the
 * receiver's core answers it from its bookkeeping. Ranges are (high, low) pairs, highest first. */
export interface AckContent {
  cum: number;
  limit: number;
  delayUs: number;
  rangeCount: number;
  rangeAt(i: number, high: boolean): number;
}

export function buildAck(v: DataView, base: number, ack: AckContent): number {
  const n = ack.rangeCount;
  writeU64(v, base + OFF_ACK_CUM, ack.cum);
  writeU64(v, base + OFF_ACK_LIMIT, ack.limit);
  v.setUint32(base + OFF_ACK_DELAY, ack.delayUs);
  v.setUint16(base + OFF_ACK_RANGES_N, n);
  v.setUint16(base + OFF_ACK_RANGES_N + 2, 0);
  for (let i = 0; i < n; i++) {
    v.setUint32(base + OFF_ACK_RANGES + i * 8, ack.rangeAt(i, true));
    v.setUint32(base + OFF_ACK_RANGES + i * 8 + 4, ack.rangeAt(i, false));
  }
  return base + OFF_ACK_RANGES + n * 8;
}

export function buildDone(v: DataView, base: number, total: number, crc: number): number {
  writeU64(v, base + OFF_DONE_TOTAL, total);
  v.setUint32(base + OFF_DONE_CRC, crc >>> 0);
  return base + DONE_LEN;
}

/** ABORT: the text is cut to MAX_ABORT_TEXT bytes. */
export function buildAbort(v: DataView, base: number, code: number, text: string): number {
  const bytes = new TextEncoder().encode(text).subarray(0, MAX_ABORT_TEXT);
  v.setUint8(base + OFF_ABORT_CODE, code);
  v.setUint8(base + OFF_ABORT_TEXT_LEN, bytes.length);
  for (let i = 0; i < bytes.length; i++) v.setUint8(base + OFF_ABORT_TEXT + i, bytes[i]!);
  return base + OFF_ABORT_TEXT + bytes.length;
}

/**
 * A PING padded with `padding` (zeros the kernel sends from elsewhere) to `mtu` bytes after the
 * Ethernet header: sets its length and CRC. Returns the bytes of the frame held at base.
 */
export function sealProbe(v: DataView, base: number, mtu: number, padding: Uint8Array): number {
  v.setUint16(base + OFF_LEN, mtu);
  const head = new Uint8Array(v.buffer, v.byteOffset + base + OFF_LEN, COMMON_END - OFF_LEN);
  v.setUint32(base + OFF_CRC, Bun.hash.crc32(padding, Bun.hash.crc32(head)) >>> 0);
  return COMMON_END;
}

/** Bytes of padding a path probe of this MTU needs behind its header. */
export function probePadding(mtu: number): number {
  return mtu + ETH_HEADER - COMMON_END;
}
