// SenderCore's RTT and loss arithmetic (RFC 9002 sections 5 and 6), driven through onAck with
// a clock the test sets: one link, frames sent at chosen times, ACKs of chosen packet numbers.
import { describe, expect, test } from "bun:test";
import { SenderCore } from "../src/core/sender";
import { startedSender as startedLink } from "./support/started-sender";

const MTU = 9000;

/** A sender with one link up and in the transfer phase at time 0, with a large stream to send. */
function startedSender(): SenderCore {
  const core = startedLink(MTU);
  core.streamAppended(1 << 30);
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

/** Steady round trips of `rtt` ms on a fresh link, from time 0; returns the time after them. */
function warmUp(core: SenderCore, rounds: number, rtt: number): number {
  let t = 0;
  for (let i = 0; i < rounds; i++) {
    const pn = send(core, t);
    t += rtt;
    ack(core, t, pn, pn);
  }
  return t;
}

describe("RTT samples", () => {
  test("first sample as measured, then ack delay taken off unless that goes below the minimum", () => {
    const core = startedSender();
    const l = core.inspectLink(0);
    const a = send(core, 0);
    ack(core, 10, a, a, 2); // the first sample is taken whole (RFC 9002 5.3)
    expect([l.srtt, l.rttvar, l.minRtt, l.latestRtt]).toEqual([10, 5, 10, 10]);
    const b = send(core, 10);
    ack(core, 30, b, b, 4); // 20 ms, 4 of them the receiver's delay: 16 counts
    expect(l.latestRtt).toBe(20);
    expect(l.rttvar).toBeCloseTo(0.75 * 5 + 0.25 * 6, 9);
    expect(l.srtt).toBeCloseTo(0.875 * 10 + 0.125 * 16, 9);
    const c = send(core, 30);
    ack(core, 41, c, c, 5); // 11 - 5 would be below the minimum of 10: 11 counts
    expect(l.rttvar).toBeCloseTo(0.75 * 5.25 + 0.25 * Math.abs(10.75 - 11), 9);
    expect(l.srtt).toBeCloseTo(0.875 * 10.75 + 0.125 * 11, 9);
    expect(l.minRtt).toBe(10);
    expect(l.pto()).toBeCloseTo(l.srtt + 4 * l.rttvar, 9);
  });

  test("only a newly acknowledged largest packet gives a sample, timed from its own sending", () => {
    const core = startedSender();
    const l = core.inspectLink(0);
    const a = send(core, 0);
    const b = send(core, 4);
    ack(core, 10, a, b); // b is the largest: 6 ms, not 10
    expect(l.srtt).toBe(6);
    ack(core, 50, a, b); // the same ACK again: nothing new, no sample
    expect(l.srtt).toBe(6);
    expect(l.latestRtt).toBe(6);
    const c = send(core, 50);
    const d = send(core, 51);
    ack(core, 60, d, d);
    ack(core, 70, c, d); // c newly acknowledged, but d (the largest) was already: no sample
    expect(l.latestRtt).toBe(9);
  });
});

describe("packet-threshold loss", () => {
  test("a packet three below the largest acknowledged is lost, its bytes resent first; the window halves", () => {
    const core = startedSender();
    const l = core.inspectLink(0);
    const t = warmUp(core, 1, 100); // RTT 100 ms: no packet below is old enough for the time threshold
    const pns = [0, 1, 2, 3, 4].map(() => send(core, t));
    // Where each frame's bytes lie: back to back after the warm-up frame, payloadMax bytes each.
    const offsets = pns.map((_, i) => (1 + i) * l.payloadMax);
    const cwndBefore = l.cwnd;
    ack(core, t + 10, pns[3]!, pns[3]!);
    expect(l.framesLost).toBe(1); // pns[0]: 3 below; pns[1] and pns[2] are not (yet)
    expect(l.packetsInFlight).toBe(3);
    expect(l.cwnd).toBeLessThan(cwndBefore);
    expect(l.ssthresh).toBe(l.cwnd);
    ack(core, t + 11, pns[4]!, pns[4]!);
    expect(l.framesLost).toBe(2); // now pns[1] is 3 below the largest
    expect(l.packetsInFlight).toBe(1);
    // Lost bytes go out again before new ones, lowest first.
    expect(core.pollData(0, t + 12)).toBe(true);
    expect(core.tx.retransmit).toBe(true);
    expect(core.tx.offset).toBe(offsets[0]);
    expect(core.pollData(0, t + 12)).toBe(true);
    expect(core.tx.retransmit).toBe(true);
    expect(core.tx.offset).toBe(offsets[1]);
    expect(core.pollData(0, t + 12)).toBe(true);
    expect(core.tx.retransmit).toBe(false);
    expect(core.tx.offset).toBe(6 * l.payloadMax);
  });
});

describe("time-threshold loss", () => {
  test("a packet below the largest acknowledged is lost once 9/8 of the RTT old", () => {
    const core = startedSender();
    const l = core.inspectLink(0);
    let t = warmUp(core, 20, 10); // srtt = latest RTT = 10: loss delay 11.25 ms
    send(core, t);
    const b = send(core, t + 5);
    ack(core, t + 15, b, b); // the first packet is 15 ms old: lost at once
    expect(l.framesLost).toBe(1);
    t += 100;
    send(core, t);
    const d = send(core, t + 1);
    ack(core, t + 11, d, d); // 11 ms old: not yet
    expect(l.framesLost).toBe(1);
    expect(core.nextTimeout(t + 11)).toBeCloseTo(t + 11.25, 9); // the loss timer is set for it
    core.tick(t + 11.2);
    expect(l.framesLost).toBe(1);
    core.tick(t + 11.25);
    expect(l.framesLost).toBe(2);
    expect(l.packetsInFlight).toBe(0);
  });

  test("the loss delay follows the latest RTT when it exceeds the smoothed one (max(latest_rtt, smoothed_rtt))", () => {
    const core = startedSender();
    const l = core.inspectLink(0);
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
    core.tick(t + 112.4);
    expect(l.framesLost).toBe(0);
    core.tick(t + 112.6);
    expect(l.framesLost).toBe(1);
  });
});
