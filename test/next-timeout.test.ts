// The cores' nextTimeout covers every timer: a shell that sleeps exactly until it (and sends
// what the core asks for when it wakes) sees each failure and each repeat at its time, without
// waking in between. Each test steps a core from one nextTimeout to the next.
import { describe, expect, test } from "bun:test";
import { ReceiverCore, RxPhase } from "../src/core/receiver";
import { Phase, SenderCore } from "../src/core/sender";
import { defaultTiming } from "../src/core/timing";
import { provePaths } from "./support/prove-paths";
import { MAX_SLEEP_MS, sleepMs } from "../src/shell/interrupts";

const MTU = 1500;
const MAC = new Uint8Array(6);

function sender(waitMs = 30_000): SenderCore {
  return new SenderCore({ linkCount: 1, mtus: [MTU], weights: null, ringSize: 1 << 20, maxCwnd: 1 << 20, timing: defaultTiming(5000, waitMs), now: 0 });
}

/** Packet numbers of the PINGs senderTurn sent, for a receiver that answers them. */
const pings: number[] = [];

/** One turn of a sender shell at `now`: tick, then send what is due (nothing arrives). */
function senderTurn(core: SenderCore, now: number): void {
  core.tick(now);
  if (core.helloDue(0, now)) core.onHelloSent(0, now);
  const ping = core.pollPing(0);
  if (ping >= 0) {
    pings.push(ping);
    core.onPingSent(0, now);
  }
  while (core.pollProbe(0)) core.onProbeSent(0, now);
  while (core.pollData(0, now));
}

/** Steps a sender from timeout to timeout until it fails or `until`; returns the steps taken. */
function stepSender(core: SenderCore, from: number, until: number, each?: (now: number) => void): { now: number; steps: number } {
  let now = from;
  let steps = 0;
  while (core.phase !== Phase.Failed && now < until && steps < 2000) {
    const next = core.nextTimeout(now);
    expect(next).toBeGreaterThanOrEqual(now);
    // Nothing left to wake for: a shell would sleep until a frame or a signal came.
    if (next === Infinity) break;
    now = next;
    each?.(now);
    senderTurn(core, now);
    steps++;
  }
  return { now, steps };
}

describe("SenderCore.nextTimeout", () => {
  test("the -w wait: HELLO repeats, then no-peer at its time", () => {
    const core = sender(1000);
    const { now, steps } = stepSender(core, 0, 10_000);
    expect(core.failure).toEqual({ kind: "no-peer", links: [0], waitedMs: 1000, busyLinks: [] });
    expect(now).toBe(1000);
    // A HELLO every 100 ms, nothing in between.
    expect(steps).toBe(11);
  });

  test("no -w: HELLOs every 100 ms, later every 500 ms, nothing else", () => {
    const core = sender(0);
    const { steps } = stepSender(core, 0, 10_000);
    expect(core.phase).toBe(Phase.Discover);
    expect(steps).toBeLessThanOrEqual(31 + 14 + 1);
  });

  test("a silent receiver: keepalive PINGs and probe timeouts, then peer-lost at its time", () => {
    const core = sender();
    expect(core.onHelloAck(0, 0, MTU, 1, 1 << 20)).toBe(true);
    provePaths(core, 0);
    core.streamAppended(1 << 16);
    const { now, steps } = stepSender(core, 0, 60_000);
    expect(core.failure).toEqual({ kind: "peer-lost", links: [0], ms: 5000 });
    expect(now).toBeCloseTo(5000, 6);
    expect(steps).toBeLessThan(200);
  });

  test("a receiver that acknowledges PINGs but no DATA: no-progress at its time", () => {
    const core = sender();
    expect(core.onHelloAck(0, 0, MTU, 1, 1 << 20)).toBe(true);
    provePaths(core, 0);
    core.tick(300);
    expect(core.phase).toBe(Phase.Transfer);
    core.streamAppended(1 << 16);
    pings.length = 0;
    // Its ACKs of the PINGs come 20 ms later (an ACK of a PING sent just now would make the
    // round trip, and so the probe timeout, as short as the steps).
    let answered = 300;
    const answer = (t: number) => {
      if (t - answered < 20) return;
      answered = t;
      core.onHeard(0, t);
      for (const pn of pings.splice(0)) core.onAck(0, t, core.ackedUpTo, core.limit, 0, 1, () => pn);
    };
    const { now, steps } = stepSender(core, 300, 60_000, answer);
    expect(core.failure?.kind).toBe("no-progress");
    expect(now).toBeCloseTo(5300, 6);
    expect(steps).toBeLessThan(500);
  });
});

