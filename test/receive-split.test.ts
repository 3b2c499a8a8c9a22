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
