// Compressor Worker: claims queued chunks from the pool's shared buffer, writes each one's
// complete record (CRC, then LZ4 or RAW body) and wakes the main thread through its eventfd
// when it waits for that chunk.
import { addressOf, libc, signalEventFd } from "../../ffi/libc";
import { loadLz4, type Lz4 } from "../../ffi/lz4";
import { fromFfi, L2Error } from "../errors";
import {
  CTL_CLAIMED, CTL_HEAD, CTL_STOP, CTL_STREAK, CTL_SUBMITTED, CTL_WANT, PROBE_EVERY, SKIP_AFTER, SLOT_DONE, shrankEnough,
  type PoolLayout,
} from "../compress-pool";
import { KIND_LZ4, KIND_RAW, RECORD_HEADER, writeHeader } from "../record";

declare var self: Worker;

interface Init {
  sab: SharedArrayBuffer;
  layout: PoolLayout;
  wakeFd: number;
  index: number;
}

self.onmessage = (ev: MessageEvent) => {
  self.onmessage = null;
  const init = ev.data as Init;
  let lz4: Lz4;
  try {
    libc(); // open libc now, while the pool is starting workers one at a time
    lz4 = loadLz4();
  } catch (e) {
    const f = fromFfi(e);
    const err = f instanceof L2Error ? f : new L2Error(String(e));
    postMessage({ type: "error", message: err.message, exitCode: err.exitCode });
    return;
  }
  postMessage({ type: "ready" });
  run(init, lz4);
  process.exit(0);
};

function run({ sab, layout: L, wakeFd, index }: Init, lz4: Lz4): void {
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

    // Once chunks keep coming out incompressible, stop paying for lz4 except on probe chunks.
    const streak = Atomics.load(ctl, CTL_STREAK);
    const skip = streak >= SKIP_AFTER && seq % PROBE_EVERY !== 0;
    let enc = 0;
    if (!skip && rawLen > 0) {
      // Capacity rawLen - 1: lz4 gives up (returns 0) as soon as the chunk cannot shrink.
      enc = lz4.compress(base + inOff, rawLen, base + outOff + RECORD_HEADER, rawLen - 1, 1);
      // Small savings count as incompressible for the skip heuristic (still sent as LZ4).
      if (!shrankEnough(enc, rawLen)) {
        if (streak < 0x7fff_0000) Atomics.add(ctl, CTL_STREAK, 1);
      } else if (streak !== 0) {
        Atomics.store(ctl, CTL_STREAK, 0);
      }
    }
    if (enc > 0) {
      writeHeader(dv, outOff, KIND_LZ4, rawLen, enc, crc);
      ctl[L.recKind + slot] = 1;
      ctl[L.recLen + slot] = RECORD_HEADER + enc;
    } else {
      writeHeader(dv, inOff - RECORD_HEADER, KIND_RAW, rawLen, rawLen, crc);
      ctl[L.recKind + slot] = 0;
      ctl[L.recLen + slot] = RECORD_HEADER + rawLen;
    }
    ctl[L.skipped + slot] = skip ? 1 : 0;
    busy[L.busy + index] += performance.now() - t0;
    Atomics.store(ctl, L.state + slot, SLOT_DONE);
    // Wake the main thread only if it is waiting for exactly this chunk (see compress-pool.ts).
    if (Atomics.load(ctl, CTL_HEAD) === seq && Atomics.compareExchange(ctl, CTL_WANT, 1, 0) === 1 && wakeFd >= 0) {
      signalEventFd(wakeFd);
    }
  }
}
