// A sender held back by a slow receiver waits in poll(), not in a loop: over an unshaped veth,
// with the receiver's output read at a few MB/s, the sender's CPU time stays a small part of
// the time it is held back (a spinning sender would burn a whole core for all of it).

import { afterAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { cleanupAll, createTopology } from "./support/netns";
import { describe as verdict, scratchDir, transfer } from "./support/transfer";
import { randomFile, running, writeSlowReader } from "./support/e2e";

const scratch = scratchDir();
afterAll(async () => {
  await cleanupAll();
  scratch.remove();
});

const MB = 1 << 20;
const TICK = 100; // clock ticks per second (USER_HZ)

/** User + system seconds a live process has used so far, or -1 once it is gone. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / TICK;
  } catch {
    return -1;
  }
}

test("a sender held back by a slow receiver uses almost no CPU while it waits", async () => {
  const t = await createTopology([{ mtu: 9000 }]);
  const bytes = 24 * MB;
  const rate = 5_000_000;
  const input = await randomFile(scratch.dir, "held", bytes);
  const reader = writeSlowReader(`${scratch.dir}/slow-reader.js`);
  let senderCpu = 0;
  // -m on the receiver: an 8 MiB window, so most of the stream waits on the reader.
  const r = await transfer(t, {
    input,
    senderArgs: ["-0"],
    receiverArgs: ["-m"],
    receiverPipe: `${process.execPath} ${reader} ${rate}`,
    timeoutMs: 60_000,
    during: async ({ sender }) => {
      // The sender's sh -c execs the binary: its pid is the sender's.
      while (running(sender)) {
        const c = cpuSeconds(sender.pid);
        if (c >= 0) senderCpu = c;
        await Bun.sleep(20);
      }
    },
  });
  expect(verdict(r)).toContain("sha equal");
  expect(r.sender.code).toBe(0);
  expect(r.receiver.code).toBe(0);
  const seconds = r.sender.ms / 1000;
  console.log(`held back ${seconds.toFixed(2)} s: sender used ${senderCpu.toFixed(2)} CPU-s (${((senderCpu / seconds) * 100).toFixed(1)} %)`);
  // The reader set the pace: at 5 MB/s, 24 MiB take ~5 s.
  expect(seconds).toBeGreaterThan(3.5);
  // Sending 24 MiB costs a few hundredths of a CPU-second, start-up a tenth; waiting should add
  // next to nothing.
  expect(senderCpu).toBeGreaterThan(0);
  expect(senderCpu / seconds).toBeLessThan(0.1);
}, 90_000);
