// Compressor Worker: claims queued chunks from the pool's shared buffer, writes each one's
// complete record (CRC, then an LZ4 or ZSTD body with the codec the main thread set in CTL_CODEC,
// or RAW) and wakes the main thread through its eventfd when it waits for that chunk.
import { addressOf, libc, signalEventFd } from "../../ffi/libc";
import { loadLz4 } from "../../ffi/lz4";
import { loadZstd } from "../../ffi/zstd";
import { fromFfi, L2Error } from "../errors";
import { Encoder, recordKind } from "../codec";
import {
  CTL_CLAIMED, CTL_CODEC, CTL_HEAD, CTL_STOP, CTL_STREAK, CTL_SUBMITTED, CTL_WANT, PROBE_EVERY, SKIP_AFTER, SLOT_DONE, shrankEnough,
  type WorkerInit,
} from "./compress-pool";
import { KIND_RAW, RECORD_HEADER, writeHeader } from "../record";

declare var self: Worker;

self.onmessage = (ev: MessageEvent) => {
  self.onmessage = null;
  const init = ev.data as WorkerInit;
  let encoder: Encoder;
  try {
    libc(); // open libc now, while the pool is starting workers one at a time
    encoder = new Encoder(init.lz4 ? loadLz4() : null, init.zstd ? loadZstd() : null);
  } catch (e) {
    const f = fromFfi(e);
    const err = f instanceof L2Error ? f : new L2Error(String(e));
    postMessage({ type: "error", message: err.message, exitCode: err.exitCode });
    return;
  }
  postMessage({ type: "ready" });
  run(init, encoder);
  process.exit(0);
};

function run({ sab, layout: L, wakeFd, index }: WorkerInit, encoder: Encoder): void {
  const ctl = new Int32Array(sab);
  const busy = new Float64Array(sab);
  const u8 = new Uint8Array(sab);
  const dv = new DataView(sab);
  const base = addressOf(u8);
  // Views made once: the CRC needs a Uint8Array, and per-chunk subarrays would allocate.
  const inputs: Uint8Array[] = [];
  for (let s = 0; s < L.slots; s++) inputs.push(u8.subarray(L.inBase + s * L.inStride, L.inBase + s * L.inStride + L.chunkSize));

  for (;;) {
    if (Atomics.load(ctl, CTL_STOP) !== 0) return;
    const seq = Atomics.load(ctl, CTL_CLAIMED);
    const sub = Atomics.load(ctl, CTL_SUBMITTED);
    if (seq === sub) {
      Atomics.wait(ctl, CTL_SUBMITTED, sub);
      continue;
    }
    if (Atomics.compareExchange(ctl, CTL_CLAIMED, seq, (seq + 1) % L.wrap) !== seq) continue;
    const slot = Atomics.load(ctl, L.queue + (seq % L.slots));
    const t0 = performance.now();

    const rawLen = ctl[L.rawLen + slot]!;
    const inOff = L.inBase + slot * L.inStride;
    const outOff = L.outBase + slot * L.outStride;
    const input = rawLen === L.chunkSize ? inputs[slot]! : inputs[slot]!.subarray(0, rawLen);
    const crc = Bun.hash.crc32(input);

    // Once chunks keep coming out incompressible, stop paying for compression except on probe chunks.
    const streak = Atomics.load(ctl, CTL_STREAK);
    const skip = streak >= SKIP_AFTER && seq % PROBE_EVERY !== 0;
    const word = Atomics.load(ctl, CTL_CODEC);
    let enc = 0;
    if (!skip && rawLen > 0) {
      // Capacity rawLen - 1: the codec gives up (0) as soon as the chunk cannot shrink.
      enc = encoder.encode(word, base + inOff, rawLen, base + outOff + RECORD_HEADER, rawLen - 1);
      // Small savings count as incompressible for the skip heuristic (still sent compressed).
      if (!shrankEnough(enc, rawLen)) {
        if (streak < 0x7fff_0000) Atomics.add(ctl, CTL_STREAK, 1);
      } else if (streak !== 0) {
        Atomics.store(ctl, CTL_STREAK, 0);
      }
    }
    if (enc > 0) {
      writeHeader(dv, outOff, recordKind(word), rawLen, enc, crc);
      ctl[L.recKind + slot] = 1;
      ctl[L.recLen + slot] = RECORD_HEADER + enc;
    } else {
      writeHeader(dv, inOff - RECORD_HEADER, KIND_RAW, rawLen, rawLen, crc);
      ctl[L.recKind + slot] = 0;
      ctl[L.recLen + slot] = RECORD_HEADER + rawLen;
    }
    ctl[L.skipped + slot] = skip ? 1 : 0;
    ctl[L.codec + slot] = word;
    busy[L.busy + index] += performance.now() - t0;
    Atomics.store(ctl, L.state + slot, SLOT_DONE);
    // Wake the main thread only if it is waiting for exactly this chunk (see compress-pool.ts).
    if (Atomics.load(ctl, CTL_HEAD) === seq && Atomics.compareExchange(ctl, CTL_WANT, 1, 0) === 1 && wakeFd >= 0) {
      signalEventFd(wakeFd);
    }
  }
}
