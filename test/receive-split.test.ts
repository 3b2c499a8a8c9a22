// Real-kernel test of receiving DATA frames straight into the reassembly ring
// (Link.receiveSplit over PacketSocket.recvSplit) on a veth pair between throwaway namespaces.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { addressOf } from "../ffi/libc";
import { lookupDevice } from "../src/shell/device";
import { Link } from "../src/shell/links";
import { PacketSocket } from "../src/shell/packet-socket";
import { DATA_HEADER, ETH_HEADER, FrameCrc, OFF_DATA_OFFSET, dataPayloadMax, readU64 } from "../src/wire";
import { cleanupAll, createTopology, inNamespace, type Topology } from "./support/netns";

let topo: Topology;
let tx: Link;
let rx: Link;
const MTU = 9000;
const STRIDE = dataPayloadMax(MTU);
// The sender's stream: 64 frames' worth of random bytes.
const source = new Uint8Array(64 * STRIDE);
crypto.getRandomValues(source.subarray(0, 65536));
for (let i = 65536; i < source.length; i += 65536) source.copyWithin(i, 0, 65536);
for (let i = 0; i < source.length; i += 4096) source[i] = i / 4096; // no two frames alike
const sourcePtr = addressOf(source);
const sourceCrc = new FrameCrc(source);

beforeAll(async () => {
  topo = await createTopology([{ mtu: MTU }]);
  const open = (ns: string, name: string, i: number) =>
    inNamespace(ns, () => {
      const d = lookupDevice(name);
      return new Link(i, d, PacketSocket.open(d, { batch: 64, maxFrame: d.mtu + ETH_HEADER, rcvBuf: 16 << 20, sndBuf: 16 << 20 }));
    });
  tx = open(topo.nsA, topo.devsA[0]!, 0);
  rx = open(topo.nsB, topo.devsB[0]!, 0);
  tx.setPeer(rx.device.mac, 0);
});

afterAll(async () => {
  tx?.socket.close();
  rx?.socket.close();
  await cleanupAll();
});

/** Sends DATA frames for stream offsets base + k * STRIDE, k in order, payload from source. */
function send(base: number, order: number[]): void {
  for (const k of order) {
    expect(tx.sendData(1, 0, k, base + k * STRIDE, source, sourceCrc, k * STRIDE, sourcePtr, STRIDE)).toBe(true);
  }
  while (tx.socket.txPending() > 0) tx.socket.flush();
}

async function receive(want: number, expect0: number, ringPos: number, ring: Uint8Array) {
  const got: { offset: number; len: number; inPlace: boolean; payload: Uint8Array }[] = [];
  const placed: boolean[] = [];
  const deadline = performance.now() + 2000;
  while (got.length < want && performance.now() < deadline) {
    // Each batch is expected to go on where the frames so far left off.
    const done = got.length;
    const n = rx.receiveSplit(ring, addressOf(ring), ringPos + done * STRIDE, STRIDE, expect0 + done * STRIDE, (base, len, inPlace) => {
      const offset = readU64(rx.socket.rxView, base + OFF_DATA_OFFSET);
      const payload = inPlace
        ? ring.slice(ringPos + (offset - expect0), ringPos + (offset - expect0) + len - DATA_HEADER)
        : rx.socket.rx.slice(base + DATA_HEADER, base + len);
      got.push({ offset, len, inPlace, payload });
    });
    if (n > 0) placed.push(rx.splitPlaced);
    else await Bun.sleep(1);
  }
  return { got, placed };
}

test("frames in order land in the ring where they belong", async () => {
  const ring = new Uint8Array(2 << 20);
  send(5_000_000, [0, 1, 2, 3, 4, 5, 6, 7]);
  const { got, placed } = await receive(8, 5_000_000, 4096, ring);
  expect(got.length).toBe(8);
  expect(placed.every(Boolean)).toBe(true);
  for (const [k, f] of got.entries()) {
    expect(f.inPlace).toBe(true);
    expect(f.offset).toBe(5_000_000 + k * STRIDE);
    expect(Bun.hash.crc32(f.payload)).toBe(Bun.hash.crc32(source.subarray(k * STRIDE, (k + 1) * STRIDE)));
  }
});

test("frames out of order are moved back behind their headers and still verified", async () => {
  const ring = new Uint8Array(2 << 20);
  const order = [1, 0, 3, 2, 5, 4];
  send(9_000_000, order);
  const { got, placed } = await receive(6, 9_000_000, 4096, ring);
  expect(got.length).toBe(6);
  expect(placed.some(Boolean)).toBe(false);
  for (const [i, f] of got.entries()) {
    const k = order[i]!;
    expect(f.inPlace).toBe(false);
    expect(f.offset).toBe(9_000_000 + k * STRIDE);
    expect(f.len).toBe(DATA_HEADER + STRIDE);
    expect(Bun.hash.crc32(f.payload)).toBe(Bun.hash.crc32(source.subarray(k * STRIDE, (k + 1) * STRIDE)));
  }
});

