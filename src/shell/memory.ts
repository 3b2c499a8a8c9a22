// How much memory a run takes, decided once at start from the options and never grown.

import type { Options } from "../cli";

export interface MemoryPlan {
  /** Wire-stream ring: the sender's unacknowledged data, the receiver's reassembly window. */
  ringSize: number;
  chunkSize: number;
  /** Compressor slots (each holds one input chunk and its compressed record). */
  poolSlots: number;
  /** Sender: each link's send buffer at start, and the most it may grow to with the link's rate. */
  sndBuf: number;
  sndBufMax: number;
  /** Receiver: each link's receive ring (mapped, so part of RSS), which takes bursts of DATA
   * while the loop is busy elsewhere. The sender has none (a ring costs a grace period to set
   * up and one more to close, and saves nothing on a trickle of ACKs): its ACKs and control
   * frames queue in the socket, rcvBuf bytes. */
  rxRing: number;
  rcvBuf: number;
  /** Receiver: Workers that verify, decompress and write, in parallel and in turn. */
  outputWorkers: number;
}

function roundUp(n: number, unit: number): number {
  return Math.ceil(n / unit) * unit;
}

export function memoryPlan(opts: Options): MemoryPlan {
  const low = opts.lowMemory;
  const chunkSize = low ? 64 << 10 : 256 << 10;
  // The rings are the window, and every byte passes through them: a bigger ring is colder and
  // costs CPU on every byte (1 GiB over one veth, both sides: 1.60-1.82 CPU-s with 64 MiB,
  // 1.33-1.58 with 16; 1.66-1.77 with 16, 1.48-1.65 with 8). 8 MiB is 7 ms at 10 GbE, far more
  // than a LAN's round trip, but several links need more in flight: over 1 + 1.5 Gbit 8 MiB
  // moved 232 MB/s and 16 MiB 276, over 4 x 1 Gbit 378 and 434. So 8 MiB per device.
  let ringSize = low ? 8 << 20 : Math.min(64, 8 * opts.devices.length) << 20;
  // The receiver's tape buffer is its reassembly ring.
  if (opts.mode === "receive" && opts.bufferBytes > 0) ringSize = Math.max(ringSize, roundUp(opts.bufferBytes, 1 << 20));
  return {
    ringSize,
    chunkSize,
    poolSlots: Math.max(4, opts.compressors * (low ? 2 : 4)),
    sndBuf: low ? 256 << 10 : 512 << 10,
    sndBufMax: low ? 1 << 20 : 4 << 20,
    rxRing: opts.mode === "send" ? 0 : low ? 4 << 20 : 8 << 20,
    rcvBuf: opts.mode === "send" ? 4 << 20 : 0,
    outputWorkers: low ? 1 : 2,
  };
}
