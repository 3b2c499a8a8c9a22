// The compiled binary end to end over veth pairs between network namespaces: exact output,
// both sides exit 0, across sizes, link counts, MTUs and shaped links.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cleanupAll, createTopology, type Topology } from "./support/netns";
import { randomFile } from "./support/e2e";
import { BINARY, describe as verdict, scratchDir, transfer } from "./support/transfer";

const scratch = scratchDir();
afterAll(async () => {
  await cleanupAll();
  scratch.remove();
});

function expectExact(r: Awaited<ReturnType<typeof transfer>>) {
  expect(verdict(r)).toContain("sha equal");
  expect(r.sender.code).toBe(0);
  expect(r.receiver.code).toBe(0);
  expect(r.outSha).toBe(r.inSha);
  // Without -v or -p a successful run says nothing.
  expect(r.sender.stderr).toBe("");
  expect(r.receiver.stderr).toBe("");
}

describe("sizes over one link, MTU 1500", () => {
  let topo: Topology;
  beforeAll(async () => {
    topo = await createTopology([{ mtu: 1500 }]);
  });
  afterAll(() => topo.cleanup());
  // MTU 1500 carries 1470 payload bytes per DATA frame.
  for (const size of [0, 1, 1469, 1471, 1500 - 1, 1500 + 1, (1 << 20) + 1]) {
    test(`${size} bytes`, async () => {
      const r = await transfer(topo, { input: await randomFile(scratch.dir, `s${size}`, size), senderArgs: ["-0"], timeoutMs: 20_000 });
      expectExact(r);
    });
  }
  test("start order does not matter: the sender first, the receiver 1.5 s later", async () => {
    const r = await transfer(topo, { input: await randomFile(scratch.dir, "late", 4 << 20), senderDelayMs: -1500, timeoutMs: 20_000 });
    expectExact(r);
  });
  test("1 MiB+1 compressed (default options)", async () => {
    const r = await transfer(topo, { input: await randomFile(scratch.dir, "c1m", (1 << 20) + 1), timeoutMs: 20_000 });
    expectExact(r);
  });
});

describe("a slow producer", () => {
  /**
   * Runs the receiver into read-log.ts and a sender fed by `producer` (a shell command); returns
   * both exit codes, the output file and the reads as [ms, bytes] (the clock starts with the receiver).
   */
  async function loggedTransfer(topo: Topology, name: string, producer: string, senderArgs: string) {
    const log = `${scratch.dir}/${name}.log`;
    const out = `${scratch.dir}/${name}.out`;
    const rc = `${out}.rc`;
    const reader = new URL("./support/read-log.ts", import.meta.url).pathname;
    const receiver = topo.spawn(topo.nsB, ["sh", "-c", `{ ${BINARY} -r ${topo.devsB[0]}; echo $? > ${rc}; } | bun ${reader} ${log} > ${out}; exit $(cat ${rc})`], { stderr: "pipe" });
    await Bun.sleep(100);
    const sender = topo.spawn(topo.nsA, ["sh", "-c", `{ ${producer}; } | ${BINARY} -s ${senderArgs} ${topo.devsA[0]}`], { stderr: "pipe" });
    const [sCode, rCode] = await Promise.all([sender.exited, receiver.exited]);
    const reads = (await Bun.file(log).text()).trim().split("\n").map((l) => l.split(" ").map(Number));
    return { sCode, rCode, out, reads };
  }

  test("a partial chunk goes out after a moment of quiet, not when 256 KiB have gathered", async () => {
    const topo = await createTopology([{ mtu: 1500 }]);
    try {
      // 5 bytes, 2 s of silence, 5 more: the first five must not wait for the rest.
      const { sCode, rCode, out, reads } = await loggedTransfer(topo, "trickle", "printf hello; sleep 2; printf world", "");
      expect(sCode).toBe(0);
      expect(rCode).toBe(0);
      expect(await Bun.file(out).text()).toBe("helloworld");
      // Two reads: "hello" well before "world".
      expect(reads.length).toBe(2);
      expect(reads[0][1]).toBe(5);
      expect(reads[1][0] - reads[0][0]).toBeGreaterThan(1500);
    } finally {
      await topo.cleanup();
    }
  });

  test("a burst of whole chunks, then silence: the burst's last frame does not wait for more input", async () => {
    const topo = await createTopology([{ mtu: 9000 }]);
    try {
      const burst = await randomFile(scratch.dir, "burst", 1 << 20); // four -0 chunks exactly
      const { sCode, rCode, out, reads } = await loggedTransfer(topo, "burst", `cat ${burst}; sleep 2; printf end`, "-0");
      expect(sCode).toBe(0);
      expect(rCode).toBe(0);
      const expected = new Bun.CryptoHasher("sha256").update(await Bun.file(burst).bytes()).update("end").digest("hex");
      expect(new Bun.CryptoHasher("sha256").update(await Bun.file(out).bytes()).digest("hex")).toBe(expected);
      // All of the burst was written out well before "end" came, 2 s later.
      const last = reads[reads.length - 1]!;
      expect(last[1]).toBe(3);
      const early = reads.filter(([ms]) => ms < last[0]! - 1500).reduce((sum, [, n]) => sum + n!, 0);
      expect(early).toBe(1 << 20);
    } finally {
      await topo.cleanup();
    }
  });
});

