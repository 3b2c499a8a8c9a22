// The compiled binary starts itself again, in the same process, with JavaScriptCore's FTL tier
// off (src/shell/jit-tier.ts), its arguments as given, and leaves a setting the user made alone:
// read from /proc of both sides while a real transfer runs, which must still be exact.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { cleanupAll, createTopology, type Topology } from "./support/netns";
import { describe as verdict, scratchDir, transfer } from "./support/transfer";
import { outputOf, randomFile, running, sizeOf, until } from "./support/e2e";

const scratch = scratchDir();
let topo: Topology;
let input: string;
beforeAll(async () => {
  // 200 Mbit/s: 24 MiB take ~1 s, time enough to look at both sides mid-stream.
  topo = await createTopology([{ rateMbit: 200 }]);
  input = await randomFile(scratch.dir, "jit-tier", 24 << 20);
});
afterAll(async () => {
  await topo?.cleanup();
  await cleanupAll();
  scratch.remove();
});

interface Seen {
  option: string[];
  cmdline: string[];
}

function look(pid: number): Seen {
  const option = readFileSync(`/proc/${pid}/environ`, "latin1").split("\0").filter((e) => e.startsWith("BUN_JSC_useFTLJIT="));
  return { option, cmdline: readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0") };
}

/** A transfer; once data reaches the output (both sides past any restart) each side's /proc is read. */
async function transferLooking(env?: Record<string, string>) {
  let s: Seen | null = null;
  let r: Seen | null = null;
  const result = await transfer(topo, {
    input,
    senderArgs: ["-0"],
    env,
    timeoutMs: 30_000,
    // The scripts exec the binary, which execs itself: one process id throughout.
    during: async ({ sender, receiver }) => {
      await until(() => sizeOf(outputOf(input)) > 0 || !running(sender) || !running(receiver), 10_000, "output");
      if (running(sender) && running(receiver)) [s, r] = [look(sender.pid), look(receiver.pid)];
    },
  });
  expect(verdict(result)).toContain("sha equal");
  expect({ s: result.sender.code, r: result.receiver.code }).toEqual({ s: 0, r: 0 });
  expect(s).not.toBeNull();
  expect(r).not.toBeNull();
  return { s: s!, r: r! };
}

test("both sides run with FTL off, in the processes they were started as, with their arguments as given", async () => {
  const { s, r } = await transferLooking();
  expect(s.option).toEqual(["BUN_JSC_useFTLJIT=0"]);
  expect(r.option).toEqual(["BUN_JSC_useFTLJIT=0"]);
  expect(s.cmdline.slice(1)).toEqual(["-s", "-0", topo.devsA[0]!, ""]);
  expect(r.cmdline.slice(1)).toEqual(["-r", topo.devsB[0]!, ""]);
});

test("a setting of the user's is kept", async () => {
  const { s, r } = await transferLooking({ BUN_JSC_useFTLJIT: "1" });
  expect(s.option).toEqual(["BUN_JSC_useFTLJIT=1"]);
  expect(r.option).toEqual(["BUN_JSC_useFTLJIT=1"]);
});
