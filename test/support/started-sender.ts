// A SenderCore with one link up (its path proven, its RTT as on a fresh link) in the transfer
// phase at time 0, for tests that drive it by hand.

import { expect } from "bun:test";
import { Phase, SenderCore, SenderLink } from "../../src/core/sender";
import { defaultTiming } from "../../src/core/timing";
import { provePaths } from "./prove-paths";

/** `window`: the receiver's flow-control limit its HELLO_ACK gives; `mtu` one per link. */
export function startedSender(mtu: number | number[], ringSize = 1 << 30, window = 1 << 30): SenderCore {
  const mtus = typeof mtu === "number" ? [mtu] : mtu;
  const core = new SenderCore({ linkCount: mtus.length, mtus, weights: null, ringSize, maxCwnd: 1 << 30, timing: defaultTiming(), now: 0 });
  mtus.forEach((m, i) => expect(core.onHelloAck(i, 0, m, 1, window)).toBe(true));
  // The path probes' round trip is no part of what these tests measure: forget its sample.
  provePaths(core, 0);
  mtus.forEach((m, i) => {
    const l = core.inspectLink(i);
    const fresh = new SenderLink(i, m, 1);
    [l.srtt, l.rttvar, l.minRtt, l.latestRtt, l.hasRtt] = [fresh.srtt, fresh.rttvar, fresh.minRtt, fresh.latestRtt, fresh.hasRtt];
  });
  core.tick(0);
  expect(core.phase).toBe(Phase.Transfer);
  return core;
}
