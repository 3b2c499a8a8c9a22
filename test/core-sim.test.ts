// The protocol cores in a simulated network: every scenario must end exact or fail loudly.
import { describe, expect, test } from "bun:test";
import { simulate, type SimLink } from "./support/sim-net";
import { Phase } from "../src/core/sender";
import { RxPhase } from "../src/core/receiver";

const GBIT = 125_000; // bytes per ms
const link = (over: Partial<SimLink> = {}): SimLink => ({ rate: GBIT, delayMs: 0.05, mtu: 9000, ...over });

function expectExact(r: ReturnType<typeof simulate>, bytes: number) {
  expect(r.senderFailure).toBeNull();
  expect(r.receiverFailure).toBeNull();
  expect(r.corruptBytes).toBe(0);
  expect(r.consumed).toBe(bytes);
  expect(r.senderPhase).toBe(Phase.Done);
  expect(r.receiverPhase).toBe(RxPhase.Done);
}

describe("clean links", () => {
  test("one link, 8 MiB", () => {
    const r = simulate({ seed: 1, links: [link()], streamBytes: 8 << 20, ringSize: 4 << 20 });
    expectExact(r, 8 << 20);
    // 8 MiB at 1 Gbit/s is ~67 ms of wire time: allow protocol overhead, not stalls.
    expect(r.deliveredMs).toBeLessThan(100);
  });
  test("empty stream and one byte", () => {
    expectExact(simulate({ seed: 2, links: [link()], streamBytes: 0, ringSize: 1 << 20 }), 0);
    expectExact(simulate({ seed: 3, links: [link()], streamBytes: 1, ringSize: 1 << 20 }), 1);
  });
  test("ten links of mixed MTU, permuted devices", () => {
    const links = Array.from({ length: 10 }, (_, i) => link({ mtu: i % 2 ? 1500 : 9000, rate: GBIT / 4 }));
    const r = simulate({
      seed: 4, links, streamBytes: 16 << 20, ringSize: 8 << 20,
      devicePermutation: [3, 1, 4, 0, 5, 9, 2, 6, 8, 7],
    });
    expectExact(r, 16 << 20);
    for (const f of r.framesSent) expect(f).toBeGreaterThan(0);
  });
});

describe("faults", () => {
  const MiB = 1 << 20;
  for (const loss of [0.001, 0.01, 0.05]) {
    test(`loss ${loss * 100}% on data and acks`, () => {
      const r = simulate({ seed: 10, links: [link({ loss, ackLoss: loss }), link({ loss })], streamBytes: 8 * MiB, ringSize: 4 * MiB });
      expectExact(r, 8 * MiB);
      expect(r.retransmitted).toBeGreaterThan(0);
    });
  }
  test("duplication 5% and reordering 20%", () => {
    const r = simulate({
      seed: 11, links: [link({ dup: 0.05, reorder: 0.2, reorderMs: 0.3 }), link({ rate: GBIT / 2, dup: 0.05 })],
      streamBytes: 8 * MiB, ringSize: 4 * MiB,
    });
    expectExact(r, 8 * MiB);
    expect(r.duplicatesSeen).toBeGreaterThan(0);
  });
  test("delay 10 ms", () => {
    const r = simulate({ seed: 12, links: [link({ delayMs: 10 })], streamBytes: 8 * MiB, ringSize: 8 * MiB });
    expectExact(r, 8 * MiB);
  });
  test("unequal links: pull scheduling gives the fast link more", () => {
    const r = simulate({ seed: 13, links: [link({ rate: GBIT / 5 }), link({ rate: GBIT })], streamBytes: 24 * MiB, ringSize: 8 * MiB });
    expectExact(r, 24 * MiB);
    expect(r.bytesSent[1] / r.bytesSent[0]).toBeGreaterThan(3);
    // 24 MiB over 1.2 Gbit/s: ~168 ms at full use of both.
    expect(r.deliveredMs).toBeLessThan(168 / 0.85);
  });
  test("weights -a 1.2 share the stream 1:2", () => {
    const r = simulate({ seed: 14, links: [link(), link()], weights: [1, 2], streamBytes: 24 * MiB, ringSize: 8 * MiB });
    expectExact(r, 24 * MiB);
    const share = r.bytesSent[1] / r.bytesSent[0];
    expect(share).toBeGreaterThan(1.8);
    expect(share).toBeLessThan(2.2);
  });
  test("a link that dies mid-transfer: the rest carry on", () => {
    const r = simulate({
      seed: 15, links: [link({ rate: GBIT / 4 }), link({ rate: GBIT / 4, dead: [[100, Infinity]] }), link({ rate: GBIT / 4 })],
      streamBytes: 32 * MiB, ringSize: 8 * MiB,
    });
    expectExact(r, 32 * MiB);
  });
  test("a link that blacks out for 3 s comes back into use", () => {
    const r = simulate({
      seed: 16, links: [link({ rate: GBIT / 40 }), link({ rate: GBIT / 40, dead: [[200, 3200]] })],
      streamBytes: 32 * MiB, ringSize: 8 * MiB,
    });
    expectExact(r, 32 * MiB);
    expect(r.framesSent[1]).toBeGreaterThan(r.framesSent[0] / 4);
  });
  test("all links dead: both sides fail within the timeout", () => {
    const r = simulate({
      seed: 17, links: [link({ rate: GBIT / 40, dead: [[200, Infinity]] })], streamBytes: 64 * MiB, ringSize: 8 * MiB,
      timing: { peerTimeoutMs: 2000 }, maxMs: 10_000,
    });
    expect(r.senderPhase).toBe(Phase.Failed);
    expect(r.receiverPhase).toBe(RxPhase.Failed);
    expect(r.senderFailure).toContain("receiver lost");
    expect(r.receiverFailure).toContain("sender lost");
    expect(r.endMs).toBeLessThan(200 + 2000 + 2000);
    expect(r.corruptBytes).toBe(0);
  });
  test("a stalled then slow reader: flow control, nothing lost, few retransmissions", () => {
    const r = simulate({ seed: 18, links: [link()], streamBytes: 16 * MiB, ringSize: 2 * MiB, readerRate: 10_000 });
    expectExact(r, 16 * MiB);
    expect(r.retransmitted).toBeLessThan(50);
  });
  test("sender killed: receiver fails, output is a prefix", () => {
    const r = simulate({ seed: 19, links: [link({ rate: GBIT / 40 })], streamBytes: 64 * MiB, ringSize: 8 * MiB, senderDiesAt: 300, timing: { peerTimeoutMs: 1000 }, maxMs: 5000 });
    expect(r.receiverPhase).toBe(RxPhase.Failed);
    expect(r.corruptBytes).toBe(0);
  });
  test("receiver killed: sender fails", () => {
    const r = simulate({ seed: 20, links: [link({ rate: GBIT / 40 })], streamBytes: 64 * MiB, ringSize: 8 * MiB, receiverDiesAt: 300, timing: { peerTimeoutMs: 1000 }, maxMs: 5000 });
    expect(r.senderPhase).toBe(Phase.Failed);
    expect(r.senderFailure).toContain("receiver lost");
  });
  test("a byte damaged past the frame checks: the stream CRC in DONE makes the sender fail", () => {
    const bytes = 4 * MiB;
    const r = simulate({ seed: 21, links: [link(), link()], streamBytes: bytes, ringSize: 2 * MiB, damageAt: 3 * MiB + 5 });
    expect(r.corruptBytes).toBe(1);
    expect(r.consumed).toBe(bytes);
    expect(r.receiverFailure).toBeNull();
    expect(r.senderPhase).toBe(Phase.Failed);
    expect(r.senderFailure).toMatch(new RegExp(`^receiver wrote ${bytes} bytes with CRC-32 [0-9a-f]{8}, but ${bytes} bytes with CRC-32 [0-9a-f]{8} were sent$`));
  });
});

