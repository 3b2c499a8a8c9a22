// A bad path must never hang either side: jumbo frames that a switch drops, an MTU lowered
// mid-transfer, a path that passes the handshake but no data, a link the receiver does not
// listen on. Each run is bounded by a hard timeout that fails the test.

import { afterAll, describe, expect, test } from "bun:test";
import { cleanupAll, createTopology, type Topology } from "./support/netns";
import { describe as verdict, scratchDir, transfer } from "./support/transfer";
import { outputOf, randomFile, sizeOf, until } from "./support/e2e";

const scratch = scratchDir();
afterAll(async () => {
  await cleanupAll();
  scratch.remove();
});

async function ip(args: string[]): Promise<void> {
  const p = Bun.spawn(["ip", ...args], { stdout: "ignore", stderr: "pipe" });
  const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
  if (code !== 0) throw new Error(`ip ${args.join(" ")}: ${err.trim()}`);
}

/** A Linux bridge in the middle namespace joining link i's two middle ends, its ports at `mtu`
 * (a switch that does not carry the endpoints' jumbo frames). */
async function bridgeLink(topo: Topology, i: number, mtu: number): Promise<void> {
  const ns = topo.nsM!;
  const br = `${topo.id}br${i}`;
  await ip(["-n", ns, "link", "add", br, "type", "bridge"]);
  for (const port of [topo.midA[i]!, topo.midB[i]!]) {
    await ip(["-n", ns, "link", "set", port, "mtu", String(mtu)]);
    await ip(["-n", ns, "link", "set", port, "master", br]);
  }
  await ip(["-n", ns, "link", "set", br, "up"]);
}

describe("bad paths end to end", () => {
  test("jumbo frames a 1500-byte switch drops: the size is found, said once, and the stream is exact", async () => {
    const topo = await createTopology([{ mtu: 9000, middle: true }]);
    await bridgeLink(topo, 0, 1500);
    const input = await randomFile(scratch.dir, "jumbo-hole", 24 << 20);
    const r = await transfer(topo, { input, senderArgs: ["-0"], timeoutMs: 30_000 });
    expect({ s: r.sender.code, r: r.receiver.code, same: r.outSha === r.inSha }, verdict(r)).toEqual({ s: 0, r: 0, same: true });
    const lines = r.sender.stderr.trim().split("\n");
    expect(lines, r.sender.stderr).toEqual([`l2pipe: ${topo.devsA[0]}: frames above 1500 bytes do not arrive (the link's MTU is 9000); using 1500`]);
    expect(r.receiver.stderr.trim()).toBe("");
  }, 40_000);
});
