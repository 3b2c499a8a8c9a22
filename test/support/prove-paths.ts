// For tests that drive SenderCore by hand: send every link's path probes and acknowledge them
// all, so that the links may carry DATA at their full MTU at once (see src/core/path-mtu.ts).

import type { SenderCore } from "../../src/core/sender";

export function provePaths(core: SenderCore, now: number): void {
  for (let i = 0; i < core.linkCount; i++) {
    let low = -1;
    let high = -1;
    while (core.pollProbe(i)) {
      if (low < 0) low = core.probeTx.pn;
      high = core.probeTx.pn;
      core.onProbeSent(i, now);
    }
    if (high >= 0) core.onAck(i, now, core.ackedUpTo, core.limit, 0, 1, (_r, isHigh) => (isHigh ? high : low));
  }
}