describe("path MTU", () => {
  const MiB = 1 << 20;
  test("jumbo frames the path never carried: DATA starts at the size that gets through, said once", () => {
    const r = simulate({ seed: 40, links: [link({ pathMtu: [[0, 1500]] })], streamBytes: 8 * MiB, ringSize: 4 * MiB });
    expectExact(r, 8 * MiB);
    expect(r.payloadSizes[0]).toEqual([1470]);
    expect(r.events.map((e) => e.change)).toEqual([{ from: 9000, to: 1500, ceiling: 9000, midTransfer: false }]);
    // Found within a few round trips, not seconds.
    expect(r.events[0]!.at).toBeLessThan(100);
  });
  test("a size black-holed on one link mid-stream: that link moves to a smaller size, the stream stays exact", () => {
    const slow = GBIT / 10;
    const r = simulate({
      seed: 41, links: [link({ rate: slow, pathMtu: [[150, 4000]] }), link({ rate: slow })],
      streamBytes: 24 * MiB, ringSize: 8 * MiB,
    });
    expectExact(r, 24 * MiB);
    expect(r.payloadSizes).toEqual([[8970, 3970], [8970]]);
    expect(r.events.map((e) => ({ link: e.link, ...e.change }))).toEqual([{ link: 0, from: 9000, to: 4000, ceiling: 9000, midTransfer: true }]);
    expect(r.events[0]!.at).toBeLessThan(150 + 1500);
  });
  test("the only link black-holed mid-stream: the stream goes on at the smaller size", () => {
    const r = simulate({ seed: 42, links: [link({ rate: GBIT / 10, pathMtu: [[100, 1500]] })], streamBytes: 16 * MiB, ringSize: 8 * MiB });
    expectExact(r, 16 * MiB);
    expect(r.payloadSizes[0]).toEqual([8970, 1470]);
  });
  test("a size that comes back is used again after the raise timer", () => {
    const r = simulate({
      seed: 43, links: [link({ rate: GBIT / 100, pathMtu: [[0, 1500], [5_000, 9000]] })], streamBytes: 48 * MiB, ringSize: 8 * MiB, maxMs: 120_000,
    });
    expectExact(r, 48 * MiB);
    expect(r.payloadSizes[0]).toEqual([1470, 8970]);
    expect(r.events.map((e) => [e.change.from, e.change.to])).toEqual([[9000, 1500], [1500, 9000]]);
  });
  test("no DATA size gets through (a path of 400 bytes: acknowledgements pass, DATA of any size does not): the sender fails within the timeout, naming the cause", () => {
    const r = simulate({ seed: 44, links: [link({ pathMtu: [[50, 400]] })], streamBytes: 8 * MiB, ringSize: 4 * MiB, timing: { peerTimeoutMs: 2000 } });
    expect(r.senderFailure).toMatch(/^no progress for 2 s: .* drops DATA frames$/);
    expect(r.senderEndMs).toBeGreaterThan(2000);
    expect(r.senderEndMs).toBeLessThan(2000 + 1000);
  });
});
