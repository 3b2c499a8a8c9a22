// A chunk codec as one small integer (the form the compressor Workers read from shared memory
// per chunk), its name, and the encoder the Workers and the sender's probes share.
import type { Lz4 } from "../ffi/lz4";
import { ZSTD_MAX_LEVEL, type Zstd } from "../ffi/zstd";
import { KIND_LZ4, KIND_ZSTD } from "./record";

/** 0 = lz4; 1..ZSTD_MAX_LEVEL = zstd at that level; -1 = none (the policy's bottom rung: chunks
 * go straight into the send ring, as with -0; never a word the Workers see). */
export type CodecWord = number;
export const CODEC_LZ4: CodecWord = 0;
export const CODEC_NONE: CodecWord = -1;
/** Size of arrays indexed by codec word. */
export const CODEC_WORDS = ZSTD_MAX_LEVEL + 1;

export function codecName(word: CodecWord): string {
  return word === CODEC_NONE ? "none" : word === CODEC_LZ4 ? "lz4" : `zstd-${word}`;
}

export function recordKind(word: CodecWord): number {
  return word === CODEC_LZ4 ? KIND_LZ4 : KIND_ZSTD;
}

/** Compresses chunks with whichever codec a word names; one per thread (it owns a zstd context). */
export class Encoder {
  private readonly cctx: number;

  constructor(
    private readonly lz4: Lz4 | null,
    private readonly zstd: Zstd | null,
  ) {
    this.cctx = zstd ? zstd.createCCtx() : 0;
  }

  /** Body bytes written to dst, or 0 when the chunk does not fit into dstCap (pass rawLen - 1: 0 = did not shrink). */
  encode(word: CodecWord, src: number, len: number, dst: number, dstCap: number): number {
    if (word === CODEC_LZ4) return this.lz4!.compress(src, len, dst, dstCap, 1);
    return Math.max(0, this.zstd!.compress(this.cctx, src, len, dst, dstCap, word));
  }
}