describe("ReceiverCore.nextTimeout", () => {
  function receiver(waitMs = 30_000): ReceiverCore {
    return new ReceiverCore({ deviceCount: 1, ringSize: 1 << 20, timing: defaultTiming(5000, waitMs), now: 0 });
  }

  function stepReceiver(core: ReceiverCore, from: number, until: number): { now: number; steps: number; dones: number } {
    let now = from;
    let steps = 0;
    let dones = 0;
    while (core.phase !== RxPhase.Failed && core.phase !== RxPhase.Done && now < until && steps < 2000) {
      const next = core.nextTimeout(now);
      expect(next).toBeGreaterThanOrEqual(now);
      if (next === Infinity) break;
      now = next;
      core.tick(now);
      if (core.pollAck(0, now)) core.onAckSent(0, now);
      if (core.pollDone(0, now)) {
        core.onDoneSent(0, now);
        dones++;
      }
      steps++;
    }
    return { now, steps, dones };
  }

  test("the -w wait while listening: no-peer at its time, one wake-up", () => {
    const core = receiver(2000);
    const { steps } = stepReceiver(core, 0, 10_000);
    expect(core.failure).toEqual({ kind: "no-peer", links: [0], waitedMs: 2000, busyLinks: [] });
    expect(steps).toBe(1);
  });

  test("no -w: listening needs no timer", () => {
    expect(receiver(0).nextTimeout(5)).toBe(Infinity);
  });

  test("a sender gone silent after data: keepalive ACKs, then peer-lost at its time", () => {
    const core = receiver();
    expect(core.onHello(0, 0, 7, 0, MTU, MAC, 0)).toBe(true);
    core.onPing(0, 0, 0);
    const { now, steps } = stepReceiver(core, 0, 60_000);
    expect(core.failure).toEqual({ kind: "peer-lost", links: [0], ms: 5000 });
    expect(now).toBeCloseTo(5001, 6);
    expect(steps).toBeLessThan(60);
  });

  test("finishing: DONE every 50 ms until the linger ends, then done", () => {
    const core = receiver();
    expect(core.onHello(0, 0, 7, 0, MTU, MAC, 0)).toBe(true);
    core.onPing(0, 0, 0);
    core.finished(10, 0, 0);
    const { now, dones } = stepReceiver(core, 10, 60_000);
    expect(core.phase).toBe(RxPhase.Done);
    expect(now).toBeCloseTo(2011, 6);
    expect(dones).toBe(41);
  });
});

describe("sleepMs: from a core's deadline to poll()'s timeout", () => {
  test("whole milliseconds up to the deadline, none past it, at most MAX_SLEEP_MS", () => {
    expect(sleepMs(Infinity, 1000)).toBe(MAX_SLEEP_MS);
    expect(sleepMs(1000 + MAX_SLEEP_MS + 10, 1000)).toBe(MAX_SLEEP_MS);
    expect(sleepMs(1000.2, 1000)).toBe(1); // rounded up: waking early would find nothing due
    expect(sleepMs(1012.5, 1000)).toBe(13);
    expect(sleepMs(1000, 1000)).toBe(0);
    expect(sleepMs(990, 1000)).toBe(0);
    expect(sleepMs(-Infinity, 1000)).toBe(0);
  });
});
