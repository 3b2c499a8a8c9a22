// Peer faults end to end: a side killed or interrupted mid-stream, the receiver's stdout closed
// early, a reader slower than the links. The survivor must learn it (at once when told, within
// the timeout when not), fail with one line, and never have written anything but a prefix.

import { afterAll, describe, expect, test } from "bun:test";
import { closeSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import { cleanupAll, createTopology, type Topology } from "./support/netns";
import { BINARY, describe as verdict, scratchDir, transfer } from "./support/transfer";
import { outputOf, randomFile, running, sizeOf, until, writeSlowReader } from "./support/e2e";

const scratch = scratchDir();
afterAll(async () => {
  await cleanupAll();
  scratch.remove();
});

const MB = 1 << 20;

/** True when `out` holds exactly the first bytes of `input`. */
function isPrefix(out: string, input: string): boolean {
  const a = readFileSync(out);
  const fd = openSync(input, "r");
  try {
    const b = Buffer.alloc(a.length);
    let got = 0;
    while (got < a.length) {
      const n = readSync(fd, b, got, a.length - got, got);
      if (n <= 0) return false;
      got += n;
    }
    return a.equals(b);
  } finally {
    closeSync(fd);
  }
}

/** The l2pipe process among pid and its descendants (a receiver behind a pipe runs in a subshell). */
function findL2pipe(pid: number): number | null {
  const queue = [pid];
  while (queue.length) {
    const p = queue.shift()!;
    try {
      if (readFileSync(`/proc/${p}/cmdline`, "latin1").split("\0")[0] === BINARY) return p;
      for (const t of readdirSync(`/proc/${p}/task`)) {
        const kids = readFileSync(`/proc/${p}/task/${t}/children`, "latin1").trim();
        if (kids) queue.push(...kids.split(" ").map(Number));
      }
    } catch {
      // gone meanwhile
    }
  }
  return null;
}

/** Peak resident set in KiB (VmHWM) of a live process, or 0. */
function peakRssKiB(pid: number | null): number {
  if (!pid) return 0;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "latin1"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function oneLine(stderr: string): string {
  const lines = stderr.trim().split("\n");
  expect(lines).toHaveLength(1);
  expect(lines[0]!).toStartWith("l2pipe: ");
  return lines[0]!;
}

// One shaped link: 64 MiB take ~3 s at 200 Mbit, long enough to strike mid-stream.
let topo: Topology;
async function topology(): Promise<Topology> {
  topo ??= await createTopology([{ rateMbit: 200 }]);
  return topo;
}
afterAll(() => topo?.cleanup());

/** Kills one side with SIGKILL once 8 MB are out; returns the run and how long the other took to exit. */
async function killMidStream(victim: "sender" | "receiver", name: string) {
  const t = await topology();
  const input = await randomFile(scratch.dir, name, 64 * MB);
  let killedAt = 0;
  const r = await transfer(t, {
    input,
    senderArgs: ["-0", "-t", "2"],
    receiverArgs: ["-t", "2", "-v", "--stats-json", `${input}.r.json`],
    timeoutMs: 30_000,
    during: async ({ sender, receiver }) => {
      await until(() => sizeOf(outputOf(input)) >= 8 * MB || !running(receiver), 10_000, "output");
      (victim === "sender" ? sender : receiver).kill("SIGKILL");
      killedAt = performance.now();
    },
  });
  const peer = victim === "sender" ? r.receiver : r.sender;
  return { r, input, peerMs: peer.endedAt - killedAt };
}

describe("a side killed with SIGKILL", () => {
  test("sender killed: receiver fails within the timeout, its output is a prefix of the input", async () => {
    const { r, input, peerMs } = await killMidStream("sender", "kill-s");
    const out = r.outPath;
    console.log(`sender killed: receiver exit ${r.receiver.code} after ${peerMs.toFixed(0)} ms, ${sizeOf(out)} bytes written`);
    expect(r.sender.code).toBe(137);
    expect(r.receiver.code).toBe(1);
    expect(r.receiver.stderr.trim().split("\n").at(-1)).toContain("sender lost");
    // How far a failed backup got is what the user relies on: exact, in bytes.
    const written = ((await Bun.file(`${input}.r.json`).json()) as { inputBytes: number }).inputBytes;
    expect(written).toBe(sizeOf(out));
    expect(r.receiver.stderr).toContain(`${sizeOf(out)} bytes`);
    expect(peerMs).toBeLessThan(2000 + 1000);
    expect(sizeOf(out)).toBeGreaterThanOrEqual(8 * MB);
    expect(sizeOf(out)).toBeLessThan(64 * MB);
    expect(isPrefix(out, input)).toBe(true);
  }, 40_000);

  test("receiver killed: sender fails within the timeout", async () => {
    const { r, input, peerMs } = await killMidStream("receiver", "kill-r");
    console.log(`receiver killed: sender exit ${r.sender.code} after ${peerMs.toFixed(0)} ms`);
    expect(r.receiver.code).toBe(137);
    expect(r.sender.code).toBe(1);
    expect(oneLine(r.sender.stderr)).toContain("receiver lost");
    expect(peerMs).toBeLessThan(2000 + 1000);
    expect(isPrefix(r.outPath, input)).toBe(true);
  }, 40_000);
});

describe("a side interrupted: the peer is told at once", () => {
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    for (const victim of ["sender", "receiver"] as const) {
      // The interrupted side drops its queued DATA so the ABORT leaves at once.
      const t = test;
      t(`${sig} to the ${victim}`, async () => {
        const t = await topology();
        const input = await randomFile(scratch.dir, `${sig}-${victim}`, 64 * MB);
        let hitAt = 0;
        const r = await transfer(t, {
          input,
          senderArgs: ["-0"],
          timeoutMs: 30_000,
          during: async ({ sender, receiver }) => {
            await until(() => sizeOf(outputOf(input)) >= 8 * MB || !running(receiver), 10_000, "output");
            (victim === "sender" ? sender : receiver).kill(sig);
            hitAt = performance.now();
          },
        });
        const code = 128 + (sig === "SIGINT" ? 2 : 15);
        const hit = victim === "sender" ? r.sender : r.receiver;
        const peer = victim === "sender" ? r.receiver : r.sender;
        console.log(`${sig} to the ${victim}: ${victim} exit ${hit.code}, peer exit ${peer.code} ${(peer.endedAt - hitAt).toFixed(0)} ms later: ${peer.stderr.trim()}`);
        expect(hit.code).toBe(code);
        expect(oneLine(hit.stderr)).toContain(`interrupted by ${sig}`);
        expect(peer.code).toBe(1);
        const line = oneLine(peer.stderr);
        expect(line).toContain(`${victim} aborted`);
        expect(line).toContain(sig);
        // Told, not timed out (default -t 5).
        expect(peer.endedAt - hitAt).toBeLessThan(1000);
        expect(isPrefix(r.outPath, input)).toBe(true);
      }, 40_000);
    }
  }
});

describe("the receiver's output", () => {
  test("closed early (| head -c 1000): both fail promptly, the receiver names the broken pipe", async () => {
    const t = await topology();
    const input = await randomFile(scratch.dir, "head", 64 * MB);
    const r = await transfer(t, { input, senderArgs: ["-0"], receiverPipe: "head -c 1000", timeoutMs: 30_000 });
    console.log(`head -c 1000: sender exit ${r.sender.code} in ${r.sender.ms.toFixed(0)} ms (${r.sender.stderr.trim()}), receiver exit ${r.receiver.code} in ${r.receiver.ms.toFixed(0)} ms (${r.receiver.stderr.trim()})`);
    expect(sizeOf(r.outPath)).toBe(1000);
    expect(isPrefix(r.outPath, input)).toBe(true);
    expect(r.receiver.code).toBe(1);
    expect(oneLine(r.receiver.stderr)).toMatch(/broken pipe/i);
    expect(r.sender.code).toBe(1);
    expect(oneLine(r.sender.stderr)).toMatch(/receiver aborted.*broken pipe/i);
    // Promptly: the whole input would take ~3 s; the peer timeout is 5 s.
    expect(r.sender.ms).toBeLessThan(2000);
    expect(r.receiver.ms).toBeLessThan(2000);
  }, 40_000);

  test("a slow reader (~10 MB/s): exact, no retransmission storm, memory bounded", async () => {
    const t = await topology();
    const bytes = 48 * MB;
    const input = await randomFile(scratch.dir, "slow", bytes);
    const reader = writeSlowReader(`${scratch.dir}/slow-reader.js`);
    const sJson = `${scratch.dir}/slow.s.json`;
    let sPeak = 0, rPeak = 0;
    // -m on the receiver: an 8 MiB window, so flow control, not the window, holds the sender.
    const r = await transfer(t, {
      input,
      senderArgs: ["-0", "-v", "--stats-json", sJson],
      receiverArgs: ["-v", "-m"],
      receiverPipe: `${process.execPath} ${reader} 10000000`,
      timeoutMs: 60_000,
      during: async ({ sender, receiver }) => {
        let rPid: number | null = null;
        while (running(sender) || running(receiver)) {
          rPid ??= findL2pipe(receiver.pid);
          sPeak = Math.max(sPeak, peakRssKiB(sender.pid));
          rPeak = Math.max(rPeak, peakRssKiB(rPid));
          await Bun.sleep(20);
        }
      },
    });
    expect(verdict(r)).toContain("sha equal");
    expect(r.sender.code).toBe(0);
    expect(r.receiver.code).toBe(0);
    const st = (await Bun.file(sJson).json()) as { links: Array<{ framesSent: number; framesRetransmitted: number }> };
    const sent = st.links[0]!.framesSent, resent = st.links[0]!.framesRetransmitted;
    const mbps = bytes / 1e6 / (r.ms / 1000);
    console.log(
      `slow reader: ${(r.ms / 1000).toFixed(2)} s (${mbps.toFixed(1)} MB/s), ${resent} of ${sent} frames resent, ` +
        `peak RSS sender ${(sPeak / 1024).toFixed(0)} MiB, receiver ${(rPeak / 1024).toFixed(0)} MiB`,
    );
    // The reader set the pace.
    expect(mbps).toBeLessThan(12);
    // A storm would resend a good part of the stream; the start alone costs ~350 frames (the
    // first window outruns the initial 5 ms RTT guess).
    expect(resent).toBeLessThan(sent * 0.03);
    expect(sPeak).toBeGreaterThan(0);
    expect(rPeak).toBeGreaterThan(0);
    expect(sPeak).toBeLessThan(400 * 1024);
    expect(rPeak).toBeLessThan(400 * 1024);
  }, 60_000);
});

describe("the sender's input", () => {
  test("a read error on stdin (a directory): the sender names it and the receiver hears it at once", async () => {
    const t = await topology();
    const input = await randomFile(scratch.dir, "unread", 1 * MB);
    // The shell opens the directory as stdin; the first read() fails with EISDIR.
    const r = await transfer(t, {
      input, senderArgs: ["-v"], senderWrap: ["sh", "-c", `exec "$@" < ${scratch.dir}`, "sh"], timeoutMs: 20_000,
    });
    console.log(`stdin a directory: sender exit ${r.sender.code} in ${r.sender.ms.toFixed(0)} ms (${r.sender.stderr.trim()}), receiver exit ${r.receiver.code} in ${r.receiver.ms.toFixed(0)} ms (${r.receiver.stderr.trim()})`);
    expect(r.sender.code).toBe(1);
    expect(r.sender.stderr).toMatch(/cannot read stdin: EISDIR/);
    expect(r.sender.stderr).toMatch(/^l2pipe send: /m); // -v still reports
    expect(r.receiver.code).toBe(1);
    expect(oneLine(r.receiver.stderr)).toMatch(/sender aborted: cannot read stdin: EISDIR/);
    expect(sizeOf(r.outPath)).toBe(0);
    // At once: not after the 5 s it takes to notice a silent sender.
    expect(r.receiver.ms).toBeLessThan(3000);
  }, 30_000);
});