describe("streams longer than 4 GiB", () => {
  test("4.5 GiB + 3 with -0: wire offsets and byte counts pass 2^32, output exact", async () => {
    const topo = await createTopology([{ mtu: 9000 }]);
    try {
      const bytes = 4.5 * 2 ** 30 + 3;
      // Zeros from /dev/zero cost nothing to make; -0 sends them as they are, so the wire
      // stream's offsets, the byte counts and the END record's total all pass 2^32.
      const h = new Bun.CryptoHasher("sha256");
      const zeros = new Uint8Array(64 << 20);
      for (let left = bytes; left > 0; left -= zeros.length) h.update(left >= zeros.length ? zeros : zeros.subarray(0, left));
      const expected = h.digest("hex");
      const outSha = `${scratch.dir}/zeros.sha`;
      const rc = `${outSha}.rc`;
      // The receiver's own exit status, not sha256sum's, is what counts.
      const receiver = topo.spawn(topo.nsB, ["sh", "-c", `{ ${BINARY} -r ${topo.devsB[0]}; echo $? > ${rc}; } | sha256sum > ${outSha}; exit $(cat ${rc})`], { stderr: "pipe" });
      await Bun.sleep(100);
      const sender = topo.spawn(topo.nsA, ["sh", "-c", `head -c ${bytes} /dev/zero | ${BINARY} -s -0 ${topo.devsA[0]}`], { stderr: "pipe" });
      const [sCode, rCode] = await Promise.all([sender.exited, receiver.exited]);
      expect(await new Response(sender.stderr).text()).toBe("");
      expect(sCode).toBe(0);
      expect(rCode).toBe(0);
      expect((await Bun.file(outSha).text()).split(" ")[0]).toBe(expected);
    } finally {
      await topo.cleanup();
    }
  }, 180_000);
});

describe("link counts and MTUs", () => {
  test("256 MiB over one link at MTU 9000", async () => {
    const topo = await createTopology([{ mtu: 9000 }]);
    try {
      const r = await transfer(topo, { input: await randomFile(scratch.dir, "big", 256 << 20), senderArgs: ["-0"], timeoutMs: 90_000 });
      expectExact(r);
    } finally {
      await topo.cleanup();
    }
  });
  for (const [count, mtus] of [
    [2, [1500, 1500]],
    [3, [9000, 1500, 9000]],
    [10, [1500, 9000, 1500, 9000, 1500, 9000, 1500, 9000, 1500, 9000]],
  ] as const) {
    test(`${count} links, MTU ${[...new Set(mtus)].join("/")}`, async () => {
      const topo = await createTopology(mtus.map((mtu) => ({ mtu })));
      try {
        const r = await transfer(topo, { input: await randomFile(scratch.dir, `l${count}`, 32 << 20), senderArgs: ["-0", "-v"], timeoutMs: 60_000 });
        expect(r.sender.code).toBe(0);
        expect(r.receiver.code).toBe(0);
        expect(r.outSha).toBe(r.inSha);
        // Every link carried part of the stream.
        for (const dev of topo.devsA) expect(r.sender.stderr).toMatch(new RegExp(`${dev}: up mtu \\d+ [1-9]\\d* frames sent`));
      } finally {
        await topo.cleanup();
      }
    });
  }
  test("device mismatch: receiver on 3 devices, sender on 2; sender on 3, receiver on 2", async () => {
    const topo = await createTopology([{ mtu: 1500 }, { mtu: 1500 }, { mtu: 1500 }]);
    try {
      const input = await randomFile(scratch.dir, "mismatch", 8 << 20);
      // The receiver waits on a device nobody sends on: the stream still completes, and the
      // receiver says, without -v, which device carried nothing and why.
      let r = await transfer(topo, { input, senderDevs: topo.devsA.slice(0, 2), timeoutMs: 30_000 });
      expect({ s: r.sender.code, r: r.receiver.code, same: r.outSha === r.inSha }, verdict(r)).toEqual({ s: 0, r: 0, same: true });
      expect(r.sender.stderr).toBe("");
      expect(r.receiver.stderr).toBe(
        `l2pipe: ${topo.devsB[2]} carried no data: no sender greeted on it (does the sender list the device it is cabled to?)\n`,
      );
      // A sender link nobody answers is left out: one line says so, and -v shows it still probing.
      r = await transfer(topo, { input, receiverDevs: topo.devsB.slice(0, 2), timeoutMs: 30_000 });
      expect({ s: r.sender.code, r: r.receiver.code, same: r.outSha === r.inSha }, verdict(r)).toEqual({ s: 0, r: 0, same: true });
      expect(r.receiver.stderr).toBe("");
      expect(r.sender.stderr).toBe(
        `l2pipe: ${topo.devsA[2]} carried no data: no receiver answered on it (does the receiver list the device it is cabled to?)\n`,
      );
      r = await transfer(topo, { input, senderArgs: ["-v"], receiverDevs: topo.devsB.slice(0, 2), timeoutMs: 30_000 });
      expect(r.sender.code).toBe(0);
      expect(r.sender.stderr).toMatch(new RegExp(`${topo.devsA[2]}: probing`));
    } finally {
      await topo.cleanup();
    }
  });
  test("receiver devices listed in another order than the sender's", async () => {
    const topo = await createTopology([{ mtu: 1500 }, { mtu: 9000 }, { mtu: 1500 }]);
    try {
      const r = await transfer(topo, {
        input: await randomFile(scratch.dir, "perm", 8 << 20),
        receiverDevs: [topo.devsB[2], topo.devsB[0], topo.devsB[1]],
        timeoutMs: 30_000,
      });
      expectExact(r);
    } finally {
      await topo.cleanup();
    }
  });
});

