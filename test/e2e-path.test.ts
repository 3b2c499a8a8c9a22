// A bad path must never hang either side: jumbo frames that a switch drops, an MTU lowered
// mid-transfer, a path that passes the handshake but no data, a link the receiver does not
// listen on. Each run is bounded by a hard timeout that fails the test.

import { afterAll, describe, expect, test } from "bun:test";
import { cleanupAll, createTopology, type Topology } from "./support/netns";
import { BINARY, describe as verdict, scratchDir, transfer } from "./support/transfer";
import { addDropDataRule } from "./support/nft";
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

  test("the receiver's MTU lowered mid-transfer on its only link: the sender moves to the size that arrives, exact", async () => {
    const topo = await createTopology([{ mtu: 9000, rateMbit: 100 }]);
    const input = await randomFile(scratch.dir, "mtu-lowered", 64 << 20);
    let loweredAt = 0;
    const r = await transfer(topo, {
      input,
      senderArgs: ["-0"],
      timeoutMs: 40_000,
      during: async (ctx) => {
        await until(() => sizeOf(outputOf(input)) > 8 << 20 || ctx.sender.exitCode !== null, 20_000, "8 MiB through");
        await ip(["-n", topo.nsB, "link", "set", topo.devsB[0]!, "mtu", "1500"]);
        loweredAt = performance.now();
      },
    });
    expect({ s: r.sender.code, r: r.receiver.code, same: r.outSha === r.inSha }, verdict(r)).toEqual({ s: 0, r: 0, same: true });
    expect(loweredAt).toBeGreaterThan(0);
    expect(r.sender.stderr).toBe(`l2pipe: ${topo.devsA[0]}: frames above 1500 bytes stopped arriving; using 1500\n`);
    // 56 MiB left at 100 Mbit is ~5 s of wire time: the switch costs well under a second of it.
    expect(r.sender.endedAt - loweredAt).toBeLessThan(5_000 + 2_500);
  }, 50_000);

  test("a path that passes the handshake but no DATA frame: both sides fail within the timeout plus a little, one line each", async () => {
    const topo = await createTopology([{ mtu: 1500 }]);
    await addDropDataRule(topo.nsB, topo.devsB[0]!);
    const input = await randomFile(scratch.dir, "no-data", 4 << 20);
    const r = await transfer(topo, { input, senderArgs: ["-0", "-t", "2"], receiverArgs: ["-t", "2"], timeoutMs: 20_000 });
    expect(r.sender.code).toBe(1);
    expect(r.receiver.code).toBe(1);
    const sender = r.sender.stderr.trim().split("\n");
    const receiver = r.receiver.stderr.trim().split("\n");
    expect(sender).toEqual([expect.stringMatching(new RegExp(`^l2pipe: no progress for 2 s: the receiver answers on ${topo.devsA[0]} but .* drops DATA frames$`))]);
    expect(receiver).toEqual([expect.stringMatching(new RegExp(`^l2pipe: sender aborted: no progress for 2 s: .*${topo.devsA[0]}`))]);
    expect(r.sender.ms).toBeLessThan(2_000 + 3_000);
    expect(r.receiver.ms).toBeLessThan(2_000 + 3_000);
  }, 30_000);

  test("timeouts too small to mean anything are refused at once, naming the option", async () => {
    const topo = await createTopology([{ mtu: 1500 }]);
    for (const [side, args, culprit] of [
      ["-r", ["-w", "0.0004"], "-w: '0.0004' is out of range"],
      ["-r", ["-t", "0.001"], "-t: '0.001' is out of range"],
      ["-s", ["-w", "0.0006"], "-w: '0.0006' is out of range"],
    ] as const) {
      const started = performance.now();
      const res = await topo.exec(side === "-r" ? topo.nsB : topo.nsA, [BINARY, side, ...args, side === "-r" ? topo.devsB[0]! : topo.devsA[0]!], { timeoutMs: 5_000 });
      expect({ code: res.code, stderr: res.stderr }).toEqual({ code: 2, stderr: expect.stringContaining(culprit) });
      expect(performance.now() - started).toBeLessThan(2_000);
    }
  }, 30_000);
});