test("a stream one frame off what was expected: not placed, and storing frames as they come clobbers nothing", async () => {
  const ring = new Uint8Array(2 << 20);
  const base = 7_000_000;
  const expected = base - STRIDE; // each frame belongs where the next one landed
  send(base, [0, 1, 2, 3]);
  const bad = rx.badFrames;
  const offsets: number[] = [];
  const deadline = performance.now() + 2000;
  let first = -1;
  while (offsets.length < 4 && performance.now() < deadline) {
    const n = rx.receiveSplit(ring, addressOf(ring), 0, STRIDE, expected, (b, len, inPlace) => {
      expect(inPlace).toBe(false);
      const offset = readU64(rx.socket.rxView, b + OFF_DATA_OFFSET);
      offsets.push(offset);
      // As the receiver does: copy the payload to where its offset belongs in the ring.
      ring.set(rx.socket.rx.subarray(b + DATA_HEADER, b + len), offset - expected);
    });
    if (n > 0 && first < 0) first = rx.splitPlaced ? 1 : 0;
    if (n === 0) await Bun.sleep(1);
  }
  expect(first).toBe(0);
  expect(rx.badFrames).toBe(bad);
  expect(offsets).toEqual([base, base + STRIDE, base + 2 * STRIDE, base + 3 * STRIDE]);
  expect(Bun.hash.crc32(ring.subarray(STRIDE, 5 * STRIDE))).toBe(Bun.hash.crc32(source.subarray(0, 4 * STRIDE)));
});

/** Sends DATA frames of the given payload lengths, one after the other in the stream from `base`. */
function sendRun(base: number, lens: number[], pnFrom: number): number {
  let at = 0;
  for (const [i, len] of lens.entries()) {
    expect(tx.sendData(1, 0, pnFrom + i, base + at, source, sourceCrc, at, sourcePtr, len)).toBe(true);
    at += len;
  }
  while (tx.socket.txPending() > 0) tx.socket.flush();
  return at;
}

/** Receives `want` frames as the receiver does: each batch where the stream so far left off. */
async function receiveRun(want: number, expect0: number, ringPos: number, ring: Uint8Array) {
  const got: { offset: number; len: number; inPlace: boolean }[] = [];
  const placed: boolean[] = [];
  let next = expect0;
  const deadline = performance.now() + 2000;
  while (got.length < want && performance.now() < deadline) {
    const n = rx.receiveSplit(ring, addressOf(ring), ringPos + (next - expect0), STRIDE, next, (base, len, inPlace) => {
      const offset = readU64(rx.socket.rxView, base + OFF_DATA_OFFSET);
      // As the receiver does: a frame not in place is copied to where it belongs.
      if (!inPlace) ring.set(rx.socket.rx.subarray(base + DATA_HEADER, base + len), ringPos + (offset - expect0));
      got.push({ offset, len, inPlace });
      next = Math.max(next, offset + len - DATA_HEADER);
    });
    if (n > 0) placed.push(rx.splitPlaced);
    else await Bun.sleep(1);
  }
  return { got, placed };
}

test("short frames within a run (the end of a sender's turn) are moved down into place", async () => {
  const ring = new Uint8Array(2 << 20);
  const lens = [STRIDE, STRIDE, 1000, STRIDE, STRIDE, 500, 77, STRIDE];
  const total = sendRun(11_000_000, lens, 100);
  const { got, placed } = await receiveRun(lens.length, 11_000_000, 4096, ring);
  expect(got.map((f) => f.len - DATA_HEADER)).toEqual(lens);
  expect(got.every((f) => f.inPlace)).toBe(true);
  expect(placed.every(Boolean)).toBe(true);
  expect(Bun.hash.crc32(ring.subarray(4096, 4096 + total))).toBe(Bun.hash.crc32(source.subarray(0, total)));
});

test("a run broken by a frame out of order: the frames before it in place, it and the rest handled as usual", async () => {
  const ring = new Uint8Array(2 << 20);
  const base = 13_000_000;
  const bad = rx.badFrames;
  // Stream offsets: [0, S) [S, S+1000) then [2S+1000, 3S+1000) ahead of [S+1000, 2S+1000).
  const S = STRIDE;
  const frames: [number, number][] = [[0, S], [S, 1000], [2 * S + 1000, S], [S + 1000, S]];
  for (const [i, [at, len]] of frames.entries()) expect(tx.sendData(1, 0, 200 + i, base + at, source, sourceCrc, at, sourcePtr, len)).toBe(true);
  while (tx.socket.txPending() > 0) tx.socket.flush();
  const { got, placed } = await receiveRun(4, base, 0, ring);
  expect(got.map((f) => [f.offset - base, f.len - DATA_HEADER])).toEqual(frames);
  expect(got.map((f) => f.inPlace)).toEqual([true, true, false, false]);
  expect(placed[0]).toBe(false);
  expect(rx.badFrames).toBe(bad);
  expect(Bun.hash.crc32(ring.subarray(0, 3 * S + 1000))).toBe(Bun.hash.crc32(source.subarray(0, 3 * S + 1000)));
});
