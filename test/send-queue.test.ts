// The send-queue sizer: SO_SNDBUF follows the link's drain rate, within its bounds.
import { expect, test } from "bun:test";
import { SendQueueSizer, QUEUE_MS, frameTruesize } from "../src/shell/send-queue";
import type { PacketSocket } from "../src/shell/packet-socket";

class FakeSocket {
  bytesSent = 0;
  queueFull = 0;
  asked: number[] = [];
  setSendBuffer(b: number): number {
    this.asked.push(b);
    return 2 * b;
  }
}

function drive(sizer: SendQueueSizer, sock: FakeSocket, bytesPerSec: number, ms: number, from = 0): number {
  for (let t = from; t <= from + ms; t += 10) {
    sock.bytesSent += (bytesPerSec * 10) / 1000;
    sizer.update(t);
  }
  return from + ms;
}

const limits = { minBytes: 128 << 10, maxBytes: 4 << 20 };

test("a 1 Gbit link at MTU 9000 gets about QUEUE_MS of frames", () => {
  const sock = new FakeSocket();
  const s = new SendQueueSizer(sock as unknown as PacketSocket, 9014, 1000, limits, 512 << 10);
  expect(sock.asked).toEqual([512 << 10]);
  drive(s, sock, 125e6, 500);
  const frames = (125e6 * QUEUE_MS) / 1000 / 9014;
  expect(s.bytes).toBeGreaterThan((0.8 * frames * frameTruesize(9014)) / 2);
  expect(s.bytes).toBeLessThan((1.25 * frames * frameTruesize(9014)) / 2);
});

test("a slow link keeps a small queue; the size follows the rate down and up", () => {
  const sock = new FakeSocket();
  const s = new SendQueueSizer(sock as unknown as PacketSocket, 9014, 1000, limits, 512 << 10);
  let t = drive(s, sock, 7.5e6, 500); // 60 Mbit: ~21 frames of 9014 bytes in 25 ms
  expect(s.bytes).toBeLessThan(160 << 10);
  t = drive(s, sock, 250e6, 500, t + 10);
  expect(s.bytes).toBe(limits.maxBytes);
  drive(s, sock, 7.5e6, 500, t + 10);
  expect(s.bytes).toBeLessThan(160 << 10);
});

test("never more frames than the device queue holds; backs off after ENOBUFS", () => {
  const sock = new FakeSocket();
  const s = new SendQueueSizer(sock as unknown as PacketSocket, 1514, 100, limits, 512 << 10);
  const ceiling = (0.8 * 100 * frameTruesize(1514)) / 2;
  expect(s.bytes).toBeLessThanOrEqual(Math.max(limits.minBytes, ceiling));
  const big = new FakeSocket();
  const b = new SendQueueSizer(big as unknown as PacketSocket, 1514, 10000, limits, 512 << 10);
  let t = drive(b, big, 250e6, 300);
  const before = b.bytes;
  expect(before).toBeGreaterThan(1 << 20);
  big.queueFull++;
  t = drive(b, big, 250e6, 300, t + 10);
  expect(b.bytes).toBeLessThanOrEqual(before * 0.75 + 1);
  expect(b.bytes).toBeGreaterThanOrEqual(limits.minBytes);
});

test("an idle link keeps its size", () => {
  const sock = new FakeSocket();
  const s = new SendQueueSizer(sock as unknown as PacketSocket, 9014, 1000, limits, 512 << 10);
  drive(s, sock, 0, 500);
  expect(sock.asked).toEqual([512 << 10]);
});
