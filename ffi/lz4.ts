// liblz4 block API through bun:ffi, loaded on first use so that uncompressed transfers (-0)
// work on hosts without liblz4. Each thread (main or Worker) that needs it calls loadLz4().
import { dlopen, FFIType, type Pointer } from "bun:ffi";
import { SystemError } from "./system-error";

export interface Lz4 {
  /** LZ4_compress_fast: bytes written to dst, 0 if it does not fit into dstCap. */
  compress(src: number, srcLen: number, dst: number, dstCap: number, acceleration: number): number;
  /** LZ4_decompress_safe: bytes written to dst, negative if the input is malformed or overruns dstCap. */
  decompress(src: number, srcLen: number, dst: number, dstCap: number): number;
  /** LZ4_compressBound. */
  bound(n: number): number;
}

/** LZ4_COMPRESSBOUND from lz4.h, for sizing buffers without loading the library. */
export function lz4Bound(n: number): number {
  return n + Math.floor(n / 255) + 16;
}

let loaded: Lz4 | null = null;

export function loadLz4(): Lz4 {
  if (loaded) return loaded;
  const path = process.env.L2PIPE_LZ4_LIB || "liblz4.so.1";
  let lib;
  try {
    // Pointers are passed as plain numbers and sizes declared i32: both keep calls at ~3 ns.
    lib = dlopen(path, {
      LZ4_compress_fast: {
        args: [FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.i32, FFIType.i32],
        returns: FFIType.i32,
      },
      LZ4_decompress_safe: {
        args: [FFIType.ptr, FFIType.ptr, FFIType.i32, FFIType.i32],
        returns: FFIType.i32,
      },
      LZ4_compressBound: { args: [FFIType.i32], returns: FFIType.i32 },
    });
  } catch (e) {
    // Bun says 'Failed to open library "P": P: <dlerror>'; keep just the dlerror part.
    const reason = (e instanceof Error ? e.message : String(e)).replace(/^Failed to open library "[^"]*": (?:[^:]*: )?/, "");
    throw new SystemError(
      `cannot load liblz4 (${path}: ${reason}): install liblz4-1 (e.g. apt-get install liblz4-1), or send uncompressed with -0`,
    );
  }
  const s = lib.symbols;
  const fastCompress = s.LZ4_compress_fast;
  const safeDecompress = s.LZ4_decompress_safe;
  const compressBound = s.LZ4_compressBound;
  loaded = {
    // Argument order follows memcpy-style (src, len, dst, cap); the C order differs.
    compress: (src, srcLen, dst, dstCap, acceleration) => fastCompress(src as Pointer, dst as Pointer, srcLen, dstCap, acceleration),
    decompress: (src, srcLen, dst, dstCap) => safeDecompress(src as Pointer, dst as Pointer, srcLen, dstCap),
    bound: (n) => compressBound(n),
  };
  return loaded;
}
