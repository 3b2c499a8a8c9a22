// libzstd's one-shot API through bun:ffi, loaded on first use like liblz4 (ffi/lz4.ts), so hosts
// without libzstd still run lz4 or uncompressed. Each chunk is an independent zstd frame; the
// contexts are made once per thread and reused, so compressing or decoding a chunk allocates nothing.
import { dlopen, FFIType, type Pointer } from "bun:ffi";
import { SystemError } from "./system-error";

export interface Zstd {
  /** A ZSTD_CCtx (kept for the thread's life; its workspace grows once to the largest level used). */
  createCCtx(): number;
  /** A ZSTD_DCtx. */
  createDCtx(): number;
  /** ZSTD_compressCCtx: bytes written to dst, or -1 when the frame does not fit into dstCap (or any other error). */
  compress(cctx: number, src: number, srcLen: number, dst: number, dstCap: number, level: number): number;
  /** ZSTD_decompressDCtx: bytes written to dst, or -1 for a malformed frame or one that overruns dstCap (see lastError). */
  decompress(dctx: number, src: number, srcLen: number, dst: number, dstCap: number): number;
  /** ZSTD_getErrorName of the last failed call on this thread. */
  lastError(): string;
}

/** ZSTD_COMPRESSBOUND from zstd.h, for sizing buffers without loading the library. */
export function zstdBound(n: number): number {
  return n + (n >>> 8) + (n < 128 << 10 ? ((128 << 10) - n) >>> 11 : 0);
}

/** Levels --compress zstd:LEVEL takes (zstd's negative and ultra levels are left out). */
export const ZSTD_MIN_LEVEL = 1;
export const ZSTD_MAX_LEVEL = 19;

let loaded: Zstd | null = null;

export function loadZstd(): Zstd {
  if (loaded) return loaded;
  const path = process.env.L2PIPE_ZSTD_LIB || "libzstd.so.1";
  let lib;
  try {
    // Pointers as plain numbers (cheap calls); size_t arguments as u64, results as u64_fast: a
    // number for every real size, a BigInt only for the error codes near 2^64 (ZSTD_isError).
    lib = dlopen(path, {
      ZSTD_createCCtx: { args: [], returns: FFIType.ptr },
      ZSTD_createDCtx: { args: [], returns: FFIType.ptr },
      ZSTD_compressCCtx: {
        args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.u64, FFIType.i32],
        returns: FFIType.u64_fast,
      },
      ZSTD_decompressDCtx: {
        args: [FFIType.ptr, FFIType.ptr, FFIType.u64, FFIType.ptr, FFIType.u64],
        returns: FFIType.u64_fast,
      },
      ZSTD_isError: { args: [FFIType.u64], returns: FFIType.u32 },
      ZSTD_getErrorName: { args: [FFIType.u64], returns: FFIType.cstring },
    });
  } catch (e) {
    // Bun says 'Failed to open library "P": P: <dlerror>'; keep just the dlerror part.
    const reason = (e instanceof Error ? e.message : String(e)).replace(/^Failed to open library "[^"]*": (?:[^:]*: )?/, "");
    throw new SystemError(
      `cannot load libzstd (${path}: ${reason}): install libzstd1 (e.g. apt-get install libzstd1), or use --compress lz4`,
    );
  }
  const s = lib.symbols;
  const isError = s.ZSTD_isError;
  const errorName = s.ZSTD_getErrorName;
  let lastCode: number | bigint = 0;
  // One check for both: a size_t result is an error exactly when ZSTD_isError says so.
  const result = (r: number | bigint): number => {
    if (isError(r) !== 0) {
      lastCode = r;
      return -1;
    }
    return Number(r);
  };
  const context = (p: unknown, what: string): number => {
    if (p === null) throw new SystemError(`${what} failed: out of memory`);
    return p as number;
  };
  loaded = {
    createCCtx: () => context(s.ZSTD_createCCtx(), "ZSTD_createCCtx"),
    createDCtx: () => context(s.ZSTD_createDCtx(), "ZSTD_createDCtx"),
    compress: (cctx, src, srcLen, dst, dstCap, level) =>
      result(s.ZSTD_compressCCtx(cctx as Pointer, dst as Pointer, dstCap, src as Pointer, srcLen, level)),
    decompress: (dctx, src, srcLen, dst, dstCap) =>
      result(s.ZSTD_decompressDCtx(dctx as Pointer, dst as Pointer, dstCap, src as Pointer, srcLen)),
    lastError: () => String(errorName(lastCode)),
  };
  return loaded;
}
