// The wire stream's record layout: one 16-byte big-endian header per chunk, then its body.
//
//  0 u8  kind      RAW | LZ4 | END | ZSTD
//  1 u8  flags     0
//  2 u16 reserved  0
//  4 u32 rawLen    original bytes in this chunk (END: 0)
//  8 u32 encLen    body bytes after the header (END: 8)
// 12 u32 crc       CRC-32 of the chunk's original bytes (END: of the whole original stream)
// 16 body          END: u32 totalHi, u32 totalLo = total original stream length

import { TWO32 } from "./wire";

export const RECORD_HEADER = 16;

export const KIND_RAW = 1;
export const KIND_LZ4 = 2;
export const KIND_END = 3;
/** One zstd frame holding the whole chunk. */
export const KIND_ZSTD = 4;

export const OFF_KIND = 0;
export const OFF_FLAGS = 1;
export const OFF_RESERVED = 2;
export const OFF_RAW_LEN = 4;
export const OFF_ENC_LEN = 8;
export const OFF_CRC = 12;

export const END_BODY = 8;
/** Bytes of a complete END record. */
export const END_RECORD = RECORD_HEADER + END_BODY;

/** Writes a chunk header (RAW, LZ4 or ZSTD) at `off`. */
export function writeHeader(dv: DataView, off: number, kind: number, rawLen: number, encLen: number, crc: number): void {
  dv.setUint32(off, kind << 24, false); // kind, flags = 0, reserved = 0 in one store
  dv.setUint32(off + OFF_RAW_LEN, rawLen, false);
  dv.setUint32(off + OFF_ENC_LEN, encLen, false);
  dv.setUint32(off + OFF_CRC, crc >>> 0, false);
}

/** Writes a complete END record (header + body, END_RECORD bytes) at `off`. */
export function writeEnd(dv: DataView, off: number, totalLen: number, streamCrc: number): void {
  writeHeader(dv, off, KIND_END, 0, END_BODY, streamCrc);
  dv.setUint32(off + RECORD_HEADER, Math.floor(totalLen / TWO32), false);
  dv.setUint32(off + RECORD_HEADER + 4, totalLen >>> 0, false);
}

export function readKind(dv: DataView, off: number): number {
  return dv.getUint8(off + OFF_KIND);
}
export function readFlags(dv: DataView, off: number): number {
  return dv.getUint8(off + OFF_FLAGS);
}
export function readReserved(dv: DataView, off: number): number {
  return dv.getUint16(off + OFF_RESERVED, false);
}
export function readRawLen(dv: DataView, off: number): number {
  return dv.getUint32(off + OFF_RAW_LEN, false);
}
export function readEncLen(dv: DataView, off: number): number {
  return dv.getUint32(off + OFF_ENC_LEN, false);
}
export function readCrc(dv: DataView, off: number): number {
  return dv.getUint32(off + OFF_CRC, false);
}
/** The total stream length carried in an END record's body (`off` = start of the record). */
export function readEndTotal(dv: DataView, off: number): number {
  return dv.getUint32(off + RECORD_HEADER, false) * TWO32 + dv.getUint32(off + RECORD_HEADER + 4, false);
}

/** A CRC-32 as eight hex digits, as messages show it. */
export function hex(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}

export { crc32, crc32Combine, crc32CombineFast, Crc32Shift } from "./crc32";
