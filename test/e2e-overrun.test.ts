// The receiver's receive ring overrun by a burst: the frames the kernel had to drop are counted
// (PACKET_STATISTICS, in -v) and recovered like any loss, and the stream still arrives exactly.
// The burst: the receiver is stopped (SIGSTOP) for a few hundred ms over an unshaped veth while
// the sender fills the whole window it was given; with -m that window (8 MiB) is larger than
// the receiver's receive ring (4 MiB).

import { afterAll, expect, test } from "bun:test";
import { cleanupAll, createTopology } from "./support/netns";
import { describe as verdict, scratchDir, transfer } from "./support/transfer";
import { outputOf, randomFile, running, sizeOf, until, vcount } from "./support/e2e";

const scratch = scratchDir();
afterAll(async () => {
  await cleanupAll();
  scratch.remove();
});

const MB = 1 << 20;

test("a receive ring overrun under a burst is counted and recovered: exact, both exit 0", async () => {
  const t = await createTopology([{ mtu: 9000 }]);
  // Long enough for all four stops: a stop overruns the queue only when the window is open
  // enough at that moment, and in 2 runs of ~12 the 256 MiB of before ended after two stops
  // that both fell short (0 drops).
  const input = await randomFile(scratch.dir, "overrun", 512 * MB);
  let stops = 0;
  const r = await transfer(t, {
    input,
    senderArgs: ["-0", "-v"],
    receiverArgs: ["-m", "-v"],
    timeoutMs: 60_000,
    during: async ({ sender, receiver }) => {
      await until(() => sizeOf(outputOf(input)) >= 4 * MB || !running(receiver), 10_000, "output");
      for (let i = 0; i < 4 && running(sender) && running(receiver); i++) {
        receiver.kill("SIGSTOP");
        await Bun.sleep(300);
        receiver.kill("SIGCONT");
        stops++;
        await Bun.sleep(150);
      }
    },
  });
  expect(verdict(r)).toContain("sha equal");
  expect(r.sender.code).toBe(0);
  expect(r.receiver.code).toBe(0);
  const dev = t.devsB[0]!;
  const drops = vcount(r.receiver.stderr, dev, "dropped by kernel");
  const resent = vcount(r.sender.stderr, t.devsA[0]!, "resent");
  console.log(`${stops} stops of 300 ms: ${drops} frames dropped by the receiver's kernel, ${resent} resent by the sender`);
  expect(stops).toBeGreaterThan(0);
  expect(drops).toBeGreaterThan(0);
  // What the kernel dropped had to be sent again for the stream to be whole.
  expect(resent).toBeGreaterThan(0);
}, 90_000);
