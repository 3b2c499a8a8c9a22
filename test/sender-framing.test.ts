// How SenderCore cuts new data into DATA frames: full frames while input flows, a short tail
// only once it stops (see SenderCore.inputFlows).
import { describe, expect, test } from "bun:test";
import type { SenderCore } from "../src/core/sender";
import { dataPayloadMax } from "../src/wire";
import { startedSender } from "./support/started-sender";

const MTU = 9000;
const FULL = dataPayloadMax(MTU);

/** Payload lengths of the frames the link is given now. */
function frames(core: SenderCore, now = 0): number[] {
  const lens: number[] = [];
  while (core.pollData(0, now)) lens.push(core.tx.len);
  return lens;
}

describe("frames of new data", () => {
  test("while input flows, a tail short of a full frame waits for the next append", () => {
    const core = startedSender(MTU);
    core.inputFlows(true);
    core.streamAppended(2 * FULL + 100);
    expect(frames(core)).toEqual([FULL, FULL]);
    expect(core.canSend(0)).toBe(false); // or the loop would spin on it
    expect(core.heldTail).toBe(100); // nothing to send: the codec policy must not count it as backlog
    core.streamAppended(3 * FULL + 50);
    expect(frames(core)).toEqual([FULL]);
    expect(core.sentUpTo).toBe(3 * FULL);
    // Input stops flowing (a quiet pipe, a full ring): the tail goes at once.
    core.inputFlows(false);
    expect(core.heldTail).toBe(0);
    expect(core.canSend(0)).toBe(true);
    expect(frames(core)).toEqual([50]);
    expect(core.sentUpTo).toBe(3 * FULL + 50);
  });

  test("input that does not flow is sent as it comes, short frames and all", () => {
    const core = startedSender(MTU);
    core.streamAppended(FULL + 10);
    expect(frames(core)).toEqual([FULL, 10]);
    core.streamAppended(FULL + 30);
    expect(frames(core)).toEqual([20]);
  });

  test("a tail too short for one link but not for another is not held", () => {
    const core = startedSender([MTU, 1500]);
    core.inputFlows(true);
    core.streamAppended(FULL + 2000);
    expect(frames(core)).toEqual([FULL]); // 2000 bytes are short of a jumbo frame: held for link 0
    expect(core.heldTail).toBe(0); // but link 1 takes them
    expect(core.canSend(1)).toBe(true);
    expect(core.pollData(1, 0)).toBe(true);
    expect(core.tx.len).toBe(dataPayloadMax(1500));
    // 530 bytes left, short for both links: held, and said to be.
    expect(core.canSend(1)).toBe(false);
    expect(core.heldTail).toBe(2000 - dataPayloadMax(1500));
  });

  test("the END record lets the held tail go", () => {
    const core = startedSender(MTU);
    core.inputFlows(true);
    core.streamAppended(FULL + 500);
    expect(frames(core)).toEqual([FULL]);
    core.streamEnded(FULL + 540, FULL + 500, 0);
    expect(frames(core)).toEqual([540]);
  });

  test("a frame cut by the ring's end or the receiver's limit is no tail and goes while input flows", () => {
    const ring = 4 * FULL + 1000;
    const core = startedSender(MTU, ring);
    core.inputFlows(true);
    core.streamAppended(4 * FULL + 1000 + FULL);
    // Four full frames, then 1000 bytes to the ring's end, then a full one after it.
    expect(frames(core)).toEqual([FULL, FULL, FULL, FULL, 1000, FULL]);
    // The receiver's window ends 100 bytes into the second frame; more input is in the ring.
    const limited = startedSender(MTU, 1 << 30, FULL + 100);
    limited.inputFlows(true);
    limited.streamAppended(5 * FULL);
    expect(frames(limited)).toEqual([FULL, 100]);
  });
});
