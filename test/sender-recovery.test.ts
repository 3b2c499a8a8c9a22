// SenderCore's RTT and loss arithmetic (RFC 9002 sections 5 and 6), driven through onAck with
// a clock the test sets: one link, frames sent at chosen times, ACKs of chosen packet numbers.
import { describe, expect, test } from "bun:test";
import { Phase, SenderCore } from "../src/core/sender";
import { defaultTiming } from "../src/core/timing";

const MTU = 9000;

/** A sender with one link up and in the transfer phase at time 0, with a large stream to send. */
function startedSender(): SenderCore {
  const core = new SenderCore({ linkCount: 1, mtus: [MTU], weights: null, ringSize: 1 << 30, maxCwnd: 1 << 30, timing: defaultTiming(), now: 0 });
  expect(core.onHelloAck(0, 0, MTU, 1, 1 << 30)).toBe(true);
  core.tick(0, () => "eth0");
  expect(core.phase).toBe(Phase.Transfer);
  core.appended = 1 << 30;
  return core;
}

/** Sends one DATA frame at `now`; returns its packet number. */
function send(core: SenderCore, now: number): number {
  expect(core.pollData(0, now)).toBe(true);
  return core.tx.pn;
}

/** Acknowledges the packet numbers lo..hi (one range) at `now`. */
function ack(core: SenderCore, now: number, lo: number, hi: number, ackDelayMs = 0): void {
  core.onAck(0, now, 0, 1 << 30, ackDelayMs, 1, (_i, high) => (high ? hi : lo));
}

describe("time-threshold loss", () => {
  test("the loss delay follows the latest RTT when it exceeds the smoothed one (max(latest_rtt, smoothed_rtt))", () => {
    const core = startedSender();
    const l = core.links[0]!;
    let t = 0;
    // Ten round trips of 10 ms: srtt settles at 10.
    for (let i = 0; i < 10; i++) {
      const pn = send(core, t);
      t += 10;
      ack(core, t, pn, pn);
    }
    expect(l.srtt).toBeCloseTo(10, 6);
    // Then the path slows to 100 ms: A and B are sent 1 ms apart, B's ACK comes 100 ms after it.
    send(core, t); // A
    const b = send(core, t + 1);
    ack(core, t + 101, b, b);
    // srtt only moved to 21.25 (9/8 of it: 23.9 ms), but A, 101 ms old, is not overdue against
    // the latest sample of 100 ms (9/8: 112.5 ms): it is still in flight, nothing was lost.
    expect(l.srtt).toBeCloseTo(0.875 * 10 + 0.125 * 100, 6);
    expect(l.framesLost).toBe(0);
    expect(l.packetsInFlight).toBe(1);
    // Past 9/8 of the latest RTT it is.
    core.tick(t + 112.4, () => "eth0");
    expect(l.framesLost).toBe(0);
    core.tick(t + 112.6, () => "eth0");
    expect(l.framesLost).toBe(1);
  });
});
