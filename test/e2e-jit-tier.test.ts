// The compiled binary starts itself again, in the same process, with JavaScriptCore's FTL tier
// off (src/shell/jit-tier.ts), and leaves a setting the user made alone.

import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, readlinkSync } from "node:fs";
import { cleanupAll, createTopology, type Topology } from "./support/netns";
import { BINARY, requireBinary } from "./support/transfer";
import { until } from "./support/e2e";

let topo: Topology;
beforeAll(async () => {
  requireBinary();
  topo = await createTopology([{}]);
});
afterAll(async () => {
  await topo?.cleanup();
  await cleanupAll();
});

function environ(pid: number): string[] {
  return readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
}

/** Starts a receiver, waits until it runs our binary, returns what its environment holds of the option. */
async function receiverOption(env: Record<string, string>): Promise<{ option: string[]; stderr: string; code: number }> {
  const p = topo.spawn(topo.nsB, [BINARY, "-r", topo.devsB[0]!], { env: { ...process.env, ...env }, stdout: "ignore", stderr: "pipe" });
  // `ip netns exec` execs the binary, which execs itself: one process id throughout.
  await until(() => {
    try {
      return readlinkSync(`/proc/${p.pid}/exe`) === BINARY && readFileSync(`/proc/${p.pid}/cmdline`, "latin1").includes("-r");
    } catch {
      return false;
    }
  }, 5000, "the receiver to start");
  await Bun.sleep(300); // past the restart, if there is one
  const option = environ(p.pid).filter((e) => e.startsWith("BUN_JSC_useFTLJIT="));
  // The arguments come through the restart as they were given.
  expect(readFileSync(`/proc/${p.pid}/cmdline`, "latin1").split("\0")).toEqual([BINARY, "-r", topo.devsB[0]!, ""]);
  p.kill("SIGINT");
  const code = await p.exited;
  return { option, stderr: await new Response(p.stderr).text(), code };
}

test("the binary runs with FTL off, in the process it was started as, and still answers signals", async () => {
  const r = await receiverOption({});
  expect(r.option).toEqual(["BUN_JSC_useFTLJIT=0"]);
  expect(r.stderr).toContain("interrupted by SIGINT");
  expect(r.code).not.toBe(0);
});

test("a setting of the user's is kept", async () => {
  const r = await receiverOption({ BUN_JSC_useFTLJIT: "1" });
  expect(r.option).toEqual(["BUN_JSC_useFTLJIT=1"]);
  expect(r.code).not.toBe(0);
});