describe("send queues follow the link's speed", () => {
  test("a 1 Gbit link gets MiBs of kernel send queue, a 40 Mbit one stays small; the stream is exact", async () => {
    const topo = await createTopology([{ mtu: 9000, rateMbit: 1000 }, { mtu: 9000, rateMbit: 40 }]);
    try {
      const input = await randomFile(scratch.dir, "queues", 96 << 20);
      const r = await transfer(topo, { input, senderArgs: ["-0", "-v"], timeoutMs: 60_000 });
      expect(r.sender.code).toBe(0);
      expect(r.receiver.code).toBe(0);
      expect(r.outSha).toBe(r.inSha);
      const queue = (dev: string) => {
        const m = new RegExp(`^  ${dev}:.* send queue ([\\d.]+) (KiB|MiB)`, "m").exec(r.sender.stderr);
        if (!m) throw new Error(`no send queue for ${dev} in:\n${r.sender.stderr}`);
        return Number(m[1]) * (m[2] === "MiB" ? 1 << 20 : 1 << 10);
      };
      // ~25 ms of each link's rate, as the kernel counts it (13 KiB per 9014-byte frame):
      // ~4.5 MiB at 1 Gbit, the floor (256 KiB granted) at 40 Mbit. At start both had 1 MiB.
      expect(queue(topo.devsA[0]!)).toBeGreaterThan(2 << 20);
      expect(queue(topo.devsA[1]!)).toBeLessThanOrEqual(512 << 10);
    } finally {
      await topo.cleanup();
    }
  });
});

describe("shaped links 200/400/400 Mbit", () => {
  const SUM_MBIT = 1000;
  // At MTU 9000 the links are the limit (measured 93-98% of the sum). At MTU 1500 the same
  // goodput takes six times the frames, and on this 2-core machine sender, receiver and the
  // kernel's per-frame work for htb and veth share the cores: measured 55-89% from one run to
  // the next, a figure for the benchmark. The bar here is the behaviour: more than the fastest
  // link alone (40%), so the stream really is striped.
  for (const [mtu, bar] of [[9000, 0.85], [1500, 0.5]] as const) {
    for (const weights of [null, "1.2.2"]) {
      test(`MTU ${mtu}: goodput >= ${bar * 100}% of the sum with ${weights ? `-a ${weights}` : "default scheduling"}`, async () => {
        const topo = await createTopology([
          { mtu, rateMbit: 200 },
          { mtu, rateMbit: 400 },
          { mtu, rateMbit: 400 },
        ]);
        try {
          const bytes = 160 << 20;
          const input = await randomFile(scratch.dir, `shaped${mtu}${weights ?? ""}`, bytes);
          const r = await transfer(topo, {
            input,
            senderArgs: ["-0", "-v", ...(weights ? ["-a", weights] : [])],
            timeoutMs: 60_000,
          });
          expect(r.sender.code).toBe(0);
          expect(r.receiver.code).toBe(0);
          expect(r.outSha).toBe(r.inSha);
          // The sender's own elapsed time, from its summary line: from the start of the
          // transfer (after the handshake) to the receiver's confirmation.
          const secs = Number(/done in ([\d.]+) s/.exec(r.sender.stderr)?.[1]);
          const mbit = (bytes * 8) / 1e6 / secs;
          console.log(`shaped MTU ${mtu} ${weights ?? "default"}: ${mbit.toFixed(0)} Mbit/s of ${SUM_MBIT} (${secs.toFixed(2)} s)`);
          expect(mbit).toBeGreaterThanOrEqual(bar * SUM_MBIT);
          if (weights) {
            // The shares follow the weights: bytes per link 1:2:2.
            const sent = [...r.sender.stderr.matchAll(/frames sent \(([\d.]+) MiB\)/g)].map((m) => Number(m[1]));
            expect(sent).toHaveLength(3);
            expect(sent[1] / sent[0]).toBeGreaterThan(1.8);
            expect(sent[2] / sent[0]).toBeGreaterThan(1.8);
          }
        } finally {
          await topo.cleanup();
        }
      });
    }
  }
});
